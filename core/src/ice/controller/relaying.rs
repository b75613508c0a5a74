//! The controller's side of TURN: which permissions and channels each relay holds, what a
//! nominated path needs, and what happens when an allocation is lost.
//!
//! Everything here is bounded by what peers signal, never by what reaches our sockets:
//! - a permission for each address of a peer's *current* offer (addresses of older offers
//!   are released, and each peer may hold at most [`PERMISSIONS_PER_PEER`] installed or
//!   expiring at once);
//! - a channel only for the remote of a nominated relayed path, or for an address whose
//!   authenticated check came through our relay (at most [`CHANNELS_PER_PEER`] installed or
//!   expiring per peer), so 4096 channel numbers last;
//! - a relayed address whose allocation is gone leaves every session, and sessions whose
//!   path went through it start over.
//!
//! The channel for a checked address is what keeps the peer's first WireGuard handshake
//! through our relay from arriving in a Data indication (dropped): the checks come first, so
//! the channel is usually bound before the peer's path is nominated (the 5-node natlab mesh
//! failed its relay↔relay pair without it).

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::keys::PublicKey;
use crate::session::Path;
use crate::signaling::message::{CandidateKind, MAX_CANDIDATES};

use super::super::relay::RelayEvent;
use super::status::path_kind;
use super::{Controller, ControllerEvent, Endpoint, Nominated, PathKind};

/// Permissions one peer may have installed or expiring on a relay: two full offers' worth.
pub(crate) const PERMISSIONS_PER_PEER: usize = 2 * MAX_CANDIDATES;
/// Channels one peer may have installed or expiring on a relay.
pub(crate) const CHANNELS_PER_PEER: usize = 8;
/// How long a permission nobody refreshes stays installed on the server (RFC 8656 §9).
const PERMISSION_LINGER: Duration = Duration::from_secs(300);
/// How long a channel nobody refreshes keeps its number: 10 min bound, then 5 min before the
/// number may be bound again (RFC 8656 §12).
const CHANNEL_LINGER: Duration = Duration::from_secs(900);

/// How long an address whose checks reached us through a relay keeps its channel wanted
/// after its last check (consent checks come every 10 s while the pair is in use).
const REACHED_FRESH: Duration = Duration::from_secs(60);

/// Peer addresses whose authenticated checks reached us through a relay, with the time of
/// the last one: they get a channel before any nomination, so the peer's first WireGuard
/// handshake through our relay arrives as ChannelData rather than being dropped. Bounded by
/// [`CHANNELS_PER_PEER`] per configured peer; only a peer holding our ICE password can add.
#[derive(Debug, Default)]
pub(super) struct Reached {
    last_check: HashMap<SocketAddr, Instant>,
}

impl Controller {
    /// An authenticated check from `peer` arrived through a relay.
    pub(super) fn relay_reached_by(&mut self, now: Instant, peer: SocketAddr) {
        let reached = &mut self.relay_reached.last_check;
        let known = reached.contains_key(&peer);
        reached.retain(|_, at| now.duration_since(*at) < CHANNEL_LINGER);
        if !known && reached.len() >= CHANNELS_PER_PEER * self.peers.len() {
            self.counters.channels_refused += 1;
            return;
        }
        reached.insert(peer, now);
        if !known {
            self.sync_relays(now);
        }
    }
}

/// What one peer holds on our relays: each key wanted now (`None`) or released at a time.
#[derive(Debug, Default)]
pub(super) struct RelayUse {
    permissions: HashMap<IpAddr, Option<Instant>>,
    channels: HashMap<SocketAddr, Option<Instant>>,
}

impl RelayUse {
    /// Wants exactly `ips` from now on, within the budget; returns how many were refused.
    fn want_permissions(&mut self, now: Instant, ips: &BTreeSet<IpAddr>) -> u64 {
        want(
            &mut self.permissions,
            ips,
            now,
            PERMISSIONS_PER_PEER,
            PERMISSION_LINGER,
        )
    }

