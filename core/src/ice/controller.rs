//! The node's ICE side as one sans-IO state machine: a [`Session`] per peer, the candidate
//! sources they share (interface addresses, STUN probes, TURN allocations), and the routing
//! of datagrams between them.
//!
//! Candidate sources are per node, not per session: every session gets the same host,
//! server-reflexive and relayed candidates, because they all share one UDP socket. A session
//! asks for them ([`crate::session::Event::GatherCandidates`]), gets what is known at once and
//! the rest as it is found (trickle), and its end-of-candidates once every source has
//! settled (answered or given up).
//!
//! # Driving
//!
//! 1. [`Controller::new`] with the peers that use ICE and the node's candidate sources.
//! 2. Feed: [`Controller::handle_signal`] (a verified session description from a peer),
//!    [`Controller::handle_datagram`] (a STUN or TURN datagram from the shared socket),
//!    [`Controller::handle_timeout`] at [`Controller::poll_timeout`].
//! 3. Drain after each: [`Controller::poll_transmit`] (send raw from the shared socket),
//!    [`Controller::poll_offer`] (publish through signaling), [`Controller::poll_event`]
//!    (point a peer's WireGuard traffic somewhere).

mod membership;
mod relaying;
mod timeout;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use ipnet::IpNet;

use crate::Transmit;
use crate::ice::CandidateTypes;
use crate::keys::PublicKey;
use crate::secret::SecretString;
use crate::session::rng::{IceRandom, TransactionIds};
use crate::session::{Event, Path, Session, SessionState};
use crate::signaling::message::{Candidate, CandidateKind, SessionDescription, Transport};
use crate::wire::Endpoint;
use crate::wire::classify::is_stun;

use super::reflexive::{ProbeOutcome, ReflexiveProbe};
use super::relay::{Relay, RelayReceive};
use super::remote_filter::{RefusedCounters, RemoteFilter};

#[cfg(test)]
pub(crate) use relaying::PERMISSIONS_PER_PEER;
use relaying::RelayUse;
pub use status::PeerIceStatus;
pub use timeout::TimeoutReason;

mod routing;
mod status;

#[cfg(test)]
pub(crate) use routing::CHECK_LIFETIME;
use routing::Routing;
pub use routing::{DropReason, Routed};

/// Rounds of [`Controller::process`] per input at most (relay events may touch sessions).
const MAX_PROCESS_ROUNDS: usize = 4;

/// What kind of path a peer uses (`wice status` words it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathKind {
    /// Interface address to interface address.
    Host,
    /// Through a NAT, to or from an address a STUN server saw.
    Srflx,
    /// Through a NAT, to an address learnt from the peer's checks.
    Prflx,
    /// Through a TURN relay (ours or the peer's).
    Relay,
}

/// Something the datapath should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerEvent {
    /// Send `peer`'s WireGuard traffic along `target` from now on (and handshake at once).
    PathChanged {
        /// The peer.
        peer: PublicKey,
        /// Where to.
        target: Endpoint,
        /// What kind of path it is.
        kind: PathKind,
    },
}

/// A TURN server with the credentials and our address toward it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnServer {
    /// The server.
    pub address: SocketAddr,
    /// Our address the kernel sends from toward it.
    pub local: SocketAddr,
    /// Long-term credentials.
    pub username: String,
    /// Long-term credentials; `Debug` redacts it.
    pub credential: SecretString,
}

/// The node's candidate sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// Which candidate types to offer.
    pub candidate_types: CandidateTypes,
    /// Interface addresses with the listen port (already filtered and capped).
    pub host: Vec<SocketAddr>,
    /// STUN servers to probe for server-reflexive candidates (TURN servers count too).
    pub stun: Vec<SocketAddr>,
    /// TURN servers to allocate relays on.
    pub turn: Vec<TurnServer>,
    /// The mesh's own prefixes (tunnel addresses, peers' allowed IPs): a remote candidate
    /// inside one would route WireGuard back into the tunnel, so it is refused.
    pub mesh: Vec<IpNet>,
}

