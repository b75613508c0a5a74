//! Allowed IPs of different peers may overlap; the longest prefix wins both ways, as in
//! WireGuard: an exit node's `0.0.0.0/0` beside a subnet router's networks.

use super::*;

/// An exit node (`0.0.0.0/0`) and a subnet router (a /32 and a /24) as peers of one node,
/// added in either order: each destination goes to the peer with the longest prefix
/// holding it, as in WireGuard.
#[test]
fn overlapping_allowed_ips_route_to_the_longest_prefix_in_either_order() {
    let exit = node(2, 2000);
    let router = node(3, 3000);
    let exit_peer = PeerConfig {
        allowed_ips: vec!["0.0.0.0/0".parse().expect("net")],
        ..peer_of(&exit, "10.77.0.2/32", Some(exit.addr))
    };
    let router_peer = PeerConfig {
        allowed_ips: vec![
            "10.77.0.3/32".parse().expect("net"),
            "192.168.50.0/24".parse().expect("net"),
        ],
        ..peer_of(&router, "10.77.0.3/32", Some(router.addr))
    };
    for exit_first in [true, false] {
        let a = node(1, 1000);
        let order = if exit_first {
            [&exit_peer, &router_peer]
        } else {
            [&router_peer, &exit_peer]
        };
        for peer in order {
            a.engine.add_peer(peer).expect("add peer");
        }
        // Which peer's key the table picks for a destination.
        let to = |dst: [u8; 4]| {
            let table = a.engine.table();
            let slot = *table
                .allowed_ips
                .lookup(IpAddr::V4(Ipv4Addr::from(dst)))
                .expect("some peer");
            table.by_slot(slot).expect("peer").public_key
        };
        assert_eq!(
            to([192, 168, 50, 9]),
            router.public,
            "exit first: {exit_first}"
        );
        assert_eq!(
            to([10, 77, 0, 3]),
            router.public,
            "exit first: {exit_first}"
        );
        assert_eq!(
            to([203, 0, 113, 9]),
            exit.public,
            "exit first: {exit_first}"
        );
        assert_eq!(to([10, 77, 0, 2]), exit.public, "exit first: {exit_first}");
        // And the first packet to the router's network starts a handshake with the router.
        let first = send(&a, &ipv4_packet(A_IP, Ipv4Addr::new(192, 168, 50, 9), b"x"));
        assert_eq!(first.map(|(to, _)| to), Some(router.addr));
    }
}

/// Inbound, the same table decides: the exit node may send from any address except those
/// a longer prefix gives to another peer.
#[test]
fn an_exit_node_may_not_send_from_an_address_another_peer_holds_more_specifically() {
    let a = node(1, 1000);
    let exit = node(2, 2000);
    let router = node(3, 3000);
    a.engine
        .add_peer(&peer_of(&exit, "0.0.0.0/0", Some(exit.addr)))
        .expect("add exit");
    a.engine
        .add_peer(&peer_of(&router, "192.168.50.0/24", Some(router.addr)))
        .expect("add router");
    exit.engine
        .add_peer(&peer_of(&a, "10.0.0.1/32", Some(a.addr)))
        .expect("add a");
    let initiation = send(&exit, &ipv4_packet(B_IP, A_IP, b"x")).expect("initiation");
    exchange(&a, &exit, initiation, false);
    let internet = ipv4_packet(Ipv4Addr::new(203, 0, 113, 9), A_IP, b"reply");
    let datagram = send(&exit, &internet).expect("data");
    let (at_a, _) = exchange(&a, &exit, datagram, false);
    assert_eq!(at_a, vec![internet]);
    let spoofed = ipv4_packet(Ipv4Addr::new(192, 168, 50, 9), A_IP, b"spoofed");
    let datagram = send(&exit, &spoofed).expect("data");
    let (at_a, _) = exchange(&a, &exit, datagram, false);
    assert!(
        at_a.is_empty(),
        "the router's network is not the exit's to send from"
    );
    assert_eq!(a.engine.drops.snapshot().source_not_allowed, 1);
}
