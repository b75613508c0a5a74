//! Conversions between our wire candidates ([`Candidate`]) and the agent's (`is::Candidate`).
//!
//! Only UDP is supported (the datapath has one UDP socket); a TCP candidate is refused on the
//! way in, a TCP transmit is dropped on the way out. A local candidate's priority and
//! foundation are the agent's (it computes them when the candidate is added); a remote one's
//! are taken as sent.

use std::net::SocketAddr;

use crate::signaling::message::{Candidate, CandidateKind, Transport};

/// Why a candidate cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CandidateError {
    /// There is no agent (the session is closed, waiting to restart).
    #[error("no ICE agent (session closed)")]
    NoAgent,
    /// TCP candidates are not supported.
    #[error("TCP candidates are not supported")]
    UnsupportedTransport,
    /// Peer-reflexive candidates are discovered by checks, not gathered.
    #[error("a local candidate cannot be peer-reflexive")]
    PeerReflexive,
    /// A server-reflexive or relayed candidate needs its base (`related`).
    #[error("a {0:?} candidate needs its related (base) address")]
    MissingRelated(CandidateKind),
    /// The agent refused the address (unspecified, multicast, broadcast, link-local).
    #[error("address {0} refused by the ICE agent")]
    InvalidAddress(SocketAddr),
    /// Same address and base as a candidate already added, and not better.
    #[error("redundant with a candidate already added")]
    Redundant,
    /// Our offer already carries the most candidates a description may hold.
    #[error("already {0} local candidates")]
    TooMany(usize),
}

/// The agent's form of a candidate we gathered.
pub(super) fn local_to_ice(candidate: &Candidate) -> Result<is::Candidate, CandidateError> {
    if candidate.transport != Transport::Udp {
        return Err(CandidateError::UnsupportedTransport);
    }
    let address = candidate.address;
    let base = |kind| {
        candidate
            .related
            .ok_or(CandidateError::MissingRelated(kind))
    };
    let ice = match candidate.kind {
        CandidateKind::Host => is::Candidate::host(address, is::Protocol::Udp),
        CandidateKind::ServerReflexive => is::Candidate::server_reflexive(
            address,
            base(CandidateKind::ServerReflexive)?,
            is::Protocol::Udp,
        ),
        CandidateKind::Relayed => {
            is::Candidate::relayed(address, base(CandidateKind::Relayed)?, is::Protocol::Udp)
        }
        CandidateKind::PeerReflexive => return Err(CandidateError::PeerReflexive),
    };
    ice.map_err(|_| CandidateError::InvalidAddress(address))
}

/// Our wire form of a local candidate the agent accepted: its address, kind and `related` as
/// gathered, priority and foundation as the agent computed them.
pub(super) fn local_from_ice(added: &is::Candidate, gathered: &Candidate) -> Candidate {
    Candidate {
        kind: gathered.kind,
        transport: Transport::Udp,
        address: added.addr(),
        priority: added.prio(),
        foundation: foundation(added),
        related: gathered.related,
    }
}

/// The agent keeps the foundation crate-private; its SDP line starts with it
/// (`candidate:<foundation> <component> ...`).
fn foundation(candidate: &is::Candidate) -> String {
    let line = candidate.to_sdp_string();
    line.strip_prefix("candidate:")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_default()
        .to_owned()
}

/// The agent's form of a candidate the remote sent.
pub(super) fn remote_to_ice(candidate: &Candidate) -> Result<is::Candidate, CandidateError> {
    if candidate.transport != Transport::Udp {
        return Err(CandidateError::UnsupportedTransport);
    }
    let kind = match candidate.kind {
        CandidateKind::Host => is::CandidateKind::Host,
        CandidateKind::ServerReflexive => is::CandidateKind::ServerReflexive,
        CandidateKind::PeerReflexive => is::CandidateKind::PeerReflexive,
        CandidateKind::Relayed => is::CandidateKind::Relayed,
    };
    Ok(is::Candidate::from_parts(
        candidate.foundation.clone(),
        1,
        is::Protocol::Udp,
        candidate.priority,
        candidate.address,
        kind,
        candidate.related,
        None,
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gathered(kind: CandidateKind, address: &str, related: Option<&str>) -> Candidate {
        Candidate {
            kind,
            transport: Transport::Udp,
            address: address.parse().unwrap(),
            priority: 0,
            foundation: String::new(),
            related: related.map(|r| r.parse().unwrap()),
        }
    }

    #[test]
    fn a_host_candidate_takes_the_agents_priority_and_a_nonempty_foundation() {
        let ours = gathered(CandidateKind::Host, "192.0.2.1:51820", None);
        let ice = local_to_ice(&ours).unwrap();
        let back = local_from_ice(&ice, &ours);
        assert_eq!(back.address, ours.address);
        assert_eq!(back.kind, CandidateKind::Host);
        assert_eq!(back.priority, ice.prio());
        assert!(!back.foundation.is_empty() && back.foundation.len() <= 32);
        assert!(!back.foundation.contains(' '));
    }

    #[test]
    fn reflexive_and_relayed_candidates_keep_their_base_as_related() {
        let srflx = gathered(
            CandidateKind::ServerReflexive,
            "198.51.100.7:40000",
            Some("10.0.0.1:51820"),
        );
        let back = local_from_ice(&local_to_ice(&srflx).unwrap(), &srflx);
        assert_eq!(back.related, srflx.related);
        assert_eq!(back.kind, CandidateKind::ServerReflexive);
        let relay = gathered(CandidateKind::Relayed, "203.0.113.9:3478", None);
        assert_eq!(
            local_to_ice(&relay).unwrap_err(),
            CandidateError::MissingRelated(CandidateKind::Relayed)
        );
    }

    #[test]
    fn tcp_peer_reflexive_and_unspecified_local_candidates_are_refused() {
        let mut tcp = gathered(CandidateKind::Host, "192.0.2.1:1", None);
        tcp.transport = Transport::Tcp;
        assert_eq!(
            local_to_ice(&tcp).unwrap_err(),
            CandidateError::UnsupportedTransport
        );
        assert_eq!(
            local_to_ice(&gathered(CandidateKind::PeerReflexive, "192.0.2.1:1", None)).unwrap_err(),
            CandidateError::PeerReflexive
        );
        assert_eq!(
            local_to_ice(&gathered(CandidateKind::Host, "0.0.0.0:1", None)).unwrap_err(),
            CandidateError::InvalidAddress("0.0.0.0:1".parse().unwrap())
        );
    }

    #[test]
    fn a_remote_candidate_keeps_its_address_priority_and_kind() {
        let mut theirs = gathered(
            CandidateKind::ServerReflexive,
            "198.51.100.7:40000",
            Some("10.0.0.1:51820"),
        );
        theirs.priority = 1_694_498_815;
        theirs.foundation = "abc".to_owned();
        let ice = remote_to_ice(&theirs).unwrap();
        assert_eq!(ice.addr(), theirs.address);
        assert_eq!(ice.prio(), 1_694_498_815);
        assert_eq!(ice.kind(), is::CandidateKind::ServerReflexive);
        assert!(
            ice.to_sdp_string()
                .starts_with("candidate:abc 1 udp 1694498815")
        );
    }
}
