//! The offer protocol against a reference model (issue 10, item 5).
//!
//! The model is the contract in `session`'s and `offer`'s documentation, written again as
//! plainly as possible: which received offer is used (id, version, restart rule, retired
//! sessions, credentials), what the remote's candidate set and end-of-candidates become, when
//! we start a new local session, and what we publish. Random sequences of a remote's offers
//! (several remote sessions, cumulative candidates, eoc) are delivered duplicated, reordered
//! and dropped, with restarts from either side, to the real `Session` and to the model; every
//! step's outcome and visible state must agree. `MODEL_CASES=N` runs N sequences (default
//! 3000); a failure names the case's seed (`MODEL_SEED=S` re-runs it alone).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use wice_sim::product::session::{
    Candidate, CandidateKind, IgnoreReason, OfferOutcome, PublicKey, Session, SessionDescription,
    SessionState, Transport,
};
use wice_sim::rng::SimRng;

const DEFAULT_CASES: u64 = 3000;

/// What the model expects of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Published {
    /// Nothing published.
    Nothing,
    /// Our current offer once more (same session).
    Again,
    /// Version 0 of a new local session.
    NewSession,
}

/// The reference model of the receiving side.
#[derive(Debug, Default)]
struct Model {
    last: Option<(u64, u64)>,
    retired: Option<u64>,
    candidates: Vec<SocketAddr>,
    eoc: bool,
    restarts: u64,
    /// The remote's credentials are known (the session left Idle).
    credentials: bool,
}

impl Model {
    fn handle_offer(&mut self, offer: &SessionDescription) -> (OfferOutcome, Published) {
        let has_credentials = !offer.ice_ufrag.is_empty() && !offer.ice_pwd.is_empty();
        if self.retired == Some(offer.session_id) {
            return (Ignored(IgnoreReason::RetiredSession), Published::Nothing);
        }
        let (outcome, published) = match self.last {
            None if !has_credentials => {
                return (
                    Ignored(IgnoreReason::MissingCredentials),
                    Published::Nothing,
                );
            }
            // The first offer of a remote session: ours once more (it may have missed it).
            None => {
                self.credentials = true;
                (OfferOutcome::Accepted, Published::Again)
            }
            Some((id, version)) if id == offer.session_id => {
                if offer.version <= version {
                    return (Ignored(IgnoreReason::NotNewer), Published::Nothing);
                }
                (OfferOutcome::Accepted, Published::Nothing)
            }
            Some(_) if offer.version != 0 => {
                return (Ignored(IgnoreReason::UnknownSession), Published::Nothing);
            }
            Some(_) if !has_credentials => {
                return (
                    Ignored(IgnoreReason::MissingCredentials),
                    Published::Nothing,
                );
            }
            // The restart rule: a new remote session at version 0 restarts ours.
            Some(_) => {
                self.restarts += 1;
                self.credentials = true;
                (OfferOutcome::Restarted, Published::NewSession)
            }
        };
        self.last = Some((offer.session_id, offer.version));
        self.candidates = offer.candidates.iter().map(|c| c.address).collect();
        self.eoc = offer.end_of_candidates;
        (outcome, published)
    }

    /// We start over (our addresses changed): the remote's session is retired.
    fn restart(&mut self) -> Published {
        self.restarts += 1;
        if let Some((id, _)) = self.last.take() {
            self.retired = Some(id);
        }
        self.candidates.clear();
        self.eoc = false;
        self.credentials = false;
        Published::NewSession
    }
}

use OfferOutcome::Ignored;

fn key(first: u8) -> PublicKey {
    let mut bytes = [0u8; 32];
    bytes[0] = first;
    PublicKey::from(bytes)
}

fn candidate(session: u8, n: u8) -> Candidate {
    Candidate {
        kind: CandidateKind::Host,
        transport: Transport::Udp,
        address: SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, n + 1)),
            40000 + u16::from(session),
        ),
        priority: 0,
        foundation: String::new(),
        related: None,
    }
}

/// Every offer a remote with 1–3 sessions publishes, in publishing order.
fn remote_offers(rng: &mut SimRng) -> Vec<SessionDescription> {
    let mut offers = Vec::new();
    for session in 0..1 + rng.below(3) as u8 {
        let id = rng.next_u64() | 1;
        let versions = 1 + rng.below(5);
        let credentials = !rng.chance(0.05);
        let mut candidates = Vec::new();
        for version in 0..versions {
            if version > 0 {
                candidates.push(candidate(session, version as u8));
            }
            offers.push(SessionDescription {
                session_id: id,
                version,
                ice_ufrag: if credentials {
                    format!("u{session}")
                } else {
                    String::new()
                },
                ice_pwd: if credentials {
                    format!("password-{session}-0123456789")
                } else {
                    String::new()
                },
                candidates: candidates.clone(),
                end_of_candidates: version + 1 == versions && rng.chance(0.5),
            });
        }
    }
    offers
}