/// Counters for datagrams the controller could not use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ControllerCounters {
    /// STUN no session took: checks for no live ufrag of ours, answers to no check of ours,
    /// and what the session's agent refused (stale session, wrong credentials, scan).
    pub unmatched_stun: u64,
    /// Datagrams over their source's rate limit, dropped before a look past the header.
    pub rate_limited: u64,
    /// WireGuard that arrived relayed in a Send indication before its channel was bound.
    pub relayed_wireguard_unbound: u64,
    /// Non-STUN datagrams from addresses that are not TURN servers.
    pub unexpected_datagrams: u64,
    /// Signaling messages from keys that are not ICE peers.
    pub unknown_sender: u64,
    /// Remote candidates refused (loopback, multicast, unspecified, inside the mesh).
    pub refused_candidates: RefusedCounters,
    /// Remote addresses left without a TURN permission: the peer's budget was spent.
    pub permissions_refused: u64,
    /// Nominated relayed paths left without a TURN channel: the peer's budget was spent.
    pub channels_refused: u64,
    /// Checks (and nominations) from an address we must not send from: a relayed address
    /// whose allocation is gone, or a host address when host candidates are off.
    pub stale_source_transmits: u64,
    /// TURN allocations that worked and were lost.
    pub relay_allocations_lost: u64,
}

struct PeerEntry {
    session: Session,
    /// The local session id candidates are being gathered for.
    gather_for: Option<u64>,
    /// The local session id whose end-of-candidates was sent.
    completed_for: Option<u64>,
    /// Candidates already handed to the current session.
    added: HashSet<(CandidateKind, SocketAddr)>,
    nominated: Option<Nominated>,
    /// Candidate pairs the session had when it last checked: for the failure reason.
    pairs: usize,
    /// Permissions and channels this peer holds on our relays.
    relay_use: RelayUse,
    /// The session's deadline as of the last time anything touched it (only inputs move it).
    deadline: Option<(Instant, crate::session::TimeoutReason)>,
    /// The generation of the node's candidates this session was last handed.
    candidates_seen: Option<u64>,
    /// Listed in [`Controller::dirty`]: the session got an input and is driven next.
    dirty: bool,
}

