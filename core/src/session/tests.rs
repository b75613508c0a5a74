//! The session's contract, with fake time: every instant is `t0` plus milliseconds.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::signaling::message::{CandidateKind, Transport};

fn key(first: u8, last: u8) -> PublicKey {
    let mut bytes = [0u8; 32];
    bytes[0] = first;
    bytes[31] = last;
    PublicKey::from(bytes)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn host(address: &str) -> Candidate {
    Candidate {
        kind: CandidateKind::Host,
        transport: Transport::Udp,
        address: address.parse().unwrap(),
        priority: 0,
        foundation: String::new(),
        related: None,
    }
}

/// A remote's offer as the protocol describes it, with fixed credentials.
fn remote_offer(id: u64, version: u64, candidates: &[&str], eoc: bool) -> SessionDescription {
    SessionDescription {
        session_id: id,
        version,
        ice_ufrag: "remoteufrag00000".to_owned(),
        ice_pwd: "remotepassword00000000".to_owned(),
        candidates: candidates
            .iter()
            .enumerate()
            .map(|(i, address)| Candidate {
                priority: 2_130_706_431 - i as u32,
                foundation: format!("f{i}"),
                ..host(address)
            })
            .collect(),
        end_of_candidates: eoc,
    }
}

fn offers(session: &mut Session) -> Vec<SessionDescription> {
    std::iter::from_fn(|| session.poll_offer()).collect()
}

fn events(session: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| session.poll_event()).collect()
}

fn changed(from: SessionState, to: SessionState) -> Event {
    Event::StateChanged { from, to }
}

/// A session (ours: key 2, so the remote key 1 controls) that has taken the remote's first
/// offer at `t0` and drained its outputs.
fn answered(t0: Instant) -> Session {
    let mut s = Session::new(key(2, 0), key(1, 0), 7, t0);
    assert_eq!(
        s.handle_offer(t0, remote_offer(100, 0, &[], false)),
        OfferOutcome::Accepted
    );
    offers(&mut s);
    events(&mut s);
    s
}

#[test]
fn the_peer_with_the_smaller_public_key_is_the_controlling_agent() {
    let t0 = Instant::now();
    // The first differing byte decides, not the last.
    let small = key(1, 255);
    let large = key(2, 0);
    assert!(Session::new(small, large, 1, t0).controlling());
    assert!(!Session::new(large, small, 1, t0).controlling());
}

#[test]
fn a_new_session_is_idle_and_publishes_version_0_without_candidates() {
    let t0 = Instant::now();
    let mut s = Session::new(key(1, 0), key(2, 0), 1, t0);
    assert_eq!(s.state(), SessionState::Idle);
    assert_eq!(
        events(&mut s),
        [changed(SessionState::Unknown, SessionState::Idle)]
    );
    let published = offers(&mut s);
    assert_eq!(published.len(), 1);
    let first = &published[0];
    assert_eq!(first.session_id, s.session_id());
    assert_eq!((first.version, s.version()), (0, 0));
    assert!(first.candidates.is_empty());
    assert!(!first.end_of_candidates);
    assert_eq!((first.ice_ufrag.len(), first.ice_pwd.len()), (16, 22));
    assert_eq!(s.restarts(), 0);
}

#[test]
fn the_same_seed_gives_the_same_session_id_and_credentials() {
    let t0 = Instant::now();
    let mut a = Session::new(key(1, 0), key(2, 0), 42, t0);
    let mut b = Session::new(key(1, 0), key(2, 0), 42, t0);
    let mut c = Session::new(key(1, 0), key(2, 0), 43, t0);
    let (a, b, c) = (offers(&mut a), offers(&mut b), offers(&mut c));
    assert_eq!(a, b);
    assert_ne!(a[0].session_id, c[0].session_id);
}

