//! What `wice status` shows of each peer's ICE side, as values: the status layer of the
//! binary (`src/status.rs`) puts them into words.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::keys::PublicKey;
use crate::session::{Session, SessionState};
use crate::signaling::message::CandidateKind;

use super::super::relay::{RelayFailure, RelayState};
use super::{Controller, PathKind, PeerEntry};

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
    /// Remote candidates the agent holds (signalled and peer-reflexive).
    pub remote_candidates: usize,
    /// When not connected: why.
    pub reason: Option<NotConnected>,
}

/// Why a peer's ICE side does not carry its traffic yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotConnected {
    /// A relayed path was found; its TURN channel is being bound.
    BindingChannel,
    /// No offer from the peer yet (is it up, on the same signaling server?).
    NoOfferFromPeer,
    /// Our candidates are being gathered.
    Gathering,
    /// Our candidates were sent; the peer's have not come.
    WaitingForPeerCandidates {
        /// Local candidates sent.
        sent: usize,
    },
    /// Candidate pairs are being checked.
    Checking {
        /// Pairs being checked.
        pairs: usize,
    },
    /// The path stopped answering; it is checked again before the session gives up.
    PathStoppedAnswering,
    /// Every candidate pair failed; a new session follows after a back-off.
    PairsFailed {
        /// Pairs the session had.
        pairs: usize,
        /// Why the relay did not save it.
        relay: RelayNote,
    },
}

/// Why no relayed pair worked when every pair failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayNote {
    /// Relay candidates are turned off (`ice.candidate_types`).
    TurnedOff,
    /// No TURN server is configured.
    NoServer,
    /// The relay candidate was there and did not work either.
    DidNotWork,
    /// These TURN servers have no allocation, for these reasons.
    Failed(Vec<(SocketAddr, RelayFailure)>),
}

impl Controller {
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
            remote_candidates: session.agent_remote_candidates(),
            reason: self.reason(entry),
        }
    }

    fn reason(&self, entry: &PeerEntry) -> Option<NotConnected> {
        let session = &entry.session;
        let local = session.local_offer().candidates.len();
        let remote = session.remote_candidates().len();
        Some(match session.state() {
            SessionState::Connected | SessionState::Completed => {
                return match entry.nominated.and_then(|n| n.target) {
                    Some(_) => None,
                    None => Some(NotConnected::BindingChannel),
                };
            }
            SessionState::Unknown | SessionState::Idle => NotConnected::NoOfferFromPeer,
            SessionState::New if local == 0 => NotConnected::Gathering,
            SessionState::New | SessionState::Connecting => {
                NotConnected::WaitingForPeerCandidates { sent: local }
            }
            SessionState::Checking => NotConnected::Checking {
                pairs: local * remote,
            },
            SessionState::Disconnected => NotConnected::PathStoppedAnswering,
            SessionState::Failed | SessionState::Closed => NotConnected::PairsFailed {
                pairs: entry.pairs,
                relay: self.relay_note(),
            },
        })
    }

    fn relay_note(&self) -> RelayNote {
        if !self.candidate_types.relay {
            return RelayNote::TurnedOff;
        }
        if self.relays.is_empty() {
            return RelayNote::NoServer;
        }
        let failed: Vec<(SocketAddr, RelayFailure)> = self
            .relays
            .iter()
            .filter_map(|r| match r.state() {
                RelayState::Failed(why) => Some((r.server(), *why)),
                _ => None,
            })
            .collect();
        if failed.is_empty() {
            RelayNote::DidNotWork
        } else {
            RelayNote::Failed(failed)
        }
    }
}

/// The kind of a direct path to `remote`, from the candidate the peer signalled for it. A
/// check can arrive before the offer that lists its address: the kind is then `prflx` until
/// the offer comes, which is why status asks again rather than keeping the first answer.
pub(super) fn path_kind(session: &Session, remote: SocketAddr) -> PathKind {
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
