//! What a connected, idle session sends: checks on its nominated pair only, with
//! transaction ids from the session's CSPRNG stream. Fake time, two sessions, one of them
//! multi-homed (several host addresses that all reach the other peer, as on a host with
//! container bridges or several uplinks, or several TUN devices in one namespace).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::rng::SessionRandom;
use super::*;
use crate::signaling::message::{CandidateKind, Transport};

fn key(first: u8) -> PublicKey {
    let mut bytes = [0u8; 32];
    bytes[0] = first;
    PublicKey::from(bytes)
}

fn host(address: SocketAddr) -> Candidate {
    Candidate {
        kind: CandidateKind::Host,
        transport: Transport::Udp,
        address,
        priority: 0,
        foundation: String::new(),
        related: None,
    }
}

/// A STUN Binding request (class request, method Binding).
fn is_check(contents: &[u8]) -> bool {
    contents.len() >= 20 && contents[0] == 0x00 && contents[1] == 0x01
}

const SEED_A: u64 = 11;

/// Peer A has one address, peer B `b_addresses`; every address reaches every other.
struct MultiHomed {
    sessions: [Session; 2],
    addresses: [Vec<SocketAddr>; 2],
    /// Binding requests each peer sent: (time, transaction id).
    checks: [Vec<(Instant, [u8; 12])>; 2],
    now: Instant,
}

impl MultiHomed {
    fn new(t0: Instant, b_addresses: usize) -> Self {
        let b = (0..b_addresses)
            .map(|i| SocketAddr::from(([10, 0, 1, 2 + i as u8], 51820)))
            .collect();
        Self {
            sessions: [
                Session::new(key(1), key(2), SEED_A, t0),
                Session::new(key(2), key(1), 22, t0),
            ],
            addresses: [vec!["10.0.0.1:51820".parse().unwrap()], b],
            checks: [Vec::new(), Vec::new()],
            now: t0,
        }
    }

