//! What follows a change in the node's peers besides the datapath: the hosts file block and
//! the `added` / `removed` hooks. Whatever reconciles the peer set (start, reload, the
//! community) hands the [`PeerSetEvent`]s and the wanted peers to
//! [`PeerEvents::handle_peer_set`]; shutdown calls [`PeerEvents::close`].

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use ipnet::IpNet;
use wice_core::keys::PublicKey;
use wice_core::log_limit::LogLimit;
use wice_datapath::Engine;

use crate::config::{Config, PeerConfig};
use crate::hooks::{EventKind, HookRunner, Hooks, STATIC_PEER_POLL, StaticPeerWatch};
use crate::hosts_file::{self, HostEntry, HostsFile, WriteMethod};

use super::ice_driver::SharedSnapshot;
use super::peer_set::PeerSetEvent;

/// Shared by the start, the reloader and shutdown.
pub(super) type SharedPeerEvents = Arc<Mutex<PeerEvents>>;

/// Locks it (a panic elsewhere does not stop names and hooks).
pub(super) fn lock(events: &SharedPeerEvents) -> MutexGuard<'_, PeerEvents> {
    events.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A peer as the hosts file and the hooks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PeerFacts {
    pub(super) key: PublicKey,
    pub(super) name: Option<String>,
    pub(super) allowed_ips: Vec<IpNet>,
}

/// The hosts file block and the hooks of one interface.
pub(super) struct PeerEvents {
    hooks: Hooks,
    hosts: Option<HostsFile>,
    peers: BTreeMap<PublicKey, PeerFacts>,
    /// Hosts-file failures are logged at most this often (a read-only /etc, say).
    hosts_log: LogLimit,
}

impl PeerEvents {
    /// Starts the hook runner and takes over the hosts file block, removing what a crashed
    /// run of this interface left there (in the configured file, or in /etc/hosts when
    /// names are off now).
    pub(super) fn start(config: &Config) -> (Self, HookRunner) {
        let interface = &config.interface.name;
        let (hooks, runner) = Hooks::start(interface, config.hooks.clone());
        let hosts = config
            .hosts
            .as_ref()
            .map(|hosts| HostsFile::new(&hosts.path, interface, hosts.domain.as_deref()));
        let mut events = Self {
            hooks,
            hosts,
            peers: BTreeMap::new(),
            hosts_log: LogLimit::per_second(1),
        };
        let leftover = match &events.hosts {
            Some(hosts) => hosts.clone(),
            None => HostsFile::new(hosts_file::DEFAULT_PATH, interface, None),
        };
        match leftover.remove() {
            Ok(WriteMethod::Unchanged) => {}
            Ok(_) => tracing::warn!(
                file = %leftover.path().display(),
                "removed the hosts file block a crashed wice left behind"
            ),
            Err(error) => events.log_hosts_error(&error),
        }
        (events, runner)
    }

    /// The hooks, for the ICE driver and the static-peer watch.
    pub(super) fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    /// A reconcile of the peer set happened: `added` and `removed` hooks for its events, and
    /// the hosts file block rewritten from `desired` (names and allowed IPs may change
    /// without an event: a rename is not a datapath change). Peers the datapath refused
    /// (in `desired`, never added) are left out.
    pub(super) fn handle_peer_set(&mut self, events: &[PeerSetEvent], desired: &[PeerConfig]) {
        let wanted: BTreeMap<PublicKey, &PeerConfig> =
            desired.iter().map(|peer| (peer.public_key, peer)).collect();
        for event in events {
            match *event {
                PeerSetEvent::Added(key) => {
                    let allowed_ips = wanted.get(&key).map(|peer| peer.allowed_ips.clone());
                    self.fire(EventKind::Added, key, allowed_ips.as_deref().unwrap_or(&[]));
                    self.peers
                        .insert(key, facts(wanted.get(&key).copied(), key));
                }
                PeerSetEvent::Removed(key) => {
                    if let Some(peer) = self.peers.remove(&key) {
                        self.fire(EventKind::Removed, key, &peer.allowed_ips);
                    }
                }
                PeerSetEvent::Updated(_) => {}
            }
        }
        for (key, peer) in &mut self.peers {
            if let Some(wanted) = wanted.get(key) {
                *peer = facts(Some(wanted), *key);
            }
        }
        self.write_hosts();
    }

