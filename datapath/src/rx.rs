//! Inbound: a datagram from the UDP socket becomes a packet on TUN, a reply on
//! the network, or a control message for ICE.
//!
//! 1. UDP receive (in `device`, `recvmmsg`/GRO batches)
//! 2. classify: STUN goes to the control plane; the rest is WireGuard, or
//!    TURN ChannelData
//! 3. unwrap ChannelData: only from one of our TURN servers (else dropped and
//!    counted) and only with a sound header (else dropped and counted). STUN
//!    inside (ICE checks over the relay) goes to the control plane whole, for
//!    its TURN client; WireGuard inside carries on from the relayed endpoint
//!    (server, channel), so replies and roaming go back through the relay.
//!    The payload is a slice of the datagram: no copy
//! 4. check mac1 and rate-limit handshakes (cookie replies under load): the
//!    one load check per datagram
//! 5. find the peer: receiver index for responses, cookies and data; the
//!    decrypted static key for handshake initiations
//! 6. decrypt with the peer's session; transport data is opened in place in
//!    the UDP receive buffer ([`Engine::open_in_place`], boringtun's patched
//!    `decapsulate_data_in_place`), so the packet is never copied. A datagram
//!    that proved its sender (see [`proves_sender`]) from a new endpoint moves
//!    the peer there (roaming, direct or relayed). Replies (handshake
//!    responses, cookies, queued data) are written behind header room in a
//!    scratch buffer and framed in place when the sender is relayed
//! 7. cryptokey routing: the inner source must be in that peer's allowed IPs
//! 8. collect the packet's place in an [`RxBatch`]; the batch goes to TUN (in
//!    `device`, through `tun_write`): a flow's consecutive TCP/UDP segments
//!    are gathered into one super-packet per `writev`, straight from the
//!    receive buffer
//!
//! One thread runs all stages in socket order, so a peer's packets reach TUN in
//! the order they arrived.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::{Packet, TunnResult};

use crate::classify::{DatagramKind, classify};
use crate::counters::DropCounters;
use crate::endpoint::{CHANNEL_DATA_HEADER_LEN, Endpoint, parse_channel_data};
use crate::engine::{Engine, PeerTable};
use crate::peer::Peer;

/// Where the network-bound results of one inbound datagram go.
pub trait InboundSink {
    /// A datagram to send back (handshake response, cookie, queued data):
    /// `to` is the wire destination, `datagram` the wire bytes, already
    /// ChannelData-framed when the answer goes through a relay.
    fn send_udp(&mut self, to: SocketAddr, datagram: &[u8]);
    /// A STUN datagram, or TURN ChannelData carrying STUN, for the control plane.
    fn control(&mut self, from: SocketAddr, kind: DatagramKind, datagram: &[u8]);
}

/// WireGuard's transport data message type (the only one that carries packets).
const DATA_MESSAGE_TYPE: u8 = 4;

/// Decrypted packets waiting for one batched TUN write, as ranges of the
/// receive buffer they were opened in: the bytes stay where the socket put
/// them until the TUN write gathers them (see `tun_write`). Reused across
/// batches; holds at most [`crate::BATCH_SIZE`] packets.
pub struct RxBatch {
    packets: Vec<Range<usize>>,
    /// For handshake messages: answering one may flush a whole queue of data
    /// packets, so they get a full-size buffer; they never produce a TUN packet.
    scratch: Vec<u8>,
}

impl Default for RxBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RxBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self {
            packets: Vec::with_capacity(crate::BATCH_SIZE),
            scratch: vec![0; crate::MAX_DATAGRAM],
        }
    }

    /// Stages 2–7 for one datagram, which lies at `at` in the receive buffer:
    /// transport data is opened where it lies and its packet, if it passes
    /// cryptokey routing, joins the batch as a range of that buffer.
    /// Returns `true` when the batch is full and must be written out.
    pub fn open(
        &mut self,
        engine: &Engine,
        table: &PeerTable,
        from: SocketAddr,
        datagram: &mut [u8],
        at: usize,
        sink: &mut impl InboundSink,
    ) -> bool {
        if let Some(packet) = engine.open_in_place(table, from, datagram, &mut self.scratch, sink) {
            self.packets.push(at + packet.start..at + packet.end);
        }
        self.packets.len() >= crate::BATCH_SIZE
    }

    /// Where the packets collected so far lie in the receive buffer, in
    /// arrival order.
    pub fn packets(&self) -> &[Range<usize>] {
        &self.packets
    }

    /// Number of packets collected.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// Whether no packet is waiting.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Empties the batch for reuse.
    pub fn clear(&mut self) {
        self.packets.clear();
    }
}

