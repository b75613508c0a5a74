//! One peer's ICE session as a sans-IO state machine: the offer protocol around an `is` agent.
//!
//! A [`Session`] owns everything wice keeps per remote peer to find a path to it: our
//! published offer (session id, version, credentials, candidates, end-of-candidates), the
//! remote's accepted offer, the ICE agent that runs connectivity checks, and the timers the
//! agent lacks (resending our credentials, giving up, restarting). It reads no clock, opens no
//! socket and draws no OS randomness: time comes in as `now`, randomness from a caller-given generator,
//! and everything to send comes out of `poll_*` calls.
//!
//! # Contract
//!
//! - **Roles.** Of the two peers, the one whose public key is smaller (32 raw bytes compared
//!   in order) is the controlling ICE agent.
//! - **Offers.** Every offer carries the credentials of its session. The first of a session is
//!   version 0 with no candidates; each local candidate, and the end of gathering, publishes
//!   the next version with all candidates so far. A received offer is used only if its version
//!   is newer than the last accepted one of the same session id (the `offer` module lists
//!   every case).
//! - **Restart rule.** When a session with the remote was seen and an offer arrives with a
//!   different id at version 0, the remote restarted: we start a new local session too (new
//!   id, version 0, no candidates, new credentials, new agent), publish it and gather again.
//!   The remote's version 0 already carries its credentials, so our new agent starts at once
//!   (state New) and takes the remote's candidates as they trickle in.
//! - **Resend.** While Idle (the remote's credentials unknown), our latest offer is published
//!   again after [`RESEND_INITIAL`], doubling up to [`RESEND_MAX`]. When the first offer of a
//!   remote session arrives we publish our latest offer once more, so a peer that came online
//!   after our first offer was dropped still learns our credentials.
//! - **Give-up and restart.** From learning the remote's credentials, and again from losing
//!   the nominated pair, a path must work within [`GIVE_UP_AFTER`]; otherwise the session
//!   goes Failed (or, from Disconnected, straight) to Closed, drops the agent, ignores the
//!   remote's old session from then on, and after a back-off from [`RESTART_INITIAL`]
//!   doubling up to [`RESTART_MAX`] starts a new local session. A working path resets that
//!   back-off.
//!
//! # Driving
//!
//! The owner (a per-peer task in the daemon) feeds inputs and drains outputs:
//!
//! 1. Create it with [`Session::new`]; it starts at once (Unknown → Idle) with an offer queued.
//! 2. Feed inputs as they happen: [`Session::handle_offer`] for the remote's session
//!    descriptions, [`Session::handle_stun`] for STUN datagrams from the peer (after the
//!    datapath's demux), [`Session::add_local_candidate`] and
//!    [`Session::handle_gathering_complete`] as the caller's gathering progresses.
//! 3. After every input, drain the outputs until each returns `None`:
//!    [`Session::poll_offer`] (publish through the signaling backends),
//!    [`Session::poll_transmit`] (send from `source` to `destination`),
//!    [`Session::poll_event`] (state changes, "gather now", nominated paths for the datapath).
//! 4. Sleep until [`Session::poll_timeout`], then call [`Session::handle_timeout`] and go to 3.
//!
//! On [`Event::GatherCandidates`] the caller gathers host, server-reflexive and relayed
//! candidates for the new session and hands each to [`Session::add_local_candidate`], then
//! calls [`Session::handle_gathering_complete`]. On [`Event::PathNominated`] the datapath
//! sends this peer's WireGuard traffic from `local` to `remote` (the latest one wins).

mod candidate;
mod offer;
pub mod rng;
mod state;
mod timers;

#[cfg(test)]
mod consent_tests;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::Transmit;
use crate::keys::PublicKey;
use crate::signaling::message::{Candidate, MAX_CANDIDATES, SessionDescription};

pub use candidate::CandidateError;
pub use state::SessionState;
#[cfg(test)]
pub(crate) use timers::RESEND_INITIAL;
pub(crate) use timers::{
    CHECK_INTERVAL, CHECK_RETRANSMITS, CONSENT_INTERVAL, CONSENT_RETRANSMITS,
    IDLE_CONSENT_INTERVAL, IDLE_CONSENT_RETRANSMITS, PATH_IDLE_AFTER,
};
pub use timers::{GIVE_UP_AFTER, RESEND_MAX, RESTART_MAX, TimeoutReason};

