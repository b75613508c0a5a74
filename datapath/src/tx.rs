//! Outbound: a packet read from TUN becomes a WireGuard datagram.
//!
//! 1. TUN read (in `device`, one reader thread, a batch per wake-up)
//! 2. route: longest-prefix match of the inner destination over allowed IPs
//! 3. encrypt with the peer's current session (boringtun), or queue the packet
//!    and emit a handshake initiation when there is none
//! 4. send to the peer's current endpoint (in `device`)
//!
//! Stages 2 and 3 run here, under one read lock of the peer table per batch and
//! the peer's own lock for the encryption itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use boringtun::noise::TunnResult;

use crate::counters::DropCounters;
use crate::engine::{Engine, PeerTable};

/// What became of one outbound packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Outbound<'o> {
    /// Send this datagram (data or a handshake initiation) to this address.
    Send {
        /// The peer's current endpoint.
        to: SocketAddr,
        /// The WireGuard datagram, inside the caller's buffer.
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

impl Engine {
    /// Stages 2–3 for one packet. `out` must hold `packet.len() + 32` bytes and at
    /// least 148 (a handshake initiation); see [`crate::MAX_DATAGRAM`].
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
        let result = state.tunn.encapsulate(packet, out);
        drop(state);
        match result {
            TunnResult::WriteToNetwork(datagram) => match endpoint {
                Some(to) => Outbound::Send { to, datagram },
                None => {
                    DropCounters::bump(&self.drops.no_endpoint);
                    Outbound::Dropped
                }
            },
            TunnResult::Done => Outbound::Queued,
            TunnResult::Err(err) => {
                self.drops.count_wireguard_error(&err);
                Outbound::Dropped
            }
            TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => Outbound::Dropped,
        }
    }
}