#[test]
fn idle_resends_the_latest_offer_with_doubling_back_off_until_the_remote_answers() {
    let t0 = Instant::now();
    let mut s = Session::new(key(1, 0), key(2, 0), 1, t0);
    let first = offers(&mut s);
    assert_eq!(
        s.poll_timeout(),
        Some((t0 + ms(1_000), TimeoutReason::ResendOffer))
    );

    // Too early: nothing.
    s.handle_timeout(t0 + ms(999));
    assert_eq!(offers(&mut s), []);

    s.handle_timeout(t0 + ms(1_000));
    assert_eq!(offers(&mut s), first);
    assert_eq!(
        s.poll_timeout(),
        Some((t0 + ms(3_000), TimeoutReason::ResendOffer))
    );

    s.handle_timeout(t0 + ms(3_000));
    assert_eq!(offers(&mut s), first);
    assert_eq!(
        s.poll_timeout(),
        Some((t0 + ms(7_000), TimeoutReason::ResendOffer))
    );

    // The remote answers: New, resending stops, the give-up timer runs, and our offer goes
    // out once more in case the remote never saw it.
    events(&mut s);
    let at = t0 + ms(5_500);
    assert_eq!(
        s.handle_offer(at, remote_offer(100, 0, &[], false)),
        OfferOutcome::Accepted
    );
    assert_eq!(s.state(), SessionState::New);
    assert_eq!(
        events(&mut s),
        [
            changed(SessionState::Idle, SessionState::New),
            Event::GatherCandidates
        ]
    );
    assert_eq!(offers(&mut s), first);
    assert_eq!(
        s.poll_timeout(),
        Some((at + ms(30_000), TimeoutReason::GiveUp))
    );
}

#[test]
fn resends_are_capped_at_32_seconds() {
    let t0 = Instant::now();
    let mut s = Session::new(key(1, 0), key(2, 0), 1, t0);
    let mut now = t0;
    let mut gaps = Vec::new();
    for _ in 0..8 {
        let (at, reason) = s.poll_timeout().unwrap();
        assert_eq!(reason, TimeoutReason::ResendOffer);
        gaps.push((at - now).as_millis());
        now = at;
        s.handle_timeout(now);
    }
    assert_eq!(
        gaps,
        [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 32_000, 32_000]
    );
}

#[test]
fn reordered_and_duplicated_offers_are_ignored() {
    let t0 = Instant::now();
    let mut s = answered(t0);
    let two = remote_offer(100, 2, &["192.0.2.1:1", "192.0.2.2:2"], false);
    assert_eq!(s.handle_offer(t0, two.clone()), OfferOutcome::Accepted);
    // The first remote candidates: Connecting, and the agent starts checking at once.
    assert_eq!(
        events(&mut s),
        [
            changed(SessionState::New, SessionState::Connecting),
            changed(SessionState::Connecting, SessionState::Checking),
        ]
    );
    assert_eq!(
        s.handle_offer(t0, remote_offer(100, 1, &["192.0.2.1:1"], false)),
        OfferOutcome::Ignored(IgnoreReason::NotNewer)
    );
    assert_eq!(
        s.handle_offer(t0, two),
        OfferOutcome::Ignored(IgnoreReason::NotNewer)
    );
    assert_eq!(
        s.handle_offer(t0, remote_offer(100, 0, &[], false)),
        OfferOutcome::Ignored(IgnoreReason::NotNewer)
    );
    assert_eq!(s.last_received(), Some((100, 2)));
    assert_eq!(s.restarts(), 0);
    assert_eq!(offers(&mut s), []);
}

#[test]
fn a_different_id_above_version_0_is_ignored_rather_than_taken_for_a_restart() {
    let t0 = Instant::now();
    let mut s = answered(t0);
    let id = s.session_id();
    assert_eq!(
        s.handle_offer(t0, remote_offer(200, 3, &["192.0.2.1:1"], false)),
        OfferOutcome::Ignored(IgnoreReason::UnknownSession)
    );
    assert_eq!((s.session_id(), s.restarts()), (id, 0));
}