impl Engine {
    /// Stages 2–7 for one datagram, opening transport data in place: the
    /// packet for TUN, if one passed cryptokey routing, is returned as the
    /// range of `datagram` it now occupies (the ciphertext's place, 16 bytes
    /// in, or 20 behind a ChannelData header). Everything else (STUN,
    /// handshakes, cookies, malformed datagrams) takes [`Engine::decapsulate`]
    /// with `scratch` ([`crate::MAX_DATAGRAM`] bytes) and never yields a packet.
    pub fn open_in_place(
        &self,
        table: &PeerTable,
        from: SocketAddr,
        datagram: &mut [u8],
        scratch: &mut [u8],
        sink: &mut impl InboundSink,
    ) -> Option<Range<usize>> {
        let (source, start) = match classify(datagram) {
            DatagramKind::WireGuard if datagram.first() == Some(&DATA_MESSAGE_TYPE) => {
                (Endpoint::Direct(from), 0)
            }
            DatagramKind::ChannelData if table.is_relay_server(from) => {
                match parse_channel_data(datagram) {
                    Ok((channel, payload))
                        if payload.first() == Some(&DATA_MESSAGE_TYPE)
                            && classify(payload) == DatagramKind::WireGuard =>
                    {
                        let end = CHANNEL_DATA_HEADER_LEN + payload.len();
                        let source = Endpoint::Relayed {
                            server: from,
                            channel,
                        };
                        let packet = self.open_data_in_place(
                            table,
                            source,
                            &mut datagram[CHANNEL_DATA_HEADER_LEN..end],
                        )?;
                        return Some(
                            CHANNEL_DATA_HEADER_LEN + packet.start
                                ..CHANNEL_DATA_HEADER_LEN + packet.end,
                        );
                    }
                    _ => return self.decapsulate_elsewhere(table, from, datagram, scratch, sink),
                }
            }
            _ => return self.decapsulate_elsewhere(table, from, datagram, scratch, sink),
        };
        let packet = self.open_data_in_place(table, source, &mut datagram[start..])?;
        Some(start + packet.start..start + packet.end)
    }

    /// The copying path for what is not transport data: it answers, it never
    /// yields a packet for TUN (only data messages decrypt to packets).
    fn decapsulate_elsewhere(
        &self,
        table: &PeerTable,
        from: SocketAddr,
        datagram: &[u8],
        scratch: &mut [u8],
        sink: &mut impl InboundSink,
    ) -> Option<Range<usize>> {
        let delivered = self.decapsulate(table, from, datagram, scratch, sink);
        debug_assert!(delivered.is_none(), "only data messages carry packets");
        None
    }