/// The most remote candidates (signalled and peer-reflexive) an agent may hold before its
/// remote side is reset to the latest offer's: the agent never forgets a candidate by itself.
pub const MAX_AGENT_REMOTE_CANDIDATES: usize = 2 * MAX_CANDIDATES;

use offer::{Accepted, Offers, Verdict};
use rng::SessionRandom;
use timers::Timers;

/// A path for the peer's traffic: send from `local` (one of our candidates' bases, or a
/// relayed address) to `remote`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Path {
    /// Our address to send from.
    pub local: SocketAddr,
    /// The peer's address to send to.
    pub remote: SocketAddr,
}

/// Something the owner should know or act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The session moved from one state to another.
    StateChanged {
        /// The state left.
        from: SessionState,
        /// The state entered.
        to: SessionState,
    },
    /// A local session learnt the remote's credentials: gather candidates for it now.
    GatherCandidates,
    /// The agent nominated (or changed) the path to use.
    PathNominated(Path),
}

/// What [`Session::handle_offer`] did with an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferOutcome {
    /// Used: credentials and new candidates went to the agent.
    Accepted,
    /// The remote restarted; we started a new local session as well.
    Restarted,
    /// Not used, for the reason given.
    Ignored(IgnoreReason),
}

/// Why an offer was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreReason {
    /// Same session, version not newer than the last accepted: reordered or duplicated.
    NotNewer,
    /// A session id we do not know at a version above 0.
    UnknownSession,
    /// The remote session we gave up on.
    RetiredSession,
    /// The offer would start a session but carries no ICE credentials.
    MissingCredentials,
}

/// Why a STUN datagram was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    /// There is no agent (the session is closed, waiting to restart).
    #[error("no ICE agent (session closed)")]
    NoAgent,
    /// The datagram is not a STUN message.
    #[error("not a STUN message")]
    Malformed,
    /// The agent refused it (wrong credentials, failed integrity, not for this session).
    #[error("STUN message refused by the ICE agent")]
    Rejected,
}

/// One peer's ICE session. See the [module documentation](self) for the contract and how to
/// drive it.
pub struct Session {
    remote: PublicKey,
    controlling: bool,
    rng: SessionRandom,
    offers: Offers,
    agent: Option<is::IceAgent>,
    state: SessionState,
    timers: Timers,
    restarts: u64,
    nominated: Option<Path>,
    /// Whether a pair worked in the current local session.
    connected_once: bool,
    /// Whether the agent runs on the slow, connected schedule ([`CONSENT_INTERVAL`]).
    /// The check interval the agent is on: [`CHECK_INTERVAL`], [`CONSENT_INTERVAL`] or
    /// [`IDLE_CONSENT_INTERVAL`].
    schedule: Duration,
    /// When the current agent last became connected.
    connected_at: Option<Instant>,
    /// When the owner last saw WireGuard traffic on the peer ([`Session::handle_traffic`]).
    traffic_at: Option<Instant>,
    /// Times the agent's remote side was reset (a dropped candidate, too many candidates).
    remote_resets: u64,
    outbox: VecDeque<SessionDescription>,
    events: VecDeque<Event>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("remote", &self.remote)
            .field("controlling", &self.controlling)
            .field("state", &self.state)
            .field("session_id", &self.offers.local().session_id)
            .field("version", &self.offers.local().version)
            .field("restarts", &self.restarts)
            .field("nominated", &self.nominated)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session of `local` with `remote`, started at `now`: an agent exists, state Idle, and
    /// our first offer (version 0) waits in [`Session::poll_offer`]. `random` feeds session
    /// ids, ICE credentials and the ICE tie-breaker: a session's own generator from the node's
    /// [`rng::IceRandom`] (keyed from the OS in the daemon), or a fixed `u64` seed in tests.
    pub fn new(
        local: PublicKey,
        remote: PublicKey,
        random: impl Into<SessionRandom>,
        now: Instant,
    ) -> Self {
        let mut session = Self {
            remote,
            controlling: local < remote,
            rng: random.into(),
            offers: Offers::new(),
            agent: None,
            state: SessionState::Unknown,
            timers: Timers::new(),
            restarts: 0,
            nominated: None,
            connected_once: false,
            schedule: CHECK_INTERVAL,
            connected_at: None,
            traffic_at: None,
            remote_resets: 0,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
        };
        session.start_local_session(now, None);
        session
    }

