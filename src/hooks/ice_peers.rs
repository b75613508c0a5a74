//! `connected`, `disconnected` and `path_changed` for peers the ICE controller drives.
//!
//! Connected means the controller says the peer has a working path: its session state is
//! `Connected` or `Completed` in `Controller::status` (a nominated candidate pair that
//! passed its checks and keeps passing consent checks). That is ICE's view: the WireGuard
//! handshake over the path follows within a round trip. `path_changed` is each
//! `ControllerEvent::PathChanged` whose target differs from the last one, the first
//! nomination included.

use std::collections::{BTreeMap, HashMap};

use wice_core::ice::PeerIceStatus;
use wice_core::keys::PublicKey;
use wice_core::session::SessionState;
use wice_core::wire::Endpoint;

use super::{Connectivity, EventKind, Hooks};

/// The ICE peers' last seen state: one entry per peer in the controller.
#[derive(Debug, Default)]
pub struct IcePeerWatch {
    connectivity: Connectivity,
    paths: HashMap<PublicKey, (Endpoint, &'static str)>,
}

impl IcePeerWatch {
    /// The controller moved `peer`'s traffic to `target` (`kind`: `host`, `srflx`, ...).
    pub fn handle_path_changed(
        &mut self,
        peer: PublicKey,
        target: Endpoint,
        kind: &'static str,
        hooks: &Hooks,
    ) {
        let before = self.paths.insert(peer, (target, kind));
        if before.is_some_and(|(old, _)| old == target) {
            return;
        }
        let mut event = hooks.event(EventKind::PathChanged, &peer);
        event.endpoint = Some(target.destination().to_string());
        event.path = Some(kind.to_owned());
        hooks.fire(event);
    }

    /// The controller's status after an input: fires the connectivity edges and forgets
    /// peers it no longer has.
    pub fn handle_status(&mut self, status: &BTreeMap<PublicKey, PeerIceStatus>, hooks: &Hooks) {
        for (peer, ice) in status {
            let connected = matches!(ice.state, SessionState::Connected | SessionState::Completed);
            let Some(kind) = self.connectivity.observe(*peer, connected) else {
                continue;
            };
            let mut event = hooks.event(kind, peer);
            if kind == EventKind::Connected
                && let Some((target, path)) = self.paths.get(peer)
            {
                event.endpoint = Some(target.destination().to_string());
                event.path = Some((*path).to_owned());
            }
            hooks.fire(event);
        }
        self.connectivity.retain(|peer| status.contains_key(peer));
        self.paths.retain(|peer, _| status.contains_key(peer));
    }
}
