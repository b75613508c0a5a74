//! TURN relay: ChannelData framing on the packet threads. A peer reached through its
//! TURN allocation, next to direct peers, in the same batches.

use super::*;

/// The TURN server both relayed tests talk to.
pub(super) const TURN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)), 3478);

/// a's allocation on `TURN`: the relayed address b sees a at.
const A_RELAYED: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)), 50_001);

/// The channel a bound on its allocation to b's address.
const CHANNEL: u16 = 0x4001;

/// a reaches b through a's TURN allocation (channel `CHANNEL` bound to b's
/// address); b answers a's relayed address directly, as a peer with a plain
/// socket does.
pub(super) fn relayed_pair() -> (Node, Node) {
    let a = node(1, 1000);
    let b = node(2, 2000);
    a.engine
        .add_peer(&peer_of(&b, "10.0.0.2/32", None))
        .expect("add b");
    a.engine.set_relay_servers(vec![TURN]);
    let relayed = Endpoint::Relayed {
        server: TURN,
        channel: CHANNEL,
    };
    assert!(a.engine.set_path(&b.public, relayed));
    b.engine
        .add_peer(&peer_of(&a, "10.0.0.1/32", Some(A_RELAYED)))
        .expect("add a");
    (a, b)
}

fn channel_data(channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut d = channel.to_be_bytes().to_vec();
    d.extend_from_slice(&u16::try_from(payload.len()).expect("short").to_be_bytes());
    d.extend_from_slice(payload);
    d
}

/// The fake TURN server: what a sends to `TURN` as ChannelData on `CHANNEL`
/// leaves the allocation for b; what b sends to the allocation comes back to a
/// as ChannelData. Returns (receiver is b, wire source, bytes).
pub(super) fn through_relay(
    sent_by_a: bool,
    to: SocketAddr,
    datagram: &[u8],
) -> (bool, SocketAddr, Vec<u8>) {
    if sent_by_a {
        assert_eq!(to, TURN, "a relayed peer's datagrams go to the TURN server");
        let (channel, payload) =
            crate::endpoint::parse_channel_data(datagram).expect("well-formed ChannelData");
        assert_eq!(channel, CHANNEL);
        assert_eq!(
            usize::from(u16::from_be_bytes([datagram[2], datagram[3]])),
            datagram.len() - 4,
            "length field is the WireGuard datagram's, unpadded"
        );
        (true, A_RELAYED, payload.to_vec())
    } else {
        assert_eq!(to, A_RELAYED);
        (false, TURN, channel_data(CHANNEL, datagram))
    }
}

/// Like `exchange`, with every datagram passing the fake relay.
pub(super) fn exchange_relayed(
    a: &Node,
    b: &Node,
    first: (SocketAddr, Vec<u8>),
    from_a: bool,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (mut tun_a, mut tun_b) = (Vec::new(), Vec::new());
    let mut in_flight = vec![(from_a, first.0, first.1)];
    for _ in 0..32 {
        let Some((sent_by_a, to, datagram)) = in_flight.pop() else {
            break;
        };
        let (to_b, from, bytes) = through_relay(sent_by_a, to, &datagram);
        let (receiver, tun) = if to_b {
            (b, &mut tun_b)
        } else {
            (a, &mut tun_a)
        };
        let mut rec = Recorder::default();
        rec.receive(&receiver.engine, from, &bytes);
        assert!(
            rec.control.is_empty(),
            "WireGuard never reaches the control plane"
        );
        tun.extend(rec.tun);
        in_flight.extend(rec.udp.into_iter().map(|(to, d)| (!to_b, to, d)));
    }
    (tun_a, tun_b)
}

#[test]
fn a_relayed_peers_handshake_initiation_is_channel_data_to_the_turn_server() {
    let (a, _) = relayed_pair();
    let (to, datagram) = send(&a, &ipv4_packet(A_IP, B_IP, b"hi")).expect("initiation");
    assert_eq!(to, TURN);
    assert_eq!(datagram.len(), 4 + 148);
    assert_eq!(&datagram[..4], &[0x40, 0x01, 0x00, 148]);
    assert_eq!(
        datagram[4], 1,
        "a WireGuard handshake initiation follows the header"
    );
}

