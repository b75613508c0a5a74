//! The packet engine without its I/O: the peer table, cryptokey routing and
//! WireGuard state. The threads in `device` feed it packets; benchmarks and
//! tests feed it from memory.
//!
//! The per-packet stages live in `tx` (TUN → network) and `rx` (network → TUN).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use boringtun::noise::TunnResult;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::x25519::{PublicKey, StaticSecret};

use crate::allowed_ips::AllowedIps;
use crate::counters::DropCounters;
use crate::endpoint::{CHANNEL_DATA_HEADER_LEN, Endpoint};
use crate::peer::{Peer, PeerConfig, PeerStats};

/// Handshakes per second before the device answers with cookies instead
/// (WireGuard §5.3, DoS mitigation). Same figure as boringtun's device.
const HANDSHAKE_RATE_LIMIT: u64 = 100;

/// Largest peer slot: receiver indices carry the slot in their top 24 bits.
const MAX_PEERS: usize = 1 << 24;

/// A session younger than this needs no handshake when the path changes:
/// WireGuard follows the new endpoint by itself. WireGuard's REKEY_AFTER_TIME;
/// an older session is about to rekey anyway.
const FRESH_SESSION: Duration = Duration::from_secs(120);

/// Scratch space [`Engine::initiate_handshake`] needs: a handshake initiation
/// (148 bytes) behind a ChannelData header.
pub const HANDSHAKE_SCRATCH: usize = CHANNEL_DATA_HEADER_LEN + 148;

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

/// The device's key pair and the rate limiters built from its public key.
/// Lives in the [`PeerTable`] so that a key change (`wg set private-key`)
/// swaps it under the same lock the packet threads take once per batch.
pub(crate) struct Identity {
    pub(crate) private_key: StaticSecret,
    pub(crate) public_key: PublicKey,
    /// The one load check per datagram, in `rx` before any peer is looked up.
    pub(crate) rate_limiter: Arc<RateLimiter>,
    /// What every `Tunn` gets: it checks mac1 again but never reports load.
    /// `Tunn::decapsulate` runs its own limiter; sharing the real one would
    /// count each handshake twice, and the inner count could then answer a
    /// forged initiation with a cookie that looks like a handshake reply.
    pub(crate) tunn_rate_limiter: Arc<RateLimiter>,
}

impl Identity {
    pub(crate) fn new(private_key: [u8; 32]) -> Self {
        let private_key = StaticSecret::from(private_key);
        let public_key = PublicKey::from(&private_key);
        Self {
            rate_limiter: Arc::new(RateLimiter::new(&public_key, HANDSHAKE_RATE_LIMIT)),
            tunn_rate_limiter: Arc::new(RateLimiter::new(&public_key, u64::MAX)),
            private_key,
            public_key,
        }
    }
}

/// Peers by slot and by key, the allowed-IPs routing table, and the TURN
/// servers whose ChannelData the packet threads unwrap.
pub struct PeerTable {
    pub(crate) identity: Identity,
    pub(crate) slots: Vec<Option<Arc<Peer>>>,
    pub(crate) by_key: HashMap<[u8; 32], u32>,
    pub(crate) allowed_ips: AllowedIps<u32>,
    /// A handful at most (one per configured TURN server): a linear scan per
    /// ChannelData datagram beats hashing the address.
    relay_servers: Vec<SocketAddr>,
}

impl PeerTable {
    #[inline]
    pub(crate) fn by_slot(&self, slot: u32) -> Option<&Arc<Peer>> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }

    pub(crate) fn by_key(&self, key: &[u8; 32]) -> Option<&Arc<Peer>> {
        self.by_key.get(key).and_then(|slot| self.by_slot(*slot))
    }

    /// Whether ChannelData from `addr` comes from one of our TURN servers.
    #[inline]
    pub(crate) fn is_relay_server(&self, addr: SocketAddr) -> bool {
        self.relay_servers.contains(&addr)
    }

    /// Every peer, in slot order.
    pub fn peers(&self) -> impl Iterator<Item = &Arc<Peer>> {
        self.slots.iter().flatten()
    }
}

