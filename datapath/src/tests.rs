//! Two engines wired back to back in memory: the whole packet path without
//! TUN, sockets or root.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use boringtun::x25519::{PublicKey, StaticSecret};

use crate::classify::DatagramKind;
use crate::tx::Outbound;
use crate::{Endpoint, Engine, MAX_DATAGRAM, PeerConfig, rx::InboundSink};

/// Collects what one inbound datagram produced.
#[derive(Default)]
struct Recorder {
    tun: Vec<Vec<u8>>,
    udp: Vec<(SocketAddr, Vec<u8>)>,
    control: Vec<(SocketAddr, DatagramKind)>,
    control_data: Vec<Vec<u8>>,
}

impl InboundSink for Recorder {
    fn send_udp(&mut self, to: SocketAddr, datagram: &[u8]) {
        self.udp.push((to, datagram.to_vec()));
    }
    fn control(&mut self, from: SocketAddr, kind: DatagramKind, datagram: &[u8]) {
        self.control.push((from, kind));
        self.control_data.push(datagram.to_vec());
    }
}

/// The UDP reader's way: `datagrams` back to back in one receive buffer, each
/// opened in place into `rx`. Returns the buffer and, per datagram, whether
/// the batch then reported itself full.
fn open_in_rx(
    rx: &mut crate::RxBatch,
    engine: &Engine,
    from: SocketAddr,
    datagrams: &[Vec<u8>],
    sink: &mut impl InboundSink,
) -> (Vec<u8>, Vec<bool>) {
    let mut buffer = datagrams.concat();
    let mut at = 0;
    let full = datagrams
        .iter()
        .map(|datagram| {
            let range = at..at + datagram.len();
            at = range.end;
            rx.open(
                engine,
                &engine.table(),
                from,
                &mut buffer[range.clone()],
                range.start,
                sink,
            )
        })
        .collect();
    (buffer, full)
}

/// The packets an [`crate::RxBatch`] holds, copied out of `buffer`.
fn delivered(rx: &crate::RxBatch, buffer: &[u8]) -> Vec<Vec<u8>> {
    rx.packets()
        .iter()
        .map(|p| buffer[p.clone()].to_vec())
        .collect()
}

impl Recorder {
    /// Feeds one datagram to `engine`, recording what it produced.
    fn receive(&mut self, engine: &Engine, from: SocketAddr, datagram: &[u8]) {
        let mut out = vec![0u8; MAX_DATAGRAM];
        if let Some(len) = engine.decapsulate(&engine.table(), from, datagram, &mut out, self) {
            self.tun.push(out[..len].to_vec());
        }
    }
}

struct Node {
    engine: Engine,
    addr: SocketAddr,
    public: [u8; 32],
}

fn node(seed: u8, port: u16) -> Node {
    let private = [seed; 32];
    let public = PublicKey::from(&StaticSecret::from(private)).to_bytes();
    Node {
        engine: Engine::new(private),
        addr: SocketAddr::from(([192, 0, 2, seed], port)),
        public,
    }
}

fn peer_of(other: &Node, allowed: &str, endpoint: Option<SocketAddr>) -> PeerConfig {
    PeerConfig {
        public_key: other.public,
        preshared_key: None,
        persistent_keepalive: None,
        endpoint,
        allowed_ips: vec![allowed.parse().expect("test network")],
    }
}

/// A minimal IPv4/UDP packet from `src` to `dst` (checksums are not checked on this path).
fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let total = 28 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
}

