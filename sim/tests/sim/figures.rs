//! Figures for the README, printed, never asserted (speed is not a test's business): how much
//! simulated mesh a CPU second buys. Run with `--nocapture` to see them.

use std::time::Duration;

use wice_sim::{LinkProfile, SimBuilder, SimConfig};

use crate::common::*;

/// A full mesh of `nodes` nodes, two per site, cycling through the site kinds, run until
/// connected and then for a simulated minute.
fn mesh_figures(nodes: usize) {
    let kinds = [PUBLIC, eim(), eim(), address_dependent(), symmetric()];
    let mut builder = SimBuilder::new(SimConfig::new(seed_or(31)));
    for site in 0..nodes.div_ceil(2) {
        let index = builder.site(kinds[site % kinds.len()], LinkProfile::default());
        builder.node(index);
        if builder_nodes(site, nodes) {
            builder.node(index);
        }
    }
    let mut sim = builder.build();
    let started = thread_cpu();
    let pairs = sim.all_pairs();
    let connected = sim.run_until_connected(&pairs, Duration::from_secs(120));
    let setup_cpu = thread_cpu() - started;
    sim.run_for(Duration::from_secs(60));
    let cpu = thread_cpu() - started;
    let simulated = sim.elapsed().as_secs_f64();
    eprintln!(
        "mesh of {nodes}: connected in {connected:?} simulated ({setup_cpu:?} CPU); \
         {simulated:.0} s simulated in {cpu:?} CPU = {:.0} node-seconds per CPU second; \
         {} datagrams, {} steps",
        nodes as f64 * simulated / cpu.as_secs_f64(),
        sim.stats.datagrams,
        sim.stats.steps
    );
}

fn builder_nodes(site: usize, nodes: usize) -> bool {
    2 * site + 1 < nodes
}

#[test]
fn print_how_many_simulated_node_seconds_a_cpu_second_buys() {
    for nodes in [4, 10, 20] {
        mesh_figures(nodes);
    }
}
