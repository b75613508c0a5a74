//! Stage 8 of the receive path: decrypted packets to TUN, gathered from where
//! they were opened, never copied.
//!
//! 1. group: in one batch, consecutive segments of one TCP flow (or one UDP
//!    flow, when TUN takes UDP segmentation offload) join one group, as the
//!    kernel's own GRO would join them; everything else is a group of one.
//!    A packet only ever joins the newest group of its flow, and groups are
//!    written in the order they were started, so a flow's packets reach the
//!    kernel in the order they arrived;
//! 2. header: each group's first IP and TCP/UDP header is copied (at most
//!    120 bytes) behind a virtio-net header and rewritten for the whole group:
//!    lengths, the IPv4 header checksum, and the TCP/UDP checksum field set to
//!    the pseudo-header sum with `NEEDS_CSUM`. The kernel then finishes the
//!    checksum only if the packet leaves the host again; delivered locally it
//!    is taken as good, as kernel WireGuard marks decrypted packets (Poly1305
//!    has authenticated every byte). No checksum is computed over payload here;
//! 3. write: one `writev` per group: the header, then each segment's payload
//!    where it lies in the UDP receive buffer.
//!
//! On a TUN device without virtio-net headers every packet is written alone,
//! as it is.

use std::io::{self, IoSlice};
use std::ops::Range;

/// Bytes of `struct virtio_net_hdr` (no `num_buffers`: TUN's default size).
pub const VNET_HDR_LEN: usize = 10;

const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
const VIRTIO_NET_HDR_GSO_UDP_L4: u8 = 5;

/// Most segments in one group. The payload limit (64 KiB) is usually reached
/// first; this bounds a group of small UDP datagrams below the kernel's
/// `UDP_MAX_SEGMENTS` (128) with room to spare, and sizes the iovec array.
pub const MAX_SEGMENTS: usize = 64;

/// Largest IP packet a group may become: the IPv4 total-length field.
const MAX_GROUP_BYTES: usize = 65_535;

/// Room for the virtio-net header plus the largest IP and TCP headers.
const MAX_HEADER: usize = VNET_HDR_LEN + 60 + 60;

const TCP_FLAG_PSH: u8 = 0x08;
const TCP_FLAG_ACK: u8 = 0x10;

/// What the TUN device takes from us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunOffload {
    /// Every write starts with a virtio-net header (`IFF_VNET_HDR`): then
    /// `NEEDS_CSUM` and TCP segmentation offload are available.
    pub vnet_hdr: bool,
    /// UDP segmentation offload (`TUN_F_USO4/6`) is on as well.
    pub udp_gso: bool,
}