/// Delivers datagrams between the two nodes until both are quiet; returns what reached each TUN.
fn exchange(
    a: &Node,
    b: &Node,
    first: (SocketAddr, Vec<u8>),
    from_a: bool,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (mut tun_a, mut tun_b) = (Vec::new(), Vec::new());
    let mut in_flight = vec![(from_a, first.1)];
    for _ in 0..32 {
        let Some((sent_by_a, datagram)) = in_flight.pop() else {
            break;
        };
        let (receiver, sender_addr, tun) = if sent_by_a {
            (b, a.addr, &mut tun_b)
        } else {
            (a, b.addr, &mut tun_a)
        };
        let mut rec = Recorder::default();
        rec.receive(&receiver.engine, sender_addr, &datagram);
        tun.extend(rec.tun);
        in_flight.extend(rec.udp.into_iter().map(|(_, d)| (!sent_by_a, d)));
    }
    (tun_a, tun_b)
}

fn send(n: &Node, packet: &[u8]) -> Option<(SocketAddr, Vec<u8>)> {
    let mut out = vec![0u8; MAX_DATAGRAM];
    match n.engine.encapsulate(&n.engine.table(), packet, &mut out) {
        Outbound::Send { to, datagram } => Some((to, datagram.to_vec())),
        Outbound::Queued | Outbound::Dropped => None,
    }
}

fn pair() -> (Node, Node) {
    let a = node(1, 1000);
    let b = node(2, 2000);
    a.engine
        .add_peer(&peer_of(&b, "10.0.0.2/32", Some(b.addr)))
        .expect("add b");
    b.engine
        .add_peer(&peer_of(&a, "10.0.0.1/32", Some(a.addr)))
        .expect("add a");
    (a, b)
}

const A_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

#[test]
fn first_packet_triggers_a_handshake_then_is_delivered() {
    let (a, b) = pair();
    let packet = ipv4_packet(A_IP, B_IP, b"hello");
    let initiation = send(&a, &packet).expect("handshake initiation goes out");
    assert_eq!(initiation.0, b.addr);
    assert_eq!(initiation.1.len(), 148);
    let (_, at_b) = exchange(&a, &b, initiation, true);
    assert_eq!(
        at_b,
        vec![packet],
        "the queued packet arrives once the handshake completes"
    );
    assert!(b.engine.peer_stats()[0].last_handshake.is_some());
}

#[test]
fn data_flows_both_ways_after_the_handshake() {
    let (a, b) = pair();
    let hello = ipv4_packet(A_IP, B_IP, b"hello");
    let initiation = send(&a, &hello).expect("initiation");
    exchange(&a, &b, initiation, true);
    let reply = ipv4_packet(B_IP, A_IP, b"world");
    let data = send(&b, &reply).expect("b has a session");
    assert_eq!(data.0, a.addr);
    let (at_a, _) = exchange(&a, &b, data, false);
    assert_eq!(at_a, vec![reply]);
}

#[test]
fn a_packet_with_a_forged_inner_source_is_dropped_and_counted() {
    let (a, b) = pair();
    let initiation = send(&a, &ipv4_packet(A_IP, B_IP, b"x")).expect("initiation");
    exchange(&a, &b, initiation, true);
    // b's TUN hands it a packet claiming to come from an address a never gave b.
    let forged = ipv4_packet(Ipv4Addr::new(10, 0, 0, 99), A_IP, b"forged");
    let datagram = send(&b, &forged).expect("b encrypts whatever its TUN gives it");
    let (at_a, _) = exchange(&a, &b, datagram, false);
    assert!(at_a.is_empty());
    assert_eq!(a.engine.drops.snapshot().source_not_allowed, 1);
    assert_eq!(a.engine.peer_stats()[0].dropped_source_not_allowed, 1);
}

#[test]
fn an_authenticated_packet_from_a_new_address_moves_the_endpoint() {
    let (a, mut b) = pair();
    let initiation = send(&a, &ipv4_packet(A_IP, B_IP, b"x")).expect("initiation");
    exchange(&a, &b, initiation, true);
    b.addr = SocketAddr::from(([198, 51, 100, 9], 4444));
    let data = send(&b, &ipv4_packet(B_IP, A_IP, b"from the new place")).expect("data");
    exchange(&a, &b, data, false);
    assert_eq!(
        a.engine.peer_stats()[0].endpoint,
        Some(Endpoint::Direct(b.addr))
    );
    let next = send(&a, &ipv4_packet(A_IP, B_IP, b"follow")).expect("data");
    assert_eq!(next.0, b.addr);
}

