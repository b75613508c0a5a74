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
//! 7. write to TUN (in `device`)

use std::net::{IpAddr, SocketAddr};

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::{Packet, TunnResult};

use crate::classify::{DatagramKind, classify};
use crate::counters::DropCounters;
use crate::engine::{Engine, PeerTable};

/// Where the results of one inbound datagram go.
pub trait InboundSink {
    /// A decrypted packet that passed cryptokey routing.
    fn write_tun(&mut self, packet: &[u8]);
    /// A datagram to send back (handshake response, cookie, queued data).
    fn send_udp(&mut self, to: SocketAddr, datagram: &[u8]);
    /// A STUN or TURN ChannelData datagram for the control plane.
    fn control(&mut self, from: SocketAddr, kind: DatagramKind, datagram: &[u8]);
}

impl Engine {
    /// Stages 2–6 for one datagram. `out` must hold [`crate::MAX_DATAGRAM`] bytes.
    pub fn decapsulate(
        &self,
        table: &PeerTable,
        from: SocketAddr,
        datagram: &[u8],
        out: &mut [u8],
        sink: &mut impl InboundSink,
    ) {
        // 2. classify
        match classify(datagram) {
            kind @ (DatagramKind::Stun | DatagramKind::ChannelData) => {
                sink.control(from, kind, datagram);
                return;
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
                return;
            }
            Err(TunnResult::Err(err)) => {
                self.drops.count_wireguard_error(&err);
                return;
            }
            Err(_) => return,
        };

        // 4. which peer
        let (peer, authenticates_sender) = match packet {
            Packet::HandshakeInit(ref init) => {
                let (private, public) = self.keys();
                match parse_handshake_anon(private, public, init) {
                    Ok(half) => (table.by_key(&half.peer_static_public), true),
                    Err(err) => {
                        self.drops.count_wireguard_error(&err);
                        return;
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
            return;
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
            TunnResult::Done => {}
            TunnResult::Err(err) => self.drops.count_wireguard_error(&err),
            TunnResult::WriteToNetwork(reply) => {
                sink.send_udp(from, reply);
                // The handshake completed: flush what the peer queued while waiting.
                while let TunnResult::WriteToNetwork(queued) =
                    state.tunn.decapsulate(None, &[], out)
                {
                    sink.send_udp(from, queued);
                }
            }
            TunnResult::WriteToTunnelV4(packet, source) => {
                drop(state);
                self.deliver(
                    table,
                    peer.slot,
                    IpAddr::V4(source),
                    packet,
                    sink,
                    &peer.dropped_source,
                );
            }
            TunnResult::WriteToTunnelV6(packet, source) => {
                drop(state);
                self.deliver(
                    table,
                    peer.slot,
                    IpAddr::V6(source),
                    packet,
                    sink,
                    &peer.dropped_source,
                );
            }
        }
    }

    /// 6. cryptokey routing, then hand the packet to TUN.
    #[inline]
    fn deliver(
        &self,
        table: &PeerTable,
        slot: u32,
        source: IpAddr,
        packet: &[u8],
        sink: &mut impl InboundSink,
        peer_drops: &std::sync::atomic::AtomicU64,
    ) {
        if table.allowed_ips.lookup(source) == Some(&slot) {
            sink.write_tun(packet);
        } else {
            tracing::trace!(%source, "inner source not in the peer's allowed IPs");
            DropCounters::bump(&self.drops.source_not_allowed);
            DropCounters::bump(peer_drops);
        }
    }
}