    /// Shutdown: `removed` for every peer, the block taken out, and the hooks closed (the
    /// runner then ends once the queue is empty).
    pub(super) fn close(&mut self) {
        for (key, peer) in std::mem::take(&mut self.peers) {
            self.fire(EventKind::Removed, key, &peer.allowed_ips);
        }
        self.remove_hosts();
        self.hooks = Hooks::disabled(self.hooks.interface());
    }

    fn fire(&self, kind: EventKind, key: PublicKey, allowed_ips: &[IpNet]) {
        let mut event = self.hooks.event(kind, &key);
        event.allowed_ips = Some(allowed_ips.iter().map(ToString::to_string).collect());
        self.hooks.fire(event);
    }

    /// Takes the block out (also on a failed start).
    pub(super) fn remove_hosts(&mut self) {
        if let Some(hosts) = self.hosts.take()
            && let Err(error) = hosts.remove()
        {
            self.log_hosts_error(&error);
        }
    }

    fn write_hosts(&mut self) {
        let Some(hosts) = &self.hosts else { return };
        let entries: Vec<HostEntry> = self
            .peers
            .values()
            .filter_map(|peer| {
                Some(HostEntry {
                    name: peer.name.clone()?,
                    addresses: hosts_file::tunnel_addresses(&peer.allowed_ips),
                })
            })
            .collect();
        match hosts.write(&entries) {
            Ok((method, omitted)) => {
                if method == WriteMethod::InPlace {
                    tracing::info!(
                        file = %hosts.path().display(),
                        "hosts file rewritten in place: it cannot be replaced (a bind mount?)"
                    );
                }
                if !omitted.is_empty() {
                    tracing::warn!(?omitted, "peer names left out of the hosts file");
                }
            }
            Err(error) => self.log_hosts_error(&error),
        }
    }

    fn log_hosts_error(&mut self, error: &hosts_file::HostsFileError) {
        if let Some(suppressed) = self.hosts_log.allow(Instant::now()) {
            tracing::warn!(%error, suppressed, "hosts file not updated");
        }
    }
}

impl Drop for PeerEvents {
    fn drop(&mut self) {
        self.remove_hosts();
    }
}

/// What the hosts file and hooks keep of a peer.
fn facts(peer: Option<&PeerConfig>, key: PublicKey) -> PeerFacts {
    PeerFacts {
        key,
        name: peer.and_then(|peer| peer.name.clone()),
        allowed_ips: peer
            .map(|peer| peer.allowed_ips.clone())
            .unwrap_or_default(),
    }
}

/// Watches the peers ICE does not drive (neither in `ice_peers` nor in the ICE snapshot),
/// once a second, for their hooks; only runs when a hook is configured.
pub(super) fn watch_static_peers(
    engine: Arc<Engine>,
    ice_peers: HashSet<PublicKey>,
    snapshot: SharedSnapshot,
    hooks: Hooks,
) -> Option<tokio::task::JoinHandle<()>> {
    if !hooks.enabled() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut watch = StaticPeerWatch::default();
        let mut tick = tokio::time::interval(STATIC_PEER_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let mut stats = engine.peer_stats();
            {
                let ice = snapshot.lock().unwrap_or_else(PoisonError::into_inner);
                stats.retain(|peer| {
                    let key = PublicKey::from_bytes(peer.public_key);
                    !ice_peers.contains(&key) && !ice.peers.contains_key(&key)
                });
            }
            watch.handle_stats(&stats, &hooks);
        }
    }))
}