#[test]
fn a_first_offer_without_credentials_is_ignored() {
    let t0 = Instant::now();
    let mut s = Session::new(key(1, 0), key(2, 0), 1, t0);
    let mut offer = remote_offer(100, 0, &[], false);
    offer.ice_pwd.clear();
    assert_eq!(
        s.handle_offer(t0, offer),
        OfferOutcome::Ignored(IgnoreReason::MissingCredentials)
    );
    assert_eq!(s.state(), SessionState::Idle);
}

#[test]
fn each_local_candidate_and_the_end_of_gathering_publish_the_next_version() {
    let t0 = Instant::now();
    let mut s = answered(t0);
    let id = s.session_id();
    s.add_local_candidate(t0, host("192.0.2.10:51820")).unwrap();
    s.add_local_candidate(t0, host("192.0.2.11:51820")).unwrap();
    s.handle_gathering_complete(t0);
    s.handle_gathering_complete(t0);
    let published = offers(&mut s);
    let summary: Vec<_> = published
        .iter()
        .map(|o| {
            let addresses: Vec<String> =
                o.candidates.iter().map(|c| c.address.to_string()).collect();
            (o.session_id, o.version, addresses, o.end_of_candidates)
        })
        .collect();
    let both = vec!["192.0.2.10:51820".to_owned(), "192.0.2.11:51820".to_owned()];
    assert_eq!(
        summary,
        [
            (id, 1, vec!["192.0.2.10:51820".to_owned()], false),
            (id, 2, both.clone(), false),
            (id, 3, both, true),
        ]
    );
    assert!(
        published
            .iter()
            .all(|o| o.ice_ufrag == published[0].ice_ufrag)
    );
    assert!(
        published[2]
            .candidates
            .iter()
            .all(|c| c.priority > 0 && !c.foundation.is_empty())
    );
    assert_eq!(s.version(), 3);
}

#[test]
fn the_remotes_end_of_candidates_is_recorded_and_a_new_remote_session_clears_it() {
    let t0 = Instant::now();
    let mut s = answered(t0);
    assert!(!s.remote_end_of_candidates());
    s.handle_offer(t0, remote_offer(100, 1, &["192.0.2.1:1"], true));
    assert!(s.remote_end_of_candidates());
    assert_eq!(
        s.handle_offer(t0, remote_offer(101, 0, &[], false)),
        OfferOutcome::Restarted
    );
    assert!(!s.remote_end_of_candidates());
}

#[test]
fn bad_local_candidates_are_refused_without_publishing() {
    let t0 = Instant::now();
    let mut s = answered(t0);
    let mut tcp = host("192.0.2.10:51820");
    tcp.transport = Transport::Tcp;
    assert_eq!(
        s.add_local_candidate(t0, tcp),
        Err(CandidateError::UnsupportedTransport)
    );
    s.add_local_candidate(t0, host("192.0.2.10:51820")).unwrap();
    assert_eq!(
        s.add_local_candidate(t0, host("192.0.2.10:51820")),
        Err(CandidateError::Redundant)
    );
    assert_eq!(offers(&mut s).len(), 1);
}

#[test]
fn the_peer_that_sees_a_new_id_at_version_0_starts_a_new_session_of_its_own() {
    let t0 = Instant::now();
    let mut s = answered(t0);
    s.add_local_candidate(t0, host("192.0.2.10:51820")).unwrap();
    s.handle_offer(t0, remote_offer(100, 1, &["192.0.2.1:1"], false));
    let old = offers(&mut s);
    events(&mut s);
    let old_id = s.session_id();

    let at = t0 + ms(10_000);
    assert_eq!(
        s.handle_offer(at, remote_offer(101, 0, &[], false)),
        OfferOutcome::Restarted
    );
    assert_ne!(s.session_id(), old_id);
    assert_eq!((s.version(), s.restarts()), (0, 1));
    assert_eq!(s.last_received(), Some((101, 0)));
    let published = offers(&mut s);
    assert_eq!(published.len(), 1);
    assert_eq!(
        (published[0].session_id, published[0].version),
        (s.session_id(), 0)
    );
    assert!(published[0].candidates.is_empty());
    assert_ne!(published[0].ice_ufrag, old[0].ice_ufrag);
    assert_eq!(
        events(&mut s),
        [
            changed(SessionState::Checking, SessionState::Closed),
            changed(SessionState::Closed, SessionState::Idle),
            changed(SessionState::Idle, SessionState::New),
            Event::GatherCandidates,
        ]
    );
    assert_eq!(
        s.poll_timeout(),
        Some((at + ms(30_000), TimeoutReason::GiveUp))
    );
    // The new remote session's candidates go to the new agent.
    assert_eq!(
        s.handle_offer(at, remote_offer(101, 1, &["192.0.2.1:1"], false)),
        OfferOutcome::Accepted
    );
    assert_eq!(s.state(), SessionState::Checking);
}

