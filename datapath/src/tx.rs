//! Outbound: packets read from TUN become WireGuard datagrams.
//!
//! 1. TUN read (in `device`, one reader thread): with offload on, one read
//!    returns a TSO super-packet that tun-rs splits into MTU-sized packets,
//!    each written straight into its slot of the [`TxBatch`], at
//!    [`PACKET_OFFSET`]
//! 2. route: longest-prefix match of the inner destination over allowed IPs
//! 3. encrypt with the peer's current session where the packet lies
//!    (boringtun's `encapsulate_in_place`, a patch this repository carries:
//!    the header goes in front, the tag behind, no copy), or queue the packet
//!    and emit a handshake initiation when there is none
//! 4. frame: for a peer behind a TURN relay, WireGuard went 4 bytes into the
//!    buffer (step 3) and the ChannelData header is written in front of it, in
//!    place; the datagram goes to the TURN server
//! 5. group: consecutive datagrams of one size to one wire destination form a
//!    run ([`TxBatch`]), which leaves in one `sendmsg` with UDP GSO (in `device`)
//!
//! Stages 2–5 run here, under one read lock of the peer table per batch and
//! the peer's own lock for each encryption. One thread does all of it, in TUN
//! order, so a peer's packets leave in the order they arrived.

use std::io::IoSlice;
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

/// WireGuard's transport data header (type, receiver index, counter).
const DATA_HEADER_LEN: usize = 16;

/// WireGuard's Poly1305 tag.
const TAG_LEN: usize = 16;

/// A handshake initiation, which [`Engine::encapsulate_in_place`] writes into
/// the slot when the peer has no session.
const HANDSHAKE_INIT_LEN: usize = 148;

/// Where a TUN packet sits in a [`TxBatch`] slot: behind room for a
/// ChannelData header and WireGuard's data header. The TUN read writes it
/// there, and it is sealed where it lies: the header goes in front, the tag
/// behind, and the datagram leaves from the same bytes.
pub const PACKET_OFFSET: usize = CHANNEL_DATA_HEADER_LEN + DATA_HEADER_LEN;

/// A run of datagrams in a [`TxBatch`]: same wire destination, same size (the
/// last may be shorter). GSO only needs the bytes of each segment to be right
/// for that destination, so relayed peers behind one TURN server share runs
/// (each segment carries its own channel header), and a relayed and a direct
/// peer never do (their destinations differ). The datagrams sit in their own
/// slots, not back to back: the send gathers them (`sendmsg` with one iovec
/// per datagram), so nothing is moved to make them contiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    to: SocketAddr,
    /// Index of the run's first datagram in `TxBatch::datagrams`.
    first: usize,
    count: usize,
    bytes: usize,
    segment_size: usize,
    /// A shorter datagram ended the run; GSO allows only the last to be short.
    closed: bool,
}

/// One TUN batch, encrypted in place and laid out for UDP GSO. Slot `i` of
/// the buffer receives TUN packet `i` at [`PACKET_OFFSET`] and becomes its
/// datagram. Reused across batches: no allocation per packet.
pub struct TxBatch {
    buf: Vec<u8>,
    stride: usize,
    /// Packet length per slot, as the TUN read reports it.
    sizes: [usize; crate::BATCH_SIZE],
    /// Slots filled by [`TxBatch::push`] (tests, benches) or the last read.
    filled: usize,
    /// `(start, len)` in `buf` of each datagram to send, in send order.
    datagrams: Vec<(usize, usize)>,
    runs: Vec<Run>,
    max_segments: usize,
}

impl TxBatch {
    /// An empty batch of [`crate::BATCH_SIZE`] slots for packets of up to
    /// `mtu` bytes, whose runs hold at most `max_segments` datagrams (1
    /// disables grouping, for sockets without GSO).
    pub fn new(max_segments: usize, mtu: usize) -> Self {
        let stride =
            (PACKET_OFFSET + mtu + TAG_LEN).max(CHANNEL_DATA_HEADER_LEN + HANDSHAKE_INIT_LEN);
        Self {
            buf: vec![0; stride * crate::BATCH_SIZE],
            stride,
            sizes: [0; crate::BATCH_SIZE],
            filled: 0,
            datagrams: Vec::with_capacity(crate::BATCH_SIZE),
            runs: Vec::with_capacity(crate::BATCH_SIZE),
            max_segments: max_segments.clamp(1, MAX_GSO_SEGMENTS),
        }
    }

