//! Answering UAPI requests against a running device: `get=1` reads the
//! engine, `set=1` changes it.
//!
//! A `set=1` is checked whole against the interface's [`Policy`] before any of
//! it applies. Peers wice finds through ICE belong to its own configuration:
//! `wg` shows them (their endpoint is the path ICE picked; a relayed one
//! shows its TURN server) but a request that names one is refused with
//! `EPERM`, and `replace_peers` leaves them alone.
//!
//! `replace_peers=true` (what `wg setconf` sends) removes the peers the
//! request does not name and updates the others in place, so a peer that
//! stays keeps its session. (wireguard-go removes them all and re-adds.)

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::PoisonError;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use rand_core::{OsRng, RngCore};
use wice_datapath::{Device, Engine, PeerConfig, PeerTableError};

use super::protocol::{
    DeviceState, PeerChange, PeerState, Request, SetRequest, UapiError, parse_request,
    write_get_response, write_status,
};

/// What the UAPI reaches of a device; a trait so the handler is tested
/// without a TUN device.
pub trait UapiDevice: Send + Sync {
    /// Peers, keys, counters.
    fn engine(&self) -> &Engine;
    /// The bound UDP port.
    fn listen_port(&self) -> u16;
    /// Moves the UDP socket; returns the bound port.
    fn set_listen_port(&self, port: u16) -> io::Result<u16>;
    /// `SO_MARK` of the socket (0: none).
    fn fwmark(&self) -> u32;
    /// Sets `SO_MARK`.
    fn set_fwmark(&self, mark: u32) -> io::Result<()>;
}

impl UapiDevice for Device {
    fn engine(&self) -> &Engine {
        Device::engine(self)
    }
    fn listen_port(&self) -> u16 {
        Device::listen_port(self)
    }
    fn set_listen_port(&self, port: u16) -> io::Result<u16> {
        Device::set_listen_port(self, port)
    }
    fn fwmark(&self) -> u32 {
        Device::fwmark(self)
    }
    fn set_fwmark(&self, mark: u32) -> io::Result<()> {
        Device::set_fwmark(self, mark)
    }
}

/// The peers wice manages itself (found through ICE), shared with the daemon, which
/// replaces the set when a reload or the community changes its peers.
#[derive(Debug, Clone, Default)]
pub struct ManagedPeers(Arc<RwLock<HashSet<[u8; 32]>>>);

impl ManagedPeers {
    /// A set holding `keys`.
    pub fn new(keys: impl IntoIterator<Item = [u8; 32]>) -> Self {
        Self(Arc::new(RwLock::new(keys.into_iter().collect())))
    }

    /// Whether wice manages `key`.
    pub fn contains(&self, key: &[u8; 32]) -> bool {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(key)
    }

    /// Makes the set `keys`.
    pub fn replace(&self, keys: impl IntoIterator<Item = [u8; 32]>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = keys.into_iter().collect();
    }
}

/// What `wg` may change on this interface.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Peers wice manages itself (found through ICE): shown, never changed.
    pub managed_peers: ManagedPeers,
    /// The private key and listen port are wice's (signaling and ICE use
    /// them): a request may repeat them but not change them.
    pub fixed_identity: bool,
}

/// Answers UAPI requests for one device.
pub struct Handler<D> {
    device: D,
    policy: Policy,
    /// Whether a private key was given (`wice up`'s config, or `wg set`); an
    /// interface made by `wice wireguard` has a placeholder until then and
    /// reports none, as wireguard-go does.
    has_private_key: Mutex<bool>,
    /// One `set=1` at a time: each reads the peers, then writes them.
    set_lock: Mutex<()>,
}