    /// The remote peer's public key.
    pub fn remote(&self) -> &PublicKey {
        &self.remote
    }

    /// Whether we are the controlling ICE agent (our public key is the smaller).
    pub fn controlling(&self) -> bool {
        self.controlling
    }

    /// Where the session is.
    pub fn state(&self) -> SessionState {
        self.state
    }

    /// Our current session id.
    pub fn session_id(&self) -> u64 {
        self.offers.local().session_id
    }

    /// The version of our latest published offer.
    pub fn version(&self) -> u64 {
        self.offers.local().version
    }

    /// How many times a new local session replaced the first (give-ups and remote restarts).
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// How many times the agent's remote side was reset to the latest offer's candidates
    /// (the remote dropped a candidate, or checks from too many addresses).
    pub fn remote_resets(&self) -> u64 {
        self.remote_resets
    }

    /// How many remote candidates the agent holds (signalled and peer-reflexive).
    pub fn agent_remote_candidates(&self) -> usize {
        self.agent
            .as_ref()
            .map_or(0, |agent| agent.remote_candidates().count())
    }

    /// The latest nominated path of the current session.
    pub fn nominated(&self) -> Option<Path> {
        self.nominated
    }

    /// Our latest offer (what [`Session::poll_offer`] last returned or is about to).
    pub fn local_offer(&self) -> &SessionDescription {
        self.offers.local()
    }

    /// `(session id, version)` of the remote's latest accepted offer.
    pub fn last_received(&self) -> Option<(u64, u64)> {
        self.offers.last_received()
    }

    /// The remote's candidates in its latest accepted offer, in the offer's order.
    pub fn remote_candidates(&self) -> &[Candidate] {
        self.offers.remote_candidates()
    }

    /// Whether the remote's latest accepted offer says it gathered all its candidates.
    pub fn remote_end_of_candidates(&self) -> bool {
        self.offers.remote_end_of_candidates()
    }

    /// Takes a session description the remote published.
    pub fn handle_offer(&mut self, now: Instant, offer: SessionDescription) -> OfferOutcome {
        let verdict = self.offers.classify(offer.session_id, offer.version);
        let outcome = match verdict {
            Verdict::NotNewer => return OfferOutcome::Ignored(IgnoreReason::NotNewer),
            Verdict::UnknownSession => {
                return OfferOutcome::Ignored(IgnoreReason::UnknownSession);
            }
            Verdict::Retired => return OfferOutcome::Ignored(IgnoreReason::RetiredSession),
            Verdict::FirstSession | Verdict::Restart
                if offer.ice_ufrag.is_empty() || offer.ice_pwd.is_empty() =>
            {
                return OfferOutcome::Ignored(IgnoreReason::MissingCredentials);
            }
            Verdict::FirstSession => {
                let creds = remote_credentials(&offer);
                if self.agent.is_none() {
                    // Closed, waiting for the restart back-off: the remote already started
                    // over, so do not wait any longer.
                    self.restarts += 1;
                    self.start_local_session(now, Some(creds));
                } else {
                    if self.state == SessionState::Idle {
                        self.enter_new(now, creds);
                    }
                    // The remote may never have seen our offer (it was offline): once more.
                    self.outbox.push_back(self.offers.local().clone());
                }
                OfferOutcome::Accepted
            }
            Verdict::Newer => OfferOutcome::Accepted,
            Verdict::Restart => {
                self.restarts += 1;
                self.start_local_session(now, Some(remote_credentials(&offer)));
                OfferOutcome::Restarted
            }
        };
        let Accepted { fresh, dropped } = self.offers.accept(&offer);
        if dropped {
            // The agent can only mark a candidate discarded and keeps it for good: start its
            // remote side over with exactly the offer's set, so memory follows the offer.
            self.reset_remote_side();
        } else {
            self.add_remote_candidates(&fresh);
        }
        self.drive(now);
        outcome
    }