    /// Wants exactly `peers` from now on, within the budget; returns how many were refused.
    fn want_channels(&mut self, now: Instant, peers: &BTreeSet<SocketAddr>) -> u64 {
        want(
            &mut self.channels,
            peers,
            now,
            CHANNELS_PER_PEER,
            CHANNEL_LINGER,
        )
    }

    fn wanted_permissions(&self) -> impl Iterator<Item = IpAddr> + '_ {
        wanted(&self.permissions)
    }

    fn wanted_channels(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        wanted(&self.channels)
    }

    /// Permissions and channels held (wanted or expiring).
    #[cfg(test)]
    pub(super) fn held(&self) -> (usize, usize) {
        (self.permissions.len(), self.channels.len())
    }
}

fn want<K: Copy + Eq + Hash + Ord>(
    held: &mut HashMap<K, Option<Instant>>,
    keys: &BTreeSet<K>,
    now: Instant,
    budget: usize,
    linger: Duration,
) -> u64 {
    for (key, released) in held.iter_mut() {
        if released.is_none() && !keys.contains(key) {
            *released = Some(now);
        }
    }
    held.retain(|_, released| released.is_none_or(|at| now.duration_since(at) < linger));
    let mut refused = 0;
    for key in keys {
        if let Some(released) = held.get_mut(key) {
            *released = None;
        } else if held.len() < budget {
            held.insert(*key, None);
        } else {
            refused += 1;
        }
    }
    refused
}

fn wanted<K: Copy>(held: &HashMap<K, Option<Instant>>) -> impl Iterator<Item = K> + '_ {
    held.iter()
        .filter(|(_, released)| released.is_none())
        .map(|(key, _)| *key)
}

impl Controller {
    /// Recomputes what `peer` wants from the relays (permissions for its current candidates,
    /// a channel for its nominated relayed path) and hands every relay the union.
    pub(super) fn update_relay_use(&mut self, now: Instant, peer: &PublicKey) {
        let relayed: Vec<SocketAddr> = self.relays.iter().filter_map(|r| r.relayed()).collect();
        if let Some(entry) = self.peers.get_mut(peer) {
            let ips: BTreeSet<IpAddr> = entry
                .session
                .remote_candidates()
                .iter()
                .map(|c| c.address.ip())
                .collect();
            let channels: BTreeSet<SocketAddr> = entry
                .nominated
                .filter(|n| relayed.contains(&n.path.local))
                .map(|n| n.path.remote)
                .into_iter()
                .collect();
            self.counters.permissions_refused += entry.relay_use.want_permissions(now, &ips);
            self.counters.channels_refused += entry.relay_use.want_channels(now, &channels);
        }
        self.sync_relays(now);
    }

    /// Gives every relay the union of what the peers want.
    pub(super) fn sync_relays(&mut self, now: Instant) {
        if self.relays.is_empty() {
            return;
        }
        let mut permissions = BTreeSet::new();
        let mut channels = BTreeSet::new();
        for entry in self.peers.values() {
            permissions.extend(entry.relay_use.wanted_permissions());
            channels.extend(entry.relay_use.wanted_channels());
        }
        channels.extend(
            self.relay_reached
                .last_check
                .iter()
                .filter(|(_, at)| now.duration_since(**at) < REACHED_FRESH)
                .map(|(peer, _)| *peer),
        );
        for relay in &mut self.relays {
            let Some(relayed) = relay.relayed() else {
                // Remembered and requested once allocated.
                relay.set_wanted(now, permissions.clone(), channels.clone());
                continue;
            };
            let family = |ip: &IpAddr| ip.is_ipv4() == relayed.is_ipv4();
            let permissions = permissions.iter().copied().filter(family).collect();
            let channels = channels
                .iter()
                .copied()
                .filter(|c| family(&c.ip()))
                .collect();
            relay.set_wanted(now, permissions, channels);
        }
    }

