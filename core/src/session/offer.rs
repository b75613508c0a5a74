//! Offer bookkeeping: our own published description, and what we accepted from the remote.
//!
//! Backends may reorder and duplicate messages, so every received offer is first classified
//! against the last one accepted ([`Offers::classify`]):
//! - the first offer ever (or the first after we retired the remote's session) starts the
//!   remote session;
//! - within the same session id only a strictly newer version is accepted;
//! - a different id at version 0 is the remote restarting (the restart rule);
//! - a different id at a later version is ignored: either a stale offer of an older remote
//!   session, or a newer session whose version 0 we missed (our give-up timer recovers that);
//! - offers of a session we retired ourselves (at a give-up) are ignored.

use crate::signaling::message::{Candidate, SessionDescription};

/// What to do with a received offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// No remote session is current: this one becomes it.
    FirstSession,
    /// Same session, newer version.
    Newer,
    /// A remote session we knew was replaced by a new one at version 0.
    Restart,
    /// Same session, version not newer: reordered or duplicated.
    NotNewer,
    /// A different session at a version above 0.
    UnknownSession,
    /// The session we gave up on.
    Retired,
}

/// What [`Offers::accept`] changed in the remote's candidate set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Accepted {
    /// Candidates not in the previous set.
    pub(super) fresh: Vec<Candidate>,
    /// Whether a candidate of the previous set is missing from this one.
    pub(super) dropped: bool,
}

/// Both sides' offers.
#[derive(Debug, Clone)]
pub(super) struct Offers {
    /// Our latest published offer.
    local: SessionDescription,
    /// `(id, version)` of the remote's latest accepted offer.
    last_recv: Option<(u64, u64)>,
    /// The remote session we gave up on; its offers are ignored.
    retired: Option<u64>,
    /// The remote's candidates in its latest accepted offer (at most one offer's worth).
    remote_candidates: Vec<Candidate>,
    /// The remote said it gathered all its candidates.
    remote_eoc: bool,
}

impl Offers {
    pub(super) fn new() -> Self {
        Self {
            local: SessionDescription {
                session_id: 0,
                version: 0,
                ice_ufrag: String::new(),
                ice_pwd: String::new(),
                candidates: Vec::new(),
                end_of_candidates: false,
            },
            last_recv: None,
            retired: None,
            remote_candidates: Vec::new(),
            remote_eoc: false,
        }
    }

    /// Our latest offer.
    pub(super) fn local(&self) -> &SessionDescription {
        &self.local
    }

    /// Starts a new local session: version 0, no candidates. Returns the offer to publish.
    pub(super) fn new_local(&mut self, id: u64, creds: &is::IceCreds) -> SessionDescription {
        self.local = SessionDescription {
            session_id: id,
            version: 0,
            ice_ufrag: creds.ufrag.clone(),
            ice_pwd: creds.pass.clone(),
            candidates: Vec::new(),
            end_of_candidates: false,
        };
        self.local.clone()
    }

    /// Adds a local candidate. Returns the next offer (version + 1, all candidates so far).
    pub(super) fn push_local_candidate(&mut self, candidate: Candidate) -> SessionDescription {
        self.local.candidates.push(candidate);
        self.local.version += 1;
        self.local.clone()
    }

    /// Marks local gathering complete. Returns the next offer, or `None` if already marked.
    pub(super) fn local_end_of_candidates(&mut self) -> Option<SessionDescription> {
        if self.local.end_of_candidates {
            return None;
        }
        self.local.end_of_candidates = true;
        self.local.version += 1;
        Some(self.local.clone())
    }

    /// Classifies a received offer without recording it.
    pub(super) fn classify(&self, id: u64, version: u64) -> Verdict {
        if self.retired == Some(id) {
            return Verdict::Retired;
        }
        match self.last_recv {
            None => Verdict::FirstSession,
            Some((last_id, last_version)) if last_id == id => {
                if version > last_version {
                    Verdict::Newer
                } else {
                    Verdict::NotNewer
                }
            }
            Some(_) if version == 0 => Verdict::Restart,
            Some(_) => Verdict::UnknownSession,
        }
    }

    /// Records an offer classified as [`Verdict::FirstSession`], [`Verdict::Newer`] or
    /// [`Verdict::Restart`]. The offer's candidates replace the previous set (each version
    /// lists every candidate of its session, so the set stays as small as one offer), and
    /// the answer says which are new and whether any were dropped.
    pub(super) fn accept(&mut self, offer: &SessionDescription) -> Accepted {
        if self.last_recv.map(|(id, _)| id) != Some(offer.session_id) {
            self.remote_candidates.clear();
            self.remote_eoc = false;
        }
        self.last_recv = Some((offer.session_id, offer.version));
        self.remote_eoc = offer.end_of_candidates;
        let mut current: Vec<Candidate> = Vec::with_capacity(offer.candidates.len());
        for candidate in &offer.candidates {
            if !current.contains(candidate) {
                current.push(candidate.clone());
            }
        }
        let dropped = self.remote_candidates.iter().any(|c| !current.contains(c));
        let fresh = current
            .iter()
            .filter(|c| !self.remote_candidates.contains(c))
            .cloned()
            .collect();
        self.remote_candidates = current;
        Accepted { fresh, dropped }
    }