#[test]
fn a_handshake_and_data_complete_both_ways_through_a_relay() {
    let (a, b) = relayed_pair();
    let hello = ipv4_packet(A_IP, B_IP, b"hello");
    let initiation = send(&a, &hello).expect("initiation");
    let (_, at_b) = exchange_relayed(&a, &b, initiation, true);
    assert_eq!(
        at_b,
        vec![hello],
        "the queued packet arrives once the handshake completes"
    );

    let reply = ipv4_packet(B_IP, A_IP, b"world");
    let data = send(&b, &reply).expect("b has a session");
    assert_eq!(data.0, A_RELAYED);
    let (at_a, _) = exchange_relayed(&a, &b, data, false);
    assert_eq!(at_a, vec![reply]);

    let more = ipv4_packet(A_IP, B_IP, b"more");
    let data = send(&a, &more).expect("a has a session");
    let (_, at_b) = exchange_relayed(&a, &b, data, true);
    assert_eq!(at_b, vec![more]);

    let relayed = Endpoint::Relayed {
        server: TURN,
        channel: CHANNEL,
    };
    assert_eq!(a.engine.peer_stats()[0].endpoint, Some(relayed));
    assert_eq!(
        b.engine.peer_stats()[0].endpoint,
        Some(Endpoint::Direct(A_RELAYED))
    );
    assert_eq!(a.engine.drops.snapshot(), Default::default());
    assert_eq!(b.engine.drops.snapshot(), Default::default());
}

#[test]
fn handshake_replies_to_a_relayed_initiator_go_back_framed_on_its_channel() {
    // b initiates over its own relay; a (direct peer config) answers through the relay.
    let a = node(1, 1000);
    let b = node(2, 2000);
    a.engine
        .add_peer(&peer_of(&b, "10.0.0.2/32", Some(b.addr)))
        .expect("add b");
    a.engine.set_relay_servers(vec![TURN]);
    b.engine
        .add_peer(&peer_of(&a, "10.0.0.1/32", Some(a.addr)))
        .expect("add a");
    let (_, initiation) = send(&b, &ipv4_packet(B_IP, A_IP, b"hi")).expect("initiation");
    let mut rec = Recorder::default();
    rec.receive(&a.engine, TURN, &channel_data(0x4ABC, &initiation));
    let [(to, response)] = &rec.udp[..] else {
        panic!("one handshake response, got {:?}", rec.udp.len());
    };
    assert_eq!(*to, TURN);
    assert_eq!(response.len(), 4 + 92);
    assert_eq!(&response[..4], &[0x4A, 0xBC, 0x00, 92]);
    assert_eq!(
        a.engine.peer_stats()[0].endpoint,
        Some(Endpoint::Relayed {
            server: TURN,
            channel: 0x4ABC
        }),
        "the authenticated initiation moved b onto the relay"
    );
    // Data from a to b now goes the same way.
    let (to, data) = send(&a, &ipv4_packet(A_IP, B_IP, b"x")).expect("session");
    assert_eq!(to, TURN);
    assert_eq!(&data[..2], &[0x4A, 0xBC]);
}

#[test]
fn relayed_data_lands_in_an_rx_batch_slot_like_direct_data() {
    let (a, b) = relayed_pair();
    let initiation = send(&a, &ipv4_packet(A_IP, B_IP, b"x")).expect("initiation");
    exchange_relayed(&a, &b, initiation, true);
    let packets: Vec<Vec<u8>> = (0..3u8)
        .map(|i| ipv4_packet(B_IP, A_IP, &[i; 100]))
        .collect();
    let mut rx = crate::RxBatch::new();
    let mut rec = Recorder::default();
    let mut framed_datagrams = Vec::new();
    let mut relay = None;
    for packet in &packets {
        let (to, datagram) = send(&b, packet).expect("data");
        let (_, from, framed) = through_relay(false, to, &datagram);
        relay = Some(from);
        framed_datagrams.push(framed);
    }
    let from = relay.expect("sent");
    let (buffer, _) = open_in_rx(&mut rx, &a.engine, from, &framed_datagrams, &mut rec);
    assert_eq!(delivered(&rx, &buffer), packets);
    // Each packet was opened where its ciphertext lay: behind the 4-byte
    // ChannelData header and WireGuard's 16-byte data header.
    let starts: Vec<usize> = rx.packets().iter().map(|p| p.start).collect();
    let expected: Vec<usize> = framed_datagrams
        .iter()
        .scan(0, |at, d| {
            let start = *at + 20;
            *at += d.len();
            Some(start)
        })
        .collect();
    assert_eq!(starts, expected);
    assert!(rec.udp.is_empty() && rec.control.is_empty());
}

#[test]
fn a_tx_batch_to_a_relayed_peer_forms_gso_runs_of_framed_datagrams() {
    let (a, b) = relayed_pair();
    let initiation = send(&a, &ipv4_packet(A_IP, B_IP, b"x")).expect("initiation");
    exchange_relayed(&a, &b, initiation, true);
    let mut batch = crate::TxBatch::new(64, 1420);
    let (packets, runs) = fill_batch(&mut batch, &a, 5, 100);
    assert_eq!(runs, vec![(TURN, 5 * 1456 + 164, 1456)]);
    let mut at_b = Vec::new();
    for (to, datagram) in datagrams_of(&batch) {
        let (_, from, payload) = through_relay(true, to, &datagram);
        let mut rec = Recorder::default();
        rec.receive(&b.engine, from, &payload);
        at_b.extend(rec.tun);
    }
    assert_eq!(at_b, packets);
}