    /// Takes a STUN datagram that arrived from `source` on our address `destination`.
    pub fn handle_stun(
        &mut self,
        now: Instant,
        packet: &[u8],
        source: SocketAddr,
        destination: SocketAddr,
    ) -> Result<(), StunError> {
        let agent = self.agent.as_mut().ok_or(StunError::NoAgent)?;
        let message = is::stun::StunMessage::parse(packet).map_err(|_| StunError::Malformed)?;
        let packet = is::stun::StunPacket {
            proto: is::Protocol::Udp,
            source,
            destination,
            message,
        };
        if !agent.handle_packet(now, packet) {
            return Err(StunError::Rejected);
        }
        let remote_candidates = agent.remote_candidates().count();
        // A check from an address the remote never signalled adds a peer-reflexive candidate.
        if self.state == SessionState::New && remote_candidates > 0 {
            self.set_state(SessionState::Connecting);
        }
        // One per address, and the agent keeps them forever.
        if remote_candidates > MAX_AGENT_REMOTE_CANDIDATES {
            self.reset_remote_side();
        }
        self.drive(now);
        Ok(())
    }

    /// Adds a candidate the caller gathered and publishes the next offer with it.
    pub fn add_local_candidate(
        &mut self,
        now: Instant,
        candidate: Candidate,
    ) -> Result<(), CandidateError> {
        let agent = self.agent.as_mut().ok_or(CandidateError::NoAgent)?;
        let count = self.offers.local().candidates.len();
        if count >= MAX_CANDIDATES {
            return Err(CandidateError::TooMany(count));
        }
        let ice = candidate::local_to_ice(&candidate)?;
        let added = agent
            .add_local_candidate(ice)
            .ok_or(CandidateError::Redundant)?;
        let published = candidate::local_from_ice(added, &candidate);
        let offer = self.offers.push_local_candidate(published);
        self.outbox.push_back(offer);
        self.drive(now);
        Ok(())
    }

    /// Drops a local candidate (a relayed address whose allocation is gone): no check
    /// leaves from it again and it is never nominated. Returns whether the agent had it.
    pub fn remove_local_candidate(&mut self, now: Instant, address: SocketAddr) -> bool {
        let Some(agent) = self.agent.as_mut() else {
            return false;
        };
        let found = agent.local_candidates().find(|c| c.addr() == address);
        let removed = found.is_some_and(|candidate| agent.invalidate_candidate(&candidate));
        if self.nominated.is_some_and(|path| path.local == address) {
            self.nominated = None;
        }
        self.drive(now);
        removed
    }

    /// Starts a new local session at once (new id, credentials and agent; version 0
    /// published): for when our own addresses changed and the current pairs cannot work. The
    /// remote sees version 0 of a new id and restarts too (the restart rule).
    pub fn restart(&mut self, now: Instant) {
        self.restarts += 1;
        self.offers.retire_remote();
        self.start_local_session(now, None);
        self.drive(now);
    }

    /// Marks the caller's gathering complete and publishes an offer saying so (once).
    pub fn handle_gathering_complete(&mut self, now: Instant) {
        if self.agent.is_none() {
            return;
        }
        if let Some(offer) = self.offers.local_end_of_candidates() {
            self.outbox.push_back(offer);
        }
        self.drive(now);
    }

