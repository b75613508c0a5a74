//! Tunnels set up through a NATS cluster (root, namespace lab): three routed `nats-server`s
//! on the lab's internet, two `wice up` nodes whose only signaling backend is the cluster.
//! The NATS server a node is attached to is killed mid-test: tunnels keep passing traffic,
//! the clients fail over, and a node restarted afterwards reconnects.

use std::time::{Duration, Instant};

use wice_lab::{self, Lab, LabOptions, NatKind, PUBLIC_ADDR};

use crate::harness::{WICE, root_or_skip};
use crate::nats_cluster::{NatsCluster, nats_server_or_skip};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(45);

fn assert_ping(lab: &Lab, a: usize, b: usize) {
    let (na, nb) = (lab.node(a), lab.node(b));
    assert!(
        na.ns.ping(&nb.overlay.to_string(), 3, 10),
        "{} → {} ping through the tunnel\n{}",
        na.label,
        nb.label,
        lab.logs(25)
    );
}

/// The servers that have a client connection now (the nodes' NATS connections).
fn servers_with_clients(cluster: &NatsCluster, n: usize) -> Vec<usize> {
    (0..n)
        .filter(|&i| cluster.monitor(i, "/connz", "num_connections").unwrap_or(0) > 0)
        .collect()
}

#[test]
fn over_a_nats_cluster_tunnels_outlive_a_killed_server_and_a_restarted_peer_reconnects() {
    let test =
        "over_a_nats_cluster_tunnels_outlive_a_killed_server_and_a_restarted_peer_reconnects";
    if !root_or_skip(test) || !nats_server_or_skip(test) {
        return;
    }
    let mut options = LabOptions::new(WICE);
    options.signaling_backends = Some(vec![format!(
        "nats://{PUBLIC_ADDR}:14222,{PUBLIC_ADDR}:14223,{PUBLIC_ADDR}:14224"
    )]);
    let mut lab = Lab::new(options).expect("lab");
    let mut cluster = NatsCluster::start_in(&lab.internet().name, PUBLIC_ADDR, 3);
    let site_a = lab.add_site(NatKind::Public).expect("site");
    let a = lab.add_node(site_a, "a").expect("node");
    let site_b = lab.add_site(NatKind::Public).expect("site");
    let b = lab.add_node(site_b, "b").expect("node");

    let since = Instant::now();
    lab.start_nodes(&[a, b]).expect("daemons start");
    lab.wait_connected(&[(a, b)], since, CONNECT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{test}: {e}\n{}", lab.logs(25)));
    assert_ping(&lab, a, b);

    // Kill a server that holds a node's connection (each node picked one of the three).
    let attached = servers_with_clients(&cluster, 3);
    let victim = *attached
        .first()
        .expect("a server with the nodes' connections");
    cluster.kill(victim);
    eprintln!("{test}: killed NATS server {victim} (servers with clients: {attached:?})");

    // The tunnel does not need signaling: traffic goes on, the pair stays connected.
    for _ in 0..3 {
        assert_ping(&lab, a, b);
        std::thread::sleep(Duration::from_secs(1));
    }
    let p = lab.peer_status(a, b).expect("status");
    assert!(wice_lab::connected(&p), "still connected: {p}");
    // The nodes' clients moved to the surviving servers.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let clients: usize = (0..3)
            .filter(|&i| i != victim)
            .map(|i| cluster.monitor(i, "/connz", "num_connections").unwrap_or(0))
            .sum();
        if clients >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes never reconnected to the surviving servers ({clients} clients)"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // b crashes and comes back while the server is still dead: it finds a through NATS.
    lab.stop_node(b, libc::SIGKILL);
    let since = Instant::now();
    lab.start_nodes(&[b]).expect("restart");
    lab.wait_connected(&[(a, b)], since, CONNECT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{test}: after the restart: {e}\n{}", lab.logs(25)));
    assert_ping(&lab, a, b);
    assert_ping(&lab, b, a);
}