#[test]
fn a_relayed_and_a_direct_peer_never_share_a_run() {
    let (a, b) = relayed_pair();
    let c = node(3, 3000);
    a.engine
        .add_peer(&peer_of(&c, "10.0.0.3/32", Some(c.addr)))
        .expect("add c");
    c.engine
        .add_peer(&peer_of(&a, "10.0.0.1/32", Some(a.addr)))
        .expect("add a");
    let initiation = send(&a, &ipv4_packet(A_IP, B_IP, b"x")).expect("initiation");
    exchange_relayed(&a, &b, initiation, true);
    let c_ip = Ipv4Addr::new(10, 0, 0, 3);
    let initiation = send(&a, &ipv4_packet(A_IP, c_ip, b"x")).expect("initiation");
    exchange(&a, &c, initiation, true);
    let mut batch = crate::TxBatch::new(64, 1420);
    for dst in [B_IP, c_ip, B_IP] {
        batch.push(
            &a.engine,
            &a.engine.table(),
            &ipv4_packet(A_IP, dst, &[0; 100]),
        );
    }
    let runs: Vec<_> = batch
        .runs()
        .map(|(to, datagrams, _)| (to, datagrams.map(<[u8]>::len).sum::<usize>()))
        .collect();
    assert_eq!(runs, vec![(TURN, 164), (c.addr, 160), (TURN, 164)]);
}

#[test]
fn stun_inside_channel_data_from_the_relay_goes_to_the_control_plane_whole() {
    let (a, _) = relayed_pair();
    let mut stun = vec![0u8; 20];
    stun[1] = 1;
    stun[4..8].copy_from_slice(&crate::classify::STUN_MAGIC_COOKIE);
    let framed = channel_data(0x4002, &stun);
    let mut rec = Recorder::default();
    rec.receive(&a.engine, TURN, &framed);
    assert_eq!(rec.control, vec![(TURN, DatagramKind::ChannelData)]);
    assert_eq!(rec.control_data, vec![framed]);
    assert!(rec.udp.is_empty() && rec.tun.is_empty());
    assert_eq!(a.engine.drops.snapshot(), Default::default());
}

#[test]
fn channel_data_from_an_unknown_address_is_dropped_and_counted() {
    let (a, b) = relayed_pair();
    let (_, initiation) = send(&b, &ipv4_packet(B_IP, A_IP, b"x")).expect("initiation");
    let mut rec = Recorder::default();
    let stranger = SocketAddr::from(([198, 51, 100, 7], 3478));
    rec.receive(&a.engine, stranger, &channel_data(CHANNEL, &initiation));
    assert!(rec.udp.is_empty() && rec.control.is_empty() && rec.tun.is_empty());
    let drops = a.engine.drops.snapshot();
    assert_eq!(drops.channel_data_unknown_server, 1, "{drops:?}");
    assert_eq!(drops.invalid_packet, 0, "{drops:?}");
}

#[test]
fn channel_data_with_a_bad_length_or_channel_is_dropped_and_counted() {
    let (a, b) = relayed_pair();
    let (_, initiation) = send(&b, &ipv4_packet(B_IP, A_IP, b"x")).expect("initiation");
    let mut truncated = channel_data(CHANNEL, &initiation);
    truncated.pop();
    let mut oversized = channel_data(CHANNEL, &initiation);
    oversized.extend_from_slice(&[0; 4]);
    let reserved = channel_data(0x5000, &initiation);
    let mut rec = Recorder::default();
    for bad in [&truncated, &oversized, &reserved] {
        rec.receive(&a.engine, TURN, bad);
    }
    assert!(rec.udp.is_empty() && rec.control.is_empty() && rec.tun.is_empty());
    assert_eq!(a.engine.drops.snapshot().channel_data_malformed, 3);
    // Up to three bytes of padding are fine (RFC 8656 §12.5).
    let mut padded = channel_data(CHANNEL, &initiation);
    padded.extend_from_slice(&[0; 3]);
    rec.receive(&a.engine, TURN, &padded);
    assert_eq!(rec.udp.len(), 1, "a handshake response");
}