    /// Advances timers to `now`: whatever is due fires.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timers.take_due(TimeoutReason::GiveUp, now) {
            self.give_up(now);
        }
        if self.timers.take_due(TimeoutReason::Restart, now) {
            self.restarts += 1;
            self.start_local_session(now, None);
        }
        if self.timers.take_due(TimeoutReason::ResendOffer, now) && self.agent.is_some() {
            self.outbox.push_back(self.offers.local().clone());
            self.timers.arm_resend(now);
        }
        self.drive(now);
    }

    /// When to call [`Session::handle_timeout`] next, and why.
    ///
    /// The agent's deadline counts only once it has a remote candidate: before that it has
    /// nothing to check, and its idle tick would hide the session's own deadlines.
    pub fn poll_timeout(&mut self) -> Option<(Instant, TimeoutReason)> {
        let agent = self
            .agent
            .as_mut()
            .filter(|agent| {
                agent.remote_credentials().is_some() && agent.remote_candidates().next().is_some()
            })
            .and_then(is::IceAgent::poll_timeout);
        self.timers.earliest(agent)
    }

    /// The next STUN datagram to send; its source is always set (a host address, or a
    /// relayed one to send through TURN).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let agent = self.agent.as_mut()?;
        loop {
            let transmit = agent.poll_transmit()?;
            if transmit.proto != is::Protocol::Udp {
                continue;
            }
            return Some(Transmit {
                source: Some(transmit.source),
                destination: transmit.destination,
                contents: transmit.contents.into(),
            });
        }
    }

    /// The next offer to publish to the remote.
    pub fn poll_offer(&mut self) -> Option<SessionDescription> {
        self.outbox.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether [`Session::poll_event`] has something.
    pub fn has_pending_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Replaces the current local session (if any) with a new one: new id, credentials and
    /// agent, version 0 queued. With the remote's credentials it goes on to New.
    fn start_local_session(&mut self, now: Instant, remote: Option<is::IceCreds>) {
        if self.agent.take().is_some() {
            self.set_state(SessionState::Closed);
        }
        self.nominated = None;
        self.connected_once = false;
        self.schedule = CHECK_INTERVAL;
        self.connected_at = None;
        let id = self.rng.session_id();
        let creds = self.rng.ice_credentials();
        let offer = self.offers.new_local(id, &creds);
        let mut agent = is::IceAgent::new(creds);
        agent.set_controlling(self.controlling);
        agent.set_control_tie_breaker(self.rng.tie_breaker());
        // Patched `is` (patches/is/WICE-PATCH.md): check ids from our CSPRNG, and once the
        // nominated pair is valid only it is checked (the other valid pairs rest as backups).
        agent.set_transaction_id_source(self.rng.check_transaction_ids());
        agent.set_check_nominated_only(true);
        self.agent = Some(agent);
        self.timers.new_session();
        self.set_state(SessionState::Idle);
        self.outbox.push_back(offer);
        match remote {
            Some(creds) => self.enter_new(now, creds),
            None => self.timers.arm_resend(now),
        }
    }

    /// Idle → New: the remote's credentials are known; gathering starts, the give-up runs.
    fn enter_new(&mut self, now: Instant, creds: is::IceCreds) {
        if let Some(agent) = self.agent.as_mut() {
            agent.set_remote_credentials(creds);
        }
        self.timers.stop_resend();
        self.timers.arm_give_up(now);
        self.set_state(SessionState::New);
        self.events.push_back(Event::GatherCandidates);
    }

    /// Forgets every remote candidate the agent holds and gives it the latest offer's set
    /// again (same credentials both sides, same local candidates): pairs are checked anew.
    fn reset_remote_side(&mut self) {
        let Some(agent) = self.agent.as_mut() else {
            return;
        };
        let Some(remote) = agent.remote_credentials().cloned() else {
            return;
        };
        let local = agent.local_credentials().clone();
        agent.ice_restart(local, true);
        agent.set_remote_credentials(remote);
        self.remote_resets += 1;
        self.nominated = None;
        let current = self.offers.remote_candidates().to_vec();
        self.add_remote_candidates(&current);
    }

    /// WireGuard traffic crossed the peer's tunnel around `now` (the owner looks at the
    /// datapath's byte counters now and then): the path is in use, so it is checked on the
    /// active consent schedule again.
    pub fn handle_traffic(&mut self, now: Instant) {
        self.traffic_at = Some(now);
        self.apply_schedule(now);
    }

    /// Puts the agent on the consent schedule while connected (the slower idle one once the
    /// path has carried no traffic for [`PATH_IDLE_AFTER`]), back on the checking schedule
    /// otherwise.
    fn apply_schedule(&mut self, now: Instant) {
        let interval = if !self.state.is_connected() {
            CHECK_INTERVAL
        } else if self
            .traffic_at
            .max(self.connected_at)
            .is_some_and(|since| now.saturating_duration_since(since) >= PATH_IDLE_AFTER)
        {
            IDLE_CONSENT_INTERVAL
        } else {
            CONSENT_INTERVAL
        };
        if interval == self.schedule {
            return;
        }
        let Some(agent) = self.agent.as_mut() else {
            return;
        };
        self.schedule = interval;
        let retransmits = match interval {
            CHECK_INTERVAL => CHECK_RETRANSMITS,
            CONSENT_INTERVAL => CONSENT_RETRANSMITS,
            _ => IDLE_CONSENT_RETRANSMITS,
        };
        agent.set_max_stun_retransmits(retransmits);
        agent.set_max_stun_rto(interval);
    }

    fn add_remote_candidates(&mut self, candidates: &[Candidate]) {
        let Some(agent) = self.agent.as_mut() else {
            return;
        };
        let mut added = false;
        for candidate in candidates {
            // A TCP candidate is useless to us; the others may still work.
            if let Ok(ice) = candidate::remote_to_ice(candidate) {
                agent.add_remote_candidate(ice);
                added = true;
            }
        }
        if added && self.state == SessionState::New {
            self.set_state(SessionState::Connecting);
        }
    }

    /// The give-up timer fired: Failed (unless we had a path and lost it) → Closed, and the
    /// restart back-off starts.
    fn give_up(&mut self, now: Instant) {
        if self.state != SessionState::Disconnected {
            self.set_state(SessionState::Failed);
        }
        self.agent = None;
        self.nominated = None;
        self.set_state(SessionState::Closed);
        self.offers.retire_remote();
        self.timers.arm_restart(now);
    }

    /// Lets the agent run at `now` and turns its events into ours.
    fn drive(&mut self, now: Instant) {
        let Some(agent) = self.agent.as_mut() else {
            return;
        };
        agent.handle_timeout(now);
        let checking = agent.state() == is::IceConnectionState::Checking;
        let mut agent_events = Vec::new();
        while let Some(event) = agent.poll_event() {
            agent_events.push(event);
        }
        if checking && self.state == SessionState::Connecting {
            self.set_state(SessionState::Checking);
        }
        for event in agent_events {
            match event {
                is::IceAgentEvent::IceConnectionStateChange(ice) => {
                    let Some(to) = SessionState::from_agent(ice) else {
                        continue;
                    };
                    // The agent reports Checking as soon as it first runs, remote
                    // candidates or not; until one arrived the session's own state stands.
                    if to == SessionState::Checking
                        && matches!(
                            self.state,
                            SessionState::Idle | SessionState::New | SessionState::Connecting
                        )
                    {
                        continue;
                    }
                    // The agent reports Disconnected when every pair checked so far failed,
                    // even if none ever worked: that is still checking (more candidates
                    // may trickle in) under the give-up timer armed at New.
                    if to == SessionState::Disconnected && !self.connected_once {
                        continue;
                    }
                    if to.is_connected() {
                        if !self.state.is_connected() {
                            self.connected_at = Some(now);
                        }
                        self.connected_once = true;
                        self.timers.path_works();
                    } else if to == SessionState::Disconnected {
                        self.timers.arm_give_up(now);
                    }
                    self.set_state(to);
                }
                is::IceAgentEvent::NominatedSend {
                    proto: is::Protocol::Udp,
                    source,
                    destination,
                } => {
                    let path = Path {
                        local: source,
                        remote: destination,
                    };
                    if self.nominated != Some(path) {
                        self.nominated = Some(path);
                        self.events.push_back(Event::PathNominated(path));
                    }
                }
                // Restart notices (our credentials are in our offers already, and a reset
                // of the remote side keeps them), receive addresses (the datapath accepts
                // WireGuard from any address that authenticates) and TCP nominations are of
                // no use here.
                _ => {}
            }
        }
        self.apply_schedule(now);
    }

    fn set_state(&mut self, to: SessionState) {
        let from = self.state;
        if from != to {
            self.state = to;
            self.events.push_back(Event::StateChanged { from, to });
        }
    }
}

fn remote_credentials(offer: &SessionDescription) -> is::IceCreds {
    is::IceCreds {
        ufrag: offer.ice_ufrag.clone(),
        pass: offer.ice_pwd.clone(),
    }
}