    /// Stages 5–7 for one transport data message, decrypted where it lies.
    /// Returns the packet's range in `datagram`.
    fn open_data_in_place(
        &self,
        table: &PeerTable,
        source: Endpoint,
        datagram: &mut [u8],
    ) -> Option<Range<usize>> {
        // 5. which peer: the receiver index (boringtun re-checks type and
        // size; a datagram too short to carry one is malformed).
        let Some(index) = datagram.get(4..8) else {
            self.drops
                .count_wireguard_error(&boringtun::noise::errors::WireGuardError::InvalidPacket);
            return None;
        };
        let receiver_idx = u32::from_le_bytes([index[0], index[1], index[2], index[3]]);
        let Some(peer) = table.by_slot(receiver_idx >> 8) else {
            DropCounters::bump(&self.drops.unknown_peer);
            return None;
        };
        // 6. decrypt in place, roam on proof.
        let base = datagram.as_ptr() as usize;
        let mut state = peer.lock();
        let result = state.tunn.decapsulate_data_in_place(datagram);
        if !matches!(result, TunnResult::Err(_)) && state.endpoint != Some(source) {
            tracing::debug!(peer = %crate::short_key(&peer.public_key), %source, "endpoint moved");
            state.endpoint = Some(source);
        }
        let (packet, inner_source) = match result {
            TunnResult::WriteToTunnelV4(packet, ip) => (packet, IpAddr::V4(ip)),
            TunnResult::WriteToTunnelV6(packet, ip) => (packet, IpAddr::V6(ip)),
            TunnResult::Done => return None,
            TunnResult::Err(err) => {
                self.drops.count_wireguard_error(&err);
                return None;
            }
            TunnResult::WriteToNetwork(_) => {
                // boringtun answers data with a packet or nothing.
                DropCounters::bump(&self.drops.protocol_error);
                return None;
            }
        };
        let start = packet.as_ptr() as usize - base;
        let len = packet.len();
        state.rx_packets += 1;
        drop(state);
        // 7. cryptokey routing
        let len = self.admit(table, peer, inner_source, len)?;
        Some(start..start + len)
    }