#[test]
fn any_bytes_from_the_relay_never_panic() {
    let (a, _) = relayed_pair();
    let mut rx = crate::RxBatch::new();
    let mut rec = Recorder::default();
    let mut seed = 0x1234_5678u32;
    for len in 0..200 {
        for first in [0x40u8, 0x4F, 0x7F] {
            let mut d: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    (seed >> 16) as u8
                })
                .collect();
            if let Some(b) = d.first_mut() {
                *b = first;
            }
            if len > 4 {
                d[4] = [1, 2, 3, 4][len % 4];
            }
            rec.receive(&a.engine, TURN, &d);
            open_in_rx(&mut rx, &a.engine, TURN, &[d], &mut rec);
        }
    }
    assert!(rec.tun.is_empty() && rec.udp.is_empty() && rx.is_empty());
}

#[test]
fn initiate_handshake_sends_a_framed_initiation_once_a_path_exists() {
    let a = node(1, 1000);
    let b = node(2, 2000);
    a.engine
        .add_peer(&peer_of(&b, "10.0.0.2/32", None))
        .expect("add b");
    b.engine
        .add_peer(&peer_of(&a, "10.0.0.1/32", Some(A_RELAYED)))
        .expect("add a");
    let mut scratch = [0u8; crate::HANDSHAKE_SCRATCH];
    let mut sent = Vec::new();
    // Traffic before ICE found a path: the initiation had nowhere to go.
    assert_eq!(send(&a, &ipv4_packet(A_IP, B_IP, b"early")), None);
    assert!(
        !a.engine
            .initiate_handshake(&b.public, &mut scratch, |_, _| { panic!("no path yet") })
    );

    a.engine.set_relay_servers(vec![TURN]);
    let relayed = Endpoint::Relayed {
        server: TURN,
        channel: CHANNEL,
    };
    a.engine.set_path(&b.public, relayed);
    assert!(
        a.engine
            .initiate_handshake(&b.public, &mut scratch, |to, d| {
                sent.push((to, d.to_vec()));
            })
    );
    let [(to, initiation)] = &sent[..] else {
        panic!("one initiation");
    };
    assert_eq!((*to, initiation.len()), (TURN, 152));
    let (_, at_b) = exchange_relayed(&a, &b, (*to, initiation.clone()), true);
    assert_eq!(
        at_b,
        vec![ipv4_packet(A_IP, B_IP, b"early")],
        "the packet queued before the path existed arrives"
    );

    // A fresh session needs no new handshake when the path changes.
    assert!(
        !a.engine
            .initiate_handshake(&b.public, &mut scratch, |_, _| { panic!("no churn") })
    );
    assert!(
        !a.engine
            .initiate_handshake(&[9; 32], &mut scratch, |_, _| {})
    );
}

#[test]
fn timer_keepalives_to_a_relayed_peer_are_framed() {
    let a = node(1, 1000);
    let b = node(2, 2000);
    let mut to_b = peer_of(&b, "10.0.0.2/32", None);
    to_b.persistent_keepalive = Some(1);
    a.engine.add_peer(&to_b).expect("add b");
    a.engine.set_relay_servers(vec![TURN]);
    a.engine.set_path(
        &b.public,
        Endpoint::Relayed {
            server: TURN,
            channel: CHANNEL,
        },
    );
    b.engine
        .add_peer(&peer_of(&a, "10.0.0.1/32", Some(A_RELAYED)))
        .expect("add a");
    let initiation = send(&a, &ipv4_packet(A_IP, B_IP, b"x")).expect("initiation");
    exchange_relayed(&a, &b, initiation, true);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let mut scratch = vec![0u8; MAX_DATAGRAM];
    let mut sent = Vec::new();
    a.engine
        .update_timers(&mut scratch, |to, d| sent.push((to, d.to_vec())));
    let [(to, keepalive)] = &sent[..] else {
        panic!("one keepalive, got {}", sent.len());
    };
    assert_eq!(*to, TURN);
    assert_eq!(&keepalive[..4], &[0x40, 0x01, 0x00, 32]);
    let (_, at_b) = exchange_relayed(&a, &b, (*to, keepalive.clone()), true);
    assert!(at_b.is_empty(), "a keepalive carries no packet");
    assert_eq!(b.engine.drops.snapshot(), Default::default());
}

#[test]
fn set_endpoint_still_sets_a_direct_path() {
    let (a, b) = relayed_pair();
    let v4_mapped: SocketAddr = "[::ffff:192.0.2.2]:2000".parse().expect("addr");
    assert!(a.engine.set_endpoint(&b.public, v4_mapped));
    assert_eq!(
        a.engine.peer_stats()[0].endpoint,
        Some(Endpoint::Direct(b.addr))
    );
    let (to, initiation) = send(&a, &ipv4_packet(A_IP, B_IP, b"x")).expect("initiation");
    assert_eq!((to, initiation.len()), (b.addr, 148));
}