#[test]
fn give_up_fails_closes_and_restarts_with_doubling_back_off() {
    let t0 = Instant::now();
    let mut s = answered(t0);
    let first_id = s.session_id();
    assert_eq!(
        s.poll_timeout(),
        Some((t0 + ms(30_000), TimeoutReason::GiveUp))
    );

    s.handle_timeout(t0 + ms(30_000));
    assert_eq!(s.state(), SessionState::Closed);
    assert_eq!(
        events(&mut s),
        [
            changed(SessionState::New, SessionState::Failed),
            changed(SessionState::Failed, SessionState::Closed),
        ]
    );
    assert_eq!(
        s.poll_timeout(),
        Some((t0 + ms(31_000), TimeoutReason::Restart))
    );
    assert_eq!(
        s.add_local_candidate(t0 + ms(30_500), host("192.0.2.10:51820")),
        Err(CandidateError::NoAgent)
    );
    assert_eq!(
        s.handle_stun(
            t0 + ms(30_500),
            &[0; 20],
            "192.0.2.1:1".parse().unwrap(),
            "192.0.2.10:51820".parse().unwrap()
        ),
        Err(StunError::NoAgent)
    );

    s.handle_timeout(t0 + ms(31_000));
    assert_eq!(s.state(), SessionState::Idle);
    assert_eq!(s.restarts(), 1);
    assert_ne!(s.session_id(), first_id);
    let published = offers(&mut s);
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].version, 0);
    assert_eq!(
        s.poll_timeout(),
        Some((t0 + ms(32_000), TimeoutReason::ResendOffer))
    );

    // The remote's old session is retired; its answer to our restart is a first session.
    assert_eq!(
        s.handle_offer(t0 + ms(31_500), remote_offer(100, 5, &[], false)),
        OfferOutcome::Ignored(IgnoreReason::RetiredSession)
    );
    assert_eq!(
        s.handle_offer(t0 + ms(31_500), remote_offer(102, 0, &[], false)),
        OfferOutcome::Accepted
    );
    assert_eq!(
        s.poll_timeout(),
        Some((t0 + ms(61_500), TimeoutReason::GiveUp))
    );

    // The second give-up waits twice as long before restarting.
    s.handle_timeout(t0 + ms(61_500));
    assert_eq!(s.state(), SessionState::Closed);
    assert_eq!(
        s.poll_timeout(),
        Some((t0 + ms(63_500), TimeoutReason::Restart))
    );
}

#[test]
fn a_closed_session_restarts_at_once_when_the_remote_starts_over() {
    let t0 = Instant::now();
    let mut s = answered(t0);
    s.handle_timeout(t0 + ms(30_000));
    events(&mut s);
    assert_eq!(
        s.handle_offer(t0 + ms(30_200), remote_offer(102, 0, &[], false)),
        OfferOutcome::Accepted
    );
    assert_eq!(s.state(), SessionState::New);
    assert_eq!(s.restarts(), 1);
    assert_eq!(offers(&mut s).len(), 1);
    assert_eq!(
        s.poll_timeout(),
        Some((t0 + ms(60_200), TimeoutReason::GiveUp))
    );
}