impl<D: std::ops::Deref<Target = T> + Send + Sync, T: UapiDevice + ?Sized + 'static> Handler<D> {
    /// A handler for `device`. `has_private_key` is false for an interface
    /// that still waits for `wg set private-key`.
    pub fn new(device: D, policy: Policy, has_private_key: bool) -> Self {
        Self {
            device,
            policy,
            has_private_key: Mutex::new(has_private_key),
            set_lock: Mutex::new(()),
        }
    }

    /// The answer to one request (its text up to, not including, the empty
    /// line that ends it).
    pub fn handle(&self, text: &str) -> String {
        match parse_request(text) {
            Ok(Request::Get) => write_get_response(&self.state()),
            Ok(Request::Set(request)) => write_status(&self.apply(&request)),
            Err(error) => write_status(&Err(error)),
        }
    }

    #[cfg(test)]
    pub(crate) fn engine_for_tests(&self) -> &Engine {
        self.device.engine()
    }

    /// The device as `get=1` reports it.
    pub fn state(&self) -> DeviceState {
        let engine = self.device.engine();
        let has_key = *self
            .has_private_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut stats: HashMap<[u8; 32], _> = engine
            .peer_stats()
            .into_iter()
            .map(|stats| (stats.public_key, stats))
            .collect();
        let now = SystemTime::now();
        let peers = engine
            .peer_configs()
            .into_iter()
            .map(|config| {
                let stats = stats.remove(&config.public_key);
                PeerState {
                    public_key: config.public_key,
                    preshared_key: config.preshared_key,
                    endpoint: config.endpoint,
                    persistent_keepalive: config.persistent_keepalive.unwrap_or(0),
                    last_handshake: stats
                        .as_ref()
                        .and_then(|s| s.last_handshake)
                        .and_then(|age| now.checked_sub(age)),
                    tx_bytes: stats.as_ref().map_or(0, |s| s.tx_bytes),
                    rx_bytes: stats.as_ref().map_or(0, |s| s.rx_bytes),
                    allowed_ips: config.allowed_ips,
                }
            })
            .collect();
        DeviceState {
            private_key: has_key.then(|| engine.private_key()),
            listen_port: self.device.listen_port(),
            fwmark: self.device.fwmark(),
            peers,
        }
    }

    /// Applies a `set=1`: checked against the policy first, then applied in
    /// request order. A device error part-way leaves the changes before it
    /// applied, as in wireguard-go.
    pub fn apply(&self, request: &SetRequest) -> Result<(), UapiError> {
        let _one_at_a_time = self.set_lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.check_policy(request)?;
        let engine = self.device.engine();
        if let Some(key) = request.private_key {
            self.set_private_key(key);
        }
        if let Some(port) = request.listen_port {
            self.device
                .set_listen_port(port)
                .map_err(|error| match error.kind() {
                    io::ErrorKind::AddrInUse => UapiError::PortInUse,
                    _ => UapiError::Io(error.to_string()),
                })?;
        }
        if let Some(mark) = request.fwmark {
            self.device
                .set_fwmark(mark)
                .map_err(|error| UapiError::Io(error.to_string()))?;
        }
        let mut current: HashMap<[u8; 32], PeerConfig> = engine
            .peer_configs()
            .into_iter()
            .map(|config| (config.public_key, config))
            .collect();
        if request.replace_peers {
            let named: HashSet<[u8; 32]> = request.peers.iter().map(|p| p.public_key).collect();
            current.retain(|key, _| {
                let keep = named.contains(key) || self.policy.managed_peers.contains(key);
                if !keep {
                    engine.remove_peer(key);
                }
                keep
            });
        }
        for change in &request.peers {
            apply_peer(engine, &mut current, change)?;
        }
        Ok(())
    }

    fn check_policy(&self, request: &SetRequest) -> Result<(), UapiError> {
        if let Some(peer) = request
            .peers
            .iter()
            .find(|peer| self.policy.managed_peers.contains(&peer.public_key))
        {
            return Err(UapiError::NotPermitted(format!(
                "peer {} is found through ICE and configured by wice",
                wice_datapath::short_key(&peer.public_key)
            )));
        }
        if self.policy.fixed_identity {
            let engine = self.device.engine();
            if request
                .private_key
                .is_some_and(|key| key != engine.private_key())
            {
                return Err(UapiError::NotPermitted("the private key is wice's".into()));
            }
            if request
                .listen_port
                .is_some_and(|port| port != self.device.listen_port())
            {
                return Err(UapiError::NotPermitted("the listen port is wice's".into()));
            }
        }
        Ok(())
    }

    /// An all-zero key clears it: the engine gets a fresh random key that is
    /// never shown, so no peer can complete a handshake until a real one is set.
    fn set_private_key(&self, key: [u8; 32]) {
        let mut has_key = self
            .has_private_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if key == [0; 32] {
            let mut placeholder = [0u8; 32];
            OsRng.fill_bytes(&mut placeholder);
            self.device.engine().set_private_key(placeholder);
            *has_key = false;
        } else {
            self.device.engine().set_private_key(key);
            *has_key = true;
        }
    }
}

/// One peer's part of a `set=1`.
fn apply_peer(
    engine: &Engine,
    current: &mut HashMap<[u8; 32], PeerConfig>,
    change: &PeerChange,
) -> Result<(), UapiError> {
    if change.remove {
        engine.remove_peer(&change.public_key);
        current.remove(&change.public_key);
        return Ok(());
    }
    let existing = current.get(&change.public_key);
    if change.update_only && existing.is_none() {
        return Ok(());
    }
    let mut config = existing.cloned().unwrap_or(PeerConfig {
        public_key: change.public_key,
        preshared_key: None,
        persistent_keepalive: None,
        endpoint: None,
        allowed_ips: Vec::new(),
    });
    // Only a new endpoint moves the peer; the current one is kept otherwise.
    config.endpoint = change.endpoint;
    if let Some(psk) = change.preshared_key {
        config.preshared_key = (psk != [0; 32]).then_some(psk);
    }
    if let Some(interval) = change.persistent_keepalive {
        config.persistent_keepalive = (interval > 0).then_some(interval);
    }
    if change.replace_allowed_ips {
        config.allowed_ips.clear();
    }
    config
        .allowed_ips
        .extend(change.allowed_ips.iter().map(|net| net.trunc()));
    config.allowed_ips.sort_unstable();
    config.allowed_ips.dedup();
    match engine.configure_peer(&config) {
        Ok(()) => {}
        // wireguard-go ignores a peer with the device's own key.
        Err(PeerTableError::OwnKey) => return Ok(()),
        Err(error) => return Err(UapiError::Io(error.to_string())),
    }
    // Other peers may have lost networks to this one: re-read them lazily
    // by dropping the cached allowed IPs of every peer that shared one.
    let taken: HashSet<_> = config.allowed_ips.iter().copied().collect();
    for (key, other) in current.iter_mut() {
        if *key != change.public_key {
            other.allowed_ips.retain(|net| !taken.contains(net));
        }
    }
    current.insert(change.public_key, config);
    Ok(())
}