/// Somewhere to write gathered packets: the TUN descriptor, or a test's record.
pub trait TunSink {
    /// Writes one packet (with its virtio-net header, if the device takes
    /// one) gathered from `parts`.
    fn write_gathered(&mut self, parts: &[IoSlice<'_>]) -> io::Result<()>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tcp,
    Udp,
}

/// One packet's headers, as far as grouping needs them.
#[derive(Debug, Clone, Copy)]
struct Headers {
    transport: Transport,
    v6: bool,
    ip_len: usize,
    l4_len: usize,
    /// Payload bytes behind the headers.
    payload: usize,
    /// May join or start a multi-segment group (TCP: ACK with at most PSH,
    /// a payload; UDP: a payload).
    coalescable: bool,
    /// TCP sequence number (0 for UDP).
    seq: u32,
    /// TCP PSH: the segment ends its group.
    push: bool,
    /// Addresses and ports folded, to find a flow's group quickly.
    flow: u64,
}

/// Packets written as one: a linked list through [`TunWriter::next`].
#[derive(Debug, Clone, Copy)]
struct Group {
    /// First and last member (indexes into the batch's packets).
    head: u16,
    tail: u16,
    segments: u16,
    /// `None`: written as it is (not TCP/UDP, a fragment, or no checksum).
    headers: Option<Headers>,
    /// Whole group as one IP packet.
    bytes: usize,
    /// TCP: the sequence number the next segment must carry.
    next_seq: u32,
    /// Whether another segment may still join.
    open: bool,
}

/// Writes batches of decrypted packets to TUN, grouped and gathered. Keeps
/// its tables between batches: no allocation per batch.
pub struct TunWriter {
    offload: TunOffload,
    groups: Vec<Group>,
    /// Next member of the same group, per packet; `u16::MAX` ends the list.
    next: Vec<u16>,
    header: [u8; MAX_HEADER],
}

impl TunWriter {
    /// A writer for a device that takes `offload`.
    pub fn new(offload: TunOffload) -> Self {
        Self {
            offload,
            groups: Vec::with_capacity(crate::BATCH_SIZE),
            next: Vec::with_capacity(crate::BATCH_SIZE),
            header: [0; MAX_HEADER],
        }
    }

    /// Writes the packets at `packets` (ranges of `buffer`, in arrival order)
    /// to `tun`. Returns how many writes failed; a failed write loses its
    /// group, not the batch.
    pub fn write(
        &mut self,
        buffer: &[u8],
        packets: &[Range<usize>],
        tun: &mut impl TunSink,
    ) -> usize {
        let mut failed = 0;
        if !self.offload.vnet_hdr {
            for packet in packets {
                if tun
                    .write_gathered(&[IoSlice::new(&buffer[packet.clone()])])
                    .is_err()
                {
                    failed += 1;
                }
            }
            return failed;
        }
        for chunk in packets.chunks(usize::from(u16::MAX)) {
            self.plan(buffer, chunk);
            for index in 0..self.groups.len() {
                if self.write_group(buffer, chunk, index, tun).is_err() {
                    failed += 1;
                }
            }
        }
        failed
    }

    /// Step 1: sorts `packets` into groups.
    fn plan(&mut self, buffer: &[u8], packets: &[Range<usize>]) {
        self.groups.clear();
        self.next.clear();
        self.next.resize(packets.len(), u16::MAX);
        for (index, range) in packets.iter().enumerate() {
            let packet = &buffer[range.clone()];
            let index = index as u16; // `write` hands at most u16::MAX packets.
            let Some(headers) = parse(packet) else {
                // Not TCP/UDP: nothing may jump ahead of it, so every group
                // waiting for more segments is closed.
                for group in &mut self.groups {
                    group.open = false;
                }
                self.groups.push(Group::alone(index, None, packet.len()));
                continue;
            };
            let joinable = headers.coalescable
                && (headers.transport == Transport::Tcp || self.offload.udp_gso);
            // The newest group of this flow, if any (a fold collision only
            // costs a missed join: the headers are compared in full).
            let newest = self.groups.iter().rposition(|group| {
                group
                    .headers
                    .is_some_and(|h| h.flow == headers.flow && h.transport == headers.transport)
            });
            if let Some(at) = newest
                && joinable
                && self.groups[at].accepts(buffer, packets, packet, &headers)
            {
                let group = &mut self.groups[at];
                self.next[usize::from(group.tail)] = index;
                group.tail = index;
                group.segments += 1;
                group.bytes += headers.payload;
                group.next_seq = headers.seq.wrapping_add(headers.payload as u32);
                let first = group.headers.map_or(0, |h| h.payload);
                group.open = !headers.push && headers.payload == first;
                continue;
            }
            if let Some(at) = newest {
                self.groups[at].open = false;
            }
            let mut group = Group::alone(index, Some(headers), packet.len());
            group.open = joinable && !headers.push;
            group.next_seq = headers.seq.wrapping_add(headers.payload as u32);
            self.groups.push(group);
        }
    }

    /// Steps 2 and 3 for one group.
    fn write_group(
        &mut self,
        buffer: &[u8],
        packets: &[Range<usize>],
        index: usize,
        tun: &mut impl TunSink,
    ) -> io::Result<()> {
        let group = self.groups[index];
        let head = &buffer[packets[usize::from(group.head)].clone()];
        let Some(h) = group.headers else {
            self.header[..VNET_HDR_LEN].fill(0);
            return tun.write_gathered(&[
                IoSlice::new(&self.header[..VNET_HDR_LEN]),
                IoSlice::new(head),
            ]);
        };
        let header_len = h.ip_len + h.l4_len;
        let (vnet, ip) = self.header.split_at_mut(VNET_HDR_LEN);
        let ip = &mut ip[..header_len];
        ip.copy_from_slice(&head[..header_len]);
        let l4_bytes = group.bytes - h.ip_len;
        // Lengths of the whole group (unchanged for a group of one).
        if h.v6 {
            ip[4..6].copy_from_slice(&(l4_bytes as u16).to_be_bytes());
        } else {
            ip[2..4].copy_from_slice(&(group.bytes as u16).to_be_bytes());
            ip[10..12].fill(0);
            let sum = !fold(sum_be_words(&ip[..h.ip_len], 0));
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
        }
        let (protocol, checksum_at) = match h.transport {
            Transport::Tcp => {
                // The last segment's flags: only PSH may differ, and only there.
                let tail = &buffer[packets[usize::from(group.tail)].clone()];
                ip[h.ip_len + 13] = tail[h.ip_len + 13];
                (6u8, 16)
            }
            Transport::Udp => {
                ip[h.ip_len + 4..h.ip_len + 6].copy_from_slice(&(l4_bytes as u16).to_be_bytes());
                (17u8, 6)
            }
        };
        let pseudo = pseudo_header_sum(&ip[..h.ip_len], h.v6, protocol, l4_bytes);
        ip[h.ip_len + checksum_at..h.ip_len + checksum_at + 2]
            .copy_from_slice(&fold(pseudo).to_be_bytes());
        let gso_type = match (group.segments > 1, h.transport, h.v6) {
            (false, _, _) => VIRTIO_NET_HDR_GSO_NONE,
            (true, Transport::Tcp, false) => VIRTIO_NET_HDR_GSO_TCPV4,
            (true, Transport::Tcp, true) => VIRTIO_NET_HDR_GSO_TCPV6,
            (true, Transport::Udp, _) => VIRTIO_NET_HDR_GSO_UDP_L4,
        };
        let gso_size = if group.segments > 1 { h.payload } else { 0 };
        encode_vnet(
            vnet,
            VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type,
            header_len,
            gso_size,
            h.ip_len,
            checksum_at,
        );

        let mut parts = [IoSlice::new(&[]); MAX_SEGMENTS + 1];
        parts[0] = IoSlice::new(&self.header[..VNET_HDR_LEN + header_len]);
        let mut count = 1;
        let mut member = group.head;
        while member != u16::MAX {
            let packet = &buffer[packets[usize::from(member)].clone()];
            parts[count] = IoSlice::new(&packet[header_len..]);
            count += 1;
            member = self.next[usize::from(member)];
        }
        tun.write_gathered(&parts[..count])
    }
}

impl Group {
    fn alone(index: u16, headers: Option<Headers>, bytes: usize) -> Self {
        Self {
            head: index,
            tail: index,
            segments: 1,
            headers,
            bytes,
            next_seq: 0,
            open: false,
        }
    }

    /// Whether `packet` may follow this group's last segment.
    fn accepts(
        &self,
        buffer: &[u8],
        packets: &[Range<usize>],
        packet: &[u8],
        headers: &Headers,
    ) -> bool {
        let Some(first) = self.headers else {
            return false;
        };
        if !self.open
            || usize::from(self.segments) >= MAX_SEGMENTS
            || self.bytes + headers.payload > MAX_GROUP_BYTES
            || headers.payload > first.payload
            || first.v6 != headers.v6
            || first.ip_len != headers.ip_len
            || first.l4_len != headers.l4_len
            || (first.transport == Transport::Tcp && headers.seq != self.next_seq)
        {
            return false;
        }
        let head = &buffer[packets[usize::from(self.head)].clone()];
        same_flow_headers(head, packet, &first)
    }
}

/// Whether two packets' headers agree in everything but what differs between
/// segments of one super-packet: IP length, IPv4 id and checksum, TCP
/// sequence number, checksum and PSH, UDP length and checksum.
fn same_flow_headers(a: &[u8], b: &[u8], h: &Headers) -> bool {
    let ip = h.ip_len;
    let ip_same = if h.v6 {
        a[..4] == b[..4] && a[6..40] == b[6..40]
    } else {
        a[..2] == b[..2] && a[6..10] == b[6..10] && a[12..ip] == b[12..ip]
    };
    let l4_same = match h.transport {
        Transport::Tcp => {
            a[ip..ip + 4] == b[ip..ip + 4]
                && a[ip + 8..ip + 13] == b[ip + 8..ip + 13]
                && a[ip + 13] == b[ip + 13] & !TCP_FLAG_PSH
                && a[ip + 14..ip + 16] == b[ip + 14..ip + 16]
                && a[ip + 18..ip + h.l4_len] == b[ip + 18..ip + h.l4_len]
        }
        Transport::Udp => a[ip..ip + 4] == b[ip..ip + 4],
    };
    ip_same && l4_same
}

/// Reads the headers of a TCP or UDP packet whose checksum the kernel can
/// finish; `None` for anything else (other protocols, IPv4 fragments, IPv4
/// options or IPv6 extension headers, UDP without a checksum, lengths that
/// disagree with the packet).
fn parse(packet: &[u8]) -> Option<Headers> {
    let (v6, ip_len, protocol) = match packet.first()? >> 4 {
        4 => {
            if packet.len() < 20 || packet[0] & 0x0F != 5 {
                return None;
            }
            let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
            let fragment = u16::from_be_bytes([packet[6], packet[7]]) & 0x3FFF;
            if total != packet.len() || fragment != 0 {
                return None;
            }
            (false, 20, packet[9])
        }
        6 => {
            if packet.len() < 40 {
                return None;
            }
            let payload = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
            if payload + 40 != packet.len() {
                return None;
            }
            (true, 40, packet[6])
        }
        _ => return None,
    };
    let l4 = &packet[ip_len..];
    let (transport, l4_len, coalescable, seq, push) = match protocol {
        6 => {
            if l4.len() < 20 {
                return None;
            }
            let l4_len = usize::from(l4[12] >> 4) * 4;
            if l4_len < 20 || l4.len() < l4_len {
                return None;
            }
            let flags = l4[13];
            let seq = u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]);
            let plain_ack = flags & !TCP_FLAG_PSH == TCP_FLAG_ACK;
            (
                Transport::Tcp,
                l4_len,
                plain_ack && l4.len() > l4_len,
                seq,
                flags & TCP_FLAG_PSH != 0,
            )
        }
        17 => {
            if l4.len() < 8 || usize::from(u16::from_be_bytes([l4[4], l4[5]])) != l4.len() {
                return None;
            }
            if !v6 && l4[6..8] == [0, 0] {
                return None; // the sender chose no checksum
            }
            (Transport::Udp, 8, l4.len() > 8, 0, false)
        }
        _ => return None,
    };
    let addresses = if v6 { &packet[8..40] } else { &packet[12..20] };
    let mut flow = u64::from(u32::from_be_bytes([l4[0], l4[1], l4[2], l4[3]]));
    for chunk in addresses.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        flow = (flow ^ u64::from_ne_bytes(word)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    Some(Headers {
        transport,
        v6,
        ip_len,
        l4_len,
        payload: l4.len() - l4_len,
        coalescable,
        seq,
        push,
        flow,
    })
}

/// `struct virtio_net_hdr` in the host's byte order (legacy TUN headers).
fn encode_vnet(
    out: &mut [u8],
    flags: u8,
    gso_type: u8,
    hdr_len: usize,
    gso_size: usize,
    csum_start: usize,
    csum_offset: usize,
) {
    out[0] = flags;
    out[1] = gso_type;
    out[2..4].copy_from_slice(&(hdr_len as u16).to_ne_bytes());
    out[4..6].copy_from_slice(&(gso_size as u16).to_ne_bytes());
    out[6..8].copy_from_slice(&(csum_start as u16).to_ne_bytes());
    out[8..10].copy_from_slice(&(csum_offset as u16).to_ne_bytes());
}

/// The TCP/UDP pseudo-header's one's-complement sum (unfolded).
fn pseudo_header_sum(ip: &[u8], v6: bool, protocol: u8, l4_bytes: usize) -> u32 {
    let addresses = if v6 { &ip[8..40] } else { &ip[12..20] };
    sum_be_words(addresses, u32::from(protocol) + l4_bytes as u32)
}

/// One's-complement sum of big-endian 16-bit words (even length), unfolded.
fn sum_be_words(bytes: &[u8], initial: u32) -> u32 {
    bytes.chunks_exact(2).fold(initial, |sum, word| {
        sum + u32::from(u16::from_be_bytes([word[0], word[1]]))
    })
}

/// Folds a one's-complement sum to 16 bits.
fn fold(mut sum: u32) -> u16 {
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
#[path = "tests/tun_write.rs"]
mod tests;
