//! `connected`, `disconnected` and `path_changed` for peers without ICE (a configured
//! endpoint, or one learnt from the peer's authenticated packets): connected means a
//! WireGuard handshake in the last 180 s, as `wice status` says; the path changes when the
//! datapath's endpoint for the peer moves (it moves only on proof, see the datapath).

use std::collections::HashMap;
use std::time::Duration;

use wice_core::keys::PublicKey;
use wice_datapath::{Endpoint, PeerStats};

use super::{Connectivity, EventKind, Hooks};
use crate::status::SESSION_LIFETIME;

/// How often the datapath's peer table is read for these events: a lock and a copy of the
/// table, once a second.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The static peers' last seen state.
#[derive(Debug, Default)]
pub struct StaticPeerWatch {
    connectivity: Connectivity,
    endpoints: HashMap<PublicKey, Endpoint>,
}

impl StaticPeerWatch {
    /// Compares `stats` (the datapath's peers, minus those ICE drives) with the last call and
    /// fires what changed. Peers missing from `stats` are forgotten.
    pub fn handle_stats(&mut self, stats: &[PeerStats], hooks: &Hooks) {
        for peer in stats {
            let key = PublicKey::from_bytes(peer.public_key);
            let connected = peer
                .last_handshake
                .is_some_and(|age| age < SESSION_LIFETIME);
            let moved = match peer.endpoint {
                Some(endpoint) => self
                    .endpoints
                    .insert(key, endpoint)
                    .is_some_and(|before| before != endpoint),
                None => false,
            };
            let edge = self.connectivity.observe(key, connected);
            for kind in edge
                .into_iter()
                .chain(moved.then_some(EventKind::PathChanged))
            {
                if kind == EventKind::Disconnected {
                    hooks.fire(hooks.event(kind, &key));
                    continue;
                }
                let mut event = hooks.event(kind, &key);
                event.endpoint = peer.endpoint.map(|e| e.destination().to_string());
                event.path = Some("static".to_owned());
                hooks.fire(event);
            }
        }
        let present: Vec<PublicKey> = stats
            .iter()
            .map(|peer| PublicKey::from_bytes(peer.public_key))
            .collect();
        self.connectivity.retain(|key| present.contains(key));
        self.endpoints.retain(|key, _| present.contains(key));
    }
}