    fn exchange(&mut self) {
        let now = self.now;
        loop {
            let mut moved = false;
            for i in 0..2 {
                let other = 1 - i;
                while let Some(offer) = self.sessions[i].poll_offer() {
                    self.sessions[other].handle_offer(now, offer);
                    moved = true;
                }
                while let Some(event) = self.sessions[i].poll_event() {
                    if event == Event::GatherCandidates {
                        for address in self.addresses[i].clone() {
                            self.sessions[i]
                                .add_local_candidate(now, host(address))
                                .unwrap();
                        }
                        self.sessions[i].handle_gathering_complete(now);
                    }
                    moved = true;
                }
                while let Some(transmit) = self.sessions[i].poll_transmit() {
                    if is_check(&transmit.contents) {
                        let mut id = [0u8; 12];
                        id.copy_from_slice(&transmit.contents[8..20]);
                        self.checks[i].push((now, id));
                    }
                    if self.addresses[other].contains(&transmit.destination) {
                        self.sessions[other]
                            .handle_stun(
                                now,
                                &transmit.contents,
                                transmit.source.expect("a session names its source"),
                                transmit.destination,
                            )
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

    /// Runs every deadline up to `until`.
    fn run_until(&mut self, until: Instant) {
        loop {
            self.exchange();
            let next = self
                .sessions
                .iter_mut()
                .filter_map(Session::poll_timeout)
                .map(|(at, _)| at)
                .min()
                .expect("a session always has a deadline");
            if next > until {
                self.now = until;
                return;
            }
            self.now = self.now.max(next);
            for session in &mut self.sessions {
                session.handle_timeout(self.now);
            }
        }
    }

    fn checks_since(&self, peer: usize, since: Instant) -> usize {
        self.checks[peer]
            .iter()
            .filter(|(at, _)| *at >= since)
            .count()
    }
}

#[test]
fn a_connected_session_checks_only_its_nominated_pair() {
    let t0 = Instant::now();
    // B has 6 addresses, so A and B each hold 6 pairs that all succeed.
    let mut net = MultiHomed::new(t0, 6);
    net.run_until(t0 + Duration::from_secs(30));
    assert!(
        net.sessions.iter().all(|s| s.state().is_connected()),
        "{:?}",
        net.sessions
    );
    // The path in use (so on the 10 s consent schedule, not the idle one).
    let from = net.now;
    net.run_with_traffic(Duration::from_secs(60));
    assert!(net.sessions.iter().all(|s| s.state().is_connected()));
    // One consent check per interval on the one pair in use (6 per minute at 10 s), not
    // one per valid pair (36 per minute with 6 pairs).
    for peer in 0..2 {
        let checks = net.checks_since(peer, from);
        assert!(
            (5..=7).contains(&checks),
            "peer {peer} sent {checks} checks in a minute"
        );
    }
}

#[test]
fn a_check_transaction_ids_come_from_the_sessions_csprng_stream() {
    let t0 = Instant::now();
    let mut net = MultiHomed::new(t0, 1);
    net.run_until(t0 + Duration::from_secs(30));
    let sent: Vec<[u8; 12]> = net.checks[0].iter().map(|(_, id)| *id).collect();
    assert!(sent.len() >= 5, "{} checks", sent.len());
    // The first agent's ids are exactly the check-id stream of A's session randomness, in
    // order: not `fastrand`'s, which anyone who saw a few could continue.
    let mut expected = SessionRandom::from(SEED_A).check_transaction_ids();
    let expected: Vec<[u8; 12]> = sent.iter().map(|_| expected()).collect();
    assert_eq!(sent, expected);
    // And another seed gives other ids.
    let mut other = SessionRandom::from(SEED_A + 1).check_transaction_ids();
    assert_ne!(sent[0], other());
}

/// Largest gap between two checks `peer` sent from `since` on.
fn largest_gap(net: &MultiHomed, peer: usize, since: Instant) -> Duration {
    let times: Vec<Instant> = net.checks[peer]
        .iter()
        .map(|(at, _)| *at)
        .filter(|at| *at >= since)
        .collect();
    times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}

impl MultiHomed {
    /// Runs for `span`, reporting WireGuard traffic on both sides every 5 s.
    fn run_with_traffic(&mut self, span: Duration) {
        let until = self.now + span;
        while self.now < until {
            let now = self.now;
            for session in &mut self.sessions {
                session.handle_traffic(now);
            }
            self.run_until((now + Duration::from_secs(5)).min(until));
        }
    }
}

#[test]
fn an_idle_path_is_checked_every_25_s_and_one_in_use_every_10_s() {
    let t0 = Instant::now();
    let mut net = MultiHomed::new(t0, 1);
    net.run_until(t0 + Duration::from_secs(5));
    assert!(net.sessions.iter().all(|s| s.state().is_connected()));

    // In use: the consent schedule.
    let active = net.now;
    net.run_with_traffic(Duration::from_secs(60));
    for peer in 0..2 {
        let checks = net.checks_since(peer, active);
        assert!(
            (5..=7).contains(&checks),
            "in use: {checks} checks a minute"
        );
    }

    // No traffic for 45 s makes the path idle; then checks every 25 s, never more than 25 s
    // apart (NAT bindings time out after 30 s without traffic).
    net.run_until(net.now + PATH_IDLE_AFTER);
    let idle = net.now;
    net.run_until(idle + Duration::from_secs(100));
    assert!(net.sessions.iter().all(|s| s.state().is_connected()));
    for peer in 0..2 {
        let checks = net.checks_since(peer, idle);
        assert!((3..=5).contains(&checks), "idle: {checks} checks in 100 s");
        let gap = largest_gap(&net, peer, idle);
        assert!(gap <= IDLE_CONSENT_INTERVAL, "idle: checks {gap:?} apart");
    }

    // Traffic again: back on the 10 s schedule at once.
    let busy = net.now;
    net.run_with_traffic(Duration::from_secs(60));
    for peer in 0..2 {
        let checks = net.checks_since(peer, busy);
        assert!(
            (5..=7).contains(&checks),
            "in use again: {checks} checks a minute"
        );
        assert!(largest_gap(&net, peer, busy) <= CONSENT_INTERVAL);
    }
}
