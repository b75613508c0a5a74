//! Peers and servers that change while the node runs: a reloaded config, a community member
//! joining or leaving. Each change touches only what it names: the other sessions keep their
//! credentials, their nominated paths and their relay channels.

use std::net::SocketAddr;
use std::time::Instant;

use ipnet::IpNet;

use super::{Controller, ControllerEvent, PeerEntry, TurnServer};
use crate::ice::reflexive::ReflexiveProbe;
use crate::ice::relay::Relay;
use crate::ice::remote_filter::RemoteFilter;
use crate::keys::PublicKey;
use crate::session::Session;

impl Controller {
    /// Starts an ICE session with `peer`, as if it had been configured from the start: it
    /// gathers, offers and checks like the others. False when `peer` has one already or is
    /// this node.
    pub fn add_peer(&mut self, now: Instant, peer: PublicKey) -> bool {
        if peer == self.local || self.peers.contains_key(&peer) {
            return false;
        }
        let session = Session::new(self.local, peer, self.random.session(), now);
        self.peers.insert(peer, PeerEntry::new(session));
        self.touch(peer);
        self.process(now);
        true
    }

    /// Ends the session with `peer`: its offers are no longer accepted (they count as
    /// `unknown_sender`), its credentials stop matching checks, offers still queued for it
    /// are dropped, and the relays give up the permissions and channels only it wanted.
    /// False when `peer` had no session.
    pub fn remove_peer(&mut self, now: Instant, peer: &PublicKey) -> bool {
        if self.peers.remove(peer).is_none() {
            return false;
        }
        self.routing.forget(peer);
        self.offers.retain(|(to, _)| to != peer);
        self.events
            .retain(|ControllerEvent::PathChanged { peer: to, .. }| to != peer);
        self.sync_relays(now);
        self.process(now);
        true
    }

    /// The mesh's own prefixes changed (peers came or went): remote candidates inside them
    /// are refused from now on.
    pub fn set_mesh_prefixes(&mut self, mesh: Vec<IpNet>) {
        self.filter = RemoteFilter::new(mesh);
    }

    /// The configured STUN and TURN servers changed. Servers still listed keep their probe
    /// and their allocation; new ones are asked; a removed (or re-credentialed) TURN server's
    /// relay is dropped, and sessions whose nominated path went through it start over (the
    /// peer follows by the restart rule). Other sessions keep their path and offer the new
    /// candidates from their next session on, as with [`Controller::handle_addresses`].
    ///
    /// A dropped allocation is not deleted on the server: it lapses there within its
    /// lifetime (RFC 8656 §3.9, 10 min by default).
    ///
    /// Returns whether anything changed; the caller then hands the datapath the new
    /// [`Controller::relay_servers`].
    pub fn handle_servers(
        &mut self,
        now: Instant,
        stun: Vec<SocketAddr>,
        turn: Vec<TurnServer>,
    ) -> bool {
        if stun == self.stun && turn == self.turn {
            return false;
        }
        if self.candidate_types.srflx {
            let mut servers = stun.clone();
            servers.extend(turn.iter().map(|t| t.address));
            servers.dedup();
            self.probes
                .retain(|probe| servers.contains(&probe.server()));
            for server in servers {
                if !self.probes.iter().any(|probe| probe.server() == server) {
                    let transaction = self.transaction_ids.next_id();
                    self.probes
                        .push(ReflexiveProbe::new(server, now, transaction));
                }
            }
        }
        if self.candidate_types.relay {
            let old = &self.turn;
            let still_configured = |relay: &Relay| {
                turn.iter().any(|t| {
                    t.address == relay.server()
                        && old.iter().any(|o| {
                            o.address == t.address
                                && o.username == t.username
                                && o.credential == t.credential
                        })
                })
            };
            let lost: Vec<SocketAddr> = self
                .relays
                .iter()
                .filter(|relay| !still_configured(relay))
                .filter_map(Relay::relayed)
                .collect();
            self.relays.retain(|relay| still_configured(relay));
            for t in &turn {
                if !self.relays.iter().any(|relay| relay.server() == t.address) {
                    self.relays.push(Relay::new(
                        t.local,
                        t.address,
                        &t.username,
                        t.credential.expose(),
                        now,
                    ));
                }
            }
            for (key, entry) in &mut self.peers {
                if entry
                    .nominated
                    .is_some_and(|n| lost.contains(&n.path.local))
                {
                    tracing::info!(peer = %key, "path's relay is no longer configured; new ICE session");
                    entry.nominated = None;
                    entry.session.restart(now);
                }
            }
            self.sync_relays(now);
        }
        self.touch_all();
        tracing::info!(?stun, turn = ?turn.iter().map(|t| t.address).collect::<Vec<_>>(), "ICE servers changed");
        self.stun = stun;
        self.turn = turn;
        self.process(now);
        true
    }
}
