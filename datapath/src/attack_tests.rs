//! An attacker who knows only a node's public key, against two engines wired
//! back to back in memory: forged and replayed handshakes under load must not
//! move a peer, and the tunnel keeps working.

use std::net::{Ipv4Addr, SocketAddr};

use boringtun::x25519::{PublicKey, StaticSecret};

use crate::classify::DatagramKind;
use crate::forge::{forged_initiation, forged_response};
use crate::rx::InboundSink;
use crate::tx::Outbound;
use crate::{Endpoint, Engine, MAX_DATAGRAM, PeerConfig};

/// Handshake messages per second before cookies (engine.rs `HANDSHAKE_RATE_LIMIT`).
const HANDSHAKE_BUDGET: usize = 100;

#[derive(Default)]
struct Recorder {
    tun: Vec<Vec<u8>>,
    udp: Vec<(SocketAddr, Vec<u8>)>,
}

impl InboundSink for Recorder {
    fn send_udp(&mut self, to: SocketAddr, datagram: &[u8]) {
        self.udp.push((to, datagram.to_vec()));
    }
    fn control(&mut self, _: SocketAddr, _: DatagramKind, _: &[u8]) {}
}

fn receive(engine: &Engine, from: SocketAddr, datagram: &[u8]) -> Recorder {
    let mut recorder = Recorder::default();
    let mut out = vec![0u8; MAX_DATAGRAM];
    if let Some(len) = engine.decapsulate(&engine.table(), from, datagram, &mut out, &mut recorder)
    {
        recorder.tun.push(out[..len].to_vec());
    }
    recorder
}

struct Node {
    engine: Engine,
    addr: SocketAddr,
    public: [u8; 32],
}

fn node(seed: u8) -> Node {
    let private = [seed; 32];
    Node {
        engine: Engine::new(private),
        addr: SocketAddr::from(([192, 0, 2, seed], 51820)),
        public: PublicKey::from(&StaticSecret::from(private)).to_bytes(),
    }
}

const A_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn attacker() -> SocketAddr {
    SocketAddr::from(([203, 0, 113, 66], 6666))
}

fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![0u8; 28];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&28u16.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[24..26].copy_from_slice(&8u16.to_be_bytes());
    p
}

fn encapsulate(n: &Node, packet: &[u8]) -> Option<(SocketAddr, Vec<u8>)> {
    let mut out = vec![0u8; MAX_DATAGRAM];
    match n.engine.encapsulate(&n.engine.table(), packet, &mut out) {
        Outbound::Send { to, datagram } => Some((to, datagram.to_vec())),
        Outbound::Queued | Outbound::Dropped => None,
    }
}

/// Delivers `datagram` from `from` and every answer after it until both are quiet.
fn exchange(a: &Node, b: &Node, from_b: bool, datagram: Vec<u8>) -> (usize, usize) {
    let (mut at_a, mut at_b) = (0, 0);
    let mut in_flight = vec![(from_b, datagram)];
    while let Some((sent_by_b, datagram)) = in_flight.pop() {
        let (receiver, sender) = if sent_by_b { (a, b) } else { (b, a) };
        let got = receive(&receiver.engine, sender.addr, &datagram);
        if sent_by_b {
            at_a += got.tun.len();
        } else {
            at_b += got.tun.len();
        }
        in_flight.extend(got.udp.into_iter().map(|(_, d)| (!sent_by_b, d)));
    }
    (at_a, at_b)
}

/// A and B with a session B started; returns B's initiation, as an eavesdropper saw it.
fn connected() -> (Node, Node, Vec<u8>) {
    let (a, b) = (node(1), node(2));
    for (this, other, allowed) in [(&a, &b, "10.0.0.2/32"), (&b, &a, "10.0.0.1/32")] {
        this.engine
            .add_peer(&PeerConfig {
                public_key: other.public,
                preshared_key: None,
                persistent_keepalive: None,
                endpoint: Some(other.addr),
                allowed_ips: vec![allowed.parse().expect("test network")],
            })
            .expect("add peer");
    }
    let (_, initiation) = encapsulate(&b, &ipv4_packet(B_IP, A_IP)).expect("initiation");
    let (at_a, _) = exchange(&a, &b, true, initiation.clone());
    assert_eq!(
        at_a, 1,
        "B's first packet arrives once the handshake completes"
    );
    (a, b, initiation)
}