#[test]
fn the_restarting_peer_takes_the_remotes_new_session_without_restarting_again() {
    let t0 = Instant::now();
    let mut a = Session::new(key(1, 0), key(2, 0), 1, t0);
    let mut b = Session::new(key(2, 0), key(1, 0), 2, t0);
    // Both sessions meet, then B goes quiet and A gives up.
    for offer in offers(&mut a) {
        b.handle_offer(t0, offer);
    }
    for offer in offers(&mut b) {
        a.handle_offer(t0, offer);
    }
    offers(&mut a);
    let b_first = b.session_id();
    a.handle_timeout(t0 + ms(30_000));
    a.handle_timeout(t0 + ms(31_000));
    assert_eq!((a.state(), a.restarts()), (SessionState::Idle, 1));

    // B sees A's new id at version 0: the restart rule.
    let restart = offers(&mut a);
    assert_eq!(restart.len(), 1);
    let now = t0 + ms(31_100);
    assert_eq!(
        b.handle_offer(now, restart[0].clone()),
        OfferOutcome::Restarted
    );
    assert_ne!(b.session_id(), b_first);
    assert_eq!((b.state(), b.restarts()), (SessionState::New, 1));

    // A takes B's new version 0 as the answer, not as another restart.
    let answer = offers(&mut b);
    assert_eq!(answer.len(), 1);
    assert_eq!(
        a.handle_offer(now, answer[0].clone()),
        OfferOutcome::Accepted
    );
    assert_eq!((a.state(), a.restarts()), (SessionState::New, 1));
    // A's re-publication is a duplicate to B.
    for offer in offers(&mut a) {
        assert_eq!(
            b.handle_offer(now, offer),
            OfferOutcome::Ignored(IgnoreReason::NotNewer)
        );
    }
    assert_eq!(b.restarts(), 1);
}

#[test]
fn stun_garbage_is_refused_without_panicking() {
    let t0 = Instant::now();
    let mut s = answered(t0);
    let from: SocketAddr = "192.0.2.1:1".parse().unwrap();
    let to: SocketAddr = "192.0.2.10:51820".parse().unwrap();
    assert_eq!(s.handle_stun(t0, &[], from, to), Err(StunError::Malformed));
    assert_eq!(
        s.handle_stun(t0, &[0xff; 64], from, to),
        Err(StunError::Malformed)
    );
}

/// Two peers on one fake LAN: offers go straight across, STUN through an in-memory network
/// that delivers a datagram to whichever session owns its destination address (or drops it
/// while the network is down). Time jumps to the earliest deadline of either peer.
struct Lan {
    peers: [(Session, SocketAddr); 2],
    nominated: [Option<Path>; 2],
    states: [Vec<SessionState>; 2],
    network_up: bool,
    now: Instant,
}

impl Lan {
    fn new(t0: Instant) -> Self {
        Self {
            peers: [
                (
                    Session::new(key(1, 0), key(2, 0), 11, t0),
                    "10.0.0.1:51820".parse().unwrap(),
                ),
                (
                    Session::new(key(2, 0), key(1, 0), 22, t0),
                    "10.0.0.2:51820".parse().unwrap(),
                ),
            ],
            nominated: [None, None],
            states: [Vec::new(), Vec::new()],
            network_up: true,
            now: t0,
        }
    }