    pub(super) fn relay_event(&mut self, now: Instant, index: usize, event: RelayEvent) {
        let server = self.relays[index].server();
        match event {
            RelayEvent::Allocated(relayed) => {
                tracing::info!(%server, %relayed, "TURN allocation");
                self.sync_relays(now);
            }
            RelayEvent::Failed { why, lost } => {
                tracing::warn!(%server, ?why, "TURN relay unavailable");
                if let Some(lost) = lost {
                    self.relay_lost(now, lost);
                }
            }
            RelayEvent::ChannelBound { peer, channel } => {
                let relayed = self.relays[index].relayed();
                for (key, entry) in &mut self.peers {
                    let Some(nominated) = entry.nominated.as_mut() else {
                        continue;
                    };
                    if nominated.target.is_none()
                        && Some(nominated.path.local) == relayed
                        && nominated.path.remote == peer
                    {
                        let target = Endpoint::Relayed { server, channel };
                        nominated.target = Some(target);
                        self.events.push_back(ControllerEvent::PathChanged {
                            peer: *key,
                            target,
                            kind: nominated.kind,
                        });
                    }
                }
            }
        }
    }

    /// An allocation that worked is gone: its relayed address leaves every session (no check
    /// goes out from it, no pair through it is nominated), and sessions whose path went
    /// through it start over.
    fn relay_lost(&mut self, now: Instant, lost: SocketAddr) {
        self.counters.relay_allocations_lost += 1;
        let mut affected = Vec::new();
        for (key, entry) in &mut self.peers {
            entry.added.remove(&(CandidateKind::Relayed, lost));
            entry.session.remove_local_candidate(now, lost);
            if entry.nominated.is_some_and(|n| n.path.local == lost) {
                tracing::info!(peer = %key, %lost, "path's relay allocation is gone; new ICE session");
                entry.nominated = None;
                entry.session.restart(now);
                affected.push(*key);
            }
        }
        for key in affected {
            self.update_relay_use(now, &key);
        }
        self.touch_all();
    }

    /// Works out a nominated path's kind and datapath target, asking for a TURN channel if
    /// it needs one. `None` when the path leaves from an address we must not send from (a
    /// relayed address whose allocation is gone, a host address in relay-only mode).
    pub(super) fn nominate(
        &mut self,
        now: Instant,
        key: PublicKey,
        path: Path,
        direct_sources: &[SocketAddr],
    ) -> Option<Nominated> {
        let relay = self.relays.iter().find(|r| r.relayed() == Some(path.local));
        let relay = relay.map(|r| (r.server(), r.channel(path.remote)));
        let entry = self.peers.get_mut(&key)?;
        let nominated = match relay {
            Some((server, channel)) => Nominated {
                path,
                kind: PathKind::Relay,
                target: channel.map(|channel| Endpoint::Relayed { server, channel }),
            },
            None if direct_sources.contains(&path.local) => Nominated {
                path,
                kind: path_kind(&entry.session, path.remote),
                target: Some(Endpoint::Direct(path.remote)),
            },
            None => {
                self.counters.stale_source_transmits += 1;
                tracing::debug!(peer = %key, local = %path.local, "nominated path from an address we do not send from; dropped");
                entry.session.remove_local_candidate(now, path.local);
                return None;
            }
        };
        entry.nominated = Some(nominated);
        // A channel for a relayed path; a former relayed path's channel is released.
        self.update_relay_use(now, &key);
        Some(nominated)
    }
}

#[cfg(test)]
impl Controller {
    /// The relays, for tests that look at what they hold.
    pub(in crate::ice) fn relays_for_test(&self) -> &[super::super::relay::Relay] {
        &self.relays
    }

    /// A peer's session, for tests that look at its candidate sets.
    pub(in crate::ice) fn session_for_test(&self, peer: &PublicKey) -> &crate::session::Session {
        &self.peers[peer].session
    }

    /// Permissions and channels a peer holds on our relays (wanted or expiring).
    pub(in crate::ice) fn relay_use_for_test(&self, peer: &PublicKey) -> (usize, usize) {
        self.peers[peer].relay_use.held()
    }
}
