//! Inbound: a datagram from the UDP socket becomes a packet on TUN, a reply on
//! the network, or a control message for ICE.
//!
//! 1. UDP receive (in `device`, `recvmmsg`/GRO batches)
//! 2. classify: STUN and TURN ChannelData go to the control plane; the rest is WireGuard
//! 3. check mac1 and rate-limit handshakes (cookie replies under load)
//! 4. find the peer: receiver index for responses, cookies and data; the
//!    decrypted static key for handshake initiations
//! 5. decrypt with the peer's session; an authenticated datagram from a new
//!    address moves the peer's endpoint there (roaming)
//! 6. cryptokey routing: the inner source must be in that peer's allowed IPs
//! 7. collect in an [`RxBatch`] and write to TUN (in `device`); with offload on,
//!    tun-rs coalesces a flow's consecutive TCP/UDP segments (GRO) into one
//!    super-packet per write
//!
//! One thread runs all stages in socket order, so a peer's packets reach TUN in
//! the order they arrived.

use std::net::{IpAddr, SocketAddr};

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::{Packet, TunnResult};

use crate::classify::{DatagramKind, classify};
use crate::counters::DropCounters;
use crate::engine::{Engine, PeerTable};
use crate::peer::Peer;

/// Where the network-bound results of one inbound datagram go.
pub trait InboundSink {
    /// A datagram to send back (handshake response, cookie, queued data).
    fn send_udp(&mut self, to: SocketAddr, datagram: &[u8]);
    /// A STUN or TURN ChannelData datagram for the control plane.
    fn control(&mut self, from: SocketAddr, kind: DatagramKind, datagram: &[u8]);
}

/// WireGuard's transport data message type (the only one that carries packets).
const DATA_MESSAGE_TYPE: u8 = 4;

/// Decrypted packets waiting for one batched TUN write. Each slot keeps
/// `headroom` bytes in front of its packet for the virtio-net header that
/// offloaded TUN writes need. Reused across batches.
pub struct RxBatch {
    slots: Vec<Vec<u8>>,
    used: usize,
    headroom: usize,
    /// For handshake messages: answering one may flush a whole queue of data
    /// packets, so they get a full-size buffer; they never produce a TUN packet.
    scratch: Vec<u8>,
}

impl RxBatch {
    /// An empty batch of [`crate::BATCH_SIZE`] slots.
    pub fn new(headroom: usize) -> Self {
        Self {
            // Capacity for a whole coalesced super-packet: GRO appends to the
            // first packet of a flow in place.
            slots: (0..crate::BATCH_SIZE)
                .map(|_| Vec::with_capacity(headroom + crate::MAX_DATAGRAM))
                .collect(),
            used: 0,
            headroom,
            scratch: vec![0; crate::MAX_DATAGRAM],
        }
    }

    /// Stages 2–6 for one datagram; a packet for TUN stays in the batch.
    /// Returns `true` when the batch is full and must be written out.
    pub fn decapsulate(
        &mut self,
        engine: &Engine,
        table: &PeerTable,
        from: SocketAddr,
        datagram: &[u8],
        sink: &mut impl InboundSink,
    ) -> bool {
        if datagram.first() != Some(&DATA_MESSAGE_TYPE) {
            engine.decapsulate(table, from, datagram, &mut self.scratch, sink);
            return false;
        }
        let slot = &mut self.slots[self.used];
        // Plaintext is never longer than its datagram; resizing from the last
        // packet's length zero-fills a few bytes at most.
        slot.resize(self.headroom + datagram.len(), 0);
        if let Some(len) =
            engine.decapsulate(table, from, datagram, &mut slot[self.headroom..], sink)
        {
            slot.truncate(self.headroom + len);
            self.used += 1;
        }
        self.used == self.slots.len()
    }

    /// The packets collected so far, each behind its headroom.
    pub fn packets(&mut self) -> &mut [Vec<u8>] {
        &mut self.slots[..self.used]
    }

    /// Number of packets collected.
    pub fn len(&self) -> usize {
        self.used
    }