    /// Stages 2–7 for one datagram. `out` must be at least as long as a data
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
            DatagramKind::Stun => {
                sink.control(from, DatagramKind::Stun, datagram);
                None
            }
            DatagramKind::ChannelData => {
                // 3. unwrap ChannelData. From anyone but our TURN servers the
                // header means nothing and nobody asked for it.
                if !table.is_relay_server(from) {
                    DropCounters::bump(&self.drops.channel_data_unknown_server);
                    return None;
                }
                let (channel, payload) = match parse_channel_data(datagram) {
                    Ok(frame) => frame,
                    Err(err) => {
                        tracing::trace!(%from, %err, "ChannelData refused");
                        DropCounters::bump(&self.drops.channel_data_malformed);
                        return None;
                    }
                };
                if classify(payload) == DatagramKind::Stun {
                    // An ICE check through the relay: the control plane's TURN
                    // client decodes the whole frame.
                    sink.control(from, DatagramKind::ChannelData, datagram);
                    return None;
                }
                let source = Endpoint::Relayed {
                    server: from,
                    channel,
                };
                self.decapsulate_wireguard(table, source, payload, out, sink)
            }
            DatagramKind::WireGuard => {
                self.decapsulate_wireguard(table, Endpoint::Direct(from), datagram, out, sink)
            }
        }
    }

    /// Stages 4–7 for one WireGuard datagram from `source`.
    fn decapsulate_wireguard(
        &self,
        table: &PeerTable,
        source: Endpoint,
        datagram: &[u8],
        out: &mut [u8],
        sink: &mut impl InboundSink,
    ) -> Option<usize> {
        // Where WireGuard writes in `out`. A data message decrypts to a TUN
        // packet, which must start at `out[0]`, and never produces a reply
        // (boringtun 0.7.1 answers data with a packet or nothing). Anything else
        // only produces replies, written behind the room a relayed answer's
        // ChannelData header needs so framing is in place.
        let offset = if datagram.first() == Some(&DATA_MESSAGE_TYPE) {
            0
        } else {
            source.headroom()
        };
        // The sender's IP for cookies: a relayed peer's is its TURN server's,
        // shared with every peer behind that server.
        let source_ip = source.destination().ip();

        // 4. mac1 and load check
        let packet = match table.identity.rate_limiter.verify_packet(
            Some(source_ip),
            datagram,
            &mut out[offset..],
        ) {
            Ok(packet) => packet,
            Err(TunnResult::WriteToNetwork(cookie)) => {
                let len = cookie.len();
                DropCounters::bump(&self.drops.under_load);
                self.reply(sink, source, out, offset, len);
                return None;
            }
            Err(TunnResult::Err(err)) => {
                self.drops.count_wireguard_error(&err);
                return None;
            }
            Err(_) => return None,
        };

        // 5. which peer
        let peer = match packet {
            Packet::HandshakeInit(ref init) => {
                let identity = &table.identity;
                match parse_handshake_anon(&identity.private_key, &identity.public_key, init) {
                    Ok(half) => table.by_key(&half.peer_static_public),
                    Err(err) => {
                        self.drops.count_wireguard_error(&err);
                        return None;
                    }
                }
            }
            Packet::HandshakeResponse(ref r) => table.by_slot(r.receiver_idx >> 8),
            Packet::PacketData(ref d) => table.by_slot(d.receiver_idx >> 8),
            Packet::PacketCookieReply(ref c) => table.by_slot(c.receiver_idx >> 8),
        };
        let Some(peer) = peer else {
            DropCounters::bump(&self.drops.unknown_peer);
            return None;
        };

        // 6. decrypt, roam. The Tunn's own limiter never reports load (see
        // `Engine::new`): this datagram was load-checked once, above.
        let mut state = peer.lock();
        let result = state
            .tunn
            .decapsulate(Some(source_ip), datagram, &mut out[offset..]);
        if proves_sender(&packet, &result) && state.endpoint != Some(source) {
            tracing::debug!(peer = %crate::short_key(&peer.public_key), %source, "endpoint moved");
            state.endpoint = Some(source);
        }
        match result {
            TunnResult::Done => None,
            TunnResult::Err(err) => {
                self.drops.count_wireguard_error(&err);
                None
            }
            TunnResult::WriteToNetwork(reply) => {
                let len = reply.len();
                self.reply(sink, source, out, offset, len);
                // The handshake completed: flush what the peer queued while waiting.
                while let TunnResult::WriteToNetwork(queued) =
                    state.tunn.decapsulate(None, &[], &mut out[offset..])
                {
                    let len = queued.len();
                    self.reply(sink, source, out, offset, len);
                }
                None
            }
            TunnResult::WriteToTunnelV4(packet, source) => {
                let len = packet.len();
                state.rx_packets += 1;
                drop(state);
                self.admit(table, peer, IpAddr::V4(source), len)
            }
            TunnResult::WriteToTunnelV6(packet, source) => {
                let len = packet.len();
                state.rx_packets += 1;
                drop(state);
                self.admit(table, peer, IpAddr::V6(source), len)
            }
        }
    }

    /// Sends the `len`-byte WireGuard reply at `out[offset..]` back to
    /// `source`, framed in place when it is relayed.
    #[inline]
    fn reply(
        &self,
        sink: &mut impl InboundSink,
        source: Endpoint,
        out: &mut [u8],
        offset: usize,
        len: usize,
    ) {
        // `offset` is the headroom except for data messages, which never
        // answer; a relayed reply without room for its header cannot be framed.
        let framed = offset
            .checked_sub(source.headroom())
            .and_then(|start| source.frame(&mut out[start..], len));
        match framed {
            Some(datagram) => sink.send_udp(source.destination(), datagram),
            None => DropCounters::bump(&self.drops.protocol_error),
        }
    }

    /// Stage 7, cryptokey routing: the packet may go to TUN only if its source
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

/// Whether `result` shows that `packet` came from the peer itself, so its
/// source may become the peer's endpoint (roaming). Only proof counts: a data
/// packet that decrypted (keepalives too), an initiation the Tunn consumed
/// (its timestamp decrypted with the static-static key and was newer than the
/// last: answered with a handshake response), or a response that completed our
/// handshake (answered with a keepalive). Never a cookie reply, and never an
/// answer that is itself a cookie: anyone who knows our public key can make an
/// initiation whose mac1 and encrypted static key are valid.
fn proves_sender(packet: &Packet<'_>, result: &TunnResult<'_>) -> bool {
    /// WireGuard's handshake response message type.
    const HANDSHAKE_RESPONSE_TYPE: u8 = 2;
    let answered_with = |message_type: u8| match result {
        TunnResult::WriteToNetwork(reply) => reply.first() == Some(&message_type),
        _ => false,
    };
    match packet {
        Packet::PacketData(_) => !matches!(result, TunnResult::Err(_)),
        Packet::HandshakeInit(_) => answered_with(HANDSHAKE_RESPONSE_TYPE),
        Packet::HandshakeResponse(_) => answered_with(DATA_MESSAGE_TYPE),
        Packet::PacketCookieReply(_) => false,
    }
}
