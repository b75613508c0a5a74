//! The node's peers while it runs. Whatever asks for a set of peers (the config at start,
//! a reload, the community's members) hands [`PeerSet::reconcile`] the whole set it wants;
//! the difference is applied to the datapath, the routes and the ICE controller, so a peer
//! that did not change keeps its WireGuard session, its ICE session and its path.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use ipnet::IpNet;
use wice_core::ice::{Controller, RemoteFilter};
use wice_core::keys::PublicKey;
use wice_datapath::{Engine, PeerConfig as DatapathPeer};

use crate::config::PeerConfig;
use crate::system;
use crate::uapi::ManagedPeers;

/// What a reconcile did to one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerSetEvent {
    /// A peer the node did not have.
    Added(PublicKey),
    /// A peer no longer wanted: gone from the datapath and from ICE.
    Removed(PublicKey),
    /// A peer whose settings (allowed IPs, keepalive, endpoint, preshared key) changed.
    Updated(PublicKey),
}

/// Routes wice installed on the interface, shared with teardown so a reload's routes are
/// removed on exit too.
pub(crate) type InstalledRoutes = Arc<Mutex<Vec<IpNet>>>;

/// The peers the node has now, and the routes they need.
pub(crate) struct PeerSet {
    interface: String,
    addresses: Vec<IpNet>,
    peers: BTreeMap<PublicKey, PeerConfig>,
    routes: InstalledRoutes,
    /// The ICE peers, as the UAPI (`wg set`) must leave them alone.
    managed: ManagedPeers,
}

impl PeerSet {
    /// An empty set for `interface` with its own `addresses` (their prefixes are routed by
    /// the kernel already, so peers inside them need no route).
    pub(crate) fn new(interface: &str, addresses: &[IpNet], routes: InstalledRoutes) -> Self {
        Self {
            interface: interface.to_owned(),
            addresses: addresses.to_vec(),
            peers: BTreeMap::new(),
            routes,
            managed: ManagedPeers::default(),
        }
    }

    /// The set of ICE peers this peer set keeps current, for the UAPI.
    pub(crate) fn managed_peers(&self) -> ManagedPeers {
        self.managed.clone()
    }

    /// The keys of every peer, for the signaling sender policy.
    pub(crate) fn keys(&self) -> HashSet<PublicKey> {
        self.peers.keys().copied().collect()
    }

    /// Peers that find their path with ICE: those without a configured endpoint.
    pub(crate) fn ice_peers(&self) -> Vec<PublicKey> {
        self.peers
            .values()
            .filter(|peer| peer.endpoint.is_none())
            .map(|peer| peer.public_key)
            .collect()
    }

    /// The mesh's prefixes (our addresses and every allowed IP), which remote candidates
    /// must stay out of.
    pub(crate) fn mesh_prefixes(&self) -> Vec<IpNet> {
        RemoteFilter::mesh_prefixes(
            self.addresses
                .iter()
                .chain(self.peers.values().flat_map(|peer| &peer.allowed_ips)),
        )
    }

    /// Makes the node's peers `desired`: removes the ones not in it first, then updates the
    /// changed and adds the new in key order (an allowed IP moving between two peers ends on
    /// its new owner either way: each peer's prefixes are replaced whole), then installs
    /// missing routes and removes unneeded ones. `ice` is the
    /// controller when the node runs ICE: peers without an endpoint get an ICE session.
    ///
    /// A peer the datapath refuses (the node's own key, the table full) is left out and
    /// logged; the rest still applies.
    pub(crate) fn reconcile(
        &mut self,
        now: Instant,
        desired: &[PeerConfig],
        engine: &Engine,
        mut ice: Option<&mut Controller>,
    ) -> Vec<PeerSetEvent> {
        let wanted: BTreeMap<PublicKey, &PeerConfig> =
            desired.iter().map(|peer| (peer.public_key, peer)).collect();
        let mut events = Vec::new();
        let gone: Vec<PublicKey> = self
            .peers
            .keys()
            .filter(|key| !wanted.contains_key(key))
            .copied()
            .collect();
        for key in gone {
            engine.remove_peer(&key.to_bytes());
            if let Some(controller) = ice.as_deref_mut() {
                controller.remove_peer(now, &key);
            }
            self.peers.remove(&key);
            events.push(PeerSetEvent::Removed(key));
        }
        for (key, peer) in &wanted {
            let before = self.peers.get(key);
            if before.is_some_and(|before| same_settings(before, peer)) {
                continue;
            }
            let applied = match before {
                Some(_) => engine.configure_peer(&datapath_peer(peer)),
                None => engine.add_peer(&datapath_peer(peer)),
            };
            if let Err(error) = applied {
                tracing::warn!(peer = %key, %error, "peer not applied");
                continue;
            }
            let was_ice = before.is_some_and(|before| before.endpoint.is_none());
            if let Some(controller) = ice.as_deref_mut() {
                match (was_ice, peer.endpoint.is_none()) {
                    (false, true) => {
                        controller.add_peer(now, *key);
                    }
                    (true, false) => {
                        controller.remove_peer(now, key);
                    }
                    _ => {}
                }
            }
            events.push(match before {
                Some(_) => PeerSetEvent::Updated(*key),
                None => PeerSetEvent::Added(*key),
            });
            self.peers.insert(*key, (*peer).clone());
        }
        if let Some(controller) = ice {
            controller.set_mesh_prefixes(self.mesh_prefixes());
        }
        self.sync_routes();
        self.managed
            .replace(self.ice_peers().iter().map(PublicKey::to_bytes));
        events
    }

