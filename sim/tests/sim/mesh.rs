//! A 100-node mesh: every pair connects with the path class the lab would expect.

use std::time::Duration;

use wice_sim::{LinkProfile, SimBuilder, SimConfig, SiteKind};

use crate::common::*;

/// Expected path class for nodes in sites of kinds `a` and `b`: the lab's rule, where any
/// NAT that maps per destination (symmetric, address-dependent) needs the relay unless the
/// other side is public.
pub(crate) fn expected_class(a: SiteKind, b: SiteKind, same_site: bool) -> &'static str {
    let per_destination = |k: SiteKind| matches!(k, SiteKind::Nat(n) if n.mapping != wice_sim::Mapping::EndpointIndependent);
    if same_site {
        "host"
    } else if (per_destination(a) && b != PUBLIC) || (per_destination(b) && a != PUBLIC) {
        "relay"
    } else {
        "direct"
    }
}

#[test]
fn a_mesh_of_100_nodes_in_50_sites_connects_all_4950_pairs_with_the_expected_paths() {
    let kinds = [PUBLIC, eim(), eim(), address_dependent(), symmetric()];
    let mut builder = SimBuilder::new(SimConfig::new(seed_or(100)));
    let mut site_kinds = Vec::new();
    for site in 0..50 {
        let kind = kinds[site % kinds.len()];
        let index = builder.site(kind, LinkProfile::default());
        site_kinds.push(kind);
        builder.node(index);
        builder.node(index);
    }
    let mut sim = builder.build();
    let started = thread_cpu();
    let pairs = sim.all_pairs();
    assert_eq!(pairs.len(), 4950);
    let took = match sim.run_until_connected(&pairs, Duration::from_secs(120)) {
        Ok(took) => took,
        Err(apart) => panic!("{} pairs apart: {}", apart.len(), describe(&sim, &apart)),
    };
    eprintln!(
        "100 nodes: all pairs connected after {took:?} simulated, {:?} of CPU; {:?}",
        thread_cpu() - started,
        sim.stats
    );
    let mut wrong = Vec::new();
    for (a, b) in pairs {
        let (sa, sb) = (sim.node(a).site, sim.node(b).site);
        let expected = expected_class(site_kinds[sa], site_kinds[sb], sa == sb);
        let got = sim.path_class(a, b);
        let ok = got == expected || (expected == "direct" && got == "host");
        if !ok {
            wrong.push(format!("{a}↔{b}: expected {expected}, got {got}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} pairs on unexpected paths: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    let violations = sim.check_invariants();
    assert!(violations.is_empty(), "{violations:?}");
}