    /// Whether no packet is waiting.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// Empties the batch for reuse.
    pub fn clear(&mut self) {
        self.used = 0;
    }
}

impl Engine {
    /// Stages 2–6 for one datagram. `out` must be at least as long as a data
    /// datagram, and [`crate::MAX_DATAGRAM`] for anything else (answering a
    /// handshake flushes queued packets into it). Returns the length of the packet left at the
    /// start of `out` for TUN, if one passed cryptokey routing.
    pub fn decapsulate(
        &self,
        table: &PeerTable,
        from: SocketAddr,
        datagram: &[u8],
        out: &mut [u8],
        sink: &mut impl InboundSink,
    ) -> Option<usize> {
        // 2. classify
        match classify(datagram) {
            kind @ (DatagramKind::Stun | DatagramKind::ChannelData) => {
                sink.control(from, kind, datagram);
                return None;
            }
            DatagramKind::WireGuard => {}
        }

        // 3. mac1 and load check
        let packet = match self
            .rate_limiter()
            .verify_packet(Some(from.ip()), datagram, out)
        {
            Ok(packet) => packet,
            Err(TunnResult::WriteToNetwork(cookie)) => {
                DropCounters::bump(&self.drops.under_load);
                sink.send_udp(from, cookie);
                return None;
            }
            Err(TunnResult::Err(err)) => {
                self.drops.count_wireguard_error(&err);
                return None;
            }
            Err(_) => return None,
        };

        // 4. which peer
        let (peer, authenticates_sender) = match packet {
            Packet::HandshakeInit(ref init) => {
                let (private, public) = self.keys();
                match parse_handshake_anon(private, public, init) {
                    Ok(half) => (table.by_key(&half.peer_static_public), true),
                    Err(err) => {
                        self.drops.count_wireguard_error(&err);
                        return None;
                    }
                }
            }
            Packet::HandshakeResponse(ref r) => (table.by_slot(r.receiver_idx >> 8), true),
            Packet::PacketData(ref d) => (table.by_slot(d.receiver_idx >> 8), true),
            // A cookie reply proves nothing about where the peer is now.
            Packet::PacketCookieReply(ref c) => (table.by_slot(c.receiver_idx >> 8), false),
        };
        let Some(peer) = peer else {
            DropCounters::bump(&self.drops.unknown_peer);
            return None;
        };

        // 5. decrypt, roam
        let mut state = peer.lock();
        let result = state.tunn.decapsulate(Some(from.ip()), datagram, out);
        if !matches!(result, TunnResult::Err(_)) && authenticates_sender {
            if state.endpoint != Some(from) {
                tracing::debug!(peer = %crate::short_key(&peer.public_key), %from, "endpoint moved");
            }
            state.endpoint = Some(from);
        }
        match result {
            TunnResult::Done => None,
            TunnResult::Err(err) => {
                self.drops.count_wireguard_error(&err);
                None
            }
            TunnResult::WriteToNetwork(reply) => {
                sink.send_udp(from, reply);
                // The handshake completed: flush what the peer queued while waiting.
                while let TunnResult::WriteToNetwork(queued) =
                    state.tunn.decapsulate(None, &[], out)
                {
                    sink.send_udp(from, queued);
                }
                None
            }
            TunnResult::WriteToTunnelV4(packet, source) => {
                drop(state);
                self.admit(table, peer, IpAddr::V4(source), packet.len())
            }
            TunnResult::WriteToTunnelV6(packet, source) => {
                drop(state);
                self.admit(table, peer, IpAddr::V6(source), packet.len())
            }
        }
    }

    /// Stage 6, cryptokey routing: the packet may go to TUN only if its source
    /// routes back to the peer that sent it.
    #[inline]
    fn admit(&self, table: &PeerTable, peer: &Peer, source: IpAddr, len: usize) -> Option<usize> {
        if table.allowed_ips.lookup(source) == Some(&peer.slot) {
            Some(len)
        } else {
            tracing::trace!(%source, "inner source not in the peer's allowed IPs");
            DropCounters::bump(&self.drops.source_not_allowed);
            DropCounters::bump(&peer.dropped_source);
            None
        }
    }
}
