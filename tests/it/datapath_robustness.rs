//! The datapath under conditions a user did not ask for: a full socket, a TUN
//! device deleted under a running node, a peer restarted with the same key.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use wice_datapath::{Device, DeviceConfig, PeerConfig};

use crate::harness::*;

/// Datagrams the control plane tries to send into a socket that cannot drain:
/// several times what the 7 MiB send buffer holds.
const CONTROL_SENDS: usize = 20_000;

#[test]
fn control_sends_never_wait_for_a_full_socket_and_count_what_they_drop() {
    if !root_or_skip("control_sends_never_wait_for_a_full_socket_and_count_what_they_drop") {
        return;
    }
    let ns = Netns::new();
    let far = Netns::new();
    let (link, _) = veth(&ns, "10.9.0.1/24", &far, "10.9.0.2/24");
    // A qdisc that holds every datagram for minutes: the socket's send buffer
    // fills and stays full, as it does behind a congested uplink.
    ns.exec(
        "tc",
        &[
            "qdisc",
            "add",
            "dev",
            &link,
            "root",
            "tbf",
            "rate",
            "8kbit",
            "burst",
            "1600",
            "limit",
            "100000000",
        ],
    );
    let name = format!("wcb{}", unique());
    let (done_tx, done_rx) = mpsc::channel();
    let _worker = ns.within(move || {
        let device = Device::create(&DeviceConfig {
            name,
            mtu: 1420,
            listen_port: 0,
            private_key: [7; 32],
        })
        .expect("device");
        let peer = [9u8; 32];
        let far_end: SocketAddr = "10.9.0.2:51820".parse().expect("addr");
        device
            .engine()
            .add_peer(&PeerConfig {
                public_key: peer,
                preshared_key: None,
                persistent_keepalive: None,
                endpoint: Some(far_end),
                allowed_ips: vec!["10.77.0.2/32".parse().expect("net")],
            })
            .expect("peer");
        let stun_like = [0u8; 1200];
        let refused = (0..CONTROL_SENDS)
            .filter(|_| device.send_control(far_end, &stun_like).is_err())
            .count();
        let handshake_sent = device.initiate_handshake(&peer);
        let drops = device.engine().drops.snapshot();
        let _ = done_tx.send((refused, handshake_sent, drops));
        device.shutdown();
    });
    // Minutes, were any send waiting for the qdisc to drain; none does.
    let (refused, handshake_sent, drops) = done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("every control send returned although the socket stayed full");
    assert!(refused > 0, "the full socket refused some datagrams");
    assert!(
        !handshake_sent,
        "the handshake initiation was dropped, not queued"
    );
    assert_eq!(
        drops.control_send_dropped,
        refused as u64 + 1,
        "each refused datagram (and the initiation) counted: {drops:?}"
    );
}

fn lone_node(ns: &mut Netns, dir: &TempDir, name: &str) -> WiceNode {
    let peer = Keys::generate();
    let config = node_config(
        name,
        &Keys::generate(),
        0,
        &["10.77.0.1/24"],
        &dir.path("n.sock"),
        &[PeerSpec {
            public_key: &peer.public,
            allowed_ips: &["10.77.0.2/32"],
            endpoint: Some("10.9.9.9:51820"),
        }],
    );
    WiceNode::start(ns, dir, "n", &config)
}

#[test]
fn a_node_whose_tun_device_is_deleted_exits_with_an_error_naming_the_dead_thread() {
    if !root_or_skip(
        "a_node_whose_tun_device_is_deleted_exits_with_an_error_naming_the_dead_thread",
    ) {
        return;
    }
    let mut ns = Netns::new();
    let dir = TempDir::new();
    let name = format!("wd{}", unique());
    let node = lone_node(&mut ns, &dir, &name);
    ns.ip(&["link", "del", &name]);
    let code = node.wait_exit(&mut ns, Duration::from_secs(10));
    let log = node.log_text();
    assert_eq!(code, Some(1), "wice up exits with an error; log:\n{log}");
    assert!(
        log.contains("datapath thread wice-tun-rx failed"),
        "the error names what died; log:\n{log}"
    );
    assert!(!node.socket.exists(), "control socket removed");
    assert!(
        !node.socket.with_extension("pid").exists(),
        "pid file removed"
    );
}

/// A pair on one veth, both with `persistent_keepalive = 25`.
fn keepalive_configs(dir: &TempDir) -> (String, String) {
    let with_keepalive = |config: String| config + "persistent_keepalive = 25\n";
    let StaticPair {
        config_a: a,
        config_b: b,
        ..
    } = static_pair(dir);
    (with_keepalive(a), with_keepalive(b))
}

#[test]
fn a_node_restarted_with_the_same_key_answers_pings_at_once() {
    if !root_or_skip("a_node_restarted_with_the_same_key_answers_pings_at_once") {
        return;
    }
    let mut a = Netns::new();
    let mut b = Netns::new();
    veth(&a, "10.0.0.1/24", &b, "10.0.0.2/24");
    let dir = TempDir::new();
    let (config_a, config_b) = keepalive_configs(&dir);
    let node_a = WiceNode::start(&mut a, &dir, "a", &config_a);
    let node_b = WiceNode::start(&mut b, &dir, "b", &config_b);
    assert!(
        a.ping("10.77.0.2", 2, 5),
        "tunnel up before the restart; logs:\n{}\n{}",
        node_a.log_text(),
        node_b.log_text()
    );

    node_b.signal(libc::SIGTERM);
    assert_eq!(node_b.wait_exit(&mut b, Duration::from_secs(10)), Some(0));
    let _node_b = WiceNode::start(&mut b, &dir, "b", &config_b);
    // a still holds the session with b's previous run. Five pings, 0.2 s
    // apart, all answered within 2 s: what a user notices as "at once".
    assert!(
        a.ping("10.77.0.2", 5, 2),
        "a reaches the restarted b at once; a's log:\n{}",
        node_a.log_text()
    );
}
