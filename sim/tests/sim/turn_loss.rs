//! A TURN server that loses its allocations: restarted (every nonce forgotten too), or
//! deleting them (nonces kept). Relayed pairs must be back on a new allocation within a
//! minute, not after the next refresh or never.

use std::time::Duration;

use wice_sim::SimConfig;
use wice_sim::world::HEARD_WITHIN;

use crate::common::*;

/// How long a relayed pair may stay apart after its server lost the allocations: the relay
/// notices within seconds (the allocation probe), allocates again, and the sessions start
/// over with new offers (signaling is up).
const BACK_WITHIN: Duration = Duration::from_secs(60);

fn relayed_pair(seed: u64) -> wice_sim::Simulation {
    let (mut sim, nodes) = world(
        SimConfig::new(seed),
        &[Some(symmetric()), Some(symmetric())],
    );
    connect_all(&mut sim, &nodes, "relayed");
    assert_eq!(sim.path_class(0, 1), "relay");
    sim.run_for(Duration::from_secs(5));
    sim
}

/// Runs until both relays learnt of the loss (within seconds: the probe), then until both
/// sessions are connected again and the stand-ins cross the new path for longer than a stale
/// one is remembered.
fn lost_then_back(sim: &mut wice_sim::Simulation, what: &str) {
    let started = sim.elapsed();
    let both_lost =
        |sim: &wice_sim::Simulation| (0..2).all(|n| sim.counters(n).relay_allocations_lost >= 1);
    while !both_lost(sim) {
        assert!(
            sim.elapsed() - started < Duration::from_secs(30),
            "{what}: the relays did not learn of the loss; server errors {:?}",
            sim.server().errors
        );
        sim.run_for(Duration::from_millis(100));
    }
    let learnt = sim.elapsed() - started;
    let both = |sim: &wice_sim::Simulation| {
        sim.status(0, 1).state.is_connected() && sim.status(1, 0).state.is_connected()
    };
    sim.run_for(Duration::from_millis(100));
    while !both(sim) {
        assert!(
            sim.elapsed() - started < BACK_WITHIN,
            "{what}: still apart {BACK_WITHIN:?} later; server errors {:?}, allocations {}: {}",
            sim.server().errors,
            sim.server().allocations,
            describe(sim, &[(0, 1)])
        );
        sim.run_for(Duration::from_millis(100));
    }
    let took = sim.elapsed() - started;
    eprintln!(
        "{what}: both relays learnt it after {learnt:?}, the pair was back after {took:?}; \
         server errors {:?}, 401s rewritten {}",
        sim.server().errors,
        sim.server().challenges_rewritten
    );
    sim.run_for(HEARD_WITHIN + Duration::from_secs(5));
    assert!(
        sim.connected(0, 1),
        "{what}: the new path carries the stand-ins: {}",
        describe(sim, &[(0, 1)])
    );
}

#[test]
fn relayed_pairs_are_back_within_a_minute_after_the_turn_server_restarts_and_forgets_every_nonce() {
    let mut sim = relayed_pair(seed_or(41));
    let before = sim.server().allocations;
    sim.restart_turn_server();
    lost_then_back(&mut sim, "after the restart");
    assert_eq!(sim.path_class(0, 1), "relay");
    assert!(
        sim.server().allocations >= before + 2,
        "both relays allocated again"
    );
    for node in [0, 1] {
        assert!(
            sim.counters(node).relay_allocations_lost >= 1,
            "node {node}"
        );
    }
}

#[test]
fn relayed_pairs_are_back_within_a_minute_after_the_turn_server_deletes_their_allocations() {
    let mut sim = relayed_pair(seed_or(23));
    let before = sim.server().allocations;
    assert_eq!(sim.delete_turn_allocations(), 2);
    lost_then_back(&mut sim, "after the deletion");
    assert_eq!(sim.path_class(0, 1), "relay");
    assert!(
        sim.server().allocations >= before + 2,
        "both relays allocated again from their same 5-tuples"
    );
}

/// The allocation probe of a live allocation must be answered as the allocation's owner:
/// `turn-server-proto` knows a `turn-client-proto` allocation by USERHASH and answered the
/// probe's USERNAME with 441, which the probe took for silence and dropped a live relay.
#[test]
fn a_live_allocation_outlasts_its_peer_going_silent_for_ten_seconds() {
    let mut sim = relayed_pair(seed_or(42));
    let allocations = sim.server().allocations;
    sim.site_mut(1).cut = true;
    sim.run_for(Duration::from_secs(10));
    sim.site_mut(1).cut = false;
    sim.run_for(Duration::from_secs(60));
    assert_eq!(
        sim.counters(0).relay_allocations_lost,
        0,
        "node 0's relay answered its probe; server errors {:?}",
        sim.server().errors
    );
    assert_eq!(sim.server().allocations, allocations, "no new allocation");
    assert!(
        !sim.server().errors.contains_key(&441),
        "no request under the wrong name: {:?}",
        sim.server().errors
    );
    assert!(sim.connected(0, 1), "{}", describe(&sim, &[(0, 1)]));
}