    /// Exchanges everything ready at `now` until nothing moves.
    fn exchange(&mut self) {
        let now = self.now;
        loop {
            let mut moved = false;
            for i in 0..2 {
                let other = 1 - i;
                while let Some(offer) = self.peers[i].0.poll_offer() {
                    self.peers[other].0.handle_offer(now, offer);
                    moved = true;
                }
                while let Some(event) = self.peers[i].0.poll_event() {
                    match event {
                        Event::GatherCandidates => {
                            let local = self.peers[i].1;
                            let session = &mut self.peers[i].0;
                            session
                                .add_local_candidate(now, host(&local.to_string()))
                                .unwrap();
                            session.handle_gathering_complete(now);
                        }
                        Event::PathNominated(path) => self.nominated[i] = Some(path),
                        Event::StateChanged { to, .. } => self.states[i].push(to),
                    }
                    moved = true;
                }
                while let Some(transmit) = self.peers[i].0.poll_transmit() {
                    assert_eq!(transmit.source, Some(self.peers[i].1));
                    if self.network_up && transmit.destination == self.peers[other].1 {
                        let (source, destination) = (self.peers[i].1, transmit.destination);
                        self.peers[other]
                            .0
                            .handle_stun(now, &transmit.contents, source, destination)
                            .unwrap();
                    }
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
    }

    /// Runs until `done` holds, at most `steps` deadlines; says whether it held.
    fn run_until(&mut self, steps: usize, done: impl Fn(&Self) -> bool) -> bool {
        for _ in 0..steps {
            self.exchange();
            if done(self) {
                return true;
            }
            let next = self
                .peers
                .iter_mut()
                .filter_map(|(s, _)| s.poll_timeout())
                .map(|(at, _)| at)
                .min()
                .expect("a session always has a deadline");
            self.now = self.now.max(next);
            for (session, _) in &mut self.peers {
                session.handle_timeout(self.now);
            }
        }
        false
    }

    fn both_connected(&self) -> bool {
        self.peers.iter().all(|(s, _)| s.state().is_connected())
            && self.nominated.iter().all(Option::is_some)
    }
}

#[test]
fn two_peers_on_a_lan_reach_connected_with_matching_nominated_paths() {
    let t0 = Instant::now();
    let mut lan = Lan::new(t0);
    assert!(lan.run_until(500, Lan::both_connected), "{:?}", lan.peers);

    let (a, b) = (lan.peers[0].1, lan.peers[1].1);
    assert_eq!(
        lan.nominated[0],
        Some(Path {
            local: a,
            remote: b
        })
    );
    assert_eq!(
        lan.nominated[1],
        Some(Path {
            local: b,
            remote: a
        })
    );
    assert_eq!(lan.peers[0].0.nominated(), lan.nominated[0]);
    for (i, (session, _)) in lan.peers.iter().enumerate() {
        assert_eq!(session.restarts(), 0);
        assert_eq!(
            lan.states[i][..4],
            [
                SessionState::Idle,
                SessionState::New,
                SessionState::Connecting,
                SessionState::Checking
            ]
        );
    }
    assert!(
        lan.now - t0 < Duration::from_secs(5),
        "took {:?}",
        lan.now - t0
    );
}

#[test]
fn a_path_lost_for_too_long_closes_without_failing_and_both_peers_reconnect_after_a_restart() {
    let t0 = Instant::now();
    let mut lan = Lan::new(t0);
    assert!(lan.run_until(500, Lan::both_connected));
    lan.states = [Vec::new(), Vec::new()];

    lan.network_up = false;
    let closed = |lan: &Lan| {
        lan.peers
            .iter()
            .all(|(s, _)| s.state() == SessionState::Closed)
    };
    assert!(lan.run_until(5_000, closed), "{:?}", lan.peers);
    // On the slow consent schedule the two sides notice the loss up to a consent interval
    // apart, so the quicker one may already have restarted (and failed again, the network
    // still being down): the first session of each must close from Disconnected.
    for states in &lan.states {
        let first_close = states
            .iter()
            .position(|s| *s == SessionState::Closed)
            .unwrap();
        assert_eq!(
            states[first_close - 1..=first_close],
            [SessionState::Disconnected, SessionState::Closed],
            "{states:?}"
        );
        assert!(
            !states[..first_close].contains(&SessionState::Failed),
            "{states:?}"
        );
    }

    lan.network_up = true;
    lan.nominated = [None, None];
    assert!(lan.run_until(5_000, Lan::both_connected), "{:?}", lan.peers);
    for (session, _) in &lan.peers {
        assert!(session.restarts() >= 1);
    }
}
