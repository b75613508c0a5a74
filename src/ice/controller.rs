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

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use crate::config::CandidateTypes;
use crate::keys::PublicKey;
use crate::secret::SecretString;
use crate::session::rng::SplitMix64;
use crate::session::{Event, Path, Session, SessionState};
use crate::signaling::message::{Candidate, CandidateKind, SessionDescription, Transport};

use super::reflexive::{ProbeOutcome, ReflexiveProbe};
use super::relay::{Relay, RelayEvent, RelayReceive, RelayState};

/// Where a peer's WireGuard datagrams go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathTarget {
    /// Straight to this address.
    Direct(SocketAddr),
    /// To our TURN `server`, in ChannelData on `channel`.
    Relayed {
        /// The TURN server.
        server: SocketAddr,
        /// The channel bound to the peer's address.
        channel: u16,
    },
}

/// What kind of path a peer uses, as `wice status` names it.
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

impl PathKind {
    /// `host`, `srflx`, `prflx` or `relay`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Srflx => "srflx",
            Self::Prflx => "prflx",
            Self::Relay => "relay",
        }
    }
}

/// A datagram to send from the shared socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Where to.
    pub destination: SocketAddr,
    /// What.
    pub contents: Vec<u8>,
}

/// Something the datapath should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerEvent {
    /// Send `peer`'s WireGuard traffic along `target` from now on (and handshake at once).
    PathChanged {
        /// The peer.
        peer: PublicKey,
        /// Where to.
        target: PathTarget,
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
}

/// Counters for datagrams the controller could not use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ControllerCounters {
    /// STUN from an address no session accepted (stale session, wrong credentials, scan).
    pub unmatched_stun: u64,
    /// WireGuard that arrived relayed in a Send indication before its channel was bound.
    pub relayed_wireguard_unbound: u64,
    /// Non-STUN datagrams from addresses that are not TURN servers.
    pub unexpected_datagrams: u64,
    /// Signaling messages from keys that are not ICE peers.
    pub unknown_sender: u64,
}

/// One peer as `wice status` shows its ICE side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIceStatus {
    /// The session's state.
    pub state: SessionState,
    /// The path in use, once nominated.
    pub path: Option<PathKind>,
    /// Our side of the nominated pair.
    pub local_candidate: Option<SocketAddr>,
    /// The peer's side of the nominated pair.
    pub remote_candidate: Option<SocketAddr>,
    /// Our session id.
    pub session_id: u64,
    /// Our latest offer's version.
    pub session_version: u64,
    /// New local sessions since the first.
    pub restarts: u64,
    /// When not connected: why, in words a person can act on.
    pub reason: Option<String>,
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
}

#[derive(Debug, Clone, Copy)]
struct Nominated {
    path: Path,
    kind: PathKind,
    /// `None` while a relayed path waits for its channel.
    target: Option<PathTarget>,
}

/// The node's ICE side. See the [module documentation](self).
pub struct Controller {
    peers: BTreeMap<PublicKey, PeerEntry>,
    candidate_types: CandidateTypes,
    host: Vec<SocketAddr>,
    probes: Vec<ReflexiveProbe>,
    relays: Vec<Relay>,
    rng: SplitMix64,
    transmits: VecDeque<Datagram>,
    offers: VecDeque<(PublicKey, SessionDescription)>,
    events: VecDeque<ControllerEvent>,
    counters: ControllerCounters,
}

impl Controller {
    /// A controller for `local`'s sessions with `peers`, gathering from `sources`, started at
    /// `now`. `seed` feeds session ids, credentials and STUN transaction ids.
    pub fn new(
        local: PublicKey,
        peers: &[PublicKey],
        sources: Sources,
        seed: u64,
        now: Instant,
    ) -> Self {
        let mut rng = SplitMix64::new(seed);
        let peers = peers
            .iter()
            .map(|peer| {
                let session = Session::new(local, *peer, rng.next_u64(), now);
                let entry = PeerEntry {
                    session,
                    gather_for: None,
                    completed_for: None,
                    added: HashSet::new(),
                    nominated: None,
                    pairs: 0,
                };
                (*peer, entry)
            })
            .collect();
        let types = sources.candidate_types;
        let mut probes = Vec::new();
        if types.srflx {
            let mut servers: Vec<SocketAddr> = sources.stun.clone();
            servers.extend(sources.turn.iter().map(|turn| turn.address));
            servers.dedup();
            for server in servers {
                let transaction = transaction_id(&mut rng);
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
            peers,
            candidate_types: types,
            host: if types.host { sources.host } else { Vec::new() },
            probes,
            relays,
            rng,
            transmits: VecDeque::new(),
            offers: VecDeque::new(),
            events: VecDeque::new(),
            counters: ControllerCounters::default(),
        };
        controller.process(now);
        controller
    }

    /// A session description `from` published (already opened and verified).
    pub fn handle_signal(&mut self, now: Instant, from: PublicKey, offer: SessionDescription) {
        let Some(entry) = self.peers.get_mut(&from) else {
            self.counters.unknown_sender += 1;
            return;
        };
        let outcome = entry.session.handle_offer(now, offer);
        tracing::debug!(peer = %from, ?outcome, "offer");
        self.bind_remote_candidates(now, &from);
        self.process(now);
    }

    /// A STUN or TURN datagram from `from`, arrived on our address `to` if known.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        to: Option<SocketAddr>,
        datagram: &[u8],
    ) {
        self.route_datagram(now, from, to, datagram);
        self.process(now);
    }

