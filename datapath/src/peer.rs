//! One WireGuard peer: its tunnel state, current endpoint and counters.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use boringtun::noise::Tunn;
use ipnet::IpNet;

use crate::endpoint::Endpoint;

/// What the datapath needs to know to talk to a peer. `Debug` says whether a preshared key
/// is set, never what it is.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's static X25519 public key.
    pub public_key: [u8; 32],
    /// Optional symmetric key mixed into the handshake.
    pub preshared_key: Option<[u8; 32]>,
    /// Seconds between keepalives when idle, if any.
    pub persistent_keepalive: Option<u16>,
    /// Where to send until the peer is heard from elsewhere. Configured
    /// endpoints are always direct; relayed paths come from ICE ([`crate::Engine::set_path`]).
    pub endpoint: Option<SocketAddr>,
    /// Networks the peer may send from, and that are routed to it.
    pub allowed_ips: Vec<IpNet>,
}

impl std::fmt::Debug for PeerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConfig")
            .field("public_key", &crate::short_key(&self.public_key))
            .field("preshared_key", &self.preshared_key.map(|_| "<redacted>"))
            .field("persistent_keepalive", &self.persistent_keepalive)
            .field("endpoint", &self.endpoint)
            .field("allowed_ips", &self.allowed_ips)
            .finish()
    }
}

/// A peer as the packet threads see it.
///
/// Both packet directions lock `state` for the few microseconds of one
/// encapsulate or decapsulate; boringtun's `Tunn` needs `&mut` for both.
pub struct Peer {
    /// The peer's static public key.
    pub public_key: [u8; 32],
    /// Slot in the peer table; also the top 24 bits of every receiver index we issue.
    pub(crate) slot: u32,
    pub(crate) state: Mutex<PeerState>,
    /// Decrypted packets dropped because their source is not in this peer's allowed IPs.
    pub(crate) dropped_source: AtomicU64,
    /// As configured, for `wg showconf` and for telling whether a change
    /// needs a new `Tunn` (boringtun fixes both at creation).
    pub(crate) preshared_key: Option<[u8; 32]>,
    /// As configured (0 and `None` both mean off).
    pub(crate) keepalive: Option<u16>,
    /// Whether the peer has a persistent keepalive: it gets one when the
    /// interface comes up ([`crate::Engine::send_keepalives`]).
    pub(crate) persistent_keepalive: bool,
}

pub(crate) struct PeerState {
    pub(crate) tunn: Tunn,
    pub(crate) endpoint: Option<Endpoint>,
    /// Packets handed to WireGuard for the peer (sealed, or queued for a handshake).
    /// Counted under the lock sealing already holds: no extra atomic per packet.
    pub(crate) tx_packets: u64,
    /// Packets decrypted from the peer (before the allowed-IPs check).
    pub(crate) rx_packets: u64,
}

/// A snapshot of one peer for status output.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerStats {
    /// The peer's static public key.
    pub public_key: [u8; 32],
    /// Where packets for the peer go now.
    pub endpoint: Option<Endpoint>,
    /// Networks routed to the peer.
    pub allowed_ips: Vec<IpNet>,
    /// Time since the last completed handshake, if any.
    pub last_handshake: Option<Duration>,
    /// Plaintext bytes sent to the peer.
    pub tx_bytes: u64,
    /// Plaintext bytes received from the peer.
    pub rx_bytes: u64,
    /// Packets handed to WireGuard for the peer (sealed, or queued for a handshake).
    pub tx_packets: u64,
    /// Packets decrypted from the peer.
    pub rx_packets: u64,
    /// Round-trip time of the last handshake, in milliseconds.
    pub handshake_rtt_ms: Option<u32>,
    /// Packets dropped because their inner source was not in the peer's allowed IPs.
    pub dropped_source_not_allowed: u64,
}

impl Peer {
    pub(crate) fn new(slot: u32, config: &PeerConfig, tunn: Tunn) -> Self {
        Self {
            public_key: config.public_key,
            slot,
            state: Mutex::new(PeerState {
                tunn,
                endpoint: config.endpoint.map(Endpoint::Direct),
                tx_packets: 0,
                rx_packets: 0,
            }),
            dropped_source: AtomicU64::new(0),
            preshared_key: config.preshared_key,
            keepalive: config.persistent_keepalive.filter(|s| *s > 0),
            persistent_keepalive: config.persistent_keepalive.is_some_and(|s| s > 0),
        }
    }

    /// Locks the tunnel state. A poisoned lock means a packet thread panicked
    /// mid-operation; boringtun's state is still consistent between calls, so
    /// keep going rather than take the whole tunnel down.
    #[inline]
    pub(crate) fn lock(&self) -> MutexGuard<'_, PeerState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads the peer's statistics; `allowed_ips` come from the routing
    /// table, which is their one source of truth (a network moves between
    /// peers when another peer is given it).
    pub(crate) fn stats(&self, allowed_ips: Vec<IpNet>) -> PeerStats {
        let state = self.lock();
        let (last_handshake, tx_bytes, rx_bytes, _loss, rtt) = state.tunn.stats();
        PeerStats {
            public_key: self.public_key,
            endpoint: state.endpoint,
            allowed_ips,
            last_handshake,
            tx_bytes: tx_bytes as u64,
            rx_bytes: rx_bytes as u64,
            tx_packets: state.tx_packets,
            rx_packets: state.rx_packets,
            handshake_rtt_ms: rtt,
            dropped_source_not_allowed: self.dropped_source.load(Ordering::Relaxed),
        }
    }
}
