//! Tunnels signaled over libp2p with no server at all (root, namespace lab): five `wice up`
//! nodes, each given only the next one's address as its bootstrap (a ring), find each
//! other through the DHT and connect every pair.

use std::str::FromStr as _;
use std::time::{Duration, Instant};

use wice::signaling::libp2p_client::peer_id_of;
use wice_core::keys::PrivateKey;
use wice_lab::{Lab, LabOptions, NatKind};

use crate::harness::{WICE, root_or_skip};

const NODES: usize = 5;
const LIBP2P_PORT: u16 = 4001;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// The private key in node `i`'s config (the lab generated it).
fn private_key_of(lab: &Lab, i: usize) -> PrivateKey {
    let config = lab.config(i);
    let key = config
        .lines()
        .find_map(|line| line.strip_prefix("private_key = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("the config has a private key");
    PrivateKey::from_str(key).expect("a private key")
}

#[test]
fn five_nodes_each_bootstrapped_from_one_other_over_libp2p_connect_every_pair() {
    let test = "five_nodes_each_bootstrapped_from_one_other_over_libp2p_connect_every_pair";
    if !root_or_skip(test) {
        return;
    }
    let mut options = LabOptions::new(WICE);
    options.log_level = "debug".into();
    let mut lab = Lab::new(options).expect("lab");
    let site = lab.add_site(NatKind::Public).expect("site");
    let nodes: Vec<usize> = (0..NODES)
        .map(|i| {
            let label = ((b'a' + i as u8) as char).to_string();
            lab.add_node(site, &label).expect("node")
        })
        .collect();
    for (i, &node) in nodes.iter().enumerate() {
        let next = nodes[(i + 1) % NODES];
        let next_addr = lab.node(next).underlay;
        // The last node's bootstrap has no peer id: the node learns it on connecting.
        let peer = if i + 1 == NODES {
            String::new()
        } else {
            format!("/p2p/{}", peer_id_of(&private_key_of(&lab, next)))
        };
        let own = lab.node(node).underlay;
        let section = format!(
            "[signaling]\nbackends = [\"libp2p:/ip4/{next_addr}/tcp/{LIBP2P_PORT}{peer}?listen=/ip4/{own}/tcp/{LIBP2P_PORT}\"]\n"
        );
        lab.set_node_signaling(node, &section, &[]);
    }

    let since = Instant::now();
    lab.start_nodes(&nodes).expect("daemons start");
    let mut pairs = Vec::new();
    for (i, &a) in nodes.iter().enumerate() {
        for &b in &nodes[i + 1..] {
            pairs.push((a, b));
        }
    }
    let reports = lab
        .wait_connected(&pairs, since, CONNECT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{test}: {e}\n{}", lab.logs(40)));
    for report in &reports {
        eprintln!(
            "{test}: {} ↔ {} connected after {:.1} s",
            lab.node(report.a).label,
            lab.node(report.b).label,
            report.setup.as_secs_f64()
        );
    }
    for &(a, b) in &pairs {
        for (from, to) in [(a, b), (b, a)] {
            let (na, nb) = (lab.node(from), lab.node(to));
            assert!(
                na.ns.ping(&nb.overlay.to_string(), 2, 10),
                "{} → {} ping through the tunnel\n{}",
                na.label,
                nb.label,
                lab.logs(40)
            );
        }
    }
}
