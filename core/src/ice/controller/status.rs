//! What `wice status` shows of each peer's ICE side, as values: the status layer of the
//! binary (`src/status.rs`) puts them into words.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::keys::PublicKey;
use crate::session::{Session, SessionState};
use crate::signaling::message::CandidateKind;

use super::super::peer_reason::{self, NatEvidence, PeerReason, RelayNote};
use super::super::reflexive::ProbeOutcome;
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
    /// When not connected directly: why, as data a person's words are made from.
    pub reason: Option<PeerReason>,
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

    fn reason(&self, entry: &PeerEntry) -> Option<PeerReason> {
        let session = &entry.session;
        let local = session.local_offer().candidates.len();
        let remote = session.remote_candidates().len();
        Some(match session.state() {
            SessionState::Connected | SessionState::Completed => {
                let nominated = entry.nominated?;
                return match (nominated.target, nominated.kind) {
                    (None, _) => Some(PeerReason::BindingTurnChannel),
                    (Some(_), PathKind::Relay) => {
                        Some(PeerReason::Relayed(self.nat_evidence(entry)))
                    }
                    (Some(_), _) => None,
                };
            }
            SessionState::Unknown | SessionState::Idle => PeerReason::NoOfferFromPeer,
            SessionState::New if local == 0 => PeerReason::GatheringCandidates,
            SessionState::New | SessionState::Connecting => {
                PeerReason::WaitingForPeerCandidates { local }
            }
            SessionState::Checking => PeerReason::Checking {
                pairs: local * remote,
            },
            SessionState::Disconnected => PeerReason::PathStoppedAnswering,
            SessionState::Failed | SessionState::Closed => PeerReason::ChecksFailed {
                pairs: entry.pairs,
                relay: self.relay_note(),
            },
        })
    }

    /// What our probes and the peer's candidates say about the two NATs.
    fn nat_evidence(&self, entry: &PeerEntry) -> NatEvidence {
        let mapped: Vec<(Option<SocketAddr>, SocketAddr)> = self
            .probes
            .iter()
            .filter_map(|p| match p.outcome() {
                ProbeOutcome::Mapped(m) => Some((p.base(), m)),
                _ => None,
            })
            .collect();
        let (peer_srflx, peer_symmetric) =
            peer_reason::peer_evidence(entry.session.remote_candidates());
        NatEvidence {
            local_srflx: !mapped.is_empty(),
            peer_srflx,
            local_symmetric: peer_reason::symmetric(&mapped),
            peer_symmetric,
        }
    }

    fn relay_note(&self) -> RelayNote {
        if !self.candidate_types.relay {
            return RelayNote::TurnedOff;
        }
        if self.relays.is_empty() {
            return RelayNote::NoTurnServer;
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
            RelayNote::ServersFailed(failed)
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
