//! The packet engine without its I/O: the peer table, cryptokey routing and
//! WireGuard state. The threads in `device` feed it packets; benchmarks and
//! tests feed it from memory.
//!
//! The per-packet stages live in `tx` (TUN → network) and `rx` (network → TUN).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};

use crate::allowed_ips::AllowedIps;
use crate::counters::DropCounters;
use crate::peer::{Peer, PeerConfig, PeerStats};

/// Handshakes per second before the device answers with cookies instead
/// (WireGuard §5.3, DoS mitigation). Same figure as boringtun's device.
const HANDSHAKE_RATE_LIMIT: u64 = 100;

/// Largest peer slot: receiver indices carry the slot in their top 24 bits.
const MAX_PEERS: usize = 1 << 24;

/// Why a peer could not be added.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerTableError {
    /// The key is already in the table.
    #[error("peer is already configured")]
    DuplicatePeer,
    /// The key is the device's own.
    #[error("a peer cannot have the device's own public key")]
    OwnKey,
    /// No slot left.
    #[error("too many peers (limit {MAX_PEERS})")]
    Full,
}

/// Peers by slot and by key, and the allowed-IPs routing table.
#[derive(Default)]
pub struct PeerTable {
    slots: Vec<Option<Arc<Peer>>>,
    by_key: HashMap<[u8; 32], u32>,
    pub(crate) allowed_ips: AllowedIps<u32>,
}

impl PeerTable {
    #[inline]
    pub(crate) fn by_slot(&self, slot: u32) -> Option<&Arc<Peer>> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }

    pub(crate) fn by_key(&self, key: &[u8; 32]) -> Option<&Arc<Peer>> {
        self.by_key.get(key).and_then(|slot| self.by_slot(*slot))
    }

    /// Every peer, in slot order.
    pub fn peers(&self) -> impl Iterator<Item = &Arc<Peer>> {
        self.slots.iter().flatten()
    }
}

/// The device's identity, peers and drop counters.
pub struct Engine {
    private_key: StaticSecret,
    public_key: PublicKey,
    rate_limiter: Arc<RateLimiter>,
    table: RwLock<PeerTable>,
    /// Why packets were dropped.
    pub drops: DropCounters,
}

impl Engine {
    /// An engine with no peers.
    pub fn new(private_key: [u8; 32]) -> Self {
        let private_key = StaticSecret::from(private_key);
        let public_key = PublicKey::from(&private_key);
        Self {
            rate_limiter: Arc::new(RateLimiter::new(&public_key, HANDSHAKE_RATE_LIMIT)),
            private_key,
            public_key,
            table: RwLock::new(PeerTable::default()),
            drops: DropCounters::default(),
        }
    }

    /// The device's public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key.to_bytes()
    }

    pub(crate) fn keys(&self) -> (&StaticSecret, &PublicKey) {
        (&self.private_key, &self.public_key)
    }

    pub(crate) fn rate_limiter(&self) -> &RateLimiter {
        &self.rate_limiter
    }

    /// Read access to the peer table. The packet threads take it once per batch.
    pub fn table(&self) -> RwLockReadGuard<'_, PeerTable> {
        self.table
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn table_mut(&self) -> RwLockWriteGuard<'_, PeerTable> {
        self.table
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a peer and routes its allowed IPs to it.
    pub fn add_peer(&self, config: &PeerConfig) -> Result<(), PeerTableError> {
        if config.public_key == self.public_key.to_bytes() {
            return Err(PeerTableError::OwnKey);
        }
        let mut table = self.table_mut();
        if table.by_key.contains_key(&config.public_key) {
            return Err(PeerTableError::DuplicatePeer);
        }
        let slot = match table.slots.iter().position(Option::is_none) {
            Some(free) => free,
            None if table.slots.len() < MAX_PEERS => {
                table.slots.push(None);
                table.slots.len() - 1
            }
            None => return Err(PeerTableError::Full),
        };
        let slot = u32::try_from(slot).map_err(|_| PeerTableError::Full)?;
        let tunn = Tunn::new(
            self.private_key.clone(),
            PublicKey::from(config.public_key),
            config.preshared_key,
            config.persistent_keepalive.filter(|s| *s > 0),
            slot,
            Some(Arc::clone(&self.rate_limiter)),
        );
        table.slots[slot as usize] = Some(Arc::new(Peer::new(slot, config, tunn)));
        table.by_key.insert(config.public_key, slot);
        for net in &config.allowed_ips {
            table.allowed_ips.insert(*net, slot);
        }
        Ok(())
    }

    /// Removes a peer and its routes. Returns whether it was there.
    pub fn remove_peer(&self, public_key: &[u8; 32]) -> bool {
        let mut table = self.table_mut();
        let Some(slot) = table.by_key.remove(public_key) else {
            return false;
        };
        table.allowed_ips.remove_value(&slot);
        table.slots[slot as usize] = None;
        true
    }

    /// Points a peer's traffic at `endpoint` (a path chosen by ICE, or configuration).
    /// The WireGuard session is kept: only the destination of the next datagram changes.
    pub fn set_endpoint(&self, public_key: &[u8; 32], endpoint: SocketAddr) -> bool {
        let table = self.table();
        match table.by_key(public_key) {
            Some(peer) => {
                peer.lock().endpoint = Some(endpoint);
                true
            }
            None => false,
        }
    }

    /// Statistics for every peer, in slot order.
    pub fn peer_stats(&self) -> Vec<PeerStats> {
        self.table().peers().map(|peer| peer.stats()).collect()
    }

    /// Runs WireGuard's timers for every peer: handshake retries, rekeys,
    /// keepalives. Call about every 250 ms. `send` gets each datagram to transmit.
    pub fn update_timers(&self, scratch: &mut [u8], mut send: impl FnMut(SocketAddr, &[u8])) {
        let table = self.table();
        for peer in table.peers() {
            let mut state = peer.lock();
            let endpoint = state.endpoint;
            match state.tunn.update_timers(scratch) {
                TunnResult::WriteToNetwork(datagram) => {
                    drop(state);
                    match endpoint {
                        Some(to) => send(to, datagram),
                        None => DropCounters::bump(&self.drops.no_endpoint),
                    }
                }
                TunnResult::Err(err) => {
                    // ConnectionExpired is routine: the session aged out while idle.
                    tracing::trace!(peer = %crate::short_key(&peer.public_key), ?err, "timer");
                }
                TunnResult::Done
                | TunnResult::WriteToTunnelV4(..)
                | TunnResult::WriteToTunnelV6(..) => {}
            }
        }
    }

    /// Resets the handshake rate limiter's count. Call once per second.
    pub fn reset_rate_limiter(&self) {
        self.rate_limiter.reset_count();
    }
}