#[test]
fn garbage_and_replays_are_dropped_and_counted() {
    let (a, b) = pair();
    let initiation = send(&a, &ipv4_packet(A_IP, B_IP, b"x")).expect("initiation");
    exchange(&a, &b, initiation, true);
    let data = send(&a, &ipv4_packet(A_IP, B_IP, b"once")).expect("data");
    let mut rec = Recorder::default();
    rec.receive(&b.engine, a.addr, &data.1);
    rec.receive(&b.engine, a.addr, &data.1);
    assert_eq!(rec.tun.len(), 1, "the replay is not delivered");
    let mut tampered = send(&a, &ipv4_packet(A_IP, B_IP, b"twice"))
        .expect("data")
        .1;
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    rec.receive(&b.engine, a.addr, &tampered);
    for junk in [&[][..], &[4, 0, 0, 0][..], &[1; 148][..], &[9; 300][..]] {
        rec.receive(&b.engine, a.addr, junk);
    }
    assert_eq!(rec.tun.len(), 1);
    let drops = b.engine.drops.snapshot();
    assert_eq!(drops.replayed, 1, "{drops:?}");
    assert_eq!(drops.decrypt_failed, 1, "{drops:?}");
    assert_eq!(drops.invalid_packet, 4, "{drops:?}");
}

#[test]
fn stun_is_handed_to_the_control_plane_not_wireguard() {
    let (_, b) = pair();
    let mut stun = vec![0u8; 20];
    stun[1] = 1;
    stun[4..8].copy_from_slice(&crate::classify::STUN_MAGIC_COOKIE);
    let from = SocketAddr::from(([192, 0, 2, 50], 3478));
    let mut rec = Recorder::default();
    rec.receive(&b.engine, from, &stun);
    assert_eq!(rec.control, vec![(from, DatagramKind::Stun)]);
    assert_eq!(b.engine.drops.snapshot(), Default::default());
}

#[test]
fn a_destination_outside_every_allowed_ip_is_dropped_as_no_route() {
    let (a, _) = pair();
    assert_eq!(
        send(&a, &ipv4_packet(A_IP, Ipv4Addr::new(10, 9, 9, 9), b"?")),
        None
    );
    assert_eq!(a.engine.drops.snapshot().no_route, 1);
    let _ = IpAddr::V4(A_IP);
}

#[test]
fn a_handshake_from_an_unknown_key_is_dropped() {
    let (a, _) = pair();
    let stranger = node(3, 3000);
    stranger
        .engine
        .add_peer(&peer_of(&a, "10.0.0.1/32", Some(a.addr)))
        .expect("add a");
    let initiation = send(
        &stranger,
        &ipv4_packet(Ipv4Addr::new(10, 0, 0, 3), A_IP, b"hi"),
    )
    .expect("init");
    let mut rec = Recorder::default();
    rec.receive(&a.engine, stranger.addr, &initiation.1);
    assert!(rec.udp.is_empty(), "no response to a stranger");
    assert_eq!(a.engine.drops.snapshot().unknown_peer, 1);
}

// --- batches: the GSO/GRO layout ---

fn connected() -> (Node, Node) {
    let (a, b) = pair();
    let initiation = send(&a, &ipv4_packet(A_IP, B_IP, b"x")).expect("initiation");
    exchange(&a, &b, initiation, true);
    (a, b)
}

/// Splits a batch's runs back into datagrams, as the kernel's GSO would.
fn datagrams_of(batch: &crate::TxBatch) -> Vec<(SocketAddr, Vec<u8>)> {
    batch
        .runs()
        .flat_map(|(to, datagrams, _)| datagrams.map(move |d| (to, d.to_vec())))
        .collect()
}

