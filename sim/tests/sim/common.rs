//! Building worlds the way the netns lab does.

use std::time::Duration;

use wice_sim::{LinkProfile, NatBehaviour, SimBuilder, SimConfig, Simulation, SiteKind};

/// What the lab calls its NAT kinds.
pub(crate) const PUBLIC: SiteKind = SiteKind::Public;

pub(crate) fn eim() -> SiteKind {
    SiteKind::Nat(NatBehaviour::endpoint_independent())
}

pub(crate) fn symmetric() -> SiteKind {
    SiteKind::Nat(NatBehaviour::symmetric())
}

pub(crate) fn address_dependent() -> SiteKind {
    SiteKind::Nat(NatBehaviour::address_dependent())
}

/// How long a pair may take to connect, in simulated time (the lab waits 30 s of real time).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Nodes placed like the lab's `add_nodes`: `Some(kind)` opens a new site, `None` joins the
/// previous node's site.
pub(crate) fn world(config: SimConfig, layout: &[Option<SiteKind>]) -> (Simulation, Vec<usize>) {
    let mut builder = SimBuilder::new(config);
    let mut site = None;
    let mut nodes = Vec::new();
    for entry in layout {
        if let Some(kind) = entry {
            site = Some(builder.site(*kind, LinkProfile::default()));
        }
        nodes.push(builder.node(site.expect("the first entry opens a site")));
    }
    (builder.build(), nodes)
}

/// Two nodes laid out as `layout`, run until connected; panics with the status if not.
pub(crate) fn two_nodes(seed: u64, layout: &[Option<SiteKind>]) -> Simulation {
    let (mut sim, nodes) = world(SimConfig::new(seed), layout);
    connect_all(&mut sim, &nodes, "two nodes");
    sim
}

/// Runs until every pair of `nodes` is connected, or panics naming the pairs apart.
pub(crate) fn connect_all(sim: &mut Simulation, nodes: &[usize], what: &str) -> Duration {
    let pairs: Vec<(usize, usize)> = nodes
        .iter()
        .enumerate()
        .flat_map(|(i, a)| nodes[i + 1..].iter().map(move |b| (*a, *b)))
        .collect();
    match sim.run_until_connected(&pairs, CONNECT_TIMEOUT) {
        Ok(took) => took,
        Err(apart) => panic!(
            "{what}: pairs apart after {CONNECT_TIMEOUT:?}: {}",
            describe(sim, &apart)
        ),
    }
}

/// The pairs with both sides' status, for failure messages.
pub(crate) fn describe(sim: &Simulation, pairs: &[(usize, usize)]) -> String {
    pairs
        .iter()
        .take(5)
        .map(|(a, b)| {
            format!(
                "\n  {a}↔{b}: {:?} / {:?}; {a} says {:?}; {b} says {:?}",
                sim.path_kinds(*a, *b).0,
                sim.path_kinds(*a, *b).1,
                sim.status(*a, *b).reason,
                sim.status(*b, *a).reason
            )
        })
        .collect()
}

/// The seed a test runs with: `SIM_SEED` if set, else `default`.
pub(crate) fn seed_or(default: u64) -> u64 {
    std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// CPU time this thread has used (Linux: `/proc/thread-self/schedstat`), for printed
/// figures; wall time on a shared machine says little.
pub(crate) fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}