    /// Installs the routes the peers need and removes the ones they no longer do.
    fn sync_routes(&self) {
        let needed = system::routes_needed(
            &self.addresses,
            self.peers.values().flat_map(|peer| &peer.allowed_ips),
        );
        let mut installed = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let stale: Vec<IpNet> = installed
            .iter()
            .filter(|route| !needed.contains(route))
            .copied()
            .collect();
        system::remove_routes(&self.interface, &stale);
        installed.retain(|route| needed.contains(route));
        let missing: Vec<IpNet> = needed
            .iter()
            .filter(|route| !installed.contains(route))
            .copied()
            .collect();
        installed.extend(system::add_routes(&self.interface, &missing));
    }
}

/// Whether two entries for one peer would configure it the same way.
fn same_settings(a: &PeerConfig, b: &PeerConfig) -> bool {
    let mut a_ips = a.allowed_ips.clone();
    let mut b_ips = b.allowed_ips.clone();
    a_ips.sort_unstable();
    b_ips.sort_unstable();
    a_ips == b_ips
        && a.endpoint == b.endpoint
        && a.persistent_keepalive == b.persistent_keepalive
        && a.preshared_key.as_ref().map(|k| k.to_bytes())
            == b.preshared_key.as_ref().map(|k| k.to_bytes())
}

fn datapath_peer(peer: &PeerConfig) -> DatapathPeer {
    DatapathPeer {
        public_key: peer.public_key.to_bytes(),
        preshared_key: peer.preshared_key.as_ref().map(|k| k.to_bytes()),
        persistent_keepalive: peer.persistent_keepalive,
        endpoint: peer.endpoint,
        allowed_ips: peer.allowed_ips.clone(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use wice_core::keys::PrivateKey;

    fn key(n: u8) -> PublicKey {
        PrivateKey::from_bytes([n; 32]).public_key()
    }

    /// A peer inside the interface's own prefix, so no route (and no `ip` call) is needed.
    fn peer(n: u8, endpoint: Option<&str>) -> PeerConfig {
        PeerConfig {
            public_key: key(n),
            allowed_ips: vec![format!("10.77.0.{n}/32").parse().unwrap()],
            endpoint: endpoint.map(|e| e.parse().unwrap()),
            persistent_keepalive: None,
            preshared_key: None,
            name: None,
        }
    }

    fn same_events(got: &[PeerSetEvent], want: &[PeerSetEvent]) {
        assert_eq!(got.len(), want.len(), "{got:?}");
        assert!(want.iter().all(|e| got.contains(e)), "{got:?}");
    }

    #[test]
    fn only_the_difference_is_applied_and_ice_peers_are_tracked_for_the_uapi() {
        let engine = Engine::new([1; 32]);
        let addresses = ["10.77.0.1/24".parse().unwrap()];
        let mut set = PeerSet::new("wtest0", &addresses, InstalledRoutes::default());
        let managed = set.managed_peers();
        let now = Instant::now();

        let events = set.reconcile(
            now,
            &[peer(2, None), peer(3, Some("192.0.2.3:51820"))],
            &engine,
            None,
        );
        same_events(
            &events,
            &[PeerSetEvent::Added(key(2)), PeerSetEvent::Added(key(3))],
        );
        assert_eq!(engine.peer_stats().len(), 2);
        assert!(managed.contains(&key(2).to_bytes()) && !managed.contains(&key(3).to_bytes()));

        let mut moved = peer(2, None);
        moved.allowed_ips.push("10.77.0.20/32".parse().unwrap());
        let events = set.reconcile(now, &[moved.clone(), peer(4, None)], &engine, None);
        same_events(
            &events,
            &[
                PeerSetEvent::Removed(key(3)),
                PeerSetEvent::Updated(key(2)),
                PeerSetEvent::Added(key(4)),
            ],
        );
        assert!(managed.contains(&key(4).to_bytes()));
        let stats = engine.peer_stats();
        assert_eq!(stats.len(), 2);
        let two = stats
            .iter()
            .find(|s| s.public_key == key(2).to_bytes())
            .unwrap();
        assert_eq!(two.allowed_ips.len(), 2);

        let again = set.reconcile(now, &[moved, peer(4, None)], &engine, None);
        assert!(
            again.is_empty(),
            "an unchanged set changes nothing: {again:?}"
        );
    }
}