/// One GSO run: destination, bytes, segment size.
type RunShape = (SocketAddr, usize, usize);

/// Pushes `full` packets of 1392 payload bytes and one of `tail` bytes from `from` to B into
/// `batch` (each must fit); returns the packets and the batch's runs.
fn fill_batch(
    batch: &mut crate::TxBatch,
    from: &Node,
    full: u8,
    tail: usize,
) -> (Vec<Vec<u8>>, Vec<RunShape>) {
    let mut packets: Vec<Vec<u8>> = (0..full)
        .map(|i| ipv4_packet(A_IP, B_IP, &[i; 1392]))
        .collect();
    packets.push(ipv4_packet(A_IP, B_IP, &vec![99; tail]));
    for packet in &packets {
        assert!(batch.push(&from.engine, &from.engine.table(), packet));
    }
    let runs = batch
        .runs()
        .map(|(to, datagrams, size)| (to, datagrams.map(<[u8]>::len).sum(), size))
        .collect();
    (packets, runs)
}

#[test]
fn a_tun_batch_to_one_peer_leaves_as_one_gso_run_with_a_short_tail() {
    let (a, b) = connected();
    let mut batch = crate::TxBatch::new(64, 1420);
    let (packets, runs) = fill_batch(&mut batch, &a, 10, 472);
    assert_eq!(runs, vec![(b.addr, 10 * 1452 + 532, 1452)]);
    assert_eq!(batch.datagrams(), 11);

    let mut rx = crate::RxBatch::new();
    let mut rec = Recorder::default();
    let datagrams: Vec<Vec<u8>> = datagrams_of(&batch).into_iter().map(|(_, d)| d).collect();
    let (buffer, full) = open_in_rx(&mut rx, &b.engine, a.addr, &datagrams, &mut rec);
    assert!(full.iter().all(|full| !full));
    assert_eq!(
        delivered(&rx, &buffer),
        packets,
        "every packet arrives intact and in order"
    );
}

#[test]
fn a_larger_datagram_after_a_shorter_one_starts_a_new_run() {
    let (a, _) = connected();
    let mut batch = crate::TxBatch::new(64, 1420);
    for len in [100, 100, 50, 100, 200] {
        batch.push(
            &a.engine,
            &a.engine.table(),
            &ipv4_packet(A_IP, B_IP, &vec![7; len]),
        );
    }
    let shape: Vec<(usize, usize)> = batch
        .runs()
        .map(|(_, datagrams, size)| (datagrams.map(<[u8]>::len).sum(), size))
        .collect();
    // 160-byte datagrams: [160, 160, 110] closes on the short one; [160]; [260].
    assert_eq!(shape, vec![(430, 160), (160, 160), (260, 260)]);
}

#[test]
fn without_gso_every_datagram_is_its_own_run() {
    let (a, _) = connected();
    let mut batch = crate::TxBatch::new(1, 1420);
    for _ in 0..3 {
        batch.push(
            &a.engine,
            &a.engine.table(),
            &ipv4_packet(A_IP, B_IP, &[1; 100]),
        );
    }
    assert_eq!(batch.runs().count(), 3);
}

#[test]
fn an_rx_batch_reports_full_at_batch_size() {
    let (a, b) = connected();
    let mut rx = crate::RxBatch::new();
    let mut rec = Recorder::default();
    let datagrams: Vec<Vec<u8>> = (0..crate::BATCH_SIZE)
        .map(|_| send(&a, &ipv4_packet(A_IP, B_IP, b"n")).expect("data").1)
        .collect();
    let (_, full) = open_in_rx(&mut rx, &b.engine, a.addr, &datagrams, &mut rec);
    let full_at = full.iter().position(|full| *full).map(|i| i + 1);
    assert_eq!(full_at, Some(crate::BATCH_SIZE));
    assert_eq!(rx.len(), crate::BATCH_SIZE);
}

mod in_place;
mod overlapping_allowed_ips;
mod reconfigure;
mod relayed;