fn run_case(seed: u64) -> Result<(), String> {
    let mut rng = SimRng::new(seed, 0x0FFE5);
    let offers = remote_offers(&mut rng);
    // Either side may hold the smaller key: roles must follow it.
    let (local, remote) = if rng.chance(0.5) {
        (key(1), key(2))
    } else {
        (key(2), key(1))
    };
    let t0 = Instant::now();
    let mut session = Session::new(local, remote, seed, t0);
    let mut model = Model::default();
    let controlling = session.controlling();
    if controlling != (local < remote) {
        return Err("the smaller key must be the controlling agent".to_owned());
    }
    let mut ours = session.poll_offer().ok_or("no first offer")?;
    while session.poll_offer().is_some() {}
    let mut cursor = 0usize;
    let mut trace = Vec::new();
    for step in 0..rng.below(40) + 1 {
        let now = t0 + Duration::from_millis(step * 10);
        let roll = rng.below(100);
        let expected_publish = if roll < 12 {
            trace.push("local restart".to_owned());
            session.restart(now);
            model.restart()
        } else {
            let index = if roll < 70 {
                // In order, sometimes skipping one (a lost message).
                cursor += 1 + usize::from(rng.chance(0.15));
                cursor - 1
            } else {
                // Anything already or soon published: duplicates and reordering.
                rng.below(offers.len() as u64) as usize
            };
            let Some(offer) = offers.get(index) else {
                break;
            };
            trace.push(format!(
                "offer {} v{}",
                offer.session_id % 1000,
                offer.version
            ));
            let outcome = session.handle_offer(now, offer.clone());
            let (expected, publish) = model.handle_offer(offer);
            if outcome != expected {
                return Err(format!(
                    "outcome {outcome:?}, model {expected:?}; {trace:?}"
                ));
            }
            publish
        };
        let published: Vec<SessionDescription> =
            std::iter::from_fn(|| session.poll_offer()).collect();
        let ok = match expected_publish {
            Published::Nothing => published.is_empty(),
            Published::Again => published.len() == 1 && published[0].session_id == ours.session_id,
            Published::NewSession => {
                published.len() == 1
                    && published[0].session_id != ours.session_id
                    && published[0].version == 0
                    && published[0].candidates.is_empty()
            }
        };
        if !ok {
            return Err(format!(
                "published {published:?}, model {expected_publish:?}; {trace:?}"
            ));
        }
        if let Some(last) = published.last() {
            ours = last.clone();
        }
        let remote_candidates: Vec<SocketAddr> = session
            .remote_candidates()
            .iter()
            .map(|c| c.address)
            .collect();
        let checks = [
            (
                "last received",
                format!("{:?}", session.last_received()),
                format!("{:?}", model.last),
            ),
            (
                "candidates",
                format!("{remote_candidates:?}"),
                format!("{:?}", model.candidates),
            ),
            (
                "eoc",
                session.remote_end_of_candidates().to_string(),
                model.eoc.to_string(),
            ),
            (
                "restarts",
                session.restarts().to_string(),
                model.restarts.to_string(),
            ),
            (
                "credentials known",
                (session.state() != SessionState::Idle).to_string(),
                model.credentials.to_string(),
            ),
            (
                "role",
                session.controlling().to_string(),
                controlling.to_string(),
            ),
        ];
        for (what, real, expected) in checks {
            if real != expected {
                return Err(format!(
                    "{what}: session {real}, model {expected}; {trace:?}"
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn the_session_follows_the_offer_protocol_model_through_duplicates_reordering_losses_and_restarts()
{
    let seeds: Vec<u64> = match std::env::var("MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => vec![seed],
        None => {
            let cases = std::env::var("MODEL_CASES")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(DEFAULT_CASES);
            (0..cases).collect()
        }
    };
    let failures: Vec<String> = seeds
        .iter()
        .filter_map(|seed| {
            run_case(*seed)
                .err()
                .map(|e| format!("MODEL_SEED={seed}: {e}"))
        })
        .take(3)
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
