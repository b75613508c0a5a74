//! Outbound: packets read from TUN become WireGuard datagrams.
//!
//! 1. TUN read (in `device`, one reader thread): with offload on, one read
//!    returns a TSO super-packet that tun-rs splits into MTU-sized packets
//! 2. route: longest-prefix match of the inner destination over allowed IPs
//! 3. encrypt with the peer's current session (boringtun) straight into the
//!    batch's send buffer, or queue the packet and emit a handshake initiation
//!    when there is none
//! 4. frame: for a peer behind a TURN relay, WireGuard went 4 bytes into the
//!    buffer (step 3) and the ChannelData header is written in front of it, in
//!    place; the datagram goes to the TURN server
//! 5. group: consecutive datagrams of one size to one wire destination form a
//!    run ([`TxBatch`]), which leaves in one `sendmsg` with UDP GSO (in `device`)
//!
//! Stages 2–5 run here, under one read lock of the peer table per batch and
//! the peer's own lock for each encryption. One thread does all of it, in TUN
//! order, so a peer's packets leave in the order they arrived.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use boringtun::noise::TunnResult;

use crate::counters::DropCounters;
use crate::endpoint::{CHANNEL_DATA_HEADER_LEN, Endpoint};
use crate::engine::{Engine, PeerTable};

/// What became of one outbound packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Outbound<'o> {
    /// Send this datagram (data or a handshake initiation) to this address.
    Send {
        /// The wire destination: the peer's address, or its TURN server when
        /// the peer is relayed.
        to: SocketAddr,
        /// The WireGuard datagram, inside the caller's buffer; ChannelData-framed
        /// when the peer is relayed.
        datagram: &'o [u8],
    },
    /// Held by the peer until its handshake completes.
    Queued,
    /// Dropped; the reason was counted.
    Dropped,
}

