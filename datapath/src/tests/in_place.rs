//! The send path touches each packet's bytes once: a TUN read leaves the
//! packet in its batch slot, and it is sealed and sent from there.

use super::relayed::{TURN, exchange_relayed, relayed_pair, through_relay};
use super::*;
use crate::endpoint::CHANNEL_DATA_HEADER_LEN;
use crate::tx::PACKET_OFFSET;

/// Writes `packets` into the batch's slots as a TUN read would (at
/// [`PACKET_OFFSET`]) and returns where each packet starts.
fn read_into(batch: &mut crate::TxBatch, packets: &[Vec<u8>]) -> Vec<usize> {
    let (mut slots, sizes) = batch.tun_slots();
    packets
        .iter()
        .enumerate()
        .map(|(i, packet)| {
            let slot = &mut slots[i][PACKET_OFFSET..];
            slot[..packet.len()].copy_from_slice(packet);
            sizes[i] = packet.len();
            slot.as_ptr() as usize
        })
        .collect()
}

#[test]
fn a_tun_read_is_sealed_where_it_lies_and_the_peer_opens_it() {
    let (a, b) = connected();
    let mut batch = crate::TxBatch::new(64, 1420);
    let packets: Vec<Vec<u8>> = (0..5u8)
        .map(|i| ipv4_packet(A_IP, B_IP, &[i; 1392]))
        .collect();
    let starts = read_into(&mut batch, &packets);
    batch.seal(&a.engine, &a.engine.table(), packets.len());

    let runs: Vec<_> = batch.runs().collect();
    assert_eq!(runs.len(), 1, "one GSO run to one peer");
    let (to, datagrams, segment_size) = runs.into_iter().next().expect("a run");
    assert_eq!((to, segment_size), (b.addr, 1452));
    let mut rec = Recorder::default();
    for (datagram, start) in datagrams.zip(&starts) {
        // The ciphertext occupies the very bytes the packet was read into:
        // the 16-byte header in front, the tag behind. Nothing was moved.
        assert_eq!(datagram.as_ptr() as usize + 16, *start);
        assert_eq!(datagram.len(), 1420 + 32);
        rec.receive(&b.engine, a.addr, datagram);
    }
    assert_eq!(rec.tun, packets, "the peer opens every packet, in order");
}

#[test]
fn a_tun_read_to_a_relayed_peer_is_framed_in_the_same_slot() {
    let (a, b) = relayed_pair();
    let initiation = send(&a, &ipv4_packet(A_IP, B_IP, b"x")).expect("initiation");
    exchange_relayed(&a, &b, initiation, true);
    let mut batch = crate::TxBatch::new(64, 1420);
    let packets = vec![ipv4_packet(A_IP, B_IP, &[3; 500])];
    let starts = read_into(&mut batch, &packets);
    batch.seal(&a.engine, &a.engine.table(), 1);
    let (to, mut datagrams, _) = batch.runs().next().expect("a run");
    let datagram = datagrams.next().expect("a datagram");
    assert_eq!(to, TURN);
    assert_eq!(
        datagram.as_ptr() as usize + CHANNEL_DATA_HEADER_LEN + 16,
        starts[0],
        "channel header and WireGuard header both go in front of the packet"
    );
    let (_, from, payload) = through_relay(true, to, datagram);
    let mut rec = Recorder::default();
    rec.receive(&b.engine, from, &payload);
    assert_eq!(rec.tun, packets);
}

#[test]
fn a_tun_read_before_the_handshake_sends_an_initiation_and_delivers_the_packet_after() {
    let (a, b) = pair();
    let mut batch = crate::TxBatch::new(64, 1420);
    let packet = ipv4_packet(A_IP, B_IP, b"first");
    read_into(&mut batch, std::slice::from_ref(&packet));
    batch.seal(&a.engine, &a.engine.table(), 1);
    let (to, mut datagrams, _) = batch.runs().next().expect("an initiation");
    let initiation = datagrams.next().expect("a datagram");
    assert_eq!((to, initiation.len(), initiation[0]), (b.addr, 148, 1));
    let (_, at_b) = exchange(&a, &b, (to, initiation.to_vec()), true);
    assert_eq!(
        at_b,
        vec![packet],
        "the queued packet follows the handshake"
    );
}

#[test]
fn a_packet_too_long_for_a_slot_is_refused_by_push_not_written_past_it() {
    let (a, _) = connected();
    let mut batch = crate::TxBatch::new(64, 1280);
    assert!(!batch.push(
        &a.engine,
        &a.engine.table(),
        &ipv4_packet(A_IP, B_IP, &[0; 1300])
    ));
    assert!(batch.push(
        &a.engine,
        &a.engine.table(),
        &ipv4_packet(A_IP, B_IP, &[0; 1252])
    ));
    assert_eq!(batch.datagrams(), 1);
}

#[test]
fn data_opened_in_place_is_dropped_and_counted_when_forged_replayed_or_misrouted() {
    let (a, b) = connected();
    let (_, good) = send(&a, &ipv4_packet(A_IP, B_IP, &[1; 200])).expect("data");
    let mut tampered = good.clone();
    *tampered.last_mut().expect("a tag") ^= 1;
    let (_, spoofed) = send(&a, &ipv4_packet(B_IP, B_IP, &[2; 200])).expect("data");
    let mut unknown_index = send(&a, &ipv4_packet(A_IP, B_IP, &[3; 200]))
        .expect("data")
        .1;
    unknown_index[4..8].copy_from_slice(&0xFFFF_FF00u32.to_le_bytes());
    let stranger: SocketAddr = "198.51.100.9:9".parse().expect("addr");

    let mut rx = crate::RxBatch::new();
    let mut rec = Recorder::default();
    let datagrams = [
        tampered,
        good.clone(),
        good,
        spoofed,
        unknown_index,
        vec![4, 0, 0],
    ];
    let (buffer, _) = open_in_rx(&mut rx, &b.engine, stranger, &datagrams, &mut rec);

    assert_eq!(
        delivered(&rx, &buffer),
        vec![ipv4_packet(A_IP, B_IP, &[1; 200])]
    );
    let drops = b.engine.drops.snapshot();
    assert_eq!(drops.decrypt_failed, 1, "the tampered tag");
    assert_eq!(drops.replayed, 1, "the second copy");
    assert_eq!(
        drops.source_not_allowed, 1,
        "an inner source a does not own"
    );
    assert_eq!(drops.unknown_peer, 1, "a receiver index nobody has");
    assert_eq!(drops.invalid_packet, 1, "three bytes");
    // Authenticated data from a new address moves the peer there; the
    // tampered datagram came first and did not.
    assert_eq!(
        b.engine.peer_stats()[0].endpoint,
        Some(Endpoint::Direct(stranger))
    );
    assert!(rec.udp.is_empty() && rec.control.is_empty());
}