    /// Forgets the current remote session and ignores its offers from now on (at a give-up,
    /// so that the remote's answer to our restart is a first session, not a restart).
    pub(super) fn retire_remote(&mut self) {
        if let Some((id, _)) = self.last_recv.take() {
            self.retired = Some(id);
        }
        self.remote_candidates.clear();
        self.remote_eoc = false;
    }

    /// The remote candidates accepted in the current remote session.
    pub(super) fn remote_candidates(&self) -> &[Candidate] {
        &self.remote_candidates
    }

    /// Whether the remote's latest accepted offer said it gathered all its candidates.
    pub(super) fn remote_end_of_candidates(&self) -> bool {
        self.remote_eoc
    }

    /// `(id, version)` of the remote's latest accepted offer.
    pub(super) fn last_received(&self) -> Option<(u64, u64)> {
        self.last_recv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(id: u64, version: u64) -> SessionDescription {
        SessionDescription {
            session_id: id,
            version,
            ice_ufrag: "ufrag".to_owned(),
            ice_pwd: "password".to_owned(),
            candidates: Vec::new(),
            end_of_candidates: false,
        }
    }

    #[test]
    fn within_one_session_only_strictly_newer_versions_are_accepted() {
        let mut offers = Offers::new();
        assert_eq!(offers.classify(5, 0), Verdict::FirstSession);
        offers.accept(&offer(5, 2));
        assert_eq!(offers.classify(5, 1), Verdict::NotNewer);
        assert_eq!(offers.classify(5, 2), Verdict::NotNewer);
        assert_eq!(offers.classify(5, 3), Verdict::Newer);
    }

    #[test]
    fn a_new_id_is_a_restart_only_at_version_0() {
        let mut offers = Offers::new();
        offers.accept(&offer(5, 2));
        assert_eq!(offers.classify(6, 0), Verdict::Restart);
        assert_eq!(offers.classify(6, 1), Verdict::UnknownSession);
    }

    #[test]
    fn a_retired_session_is_ignored_and_the_next_one_is_a_first_session() {
        let mut offers = Offers::new();
        offers.accept(&offer(5, 2));
        offers.retire_remote();
        assert_eq!(offers.classify(5, 3), Verdict::Retired);
        assert_eq!(offers.classify(6, 0), Verdict::FirstSession);
    }

    #[test]
    fn accepting_returns_only_candidates_not_seen_in_this_session() {
        let mut offers = Offers::new();
        let a = Candidate {
            kind: crate::signaling::message::CandidateKind::Host,
            transport: crate::signaling::message::Transport::Udp,
            address: "192.0.2.1:1".parse().unwrap(),
            priority: 1,
            foundation: "1".to_owned(),
            related: None,
        };
        let mut b = a.clone();
        b.address = "192.0.2.2:2".parse().unwrap();
        let mut first = offer(5, 1);
        first.candidates = vec![a.clone()];
        assert_eq!(offers.accept(&first).fresh, vec![a.clone()]);
        let mut second = offer(5, 2);
        second.candidates = vec![a.clone(), b.clone()];
        second.end_of_candidates = true;
        assert_eq!(offers.accept(&second).fresh, vec![b.clone()]);
        assert!(offers.remote_end_of_candidates());
        let mut restarted = offer(6, 0);
        restarted.candidates = vec![a.clone()];
        assert_eq!(offers.accept(&restarted).fresh, vec![a.clone()]);
        assert!(!offers.remote_end_of_candidates());
    }

    #[test]
    fn each_version_replaces_the_candidate_set_and_says_when_one_was_dropped() {
        let mut offers = Offers::new();
        let candidate = |port: u16| Candidate {
            kind: crate::signaling::message::CandidateKind::Host,
            transport: crate::signaling::message::Transport::Udp,
            address: std::net::SocketAddr::from(([192, 0, 2, 1], port)),
            priority: 1,
            foundation: "1".to_owned(),
            related: None,
        };
        let mut first = offer(5, 1);
        first.candidates = vec![candidate(1), candidate(1), candidate(2)];
        let accepted = offers.accept(&first);
        assert_eq!(accepted.fresh, vec![candidate(1), candidate(2)]);
        assert!(!accepted.dropped);
        let mut second = offer(5, 2);
        second.candidates = vec![candidate(2), candidate(3)];
        let accepted = offers.accept(&second);
        assert_eq!(accepted.fresh, vec![candidate(3)]);
        assert!(accepted.dropped);
        assert_eq!(offers.remote_candidates(), [candidate(2), candidate(3)]);
    }
}
