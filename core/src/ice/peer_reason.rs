//! Why a peer is not connected directly, as data: `wice status` and `wice ping` word it (in
//! the binary's status layer), metrics or a UI may word it differently.
//!
//! The NAT evidence comes from what the controller already has, no extra traffic: our own
//! server-reflexive addresses from different STUN servers (a port that changes per server
//! means our NAT maps per destination), and the peer's signalled server-reflexive
//! candidates (two of one base with one IP and different ports mean the same of its NAT).
//! With one STUN server per side there is nothing to compare and the evidence says so.

use std::net::SocketAddr;

use crate::signaling::message::{Candidate, CandidateKind};

use super::relay::RelayFailure;

/// A peer's state in words-to-be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerReason {
    /// No offer from the peer yet: is it up, and on the same signaling server?
    NoOfferFromPeer,
    /// Our own candidates are still being gathered.
    GatheringCandidates,
    /// Our offer is out; the peer's candidates have not come.
    WaitingForPeerCandidates {
        /// Candidates we sent.
        local: usize,
    },
    /// Connectivity checks are running.
    Checking {
        /// Candidate pairs.
        pairs: usize,
    },
    /// The nominated path stopped answering; checking again.
    PathStoppedAnswering,
    /// Every candidate pair failed; the session retries with back-off.
    ChecksFailed {
        /// Candidate pairs that failed (zero: no pair could be formed at all).
        pairs: usize,
        /// Why no relay saved it.
        relay: RelayNote,
    },
    /// A relayed path was found; its TURN channel is being bound.
    BindingTurnChannel,
    /// Connected, through a TURN relay.
    Relayed(NatEvidence),
}

/// Why a relay did not save a failed peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayNote {
    /// `ice.candidate_types` leaves relays out.
    TurnedOff,
    /// No TURN server is configured.
    NoTurnServer,
    /// These TURN servers have no allocation, for these reasons.
    ServersFailed(Vec<(SocketAddr, RelayFailure)>),
    /// A relay candidate existed and did not work either.
    DidNotWork,
}

/// What the two sides' candidates say about their NATs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NatEvidence {
    /// This node has a server-reflexive address (a STUN server answered).
    pub local_srflx: bool,
    /// The peer signalled a server-reflexive candidate.
    pub peer_srflx: bool,
    /// Our NAT maps per destination: `Some(true)` when STUN servers saw different ports,
    /// `Some(false)` when servers at different IPs saw one, `None` when nothing compares.
    pub local_symmetric: Option<bool>,
    /// The peer's NAT maps per destination, from its server-reflexive candidates.
    pub peer_symmetric: Option<bool>,
}

/// Whether the mapped addresses (each with its base) show a mapping per destination.
pub(crate) fn symmetric(mapped: &[(Option<SocketAddr>, SocketAddr)]) -> Option<bool> {
    let mut verdict = None;
    for (i, (base_a, a)) in mapped.iter().enumerate() {
        for (base_b, b) in &mapped[i + 1..] {
            if base_a != base_b || a.ip() != b.ip() {
                continue;
            }
            if a.port() != b.port() {
                return Some(true);
            }
            verdict = Some(false);
        }
    }
    verdict
}

/// The peer's side of the evidence, from its signalled candidates.
pub(crate) fn peer_evidence(candidates: &[Candidate]) -> (bool, Option<bool>) {
    let srflx: Vec<(Option<SocketAddr>, SocketAddr)> = candidates
        .iter()
        .filter(|c| c.kind == CandidateKind::ServerReflexive)
        .map(|c| (c.related, c.address))
        .collect();
    (!srflx.is_empty(), symmetric(&srflx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ports_that_differ_per_server_for_one_base_mean_a_symmetric_nat() {
        let base = Some(a("192.168.3.2:51820"));
        assert_eq!(
            symmetric(&[(base, a("198.18.3.2:1000")), (base, a("198.18.3.2:2000"))]),
            Some(true)
        );
        assert_eq!(
            symmetric(&[(base, a("198.18.3.2:1000")), (base, a("198.18.3.2:1000"))]),
            Some(false)
        );
        assert_eq!(symmetric(&[(base, a("198.18.3.2:1000"))]), None);
        let other_base = Some(a("10.0.0.2:51820"));
        assert_eq!(
            symmetric(&[
                (base, a("198.18.3.2:1000")),
                (other_base, a("198.18.3.2:2000"))
            ]),
            None,
            "different sockets may map to different ports on any NAT"
        );
    }
}