/// The device's identity, peers and drop counters.
pub struct Engine {
    table: RwLock<PeerTable>,
    /// Why packets were dropped.
    pub drops: DropCounters,
}

impl Engine {
    /// An engine with no peers.
    pub fn new(private_key: [u8; 32]) -> Self {
        Self {
            table: RwLock::new(PeerTable {
                identity: Identity::new(private_key),
                slots: Vec::new(),
                by_key: HashMap::new(),
                allowed_ips: AllowedIps::new(),
                relay_servers: Vec::new(),
            }),
            drops: DropCounters::default(),
        }
    }

    /// The device's public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.table().identity.public_key.to_bytes()
    }

    /// Read access to the peer table. The packet threads take it once per batch.
    pub fn table(&self) -> RwLockReadGuard<'_, PeerTable> {
        self.table
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn table_mut(&self) -> RwLockWriteGuard<'_, PeerTable> {
        self.table
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a peer and routes its allowed IPs to it.
    pub fn add_peer(&self, config: &PeerConfig) -> Result<(), PeerTableError> {
        let mut table = self.table_mut();
        if config.public_key == table.identity.public_key.to_bytes() {
            return Err(PeerTableError::OwnKey);
        }
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
        let tunn = table.identity.new_tunn(config, slot);
        table.slots[slot as usize] = Some(Arc::new(Peer::new(slot, config, tunn)));
        table.by_key.insert(config.public_key, slot);
        table
            .allowed_ips
            .insert_many(config.allowed_ips.iter().copied(), slot);
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

    /// Points a peer's traffic straight at `endpoint`; see [`Engine::set_path`].
    pub fn set_endpoint(&self, public_key: &[u8; 32], endpoint: SocketAddr) -> bool {
        self.set_path(public_key, Endpoint::Direct(endpoint))
    }

    /// Points a peer's traffic at `path` (chosen by ICE, or configuration).
    /// The WireGuard session is kept: only the destination (and framing) of
    /// the next datagram changes. Returns whether the peer exists.
    ///
    /// A relayed path's server should be among [`Engine::set_relay_servers`],
    /// or the peer's answers (ChannelData from that server) are dropped.
    pub fn set_path(&self, public_key: &[u8; 32], path: Endpoint) -> bool {
        let path = match path {
            Endpoint::Direct(addr) => Endpoint::Direct(crate::udp::unmap(addr)),
            Endpoint::Relayed { server, channel } => Endpoint::Relayed {
                server: crate::udp::unmap(server),
                channel,
            },
        };
        let table = self.table();
        match table.by_key(public_key) {
            Some(peer) => {
                peer.lock().endpoint = Some(path);
                true
            }
            None => false,
        }
    }

    /// Replaces the set of TURN server addresses whose ChannelData the packet
    /// threads unwrap; ChannelData from any other address is dropped and
    /// counted. The packet threads see the new set from their next batch.
    pub fn set_relay_servers(&self, servers: Vec<SocketAddr>) {
        let mut servers: Vec<SocketAddr> = servers.into_iter().map(crate::udp::unmap).collect();
        servers.sort_unstable();
        servers.dedup();
        self.table_mut().relay_servers = servers;
    }

    /// Sends a handshake initiation to the peer now, if it has a path and no
    /// fresh session: call it when ICE nominates a path, so the first
    /// handshake does not wait for boringtun's 5 s retry (a handshake started
    /// before any path existed went nowhere). A handshake already in flight is
    /// restarted on the current path. `scratch` holds at least
    /// [`HANDSHAKE_SCRATCH`] bytes; `send` gets the wire destination and
    /// datagram, framed for a relayed path. Returns whether one was sent.
    pub fn initiate_handshake(
        &self,
        public_key: &[u8; 32],
        scratch: &mut [u8],
        mut send: impl FnMut(SocketAddr, &[u8]),
    ) -> bool {
        let table = self.table();
        let Some(peer) = table.by_key(public_key) else {
            return false;
        };
        let mut state = peer.lock();
        let Some(endpoint) = state.endpoint else {
            return false;
        };
        if state
            .tunn
            .time_since_last_handshake()
            .is_some_and(|age| age < FRESH_SESSION)
        {
            return false;
        }
        let Some(room) = scratch.get_mut(endpoint.headroom()..) else {
            return false;
        };
        let len = match state.tunn.format_handshake_initiation(room, true) {
            TunnResult::WriteToNetwork(initiation) => initiation.len(),
            TunnResult::Err(err) => {
                tracing::debug!(peer = %crate::short_key(&peer.public_key), ?err, "handshake");
                return false;
            }
            _ => return false,
        };
        drop(state);
        match endpoint.frame(scratch, len) {
            Some(datagram) => {
                send(endpoint.destination(), datagram);
                true
            }
            None => false,
        }
    }

    /// Statistics for every peer, in slot order.
    pub fn peer_stats(&self) -> Vec<PeerStats> {
        let table = self.table();
        let mut allowed: HashMap<u32, Vec<ipnet::IpNet>> = HashMap::new();
        for (net, slot) in table.allowed_ips.iter() {
            allowed.entry(*slot).or_default().push(net);
        }
        table
            .peers()
            .map(|peer| peer.stats(allowed.remove(&peer.slot).unwrap_or_default()))
            .collect()
    }

    /// Runs WireGuard's timers for every peer: handshake retries, rekeys,
    /// keepalives. Call about every 250 ms while peers have traffic (once a
    /// second is within WireGuard's slack when they have none). `send` gets
    /// each datagram's wire destination and bytes (ChannelData-framed for a
    /// relayed peer). `scratch` holds [`crate::MAX_DATAGRAM`] bytes.
    ///
    /// Returns a fingerprint of the peers' traffic (bytes sent and received,
    /// all peers): when it has not changed since the last call, nothing moved.
    pub fn update_timers(
        &self,
        scratch: &mut [u8],
        mut send: impl FnMut(SocketAddr, &[u8]),
    ) -> u64 {
        let table = self.table();
        let mut activity = 0u64;
        for peer in table.peers() {
            let mut state = peer.lock();
            let (_, tx_bytes, rx_bytes, _, _) = state.tunn.stats();
            activity = activity
                .wrapping_add(tx_bytes as u64)
                .wrapping_add(rx_bytes as u64);
            let endpoint = state.endpoint;
            // WireGuard goes behind the headroom a relayed path's header needs.
            let offset = endpoint.map_or(0, Endpoint::headroom);
            match state.tunn.update_timers(&mut scratch[offset..]) {
                TunnResult::WriteToNetwork(datagram) => {
                    let len = datagram.len();
                    drop(state);
                    match endpoint {
                        Some(to) => match to.frame(scratch, len) {
                            Some(framed) => send(to.destination(), framed),
                            None => DropCounters::bump(&self.drops.protocol_error),
                        },
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
        activity
    }

    /// Sends a keepalive to every peer that has a persistent keepalive and an
    /// endpoint (WireGuard does this when the interface comes up). Without a
    /// session, boringtun queues the keepalive and starts a handshake: the
    /// initiation is what goes out. `scratch` holds at least
    /// [`HANDSHAKE_SCRATCH`] bytes; `send` gets the wire destination and
    /// datagram, framed for a relayed path.
    pub fn send_keepalives(&self, scratch: &mut [u8], mut send: impl FnMut(SocketAddr, &[u8])) {
        let table = self.table();
        for peer in table.peers().filter(|peer| peer.persistent_keepalive) {
            let mut state = peer.lock();
            let Some(endpoint) = state.endpoint else {
                continue;
            };
            let Some(room) = scratch.get_mut(endpoint.headroom()..) else {
                return;
            };
            let len = match state.tunn.encapsulate(&[], room) {
                TunnResult::WriteToNetwork(datagram) => datagram.len(),
                _ => continue,
            };
            drop(state);
            match endpoint.frame(scratch, len) {
                Some(datagram) => send(endpoint.destination(), datagram),
                None => DropCounters::bump(&self.drops.protocol_error),
            }
        }
    }

    /// Resets the handshake rate limiter's count. Call once per second.
    pub fn reset_rate_limiter(&self) {
        self.table().identity.rate_limiter.reset_count();
    }
}
