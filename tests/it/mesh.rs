//! wice ↔ wice over a veth pair.

use std::net::SocketAddr;

use crate::harness::*;

/// Two namespaces on one veth, each running wice configured for the other.
struct Pair {
    a: Netns,
    b: Netns,
    node_a: WiceNode,
    node_b: WiceNode,
    keys_b: Keys,
    _dir: TempDir,
}

fn pair() -> Pair {
    let mut a = Netns::new();
    let mut b = Netns::new();
    veth(&a, "10.0.0.1/24", &b, "10.0.0.2/24");
    let dir = TempDir::new();
    let (keys_a, keys_b) = (Keys::generate(), Keys::generate());
    let id = unique();
    let config_a = node_config(
        &format!("wa{id}"),
        &keys_a,
        51820,
        &["10.77.0.1/24", "fd77::1/64"],
        &dir.path("a.sock"),
        &[PeerSpec {
            public_key: &keys_b.public,
            allowed_ips: &["10.77.0.2/32", "fd77::2/128"],
            endpoint: Some("10.0.0.2:51820"),
        }],
    );
    let config_b = node_config(
        &format!("wb{id}"),
        &keys_b,
        51820,
        &["10.77.0.2/24", "fd77::2/64"],
        &dir.path("b.sock"),
        &[PeerSpec {
            public_key: &keys_a.public,
            allowed_ips: &["10.77.0.1/32", "fd77::1/128"],
            endpoint: Some("10.0.0.1:51820"),
        }],
    );
    let node_a = WiceNode::start(&mut a, &dir, "a", &config_a);
    let node_b = WiceNode::start(&mut b, &dir, "b", &config_b);
    Pair {
        a,
        b,
        node_a,
        node_b,
        keys_b,
        _dir: dir,
    }
}

#[test]
fn wice_pair_pings_both_ways_on_ipv4_and_ipv6_and_moves_100_mb_intact() {
    if !root_or_skip("wice_pair_pings_both_ways_on_ipv4_and_ipv6_and_moves_100_mb_intact") {
        return;
    }
    let p = pair();
    assert!(
        p.a.ping("10.77.0.2", 3, 10),
        "a → b IPv4; logs:\n{}\n{}",
        p.node_a.log_text(),
        p.node_b.log_text()
    );
    assert!(p.b.ping("10.77.0.1", 3, 10), "b → a IPv4");
    assert!(p.a.ping("fd77::2", 3, 10), "a → b IPv6");
    assert!(p.b.ping("fd77::1", 3, 10), "b → a IPv6");

    tcp_transfer(
        &p.a,
        &p.b,
        "10.77.0.2:5201".parse::<SocketAddr>().expect("addr"),
        100_000_000,
    );

    let status = p.node_a.status();
    let peer = &status["peers"][0];
    assert_eq!(peer["public_key"], p.keys_b.public.as_str());
    assert_eq!(peer["state"], "connected");
    assert_eq!(peer["endpoint"], "10.0.0.2:51820");
    assert!(peer["last_handshake_secs"].as_u64().is_some());
    assert!(
        peer["tx_bytes"].as_u64().expect("tx_bytes") >= 100_000_000,
        "{status}"
    );
    assert!(
        p.node_b.status()["peers"][0]["rx_bytes"]
            .as_u64()
            .expect("rx_bytes")
            >= 100_000_000
    );
}

#[test]
fn traffic_follows_a_peer_whose_underlay_address_changes() {
    if !root_or_skip("traffic_follows_a_peer_whose_underlay_address_changes") {
        return;
    }
    let p = pair();
    assert!(p.a.ping("10.77.0.2", 2, 10), "tunnel up before the move");
    let veth_b =
        p.b.exec("ip", &["-o", "link", "show", "type", "veth"])
            .stdout
            .split(|c| *c == b':')
            .nth(1)
            .map(|s| {
                String::from_utf8_lossy(s)
                    .trim()
                    .split('@')
                    .next()
                    .unwrap_or("")
                    .to_owned()
            })
            .expect("b has a veth");

    p.b.ip(&["addr", "del", "10.0.0.2/24", "dev", &veth_b]);
    p.b.ip(&["addr", "add", "10.0.0.3/24", "dev", &veth_b]);

    // b speaks first from its new address; a learns it from the authenticated packet.
    assert!(p.b.ping("10.77.0.1", 3, 10), "b → a after the move");
    assert!(p.a.ping("10.77.0.2", 3, 10), "a → b after the move");
    assert_eq!(p.node_a.status()["peers"][0]["endpoint"], "10.0.0.3:51820");
    assert!(p.node_a.log_text().contains("endpoint moved"));
}

#[test]
fn a_packet_with_a_forged_inner_source_is_dropped_and_counted() {
    if !root_or_skip("a_packet_with_a_forged_inner_source_is_dropped_and_counted") {
        return;
    }
    let p = pair();
    assert!(p.b.ping("10.77.0.1", 2, 10), "tunnel up");
    // b's kernel sends from an address a never allowed for b; b's wice encrypts it faithfully.
    p.b.ip(&["addr", "add", "10.77.0.99/32", "dev", &p.node_b.interface]);
    let forged = p.b.exec(
        "ping",
        &[
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "1",
            "-I",
            "10.77.0.99",
            "10.77.0.1",
        ],
    );
    assert!(
        !forged.status.success(),
        "no reply may come back to a forged source"
    );

    let status = p.node_a.status();
    assert_eq!(
        status["drops"]["source_not_allowed"].as_u64(),
        Some(3),
        "{status}"
    );
    assert_eq!(
        status["peers"][0]["dropped_source_not_allowed"].as_u64(),
        Some(3)
    );
    assert!(p.b.ping("10.77.0.1", 2, 10), "honest traffic still flows");
}