    /// The slots for one TUN read (`recv_multiple(.., slots, sizes,
    /// PACKET_OFFSET)`) and where it reports each packet's length. Then
    /// [`TxBatch::seal`] the packets it returned.
    pub fn tun_slots(&mut self) -> ([&mut [u8]; crate::BATCH_SIZE], &mut [usize]) {
        let mut chunks = self.buf.chunks_mut(self.stride);
        let slots = std::array::from_fn(|_| chunks.next().unwrap_or_default());
        (slots, &mut self.sizes[..])
    }

    /// Routes and encrypts, in place, the first `count` packets a TUN read
    /// left in the slots, and groups their datagrams into runs.
    pub fn seal(&mut self, engine: &Engine, table: &PeerTable, count: usize) {
        for index in 0..count.min(crate::BATCH_SIZE) {
            self.seal_slot(engine, table, index);
        }
        self.filled = count;
    }

    /// Copies one packet into the next free slot and seals it there, as if a
    /// TUN read had put it there. Returns `false` without touching the packet
    /// when the batch is full or the packet longer than a slot takes: send the
    /// batch, clear it and push again.
    pub fn push(&mut self, engine: &Engine, table: &PeerTable, packet: &[u8]) -> bool {
        let index = self.filled;
        if index == crate::BATCH_SIZE || PACKET_OFFSET + packet.len() + TAG_LEN > self.stride {
            return false;
        }
        let start = index * self.stride + PACKET_OFFSET;
        self.buf[start..start + packet.len()].copy_from_slice(packet);
        self.sizes[index] = packet.len();
        self.filled += 1;
        self.seal_slot(engine, table, index);
        true
    }

    fn seal_slot(&mut self, engine: &Engine, table: &PeerTable, index: usize) {
        let base = index * self.stride;
        let slot = &mut self.buf[base..base + self.stride];
        let len = self.sizes[index];
        let Outbound::Send { to, datagram } = engine.encapsulate_in_place(table, slot, len) else {
            return;
        };
        let size = datagram.len();
        let start = base + (datagram.as_ptr() as usize - slot.as_ptr() as usize);
        self.datagrams.push((start, size));
        let position = self.datagrams.len() - 1;
        match self.runs.last_mut() {
            Some(run)
                if run.to == to
                    && !run.closed
                    && size <= run.segment_size
                    && run.count < self.max_segments
                    && run.bytes + size <= MAX_GSO_BYTES =>
            {
                run.bytes += size;
                run.count += 1;
                run.closed = size < run.segment_size;
            }
            _ => self.runs.push(Run {
                to,
                first: position,
                count: 1,
                bytes: size,
                segment_size: size,
                closed: false,
            }),
        }
    }

    /// The runs to send: `(destination, datagrams in order, segment size)`.
    pub fn runs(
        &self,
    ) -> impl Iterator<Item = (SocketAddr, impl Iterator<Item = &[u8]> + Clone, usize)> {
        self.runs.iter().map(|run| {
            let datagrams = self.datagrams[run.first..run.first + run.count]
                .iter()
                .map(|&(start, len)| &self.buf[start..start + len]);
            (run.to, datagrams, run.segment_size)
        })
    }