impl PeerEntry {
    fn new(session: Session) -> Self {
        Self {
            session,
            gather_for: None,
            completed_for: None,
            added: HashSet::new(),
            nominated: None,
            pairs: 0,
            relay_use: RelayUse::default(),
            deadline: None,
            candidates_seen: None,
            dirty: false,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Nominated {
    path: Path,
    kind: PathKind,
    /// `None` while a relayed path waits for its channel.
    target: Option<Endpoint>,
}

/// The node's ICE side. See the [module documentation](self).
pub struct Controller {
    local: PublicKey,
    /// Feeds the sessions of peers added while running.
    random: IceRandom,
    peers: BTreeMap<PublicKey, PeerEntry>,
    candidate_types: CandidateTypes,
    host: Vec<SocketAddr>,
    /// The configured STUN and TURN servers, to tell what a new list changes.
    stun: Vec<SocketAddr>,
    turn: Vec<TurnServer>,
    probes: Vec<ReflexiveProbe>,
    relays: Vec<Relay>,
    transaction_ids: TransactionIds,
    filter: RemoteFilter,
    /// Peer addresses whose checks reached us through a relay and authenticated.
    relay_reached: relaying::Reached,
    transmits: VecDeque<Transmit>,
    offers: VecDeque<(PublicKey, SessionDescription)>,
    events: VecDeque<ControllerEvent>,
    counters: ControllerCounters,
    routing: Routing,
    /// Peers whose session got an input since they were last driven: an input costs what it
    /// touches, not a walk over every session (issue 10 finding 4).
    dirty: Vec<PublicKey>,
    /// The candidates every session gets, as of the last input, and our addresses checks
    /// may leave from directly.
    candidates: Vec<Candidate>,
    direct_sources: Vec<SocketAddr>,
    /// Whether every candidate source has settled, as of the last input.
    settled: bool,
    /// Bumped whenever `candidates` or `settled` change: every gathering session then gets
    /// the new ones.
    candidates_generation: u64,
    /// Sessions driven so far, for the test that an input drives only what it touched.
    #[cfg(test)]
    pub(super) sessions_driven: u64,
}

impl Controller {
    /// A controller for `local`'s sessions with `peers`, gathering from `sources`, started at
    /// `now`. `random` feeds session ids, credentials and STUN transaction ids: keyed from the
    /// OS in the daemon ([`IceRandom::from_os`]), a fixed `u64` seed in tests.
    pub fn new(
        local: PublicKey,
        peers: &[PublicKey],
        sources: Sources,
        random: impl Into<IceRandom>,
        now: Instant,
    ) -> Self {
        let mut random = random.into();
        let mut transaction_ids = random.transaction_ids();
        let peers = peers
            .iter()
            .map(|peer| {
                let session = Session::new(local, *peer, random.session(), now);
                (*peer, PeerEntry::new(session))
            })
            .collect();
        let types = sources.candidate_types;
        let mut probes = Vec::new();
        if types.srflx {
            let mut servers: Vec<SocketAddr> = sources.stun.clone();
            servers.extend(sources.turn.iter().map(|turn| turn.address));
            servers.dedup();
            for server in servers {
                let transaction = transaction_ids.next_id();
                probes.push(ReflexiveProbe::new(server, now, transaction));
            }
        }
        let relays = if types.relay {
            sources
                .turn
                .iter()
                .map(|t| Relay::new(t.local, t.address, &t.username, t.credential.expose(), now))
                .collect()
        } else {
            Vec::new()
        };
        let mut controller = Self {
            local,
            random,
            peers,
            candidate_types: types,
            host: if types.host { sources.host } else { Vec::new() },
            stun: sources.stun,
            turn: sources.turn,
            probes,
            relays,
            transaction_ids,
            filter: RemoteFilter::new(sources.mesh),
            relay_reached: relaying::Reached::default(),
            transmits: VecDeque::new(),
            offers: VecDeque::new(),
            events: VecDeque::new(),
            counters: ControllerCounters::default(),
            routing: Routing::new(),
            dirty: Vec::new(),
            candidates: Vec::new(),
            direct_sources: Vec::new(),
            settled: false,
            candidates_generation: 0,
            #[cfg(test)]
            sessions_driven: 0,
        };
        controller.touch_all();
        controller.process(now);
        controller
    }

    /// A session description `from` published (already opened and verified).
    /// Candidates the session must not use are left out first, and counted.
    pub fn handle_signal(&mut self, now: Instant, from: PublicKey, mut offer: SessionDescription) {
        let Some(entry) = self.peers.get_mut(&from) else {
            self.counters.unknown_sender += 1;
            return;
        };
        let (filter, refused) = (&self.filter, &mut self.counters.refused_candidates);
        offer
            .candidates
            .retain(|candidate| match filter.check(candidate.address) {
                Ok(()) => true,
                Err(reason) => {
                    refused.count(reason);
                    false
                }
            });
        let outcome = entry.session.handle_offer(now, offer);
        tracing::debug!(peer = %from, ?outcome, "offer");
        self.touch(from);
        self.update_relay_use(now, &from);
        self.process(now);
    }

    fn relayed_from_peer(
        &mut self,
        now: Instant,
        relay: usize,
        peer: SocketAddr,
        data: &[u8],
    ) -> Routed {
        // Only addresses a peer signalled have a permission, so only they get here; a
        // channel is bound once a path through it is nominated, or once the peer's check
        // through the relay authenticated (see `relaying`).
        if !is_stun(data) {
            return Routed::Dropped(DropReason::RelayedWireGuardUnbound);
        }
        if !self.allow_relayed(now, peer) {
            return Routed::Dropped(DropReason::RateLimited);
        }
        let Some(relayed) = self.relays[relay].relayed() else {
            return Routed::Dropped(DropReason::NoLocalAddress);
        };
        let routed = self.stun_to_session(now, data, peer, relayed);
        if matches!(routed, Routed::Session(_)) {
            self.relay_reached_by(now, peer);
        }
        routed
    }

    /// The node's addresses as the OS lists them now (host candidates with the listen port,
    /// and our address toward each TURN server). When they changed:
    ///
    /// - sessions whose nominated path left from an address we no longer have start over
    ///   (the peer follows by the restart rule); the others keep their working path and use
    ///   the new candidates from their next session on;
    /// - STUN servers are asked again (the NAT mapping may have changed with the address);
    /// - relays whose local address changed are allocated again.
    ///
    /// Returns whether anything changed.
    pub fn handle_addresses(
        &mut self,
        now: Instant,
        host: Vec<SocketAddr>,
        turn: &[TurnServer],
    ) -> bool {
        let host = if self.candidate_types.host {
            host
        } else {
            Vec::new()
        };
        let relays_moved: Vec<usize> = self
            .relays
            .iter()
            .enumerate()
            .filter(|(_, relay)| {
                turn.iter()
                    .any(|t| t.address == relay.server() && t.local != relay.local())
            })
            .map(|(index, _)| index)
            .collect();
        if host == self.host && relays_moved.is_empty() {
            return false;
        }
        tracing::info!(old = ?self.host, new = ?host, "local addresses changed");
        let mut lost: Vec<SocketAddr> = self
            .host
            .iter()
            .filter(|address| !host.contains(address))
            .copied()
            .collect();
        lost.extend(
            relays_moved
                .iter()
                .filter_map(|i| self.relays[*i].relayed()),
        );
        self.host = host;
        for index in relays_moved {
            let server = self.relays[index].server();
            if let Some(t) = turn.iter().find(|t| t.address == server) {
                self.relays[index] =
                    Relay::new(t.local, t.address, &t.username, t.credential.expose(), now);
            }
        }
        for probe in &mut self.probes {
            let transaction = self.transaction_ids.next_id();
            *probe = ReflexiveProbe::new(probe.server(), now, transaction);
        }
        for (key, entry) in &mut self.peers {
            let stranded = entry
                .nominated
                .is_some_and(|n| lost.contains(&n.path.local));
            if stranded {
                tracing::info!(peer = %key, "path's local address is gone; new ICE session");
                entry.nominated = None;
                entry.session.restart(now);
            }
        }
        self.touch_all();
        self.process(now);
        true
    }

    /// WireGuard traffic crossed the tunnel to `peer` lately: its path is checked on the
    /// active consent schedule, not the idle one ([`Session::handle_traffic`]).
    pub fn handle_traffic(&mut self, now: Instant, peer: &PublicKey) {
        if let Some(entry) = self.peers.get_mut(peer) {
            entry.session.handle_traffic(now);
            // It may move the consent schedule, and nothing else: no output to drive.
            entry.deadline = entry.session.poll_timeout();
        }
    }

    /// Runs whatever is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for (key, entry) in &mut self.peers {
            if entry.deadline.is_some_and(|(at, _)| at <= now) {
                entry.session.handle_timeout(now);
                if !entry.dirty {
                    entry.dirty = true;
                    self.dirty.push(*key);
                }
            }
        }
        for probe in &mut self.probes {
            let transaction = self.transaction_ids.next_id();
            probe.handle_timeout(now, transaction);
        }
        for relay in &mut self.relays {
            relay.handle_timeout(now);
        }
        self.process(now);
    }

    /// The next datagram to send from the shared socket.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next session description to publish, and to whom.
    pub fn poll_offer(&mut self) -> Option<(PublicKey, SessionDescription)> {
        self.offers.pop_front()
    }

    /// The next thing for the datapath to do.
    pub fn poll_event(&mut self) -> Option<ControllerEvent> {
        self.events.pop_front()
    }

    /// Datagrams the controller dropped, by reason.
    pub fn counters(&self) -> ControllerCounters {
        self.counters
    }

    /// The TURN servers relays were requested from (the datapath takes ChannelData from them).
    pub fn relay_servers(&self) -> Vec<SocketAddr> {
        self.relays.iter().map(Relay::server).collect()
    }

    fn host_of_family(&self, remote: SocketAddr) -> Option<SocketAddr> {
        self.host
            .iter()
            .find(|h| h.is_ipv4() == remote.is_ipv4())
            .copied()
    }

    /// The candidates every session gets, as known now.
    fn local_candidates(&self) -> Vec<Candidate> {
        let mut candidates: Vec<Candidate> = self
            .host
            .iter()
            .map(|address| candidate(CandidateKind::Host, *address, None))
            .collect();
        for probe in &self.probes {
            if let ProbeOutcome::Mapped(mapped) = probe.outcome() {
                let base = probe
                    .base()
                    .or_else(|| self.host_of_family(mapped))
                    .filter(|base| base.is_ipv4() == mapped.is_ipv4());
                if let Some(base) = base {
                    candidates.push(candidate(
                        CandidateKind::ServerReflexive,
                        mapped,
                        Some(base),
                    ));
                }
            }
        }
        for relay in &self.relays {
            if let Some(relayed) = relay.relayed() {
                let base = self.host_of_family(relayed).unwrap_or(relayed);
                candidates.push(candidate(CandidateKind::Relayed, relayed, Some(base)));
            }
        }
        candidates
    }

    fn sources_settled(&self) -> bool {
        self.probes.iter().all(ReflexiveProbe::settled) && self.relays.iter().all(Relay::settled)
    }

    /// Marks `peer`'s session as touched by an input: [`Controller::process`] drives it.
    pub(super) fn touch(&mut self, peer: PublicKey) {
        if let Some(entry) = self.peers.get_mut(&peer)
            && !entry.dirty
        {
            entry.dirty = true;
            self.dirty.push(peer);
        }
    }

    /// Marks every session as touched (the node's candidates or addresses changed).
    pub(super) fn touch_all(&mut self) {
        for (key, entry) in &mut self.peers {
            if !entry.dirty {
                entry.dirty = true;
                self.dirty.push(*key);
            }
        }
    }

    /// Drains every child's outputs into ours until nothing moves. Only sessions an input
    /// touched are driven (all of them when the node's candidates changed), so one datagram
    /// costs its own session's work, not a walk over every peer.
    fn process(&mut self, now: Instant) {
        // A round's relay events (an allocation lost) may touch sessions again; a few rounds
        // settle it, and what is left is driven by the next input.
        for _ in 0..MAX_PROCESS_ROUNDS {
            self.drain_relays(now);
            for probe in &mut self.probes {
                while let Some(transmit) = probe.poll_transmit() {
                    self.transmits.push_back(transmit);
                }
            }
            self.refresh_candidates();
            if self.dirty.is_empty() {
                return;
            }
            let candidates = std::mem::take(&mut self.candidates);
            let direct_sources = std::mem::take(&mut self.direct_sources);
            for key in std::mem::take(&mut self.dirty) {
                let Some(entry) = self.peers.get_mut(&key) else {
                    continue;
                };
                entry.dirty = false;
                #[cfg(test)]
                {
                    self.sessions_driven += 1;
                }
                self.drive_peer(now, key, &candidates, &direct_sources);
                if let Some(entry) = self.peers.get_mut(&key) {
                    entry.deadline = entry.session.poll_timeout();
                    self.routing
                        .set_ufrag(key, &entry.session.local_offer().ice_ufrag);
                }
            }
            self.candidates = candidates;
            self.direct_sources = direct_sources;
        }
        // Sessions still touched keep a true deadline until they are driven.
        for key in &self.dirty {
            if let Some(entry) = self.peers.get_mut(key) {
                entry.deadline = entry.session.poll_timeout();
                self.routing
                    .set_ufrag(*key, &entry.session.local_offer().ice_ufrag);
            }
        }
        self.drain_relays(now);
    }

    /// Recomputes the node's candidates; when they (or whether every source settled)
    /// changed, every session gets them.
    fn refresh_candidates(&mut self) {
        let settled = self.sources_settled();
        let candidates = self.local_candidates();
        if candidates == self.candidates && settled == self.settled {
            return;
        }
        self.direct_sources = direct_sources(&candidates);
        self.candidates = candidates;
        self.settled = settled;
        self.candidates_generation += 1;
        self.touch_all();
    }

    fn drain_relays(&mut self, now: Instant) {
        for index in 0..self.relays.len() {
            while let Some(transmit) = self.relays[index].poll_transmit(now) {
                self.transmits.push_back(transmit);
            }
            while let Some(event) = self.relays[index].poll_event() {
                self.relay_event(now, index, event);
            }
        }
    }

    fn drive_peer(
        &mut self,
        now: Instant,
        key: PublicKey,
        candidates: &[Candidate],
        direct_sources: &[SocketAddr],
    ) {
        let (settled, generation) = (self.settled, self.candidates_generation);
        // Events first: a GatherCandidates must be seen before candidates are handed out.
        while let Some(event) = self
            .peers
            .get_mut(&key)
            .and_then(|e| e.session.poll_event())
        {
            self.handle_session_event(now, key, event, direct_sources);
        }
        let Some(entry) = self.peers.get_mut(&key) else {
            return;
        };
        let id = entry.session.session_id();
        if entry.gather_for == Some(id) {
            // Handed out once per generation, not on every input.
            if entry.candidates_seen != Some(generation) {
                entry.candidates_seen = Some(generation);
                for candidate in candidates {
                    if entry.added.insert((candidate.kind, candidate.address))
                        && let Err(error) =
                            entry.session.add_local_candidate(now, candidate.clone())
                    {
                        tracing::debug!(peer = %key, address = %candidate.address, %error, "candidate not added");
                    }
                }
            }
            if settled && entry.completed_for != Some(id) {
                entry.completed_for = Some(id);
                entry.session.handle_gathering_complete(now);
            }
        }
        let pairs =
            entry.session.local_offer().candidates.len() * entry.session.remote_candidates().len();
        if pairs > 0 {
            entry.pairs = pairs;
        }
        while let Some(offer) = entry.session.poll_offer() {
            self.offers.push_back((key, offer));
        }
        while let Some(transmit) = entry.session.poll_transmit() {
            self.routing
                .note_sent(now, key, transmit.destination, &transmit.contents);
            let relay = self.relays.iter_mut().find(|r| {
                r.relayed()
                    .is_some_and(|relayed| transmit.source == Some(relayed))
            });
            match relay {
                Some(relay) => {
                    // Until the server confirmed a permission the check is dropped; the
                    // agent retransmits.
                    match relay.send_to(now, transmit.destination, &transmit.contents) {
                        Some(wrapped) => self.transmits.push_back(wrapped),
                        None => tracing::trace!(
                            peer = %key,
                            destination = %transmit.destination,
                            "relayed STUN not sent: no permission yet"
                        ),
                    }
                }
                // The last guard: nothing goes to a peer from an address that is not one of
                // our current direct candidates' (a relayed address whose allocation is
                // gone must not turn into a send from the host socket, and relay-only
                // mode has no direct source at all).
                None if !transmit
                    .source
                    .is_some_and(|source| direct_sources.contains(&source)) =>
                {
                    self.counters.stale_source_transmits += 1;
                    tracing::trace!(peer = %key, source = ?transmit.source, "check from an address we do not send from; dropped");
                }
                None => self.transmits.push_back(transmit),
            }
        }
        // Events raised by the inputs above (state changes, nominations) wait for the next
        // round; handle them now so nothing sits until the next timeout.
        if entry.session.has_pending_events() {
            self.drive_peer(now, key, candidates, direct_sources);
        }
    }

    fn handle_session_event(
        &mut self,
        now: Instant,
        key: PublicKey,
        event: Event,
        direct_sources: &[SocketAddr],
    ) {
        let Some(entry) = self.peers.get_mut(&key) else {
            return;
        };
        match event {
            Event::GatherCandidates => {
                entry.gather_for = Some(entry.session.session_id());
                entry.completed_for = None;
                entry.candidates_seen = None;
                entry.added.clear();
            }
            Event::StateChanged { from, to } => {
                tracing::info!(peer = %key, ?from, ?to, "ICE");
                if matches!(to, SessionState::Closed | SessionState::Idle) {
                    entry.nominated = None;
                    self.update_relay_use(now, &key);
                }
            }
            Event::PathNominated(path) => {
                let Some(nominated) = self.nominate(now, key, path, direct_sources) else {
                    return;
                };
                tracing::info!(
                    peer = %key,
                    local = %path.local,
                    remote = %path.remote,
                    kind = ?nominated.kind,
                    "path nominated"
                );
                if let Some(target) = nominated.target {
                    self.events.push_back(ControllerEvent::PathChanged {
                        peer: key,
                        target,
                        kind: nominated.kind,
                    });
                }
            }
        }
    }
}

/// Our addresses a check or WireGuard may leave from directly: host candidates and the bases
/// of server-reflexive ones. Relayed candidates leave through their relay.
fn direct_sources(candidates: &[Candidate]) -> Vec<SocketAddr> {
    candidates
        .iter()
        .filter_map(|candidate| match candidate.kind {
            CandidateKind::Host => Some(candidate.address),
            CandidateKind::ServerReflexive => candidate.related,
            CandidateKind::Relayed | CandidateKind::PeerReflexive => None,
        })
        .collect()
}

fn candidate(kind: CandidateKind, address: SocketAddr, related: Option<SocketAddr>) -> Candidate {
    Candidate {
        kind,
        transport: Transport::Udp,
        address,
        priority: 0,
        foundation: String::new(),
        related,
    }
}
