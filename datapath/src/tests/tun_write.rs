//! What reaches TUN: each write, split the way the kernel splits a GSO
//! super-packet and with its checksum finished the way the kernel finishes
//! `NEEDS_CSUM`, must give back exactly the packets the peer sent, each
//! flow in its order, while the payload bytes are never copied.

use std::io::{self, IoSlice};
use std::ops::Range;

use super::*;

/// Records every write, and where each part's bytes lay.
#[derive(Default)]
struct Recorded {
    writes: Vec<Vec<u8>>,
    parts: Vec<Vec<usize>>,
}

impl TunSink for Recorded {
    fn write_gathered(&mut self, parts: &[IoSlice<'_>]) -> io::Result<()> {
        self.writes
            .push(parts.iter().flat_map(|p| p.iter().copied()).collect());
        self.parts
            .push(parts.iter().map(|p| p.as_ptr() as usize).collect());
        Ok(())
    }
}

const OFFLOAD: TunOffload = TunOffload {
    vnet_hdr: true,
    udp_gso: true,
};

/// The Internet checksum of `bytes` (odd length padded), complemented.
fn internet_checksum(bytes: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    for chunk in bytes.chunks(2) {
        let word = [chunk[0], chunk.get(1).copied().unwrap_or(0)];
        sum += u32::from(u16::from_be_bytes(word));
    }
    !fold(sum)
}

/// Sets a packet's IPv4 header checksum and its TCP/UDP checksum.
fn finish_checksums(p: &mut [u8]) {
    let v6 = p[0] >> 4 == 6;
    let ip_len = if v6 { 40 } else { 20 };
    let protocol = if v6 { p[6] } else { p[9] };
    if !v6 {
        p[10..12].fill(0);
        let sum = internet_checksum(&p[..20], 0);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
    }
    let at = ip_len + if protocol == 6 { 16 } else { 6 };
    p[at..at + 2].fill(0);
    let pseudo = pseudo_header_sum(&p[..ip_len], v6, protocol, p.len() - ip_len);
    let sum = internet_checksum(&p[ip_len..], pseudo);
    p[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}

fn ip_header(v6: bool, protocol: u8, id: u16, l4_bytes: usize) -> Vec<u8> {
    if v6 {
        let mut h = vec![0u8; 40];
        h[0] = 0x60;
        h[4..6].copy_from_slice(&(l4_bytes as u16).to_be_bytes());
        h[6] = protocol;
        h[7] = 64;
        h[8..24].copy_from_slice(&[0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        h[24..40].copy_from_slice(&[0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        h
    } else {
        let mut h = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, protocol, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        h[2..4].copy_from_slice(&((20 + l4_bytes) as u16).to_be_bytes());
        h[4..6].copy_from_slice(&id.to_be_bytes());
        h
    }
}

/// A TCP segment of flow `port`, checksums valid, with a timestamp option.
fn tcp(v6: bool, port: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = ip_header(v6, 6, 0, 32 + payload.len());
    let mut t = vec![0u8; 32];
    t[0..2].copy_from_slice(&port.to_be_bytes());
    t[2..4].copy_from_slice(&5201u16.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&77u32.to_be_bytes());
    t[12] = 8 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&512u16.to_be_bytes());
    t[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 7]);
    p.extend_from_slice(&t);
    p.extend_from_slice(payload);
    finish_checksums(&mut p);
    p
}

fn udp(v6: bool, port: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = ip_header(v6, 17, 0, 8 + payload.len());
    p.extend_from_slice(&port.to_be_bytes());
    p.extend_from_slice(&5201u16.to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    finish_checksums(&mut p);
    p
}

const ACK: u8 = 0x10;
const PSH: u8 = 0x08;

/// The kernel's side of one write: the virtio-net header read, a GSO
/// super-packet cut into segments (lengths, TCP sequence
/// numbers, PSH only on the last), and `NEEDS_CSUM` checksums finished.
fn as_the_kernel_delivers(write: &[u8]) -> Vec<Vec<u8>> {
    let (vnet, packet) = write.split_at(VNET_HDR_LEN);
    let (flags, gso_type) = (vnet[0], vnet[1]);
    let field = |at: usize| usize::from(u16::from_ne_bytes([vnet[at], vnet[at + 1]]));
    let (hdr_len, gso_size, csum_start, csum_offset) = (field(2), field(4), field(6), field(8));
    let v6 = packet[0] >> 4 == 6;
    let ip_len = if v6 { 40 } else { 20 };
    if gso_type == VIRTIO_NET_HDR_GSO_NONE {
        let mut p = packet.to_vec();
        if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
            assert_eq!(csum_start, ip_len);
            // The field holds the pseudo-header sum; the kernel adds the rest.
            let at = csum_start + csum_offset;
            let partial = u32::from(u16::from_be_bytes([p[at], p[at + 1]]));
            p[at..at + 2].fill(0);
            let sum = internet_checksum(&p[csum_start..], partial);
            p[at..at + 2].copy_from_slice(&sum.to_be_bytes());
        }
        return vec![p];
    }
    assert_eq!(flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
    assert_eq!(csum_start, ip_len);
    let (header, payload) = packet.split_at(hdr_len);
    let tcp = gso_type != VIRTIO_NET_HDR_GSO_UDP_L4;
    let chunks: Vec<&[u8]> = payload.chunks(gso_size).collect();
    let last = chunks.len() - 1;
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut p = header.to_vec();
            p.extend_from_slice(chunk);
            let l4_bytes = p.len() - ip_len;
            if v6 {
                p[4..6].copy_from_slice(&(l4_bytes as u16).to_be_bytes());
            } else {
                let total = p.len() as u16;
                p[2..4].copy_from_slice(&total.to_be_bytes());
            }
            if tcp {
                let seq = u32::from_be_bytes(p[ip_len + 4..ip_len + 8].try_into().expect("4"))
                    .wrapping_add((i * gso_size) as u32);
                p[ip_len + 4..ip_len + 8].copy_from_slice(&seq.to_be_bytes());
                if i != last {
                    p[ip_len + 13] &= !PSH;
                }
            } else {
                p[ip_len + 4..ip_len + 6].copy_from_slice(&(l4_bytes as u16).to_be_bytes());
            }
            finish_checksums(&mut p);
            p
        })
        .collect()
}

/// `packets` back to back in one buffer, as the receive path leaves them
/// (each behind 16 bytes of WireGuard header), and their ranges.
fn in_buffer(packets: &[Vec<u8>]) -> (Vec<u8>, Vec<Range<usize>>) {
    let mut buffer = Vec::new();
    let mut ranges = Vec::new();
    for packet in packets {
        buffer.extend_from_slice(&[0xEE; 16]);
        ranges.push(buffer.len()..buffer.len() + packet.len());
        buffer.extend_from_slice(packet);
    }
    (buffer, ranges)
}

fn write_all(offload: TunOffload, packets: &[Vec<u8>]) -> (Recorded, Vec<u8>, Vec<Range<usize>>) {
    let (buffer, ranges) = in_buffer(packets);
    let mut tun = Recorded::default();
    let failed = TunWriter::new(offload).write(&buffer, &ranges, &mut tun);
    assert_eq!(failed, 0);
    (tun, buffer, ranges)
}

fn delivered(tun: &Recorded) -> Vec<Vec<u8>> {
    tun.writes
        .iter()
        .flat_map(|w| as_the_kernel_delivers(w))
        .collect()
}

fn payload(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
}

#[test]
fn consecutive_segments_of_a_tcp_flow_become_one_write_the_kernel_splits_back() {
    for v6 in [false, true] {
        let mut segments: Vec<Vec<u8>> = (0..10u32)
            .map(|i| tcp(v6, 40000, 1000 + i * 1300, ACK, &payload(i as u8, 1300)))
            .collect();
        segments.push(tcp(
            v6,
            40000,
            1000 + 10 * 1300,
            ACK | PSH,
            &payload(99, 200),
        ));
        let (tun, _, _) = write_all(OFFLOAD, &segments);
        assert_eq!(tun.writes.len(), 1, "one super-packet (v6: {v6})");
        assert_eq!(tun.writes[0][1], if v6 { 4 } else { 1 }, "GSO_TCPV4/6");
        assert_eq!(delivered(&tun), segments, "v6: {v6}");
    }
}

#[test]
fn the_payloads_are_written_from_where_they_were_opened() {
    let segments: Vec<Vec<u8>> = (0..3u32)
        .map(|i| tcp(false, 40000, i * 1000, ACK, &payload(1, 1000)))
        .collect();
    let (tun, buffer, ranges) = write_all(OFFLOAD, &segments);
    // Part 0 is the rewritten header; every payload is a pointer into the buffer.
    let base = buffer.as_ptr() as usize;
    let expected: Vec<usize> = ranges.iter().map(|r| base + r.start + 52).collect();
    assert_eq!(tun.parts[0][1..], expected[..]);
}

#[test]
fn interleaved_flows_each_keep_their_order() {
    let a = |i: u32| tcp(false, 1, i * 500, ACK, &payload(i as u8, 500));
    let b = |i: u32| tcp(false, 2, 7 + i * 500, ACK, &payload(100 + i as u8, 500));
    // a2 is out of sequence (a3 arrived first): it starts a group of its own,
    // after a3's, so it is written after it, as it arrived.
    let packets = vec![a(0), b(0), a(1), b(1), a(3), b(2), a(2), a(4)];
    let (tun, _, _) = write_all(OFFLOAD, &packets);
    let out = delivered(&tun);
    let of_flow = |port: u16, list: &[Vec<u8>]| -> Vec<Vec<u8>> {
        list.iter()
            .filter(|p| p[20..22] == port.to_be_bytes())
            .cloned()
            .collect()
    };
    assert_eq!(of_flow(1, &out), vec![a(0), a(1), a(3), a(2), a(4)]);
    assert_eq!(of_flow(2, &out), vec![b(0), b(1), b(2)]);
    // a0+a1, b0+b1+b2, a3, a2, a4: a4 follows a3 in sequence, but only the
    // newest group of a flow (a2's) takes more, so a4 is not moved before a2.
    assert_eq!(tun.writes.len(), 5);
}

#[test]
fn a_packet_that_is_not_tcp_or_udp_is_not_overtaken() {
    let mut icmp = ip_header(false, 1, 0, 8);
    icmp.extend_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1]);
    let packets = vec![
        tcp(false, 1, 0, ACK, &payload(0, 100)),
        icmp.clone(),
        tcp(false, 1, 100, ACK, &payload(1, 100)),
    ];
    let (tun, _, _) = write_all(OFFLOAD, &packets);
    assert_eq!(tun.writes.len(), 3);
    assert_eq!(
        tun.writes[1][..VNET_HDR_LEN],
        [0; VNET_HDR_LEN],
        "written as is"
    );
    assert_eq!(delivered(&tun), packets);
}

#[test]
fn a_single_segment_leaves_its_checksum_to_the_kernel() {
    let packet = tcp(false, 1, 0, ACK | PSH, &payload(3, 333));
    let (tun, _, _) = write_all(OFFLOAD, std::slice::from_ref(&packet));
    let write = &tun.writes[0];
    assert_eq!(write[0], VIRTIO_NET_HDR_F_NEEDS_CSUM);
    assert_eq!(write[1], VIRTIO_NET_HDR_GSO_NONE);
    let checksum_at = VNET_HDR_LEN + 20 + 16;
    let pseudo = fold(pseudo_header_sum(
        &packet[..20],
        false,
        6,
        packet.len() - 20,
    ));
    assert_eq!(write[checksum_at..checksum_at + 2], pseudo.to_be_bytes());
    assert_eq!(delivered(&tun), vec![packet]);
}

#[test]
fn syn_fin_and_pure_acks_are_never_merged() {
    let packets = vec![
        tcp(false, 1, 0, 0x02, &[]),
        tcp(false, 1, 1, ACK, &[]),
        tcp(false, 1, 1, ACK, &payload(0, 100)),
        tcp(false, 1, 101, ACK | 0x01, &payload(1, 100)),
    ];
    let (tun, _, _) = write_all(OFFLOAD, &packets);
    assert_eq!(tun.writes.len(), 4);
    assert_eq!(delivered(&tun), packets);
}

#[test]
fn udp_datagrams_of_a_flow_merge_only_with_udp_segmentation_offload() {
    let mut datagrams: Vec<Vec<u8>> = (0..5u8).map(|i| udp(false, 9, &payload(i, 1200))).collect();
    datagrams.push(udp(false, 9, &payload(9, 17)));
    let (tun, _, _) = write_all(OFFLOAD, &datagrams);
    assert_eq!(tun.writes.len(), 1);
    assert_eq!(tun.writes[0][1], VIRTIO_NET_HDR_GSO_UDP_L4);
    assert_eq!(delivered(&tun), datagrams);

    let without = TunOffload {
        vnet_hdr: true,
        udp_gso: false,
    };
    let (tun, _, _) = write_all(without, &datagrams);
    assert_eq!(tun.writes.len(), 6);
    assert_eq!(delivered(&tun), datagrams);
}

#[test]
fn a_group_stops_short_of_64_kib() {
    let segments: Vec<Vec<u8>> = (0..60u32)
        .map(|i| tcp(false, 1, i * 1368, ACK, &payload(i as u8, 1368)))
        .collect();
    let (tun, _, _) = write_all(OFFLOAD, &segments);
    assert!(tun.writes.iter().all(|w| w.len() - VNET_HDR_LEN <= 65_535));
    assert_eq!(tun.writes.len(), 2);
    assert_eq!(delivered(&tun), segments);
}

#[test]
fn without_virtio_headers_every_packet_is_written_as_it_is() {
    let plain = TunOffload {
        vnet_hdr: false,
        udp_gso: false,
    };
    let packets: Vec<Vec<u8>> = (0..3u32)
        .map(|i| tcp(false, 1, i * 100, ACK, &payload(0, 100)))
        .collect();
    let (tun, _, _) = write_all(plain, &packets);
    assert_eq!(tun.writes, packets);
}

#[test]
fn odd_bytes_are_written_as_they_are_and_never_panic() {
    let mut seed = 0x9E37_79B9u32;
    let mut packets = Vec::new();
    for len in 0..300usize {
        let mut p: Vec<u8> = (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (seed >> 16) as u8
            })
            .collect();
        if let Some(first) = p.first_mut() {
            *first = [0x45, 0x60, 0x46, 0x00][len % 4];
        }
        if len >= 20 && len % 4 == 0 {
            p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            p[6..8].fill(0);
            p[9] = [6, 17][len % 8 / 4];
        }
        packets.push(p);
    }
    let (buffer, ranges) = in_buffer(&packets);
    let mut tun = Recorded::default();
    for chunk in ranges.chunks(crate::BATCH_SIZE) {
        TunWriter::new(OFFLOAD).write(&buffer, chunk, &mut tun);
    }
    let total: usize = tun.writes.iter().map(|w| w.len() - VNET_HDR_LEN).sum();
    assert_eq!(total, packets.iter().map(Vec::len).sum::<usize>());
}
