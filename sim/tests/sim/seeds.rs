//! Random worlds, one per seed: random NAT kinds, link delays, losses and reordering,
//! signaling delays, losses and duplicates. Each run checks the invariants: every pair
//! connects (the TURN server makes every pair reachable), nothing panics, state stays
//! bounded. `SIM_SEEDS=N` runs N seeds (default 6); `SIM_SEED=S` runs seed S alone.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use wice_sim::rng::SimRng;
use wice_sim::{
    LinkProfile, NatBehaviour, SignalingProfile, SimBuilder, SimConfig, Simulation, SiteKind,
};

use crate::common::{describe, thread_cpu};

/// Seeds run by default: enough to catch a regression, few enough for a fast suite.
const DEFAULT_SEEDS: u64 = 6;
/// How long a random world may take to connect every pair, in simulated time.
const CONNECT_WITHIN: Duration = Duration::from_secs(180);
/// How long it then runs, checking that every pair stays connected.
const STEADY: Duration = Duration::from_secs(120);
/// Most offers one node may publish to one peer per simulated minute (a session publishes
/// a handful per attempt; resends back off to one per 32 s).
const OFFERS_PER_PEER_PER_MINUTE: f64 = 12.0;
/// Most datagrams one node may send per peer per simulated second, averaged over the run.
const DATAGRAMS_PER_PEER_PER_SECOND: f64 = 25.0;

fn ms(rng: &mut SimRng, up_to: u64) -> Duration {
    Duration::from_millis(rng.below(up_to + 1))
}

/// The world for `seed`.
pub(crate) fn random_world(seed: u64) -> Simulation {
    let mut rng = SimRng::new(seed, 0xC0FFEE);
    let mut config = SimConfig::new(seed);
    config.signaling = SignalingProfile {
        delay: Duration::from_millis(5) + ms(&mut rng, 200),
        jitter: ms(&mut rng, 150),
        loss: if rng.chance(0.5) {
            0.0
        } else {
            rng.below(20) as f64 / 100.0
        },
        duplicate: rng.below(10) as f64 / 100.0,
        outages: Vec::new(),
    };
    let mut builder = SimBuilder::new(config);
    let sites = 2 + rng.below(4);
    let mut nodes = 0;
    for _ in 0..sites {
        let kind = match rng.below(4) {
            0 => SiteKind::Public,
            1 => SiteKind::Nat(NatBehaviour::endpoint_independent()),
            2 => SiteKind::Nat(NatBehaviour::address_dependent()),
            _ => SiteKind::Nat(NatBehaviour::symmetric()),
        };
        let link = LinkProfile {
            delay: Duration::from_millis(1) + ms(&mut rng, 60),
            jitter: ms(&mut rng, 20),
            loss: if rng.chance(0.5) {
                0.0
            } else {
                rng.below(6) as f64 / 100.0
            },
        };
        let site = builder.site(kind, link);
        for _ in 0..1 + rng.below(2) {
            builder.node(site);
            nodes += 1;
        }
    }
    let _ = nodes;
    builder.build()
}

/// What a run measured, to compare runs of one seed.
#[derive(Debug, PartialEq)]
pub(crate) struct RunSummary {
    connected_after: Duration,
    stats: wice_sim::world::NetStats,
    classes: Vec<&'static str>,
}

/// Runs `seed`'s world and checks the invariants; returns what it measured or why it failed.
pub(crate) fn run_seed(seed: u64) -> Result<RunSummary, String> {
    let mut sim = random_world(seed);
    let pairs = sim.all_pairs();
    let connected_after = sim
        .run_until_connected(&pairs, CONNECT_WITHIN)
        .map_err(|apart| format!("{} pairs apart: {}", apart.len(), describe(&sim, &apart)))?;
    let steady_from = sim.elapsed();
    while sim.elapsed() < steady_from + STEADY {
        sim.run_for(Duration::from_secs(5));
        if let Err(apart) = sim.run_until_connected(&pairs, Duration::from_secs(60)) {
            return Err(format!(
                "pairs fell apart at {:?}: {}",
                sim.elapsed(),
                describe(&sim, &apart)
            ));
        }
    }
    let violations = sim.check_invariants();
    if !violations.is_empty() {
        return Err(format!("invariants: {violations:?}"));
    }
    let minutes = sim.elapsed().as_secs_f64() / 60.0;
    let peers = (sim.nodes().len() - 1) as f64;
    for (index, node) in sim.nodes().iter().enumerate() {
        let offers = node.offers_published as f64 / peers / minutes;
        if offers > OFFERS_PER_PEER_PER_MINUTE {
            return Err(format!(
                "node {index}: {offers:.1} offers per peer per minute"
            ));
        }
        let rate = node.datagrams_sent as f64 / peers / sim.elapsed().as_secs_f64();
        if rate > DATAGRAMS_PER_PEER_PER_SECOND {
            return Err(format!(
                "node {index}: {rate:.1} datagrams per peer per second"
            ));
        }
    }
    let classes = pairs.iter().map(|(a, b)| sim.path_class(*a, *b)).collect();
    Ok(RunSummary {
        connected_after,
        stats: sim.stats,
        classes,
    })
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![seed];
    }
    let count = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEEDS);
    (1..=count)
        .map(|n| n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .collect()
}

#[test]
fn random_worlds_connect_every_pair_and_stay_within_bounds() {
    let started = thread_cpu();
    let seeds = seeds();
    let mut failures = Vec::new();
    for seed in &seeds {
        let outcome = catch_unwind(AssertUnwindSafe(|| run_seed(*seed)));
        let error = match outcome {
            Ok(Ok(_)) => continue,
            Ok(Err(error)) => error,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                format!("panicked: {what}")
            }
        };
        failures.push(format!(
            "seed {seed}: {error}\n  re-run: SIM_SEED={seed} cargo test -p wice-sim --test sim random_worlds"
        ));
    }
    eprintln!(
        "{} seeds in {:?} of CPU ({:.1} seeds/s)",
        seeds.len(),
        thread_cpu() - started,
        seeds.len() as f64 / (thread_cpu() - started).as_secs_f64()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn one_seed_gives_the_same_run_twice() {
    let seed = seeds()[0];
    let first = run_seed(seed);
    let second = run_seed(seed);
    assert_eq!(first, second, "seed {seed}");
}