fn endpoint_of_b(a: &Node) -> Option<Endpoint> {
    a.engine.peer_stats()[0].endpoint
}

#[test]
fn forged_and_replayed_initiations_under_load_never_move_a_peer_and_data_still_flows() {
    let (a, b, captured) = connected();
    let replay = receive(&a.engine, attacker(), &captured);
    assert!(
        replay.udp.is_empty(),
        "a replayed initiation gets no answer"
    );
    assert_eq!(a.engine.drops.snapshot().replayed, 1);
    assert_eq!(endpoint_of_b(&a), Some(Endpoint::Direct(b.addr)));
    for round in 0..3u64 {
        // One mac1-valid response to a receiver index nobody holds: it shifts
        // the parity of a load counter that is bumped twice per initiation.
        let shift = receive(
            &a.engine,
            attacker(),
            &forged_response(&a.public, 0xffff_ff00),
        );
        assert!(shift.tun.is_empty());
        assert!(
            shift
                .udp
                .iter()
                .all(|(to, d)| *to == attacker() && d[0] == 3)
        );
        for i in 0..HANDSHAKE_BUDGET as u64 {
            let forged = forged_initiation(&a.public, &b.public, round * 1000 + i);
            let answer = receive(&a.engine, attacker(), &forged);
            assert!(answer.tun.is_empty());
            assert!(
                answer
                    .udp
                    .iter()
                    .all(|(to, d)| *to == attacker() && d[0] == 3),
                "the attacker gets at most a cookie reply, never a handshake response"
            );
            assert_eq!(endpoint_of_b(&a), Some(Endpoint::Direct(b.addr)));
        }
        let replay = receive(&a.engine, attacker(), &captured);
        assert!(replay.udp.iter().all(|(_, d)| d[0] == 3));
        assert_eq!(endpoint_of_b(&a), Some(Endpoint::Direct(b.addr)));
    }
    let drops = a.engine.drops.snapshot();
    assert!(
        drops.under_load > 0,
        "the flood did load the node: {drops:?}"
    );
    assert!(
        drops.decrypt_failed > 0,
        "forged timestamps fail: {drops:?}"
    );

    let (to_b, data) = encapsulate(&a, &ipv4_packet(A_IP, B_IP)).expect("A has a session");
    assert_eq!(to_b, b.addr, "A still sends B's traffic to B");
    assert_eq!(exchange(&a, &b, false, data), (0, 1), "A → B delivered");
    let (_, data) = encapsulate(&b, &ipv4_packet(B_IP, A_IP)).expect("B has a session");
    assert_eq!(exchange(&a, &b, true, data), (1, 0), "B → A delivered");
}

#[test]
fn each_handshake_message_counts_once_against_the_load_budget() {
    let (a, b) = (node(1), node(2));
    a.engine
        .add_peer(&PeerConfig {
            public_key: b.public,
            preshared_key: None,
            persistent_keepalive: None,
            endpoint: None,
            allowed_ips: vec!["10.0.0.2/32".parse().expect("net")],
        })
        .expect("add b");
    b.engine
        .add_peer(&PeerConfig {
            public_key: a.public,
            preshared_key: None,
            persistent_keepalive: None,
            endpoint: Some(a.addr),
            allowed_ips: vec!["10.0.0.1/32".parse().expect("net")],
        })
        .expect("add a");
    for i in 0..(HANDSHAKE_BUDGET as u64 - 1) {
        receive(
            &a.engine,
            attacker(),
            &forged_initiation(&a.public, &b.public, i),
        );
    }
    assert_eq!(a.engine.drops.snapshot().under_load, 0, "within budget");
    // The last message of the budget is B's own: answered with a handshake
    // response, not a cookie, and it is the one that tells A where B is.
    let (_, initiation) = encapsulate(&b, &ipv4_packet(B_IP, A_IP)).expect("initiation");
    let answer = receive(&a.engine, b.addr, &initiation);
    assert_eq!(answer.udp.len(), 1);
    assert_eq!(answer.udp[0].1[0], 2, "a handshake response");
    assert_eq!(endpoint_of_b(&a), Some(Endpoint::Direct(b.addr)));
}