    /// Calls `send(destination, datagrams, segment size)` for each run, the
    /// datagrams as iovecs for one gathering `sendmsg`.
    pub fn for_each_run(&self, mut send: impl FnMut(SocketAddr, &[IoSlice<'_>], usize)) {
        for run in &self.runs {
            let mut iovecs = [IoSlice::new(&[]); MAX_GSO_SEGMENTS];
            let datagrams = &self.datagrams[run.first..run.first + run.count];
            for (iovec, &(start, len)) in iovecs.iter_mut().zip(datagrams) {
                *iovec = IoSlice::new(&self.buf[start..start + len]);
            }
            send(run.to, &iovecs[..datagrams.len()], run.segment_size);
        }
    }

    /// Number of datagrams in the batch.
    pub fn datagrams(&self) -> usize {
        self.datagrams.len()
    }

    /// Empties the batch for reuse.
    pub fn clear(&mut self) {
        self.filled = 0;
        self.datagrams.clear();
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
    /// Stages 2–4 for one packet, in place: the `len`-byte packet sits at
    /// `slot[PACKET_OFFSET..]` and `slot` has [`TAG_LEN`] bytes after it (and
    /// at least a handshake initiation behind the channel header room). The
    /// datagram is sealed where the packet lies and returned as a slice of
    /// `slot`, framed in place for a relayed peer.
    #[inline]
    pub fn encapsulate_in_place<'o>(
        &self,
        table: &PeerTable,
        slot: &'o mut [u8],
        len: usize,
    ) -> Outbound<'o> {
        let Some(peer) = slot
            .get(PACKET_OFFSET..PACKET_OFFSET + len)
            .and_then(inner_destination)
            .and_then(|destination| table.allowed_ips.lookup(destination))
            .and_then(|index| table.by_slot(*index))
        else {
            // Tell a malformed packet from an unroutable one, off the hot path.
            match slot
                .get(PACKET_OFFSET..PACKET_OFFSET + len)
                .and_then(inner_destination)
            {
                None => DropCounters::bump(&self.drops.malformed_inner),
                Some(_) => DropCounters::bump(&self.drops.no_route),
            }
            return Outbound::Dropped;
        };
        let mut state = peer.lock();
        let endpoint = state.endpoint;
        // 3. encrypt where the packet lies; the WireGuard header goes into the
        // 16 bytes in front of it.
        let wireguard = &mut slot[CHANNEL_DATA_HEADER_LEN..];
        let sealed = self.sealed(state.tunn.encapsulate_in_place(wireguard, len));
        state.tx_packets += u64::from(!matches!(sealed, Sealed::Dropped));
        drop(state);
        // 4. frame: a relayed datagram takes the 4 bytes in front.
        let start = CHANNEL_DATA_HEADER_LEN - endpoint.map_or(0, Endpoint::headroom);
        self.frame(sealed, endpoint, &mut slot[start..])
    }

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
        let sealed = self.sealed(state.tunn.encapsulate(packet, &mut out[offset..]));
        state.tx_packets += u64::from(!matches!(sealed, Sealed::Dropped));
        drop(state);
        // 4. frame
        self.frame(sealed, endpoint, out)
    }

    /// What sealing one packet gave, with the borrow of the buffer released so the caller
    /// can frame the datagram where it lies; a WireGuard error is counted here.
    #[inline]
    fn sealed(&self, result: TunnResult<'_>) -> Sealed {
        match result {
            TunnResult::WriteToNetwork(datagram) => Sealed::Datagram(datagram.len()),
            TunnResult::Done => Sealed::Queued,
            TunnResult::Err(err) => {
                self.drops.count_wireguard_error(&err);
                Sealed::Dropped
            }
            TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => Sealed::Dropped,
        }
    }

    /// Stage 4: the sealed datagram, which sits at `buf[endpoint.headroom()..]`, framed for
    /// the peer's path; a peer without a path or an unframeable length is counted.
    #[inline]
    fn frame<'o>(
        &self,
        sealed: Sealed,
        endpoint: Option<Endpoint>,
        buf: &'o mut [u8],
    ) -> Outbound<'o> {
        let len = match sealed {
            Sealed::Datagram(len) => len,
            Sealed::Queued => return Outbound::Queued,
            Sealed::Dropped => return Outbound::Dropped,
        };
        let Some(endpoint) = endpoint else {
            DropCounters::bump(&self.drops.no_endpoint);
            return Outbound::Dropped;
        };
        match endpoint.frame(buf, len) {
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
}

/// The outcome of sealing one packet, without the borrow of the buffer it was sealed in.
enum Sealed {
    /// A datagram of this many bytes to frame and send.
    Datagram(usize),
    /// Boringtun queued the packet until a handshake completes.
    Queued,
    /// Dropped (and counted where it was seen).
    Dropped,
}