    fn route_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        to: Option<SocketAddr>,
        datagram: &[u8],
    ) {
        tracing::trace!(%from, ?to, len = datagram.len(), "control datagram");
        if let Some(index) = self.relays.iter().position(|r| r.server() == from) {
            match self.relays[index].handle_datagram(now, datagram) {
                RelayReceive::Handled => return,
                RelayReceive::PeerData { peer, data } => {
                    self.relayed_from_peer(now, index, peer, &data);
                    return;
                }
                // Perhaps the answer to our Binding probe of the same server.
                RelayReceive::Ignored => {}
            }
        }
        if let Some(probe) = self.probes.iter_mut().find(|p| p.server() == from)
            && probe.handle_response(now, datagram, to)
        {
            return;
        }
        if !is_stun(datagram) {
            self.counters.unexpected_datagrams += 1;
            return;
        }
        let Some(destination) = to.or_else(|| self.host_of_family(from)) else {
            self.counters.unmatched_stun += 1;
            return;
        };
        self.stun_to_sessions(now, datagram, from, destination);
    }

    fn relayed_from_peer(&mut self, now: Instant, relay: usize, peer: SocketAddr, data: &[u8]) {
        // Whoever reaches our relay may become the nominated pair: let its WireGuard come
        // as ChannelData, which the datapath takes without us.
        self.relays[relay].bind(now, peer);
        if !is_stun(data) {
            self.counters.relayed_wireguard_unbound += 1;
            return;
        }
        let Some(relayed) = self.relays[relay].relayed() else {
            return;
        };
        tracing::trace!(%peer, %relayed, len = data.len(), "relayed STUN");
        self.stun_to_sessions(now, data, peer, relayed);
    }

    fn stun_to_sessions(
        &mut self,
        now: Instant,
        datagram: &[u8],
        from: SocketAddr,
        destination: SocketAddr,
    ) {
        // The agent that knows the USERNAME (requests) or the transaction (responses)
        // takes it; with a handful of peers trying each is cheaper than indexing them.
        for entry in self.peers.values_mut() {
            if entry
                .session
                .handle_stun(now, datagram, from, destination)
                .is_ok()
            {
                return;
            }
        }
        self.counters.unmatched_stun += 1;
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
            let transaction = transaction_id(&mut self.rng);
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
        self.process(now);
        true
    }

    /// Runs whatever is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for entry in self.peers.values_mut() {
            entry.session.handle_timeout(now);
        }
        for probe in &mut self.probes {
            let transaction = transaction_id(&mut self.rng);
            probe.handle_timeout(now, transaction);
        }
        for relay in &mut self.relays {
            relay.handle_timeout(now);
        }
        self.process(now);
    }

    /// When to call [`Controller::handle_timeout`].
    pub fn poll_timeout(&mut self, now: Instant) -> Option<Instant> {
        let sessions = self
            .peers
            .values_mut()
            .filter_map(|entry| entry.session.poll_timeout().map(|(at, _)| at));
        let probes = self.probes.iter().filter_map(ReflexiveProbe::poll_timeout);
        let mut earliest: Option<Instant> = sessions.chain(probes).min();
        for relay in &mut self.relays {
            if let Some(at) = relay.poll_timeout(now) {
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
            }
        }
        earliest
    }

    /// The next datagram to send from the shared socket.
    pub fn poll_transmit(&mut self) -> Option<Datagram> {
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

    /// Every ICE peer's status.
    pub fn status(&self) -> BTreeMap<PublicKey, PeerIceStatus> {
        self.peers
            .iter()
            .map(|(key, entry)| (*key, self.peer_status(entry)))
            .collect()
    }

    fn peer_status(&self, entry: &PeerEntry) -> PeerIceStatus {
        let session = &entry.session;
        let state = session.state();
        let nominated = entry.nominated.filter(|_| state.is_connected());
        PeerIceStatus {
            state,
            path: nominated.map(|n| match n.kind {
                PathKind::Relay => PathKind::Relay,
                _ => path_kind(session, n.path.remote),
            }),
            local_candidate: nominated.map(|n| n.path.local),
            remote_candidate: nominated.map(|n| n.path.remote),
            session_id: session.session_id(),
            session_version: session.version(),
            restarts: session.restarts(),
            reason: self.reason(entry),
        }
    }

    fn reason(&self, entry: &PeerEntry) -> Option<String> {
        let session = &entry.session;
        let local = session.local_offer().candidates.len();
        let remote = session.remote_candidates().len();
        Some(match session.state() {
            SessionState::Connected | SessionState::Completed => {
                return match entry.nominated.and_then(|n| n.target) {
                    Some(_) => None,
                    None => Some("path found; binding a TURN channel for it".to_owned()),
                };
            }
            SessionState::Unknown | SessionState::Idle => {
                "no offer from peer yet (is it up, and on the same signaling server?)".to_owned()
            }
            SessionState::New if local == 0 => "gathering local candidates".to_owned(),
            SessionState::New | SessionState::Connecting => {
                format!("{local} local candidates sent; waiting for the peer's candidates")
            }
            SessionState::Checking => format!("checking {} candidate pairs", local * remote),
            SessionState::Disconnected => {
                "the path stopped answering; checking again before giving up".to_owned()
            }
            SessionState::Failed | SessionState::Closed => {
                let relay_note = self.relay_note();
                format!(
                    "{} candidate pairs failed; {relay_note}; retrying with back-off",
                    entry.pairs
                )
            }
        })
    }

    fn relay_note(&self) -> String {
        if !self.candidate_types.relay {
            return "relay candidates are turned off (ice.candidate_types)".to_owned();
        }
        if self.relays.is_empty() {
            return "no TURN server configured".to_owned();
        }
        let failed: Vec<String> = self
            .relays
            .iter()
            .filter_map(|r| match r.state() {
                RelayState::Failed(why) => Some(format!("TURN {}: {why}", r.server())),
                _ => None,
            })
            .collect();
        if failed.is_empty() {
            "the relay candidate did not work either".to_owned()
        } else {
            failed.join("; ")
        }
    }

    fn host_of_family(&self, remote: SocketAddr) -> Option<SocketAddr> {
        self.host
            .iter()
            .find(|h| h.is_ipv4() == remote.is_ipv4())
            .copied()
    }

    /// Lets the relays reach the peer's candidates, so a relayed pair can be checked (and
    /// its WireGuard carried in ChannelData as soon as it is nominated).
    fn bind_remote_candidates(&mut self, now: Instant, peer: &PublicKey) {
        let Some(entry) = self.peers.get(peer) else {
            return;
        };
        let addresses: Vec<SocketAddr> = entry
            .session
            .remote_candidates()
            .iter()
            .map(|c| c.address)
            .collect();
        for relay in &mut self.relays {
            for address in &addresses {
                relay.bind(now, *address);
            }
        }
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

    /// Drains every child's outputs into ours until nothing moves.
    fn process(&mut self, now: Instant) {
        self.drain_relays(now);
        for probe in &mut self.probes {
            while let Some(contents) = probe.poll_transmit() {
                self.transmits.push_back(Datagram {
                    destination: probe.server(),
                    contents,
                });
            }
        }
        let candidates = self.local_candidates();
        let settled = self.sources_settled();
        let keys: Vec<PublicKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.drive_peer(now, key, &candidates, settled);
        }
        // Transmits through a relay may have queued TURN traffic.
        self.drain_relays(now);
    }

    fn drain_relays(&mut self, now: Instant) {
        for index in 0..self.relays.len() {
            while let Some(contents) = self.relays[index].poll_transmit(now) {
                self.transmits.push_back(Datagram {
                    destination: self.relays[index].server(),
                    contents,
                });
            }
            while let Some(event) = self.relays[index].poll_event() {
                self.relay_event(now, index, event);
            }
        }
    }

    fn relay_event(&mut self, now: Instant, index: usize, event: RelayEvent) {
        let server = self.relays[index].server();
        match event {
            RelayEvent::Allocated(relayed) => {
                tracing::info!(%server, %relayed, "TURN allocation");
                let keys: Vec<PublicKey> = self.peers.keys().copied().collect();
                for key in keys {
                    self.bind_remote_candidates(now, &key);
                }
            }
            RelayEvent::Failed(why) => tracing::warn!(%server, %why, "TURN relay unavailable"),
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
                        let target = PathTarget::Relayed { server, channel };
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

    fn drive_peer(
        &mut self,
        now: Instant,
        key: PublicKey,
        candidates: &[Candidate],
        settled: bool,
    ) {
        let Some(entry) = self.peers.get_mut(&key) else {
            return;
        };
        // Events first: a GatherCandidates must be seen before candidates are handed out.
        while let Some(event) = entry.session.poll_event() {
            match event {
                Event::GatherCandidates => {
                    entry.gather_for = Some(entry.session.session_id());
                    entry.completed_for = None;
                    entry.added.clear();
                }
                Event::StateChanged { from, to } => {
                    tracing::info!(peer = %key, from = from.as_str(), to = to.as_str(), "ICE");
                    if matches!(to, SessionState::Closed | SessionState::Idle) {
                        entry.nominated = None;
                    }
                }
                Event::PathNominated(path) => {
                    let nominated = nominate(entry, path, &mut self.relays, now);
                    tracing::info!(
                        peer = %key,
                        local = %path.local,
                        remote = %path.remote,
                        kind = nominated.kind.as_str(),
                        "path nominated"
                    );
                    if let Some(target) = nominated.target {
                        self.events.push_back(ControllerEvent::PathChanged {
                            peer: key,
                            target,
                            kind: nominated.kind,
                        });
                    }
                    entry.nominated = Some(nominated);
                }
            }
        }
        let id = entry.session.session_id();
        if entry.gather_for == Some(id) {
            for candidate in candidates {
                if entry.added.insert((candidate.kind, candidate.address))
                    && let Err(error) = entry.session.add_local_candidate(now, candidate.clone())
                {
                    tracing::debug!(peer = %key, address = %candidate.address, %error, "candidate not added");
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
            let relay = self
                .relays
                .iter_mut()
                .find(|r| r.relayed() == Some(transmit.source));
            match relay {
                Some(relay) => {
                    // Until the server confirmed a permission the check is dropped; the
                    // agent retransmits.
                    match relay.send_to(now, transmit.destination, &transmit.contents) {
                        Some(contents) => self.transmits.push_back(Datagram {
                            destination: relay.server(),
                            contents,
                        }),
                        None => tracing::trace!(
                            peer = %key,
                            destination = %transmit.destination,
                            "relayed STUN not sent: no permission yet"
                        ),
                    }
                }
                None => self.transmits.push_back(Datagram {
                    destination: transmit.destination,
                    contents: transmit.contents,
                }),
            }
        }
        // Events raised by the inputs above (state changes, nominations) wait for the next
        // round; handle them now so nothing sits until the next timeout.
        if entry.session.has_pending_events() {
            self.drive_peer(now, key, candidates, settled);
        }
    }
}

/// The kind of a direct path to `remote`, from the candidate the peer signalled for it. A
/// check can arrive before the offer that lists its address: the kind is then `prflx` until
/// the offer comes, which is why status asks again rather than keeping the first answer.
fn path_kind(session: &Session, remote: SocketAddr) -> PathKind {
    let remote_kind = session
        .remote_candidates()
        .iter()
        .find(|c| c.address == remote)
        .map(|c| c.kind);
    match remote_kind {
        Some(CandidateKind::Host) => PathKind::Host,
        Some(CandidateKind::ServerReflexive) => PathKind::Srflx,
        Some(CandidateKind::Relayed) => PathKind::Relay,
        Some(CandidateKind::PeerReflexive) | None => PathKind::Prflx,
    }
}

/// Works out a nominated path's kind and datapath target, binding a TURN channel if needed.
fn nominate(entry: &PeerEntry, path: Path, relays: &mut [Relay], now: Instant) -> Nominated {
    let mut kind = path_kind(&entry.session, path.remote);
    let relay = relays.iter_mut().find(|r| r.relayed() == Some(path.local));
    let target = match relay {
        Some(relay) => {
            kind = PathKind::Relay;
            match relay.channel(path.remote) {
                Some(channel) => Some(PathTarget::Relayed {
                    server: relay.server(),
                    channel,
                }),
                None => {
                    relay.bind(now, path.remote);
                    None
                }
            }
        }
        None => Some(PathTarget::Direct(path.remote)),
    };
    Nominated { path, kind, target }
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

fn transaction_id(rng: &mut SplitMix64) -> u128 {
    // 96 bits (RFC 8489 §5).
    (u128::from(rng.next_u64()) << 32 | u128::from(rng.next_u64() >> 32)) & ((1 << 96) - 1)
}

/// The STUN test of the shared-socket demux (design §2), for datagrams a relay unwrapped.
fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= 20
        && datagram[0] & 0xC0 == 0
        && datagram[4..8] == [0x21, 0x12, 0xA4, 0x42]
        && usize::from(u16::from_be_bytes([datagram[2], datagram[3]])) == datagram.len() - 20
}
