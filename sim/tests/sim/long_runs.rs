//! Cases too slow or too rare for namespaces: idle NAT mappings, hours of signaling outage
//! (a TURN server that loses its allocations: `turn_loss`).

use std::time::Duration;

use wice_sim::{NatBehaviour, SimConfig, SiteKind};

use crate::common::*;

#[test]
fn consent_checks_keep_nat_mappings_that_expire_after_15_s_of_idle_open_for_ten_minutes() {
    let short =
        SiteKind::Nat(NatBehaviour::endpoint_independent().with_timeout(Duration::from_secs(15)));
    let (mut sim, nodes) = world(SimConfig::new(seed_or(21)), &[Some(short), Some(short)]);
    connect_all(&mut sim, &nodes, "short-timeout NATs");
    let restarts = sim.status(0, 1).restarts;
    for _ in 0..60 {
        sim.run_for(Duration::from_secs(10));
        assert!(sim.connected(0, 1), "apart at {:?}", sim.elapsed());
    }
    assert_eq!(sim.path_class(0, 1), "direct");
    assert_eq!(
        sim.status(0, 1).restarts,
        restarts,
        "no new session was needed"
    );
}

#[test]
fn a_pair_whose_nat_mappings_expired_during_a_three_minute_link_outage_reconnects_after_it() {
    let (mut sim, nodes) = world(SimConfig::new(seed_or(22)), &[Some(eim()), Some(eim())]);
    connect_all(&mut sim, &nodes, "before the outage");
    sim.site_mut(0).cut = true;
    sim.run_for(Duration::from_secs(180));
    assert!(!sim.connected(0, 1));
    // Assured flows live 120 s after their last datagram.
    assert_eq!(sim.nat_mappings(0), Some(0), "the idle mappings expired");
    sim.site_mut(0).cut = false;
    // The sessions gave up and wait out their restart back-off (at most RESTART_MAX, 64 s).
    match sim.run_until_connected(&[(0, 1)], Duration::from_secs(120)) {
        Ok(took) => eprintln!("reconnected {took:?} after the link came back"),
        Err(apart) => panic!("not reconnected: {}", describe(&sim, &apart)),
    }
    assert_eq!(sim.path_class(0, 1), "direct");
}

#[test]
fn tunnels_stay_up_through_a_three_hour_signaling_outage_and_a_node_started_during_it_joins_after()
{
    let layout = [Some(eim()), Some(PUBLIC), Some(symmetric()), Some(eim())];
    let (mut sim, nodes) = world(SimConfig::new(seed_or(24)), &layout);
    sim.stop_node(3);
    connect_all(&mut sim, &nodes[..3], "before the outage");
    let start = sim.elapsed();
    let hours = Duration::from_secs(3 * 3600);
    sim.signaling_mut().add_outage(start..start + hours);
    let up = [(0, 1), (0, 2), (1, 2)];
    for step in 0..18 {
        sim.run_for(Duration::from_secs(600));
        if step == 9 {
            sim.restart_node(3);
        }
        for (a, b) in up {
            assert!(
                sim.connected(a, b),
                "{a}↔{b} apart at {:?} without signaling",
                sim.elapsed()
            );
        }
    }
    // The outage ends; node 3's resends (every RESEND_MAX at most) reach the others.
    sim.run_for(Duration::from_secs(1));
    let all = sim.all_pairs();
    match sim.run_until_connected(&all, Duration::from_secs(120)) {
        Ok(took) => eprintln!("node 3 joined {took:?} after the outage"),
        Err(apart) => panic!("after the outage: {}", describe(&sim, &apart)),
    }
    assert!(sim.signaling().counters.outage_dropped > 0);
}