/// The destination address of an IP packet, without parsing more than needed.
#[inline]
pub fn inner_destination(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 if packet.len() >= 20 => {
            let b: [u8; 4] = packet[16..20].try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        }
        6 if packet.len() >= 40 => {
            let b: [u8; 16] = packet[24..40].try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// Most datagrams one GSO send may carry (the kernel's `UDP_MAX_SEGMENTS`).
pub const MAX_GSO_SEGMENTS: usize = 64;

/// Most bytes one GSO send may carry: a UDP datagram's 16-bit length, less
/// the UDP and IPv6 headers.
const MAX_GSO_BYTES: usize = 65_535 - 8 - 40;

/// Send-buffer size of a [`TxBatch`]: a full TUN batch of 1420-byte packets
/// (128 × 1452) fits with room to spare.
const TX_BUFFER: usize = 256 * 1024;

/// A run of datagrams in a [`TxBatch`]: same wire destination, same size (the
/// last may be shorter), contiguous in the buffer. GSO only needs the bytes of
/// each segment to be right for that destination, so relayed peers behind one
/// TURN server share runs (each segment carries its own channel header), and a
/// relayed and a direct peer never do (their destinations differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    to: SocketAddr,
    start: usize,
    end: usize,
    segment_size: usize,
    count: usize,
    /// A shorter datagram ended the run; GSO allows only the last to be short.
    closed: bool,
}

/// Datagrams encrypted from one TUN batch, laid out for UDP GSO. Reused
/// across batches: no allocation per packet.
pub struct TxBatch {
    buf: Vec<u8>,
    len: usize,
    runs: Vec<Run>,
    max_segments: usize,
}

impl TxBatch {
    /// An empty batch whose runs hold at most `max_segments` datagrams
    /// (1 disables grouping, for sockets without GSO).
    pub fn new(max_segments: usize) -> Self {
        Self {
            buf: vec![0; TX_BUFFER],
            len: 0,
            runs: Vec::with_capacity(crate::BATCH_SIZE),
            max_segments: max_segments.clamp(1, MAX_GSO_SEGMENTS),
        }
    }

    /// Routes and encrypts one packet into the batch. Returns `false` without
    /// touching the packet when the buffer is full: send the batch, clear it and
    /// push again.
    pub fn push(&mut self, engine: &Engine, table: &PeerTable, packet: &[u8]) -> bool {
        let room = encapsulate_room(packet.len());
        if self.len + room > self.buf.len() {
            return false;
        }
        let Outbound::Send { to, datagram } =
            engine.encapsulate(table, packet, &mut self.buf[self.len..self.len + room])
        else {
            return true;
        };
        let size = datagram.len();
        let start = self.len;
        self.len += size;
        match self.runs.last_mut() {
            Some(run)
                if run.to == to
                    && !run.closed
                    && size <= run.segment_size
                    && run.count < self.max_segments
                    && run.end - run.start + size <= MAX_GSO_BYTES =>
            {
                run.end = self.len;
                run.count += 1;
                run.closed = size < run.segment_size;
            }
            _ => self.runs.push(Run {
                to,
                start,
                end: self.len,
                segment_size: size,
                count: 1,
                closed: false,
            }),
        }
        true
    }

    /// The runs to send: `(destination, datagrams back to back, segment size)`.
    pub fn runs(&self) -> impl Iterator<Item = (SocketAddr, &[u8], usize)> {
        self.runs
            .iter()
            .map(|run| (run.to, &self.buf[run.start..run.end], run.segment_size))
    }

    /// Number of datagrams in the batch.
    pub fn datagrams(&self) -> usize {
        self.runs.iter().map(|run| run.count).sum()
    }

    /// Empties the batch for reuse.
    pub fn clear(&mut self) {
        self.len = 0;
        self.runs.clear();
    }
}

/// Buffer [`Engine::encapsulate`] needs for a `len`-byte packet: the packet
/// plus WireGuard's 32 bytes, at least a handshake initiation (148), behind
/// room for a ChannelData header.
#[inline]
pub fn encapsulate_room(len: usize) -> usize {
    CHANNEL_DATA_HEADER_LEN + (len + 32).max(148)
}

impl Engine {
    /// Stages 2–4 for one packet. `out` must hold [`encapsulate_room`] bytes
    /// (4 + the larger of `packet.len() + 32` and 148); [`crate::MAX_DATAGRAM`]
    /// always does. The datagram starts at `out[0]` either way.
    #[inline]
    pub fn encapsulate<'o>(
        &self,
        table: &PeerTable,
        packet: &[u8],
        out: &'o mut [u8],
    ) -> Outbound<'o> {
        let Some(destination) = inner_destination(packet) else {
            DropCounters::bump(&self.drops.malformed_inner);
            return Outbound::Dropped;
        };
        let Some(peer) = table
            .allowed_ips
            .lookup(destination)
            .and_then(|slot| table.by_slot(*slot))
        else {
            DropCounters::bump(&self.drops.no_route);
            return Outbound::Dropped;
        };
        let mut state = peer.lock();
        let endpoint = state.endpoint;
        // 3. encrypt behind the header room a relayed path needs (none for a
        // direct one), so framing is a 4-byte write, not a copy.
        let offset = endpoint.map_or(0, Endpoint::headroom);
        let result = state.tunn.encapsulate(packet, &mut out[offset..]);
        drop(state);
        match result {
            TunnResult::WriteToNetwork(datagram) => {
                let len = datagram.len();
                let Some(endpoint) = endpoint else {
                    DropCounters::bump(&self.drops.no_endpoint);
                    return Outbound::Dropped;
                };
                // 4. frame
                match endpoint.frame(out, len) {
                    Some(datagram) => Outbound::Send {
                        to: endpoint.destination(),
                        datagram,
                    },
                    None => {
                        DropCounters::bump(&self.drops.malformed_inner);
                        Outbound::Dropped
                    }
                }
            }
            TunnResult::Done => Outbound::Queued,
            TunnResult::Err(err) => {
                self.drops.count_wireguard_error(&err);
                Outbound::Dropped
            }
            TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => Outbound::Dropped,
        }
    }
}
