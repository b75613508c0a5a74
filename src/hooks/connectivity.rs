//! Turns "is this peer connected now?" observations into `connected` / `disconnected` edges.
//!
//! Sans-IO: callers say what they see; the tracker remembers the last answer per peer and
//! reports only changes. A peer starts disconnected, so its first working path is one
//! `connected` and a peer that never connects fires nothing. Its state is one entry per peer
//! the caller observes, dropped with [`Connectivity::forget`] when the peer goes.

use std::collections::HashMap;

use wice_core::keys::PublicKey;

use super::EventKind;

/// Last known state per peer.
#[derive(Debug, Default)]
pub struct Connectivity {
    connected: HashMap<PublicKey, bool>,
}

impl Connectivity {
    /// Records whether `peer` has a working path now; returns the edge, if this is one.
    pub fn observe(&mut self, peer: PublicKey, connected: bool) -> Option<EventKind> {
        let before = self.connected.insert(peer, connected).unwrap_or(false);
        match (before, connected) {
            (false, true) => Some(EventKind::Connected),
            (true, false) => Some(EventKind::Disconnected),
            _ => None,
        }
    }

    /// Forgets peers for which `keep` is false (removed from the interface): no event, the
    /// `removed` event says it.
    pub fn retain(&mut self, mut keep: impl FnMut(&PublicKey) -> bool) {
        self.connected.retain(|peer, _| keep(peer));
    }

    /// Forgets one peer.
    pub fn forget(&mut self, peer: &PublicKey) {
        self.connected.remove(peer);
    }
}
