//! The controller's contract under fake time: two nodes wired together in memory (their
//! offers and datagrams handed across by the test), a STUN server played by the test.

use crate::wire::Endpoint;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::reflexive::tests::answer as stun_answer;
use super::*;
use crate::Transmit;
use crate::ice::CandidateTypes;
use crate::keys::PublicKey;
use crate::session::SessionState;
use crate::signaling::CandidateKind;

/// A test key: `first`, then zeros (shared by the ICE test modules).
pub(super) fn key(first: u8) -> PublicKey {
    let mut bytes = [0u8; 32];
    bytes[0] = first;
    PublicKey::from(bytes)
}

pub(super) fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// Sources with one host candidate and no servers.
pub(super) fn host_only(host: &str) -> Sources {
    Sources {
        candidate_types: CandidateTypes::ALL,
        host: vec![addr(host)],
        stun: Vec::new(),
        turn: Vec::new(),
        mesh: Vec::new(),
    }
}

/// A node in the in-memory network: its controller and the address its socket has.
pub(super) struct Node {
    pub(super) key: PublicKey,
    pub(super) address: SocketAddr,
    pub(super) controller: Controller,
    pub(super) paths: Vec<(PublicKey, Endpoint, PathKind)>,
}

impl Node {
    pub(super) fn new(first: u8, peer: u8, sources: Sources, t0: Instant) -> Self {
        let address = sources.host[0];
        Self {
            key: key(first),
            address,
            controller: Controller::new(key(first), &[key(peer)], sources, u64::from(first), t0),
            paths: Vec::new(),
        }
    }
}

/// Hands offers and datagrams between the two nodes until nothing moves; datagrams to any
/// other address are lost (that peer is unreachable).
pub(super) fn exchange(a: &mut Node, b: &mut Node, now: Instant) {
    while transfer(a, b, now) | transfer(b, a, now) {}
}

/// Delivers what `from` produced to `to`; returns whether anything was delivered.
pub(super) fn transfer(from: &mut Node, to: &mut Node, now: Instant) -> bool {
    let mut moved = false;
    while let Some((peer, offer)) = from.controller.poll_offer() {
        assert_eq!(peer, to.key);
        to.controller.handle_signal(now, from.key, offer);
        moved = true;
    }
    while let Some(datagram) = from.controller.poll_transmit() {
        if datagram.destination == to.address {
            to.controller
                .handle_datagram(now, from.address, Some(to.address), &datagram.contents);
            moved = true;
        }
    }
    while let Some(ControllerEvent::PathChanged { peer, target, kind }) =
        from.controller.poll_event()
    {
        from.paths.push((peer, target, kind));
    }
    moved
}

/// Runs both nodes' timers in 10 ms steps up to `until`.
pub(super) fn run(a: &mut Node, b: &mut Node, t0: Instant, until: Duration) -> Instant {
    let mut now = t0;
    exchange(a, b, now);
    while now < t0 + until {
        now += Duration::from_millis(10);
        a.controller.handle_timeout(now);
        b.controller.handle_timeout(now);
        exchange(a, b, now);
    }
    now
}

#[test]
fn two_nodes_on_one_lan_find_the_host_path_and_both_point_wireguard_at_it() {
    let t0 = Instant::now();
    let mut a = Node::new(1, 2, host_only("10.0.0.1:51820"), t0);
    let mut b = Node::new(2, 1, host_only("10.0.0.2:51820"), t0);
    run(&mut a, &mut b, t0, Duration::from_millis(500));
    assert_eq!(
        a.paths,
        [(
            key(2),
            Endpoint::Direct(addr("10.0.0.2:51820")),
            PathKind::Host
        )]
    );
    assert_eq!(
        b.paths,
        [(
            key(1),
            Endpoint::Direct(addr("10.0.0.1:51820")),
            PathKind::Host
        )]
    );
    let status = a.controller.status()[&key(2)].clone();
    assert!(status.state.is_connected(), "{status:?}");
    assert_eq!(status.path, Some(PathKind::Host));
    assert_eq!(status.local_candidate, Some(addr("10.0.0.1:51820")));
    assert_eq!(status.remote_candidate, Some(addr("10.0.0.2:51820")));
    assert_eq!(status.reason, None);
}

#[test]
fn an_unreachable_peer_fails_with_a_reason_naming_the_pairs_and_the_missing_turn_server() {
    let t0 = Instant::now();
    let mut a = Node::new(1, 2, host_only("10.0.0.1:51820"), t0);
    // b's socket is elsewhere: a's checks to 10.0.0.2 are lost, and b's to 10.0.0.1 too.
    let mut b = Node::new(2, 1, host_only("10.0.0.2:51820"), t0);
    b.address = addr("10.9.9.9:1");
    a.address = addr("10.9.9.8:1");
    run(
        &mut a,
        &mut b,
        t0,
        crate::session::GIVE_UP_AFTER + Duration::from_millis(200),
    );
    assert!(a.paths.is_empty());
    let status = a.controller.status()[&key(2)].clone();
    assert!(
        matches!(status.state, SessionState::Closed | SessionState::Idle),
        "{status:?}"
    );
    assert_eq!(
        status.reason,
        Some(crate::ice::PeerReason::ChecksFailed {
            pairs: 1,
            relay: crate::ice::RelayNote::NoTurnServer,
        })
    );
}

#[test]
fn a_peer_that_never_answers_is_reported_as_silent() {
    let t0 = Instant::now();
    let mut a = Controller::new(key(1), &[key(2)], host_only("10.0.0.1:51820"), 1, t0);
    let offer = a.poll_offer().unwrap();
    assert_eq!(offer.0, key(2));
    assert_eq!(offer.1.version, 0);
    assert!(offer.1.candidates.is_empty());
    let status = a.status()[&key(2)].clone();
    assert_eq!(status.state, SessionState::Idle);
    assert_eq!(status.reason, Some(crate::ice::PeerReason::NoOfferFromPeer));
}

#[test]
fn offers_from_keys_that_are_not_ice_peers_are_counted_and_ignored() {
    let t0 = Instant::now();
    let mut a = Controller::new(key(1), &[key(2)], host_only("10.0.0.1:51820"), 1, t0);
    let mut stranger = Controller::new(key(9), &[key(1)], host_only("10.0.0.9:51820"), 9, t0);
    let (_, offer) = stranger.poll_offer().unwrap();
    a.handle_signal(t0, key(9), offer);
    assert_eq!(a.counters().unknown_sender, 1);
    assert_eq!(a.status()[&key(2)].state, SessionState::Idle);
}

#[test]
fn garbage_from_the_network_is_counted_and_never_panics() {
    let t0 = Instant::now();
    let mut a = Controller::new(key(1), &[key(2)], host_only("10.0.0.1:51820"), 1, t0);
    let from = addr("192.0.2.1:9");
    for datagram in [
        &b""[..],
        &[0u8; 3][..],
        &[0x40, 0x00, 0xFF, 0xFF][..],
        &[0u8; 20][..],
        &[
            0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ][..],
    ] {
        a.handle_datagram(t0, from, None, datagram);
    }
    let counters = a.counters();
    assert_eq!(counters.unexpected_datagrams + counters.unmatched_stun, 5);
}

#[test]
fn a_stun_answer_becomes_a_srflx_candidate_and_end_of_candidates_waits_for_it() {
    let t0 = Instant::now();
    let stun = addr("203.0.113.1:3478");
    let sources = Sources {
        stun: vec![stun],
        ..host_only("10.0.0.1:51820")
    };
    let mut a = Controller::new(key(1), &[key(2)], sources, 1, t0);
    let request = a.poll_transmit().unwrap();
    assert_eq!(request.destination, stun);
    let mut b = Controller::new(key(2), &[key(1)], host_only("10.0.0.2:51820"), 2, t0);
    let (_, first) = b.poll_offer().unwrap();
    a.handle_signal(t0, key(2), first);
    let published: Vec<_> = std::iter::from_fn(|| a.poll_offer())
        .map(|(_, o)| o)
        .collect();
    let last = published.last().unwrap();
    assert_eq!(last.candidates.len(), 1, "only the host candidate so far");
    assert!(
        !last.end_of_candidates,
        "the STUN server has not answered yet"
    );

    let mapped = addr("198.51.100.7:40000");
    let t1 = t0 + Duration::from_millis(30);
    a.handle_datagram(
        t1,
        stun,
        Some(addr("10.0.0.1:51820")),
        &stun_answer(&request.contents, mapped),
    );
    let published: Vec<_> = std::iter::from_fn(|| a.poll_offer())
        .map(|(_, o)| o)
        .collect();
    let last = published.last().unwrap();
    assert!(last.end_of_candidates);
    let srflx = last
        .candidates
        .iter()
        .find(|c| c.kind == CandidateKind::ServerReflexive)
        .unwrap();
    assert_eq!(srflx.address, mapped);
    assert_eq!(srflx.related, Some(addr("10.0.0.1:51820")));
}

#[test]
fn an_unanswered_stun_server_delays_end_of_candidates_only_until_it_is_given_up() {
    let t0 = Instant::now();
    let sources = Sources {
        stun: vec![addr("203.0.113.1:3478")],
        ..host_only("10.0.0.1:51820")
    };
    let mut a = Controller::new(key(1), &[key(2)], sources, 1, t0);
    let mut b = Controller::new(key(2), &[key(1)], host_only("10.0.0.2:51820"), 2, t0);
    let (_, first) = b.poll_offer().unwrap();
    a.handle_signal(t0, key(2), first);
    let mut now = t0;
    let mut eoc_at = None;
    while now < t0 + Duration::from_secs(10) && eoc_at.is_none() {
        now += Duration::from_millis(50);
        a.handle_timeout(now);
        while let Some((_, offer)) = a.poll_offer() {
            if offer.end_of_candidates {
                eoc_at = Some(now - t0);
            }
        }
    }
    // Five requests 250 ms apart, doubling: given up 7.75 s after the first.
    let eoc_at = eoc_at.unwrap();
    assert!(
        eoc_at >= Duration::from_millis(7750) && eoc_at < Duration::from_millis(7850),
        "{eoc_at:?}"
    );
}

#[test]
fn turning_off_a_candidate_type_leaves_it_out() {
    let t0 = Instant::now();
    let sources = Sources {
        candidate_types: CandidateTypes {
            host: false,
            srflx: true,
            relay: true,
        },
        stun: vec![addr("203.0.113.1:3478")],
        ..host_only("10.0.0.1:51820")
    };
    let mut a = Controller::new(key(1), &[key(2)], sources, 1, t0);
    let request = a.poll_transmit().unwrap();
    let mut b = Controller::new(key(2), &[key(1)], host_only("10.0.0.2:51820"), 2, t0);
    let (_, first) = b.poll_offer().unwrap();
    a.handle_signal(t0, key(2), first);
    a.handle_datagram(
        t0,
        request.destination,
        Some(addr("10.0.0.1:51820")),
        &stun_answer(&request.contents, addr("198.51.100.7:40000")),
    );
    let last = std::iter::from_fn(|| a.poll_offer()).last().unwrap().1;
    assert!(last.end_of_candidates);
    assert_eq!(
        last.candidates.iter().map(|c| c.kind).collect::<Vec<_>>(),
        [CandidateKind::ServerReflexive]
    );
}

#[test]
fn losing_the_address_of_the_nominated_path_starts_a_new_session_that_finds_the_new_one() {
    let t0 = Instant::now();
    let mut a = Node::new(1, 2, host_only("10.0.0.1:51820"), t0);
    let mut b = Node::new(2, 1, host_only("10.0.0.2:51820"), t0);
    let now = run(&mut a, &mut b, t0, Duration::from_millis(500));
    let first_session = b.controller.status()[&key(1)].session_id;

    // An address that appears beside the working one changes nothing for the session.
    let both = vec![addr("10.0.0.2:51820"), addr("10.0.1.2:51820")];
    assert!(b.controller.handle_addresses(now, both, &[]));
    assert_eq!(b.controller.status()[&key(1)].session_id, first_session);
    assert!(b.controller.status()[&key(1)].state.is_connected());

    // The path's own address goes away: b starts over, a follows, and they meet again.
    b.address = addr("10.0.1.2:51820");
    assert!(
        b.controller
            .handle_addresses(now, vec![addr("10.0.1.2:51820")], &[])
    );
    assert!(
        !b.controller
            .handle_addresses(now, vec![addr("10.0.1.2:51820")], &[])
    );
    a.paths.clear();
    b.paths.clear();
    run(&mut a, &mut b, now, Duration::from_millis(800));
    let status = b.controller.status()[&key(1)].clone();
    assert_ne!(status.session_id, first_session);
    assert_eq!(status.restarts, 1);
    assert!(status.state.is_connected(), "{status:?}");
    assert_eq!(status.local_candidate, Some(addr("10.0.1.2:51820")));
    assert_eq!(
        a.paths.last().map(|p| p.1),
        Some(Endpoint::Direct(addr("10.0.1.2:51820")))
    );
    assert_eq!(a.controller.status()[&key(2)].restarts, 1);
}

#[test]
fn each_transmit_names_the_address_it_leaves_from_when_the_controller_knows_it() {
    let t0 = Instant::now();
    let (host, stun, turn) = (
        addr("10.0.0.1:51820"),
        addr("203.0.113.1:3478"),
        addr("203.0.113.2:3478"),
    );
    let sources = Sources {
        stun: vec![stun],
        turn: vec![TurnServer {
            address: turn,
            local: host,
            username: "user".to_owned(),
            credential: "secret".into(),
        }],
        ..host_only("10.0.0.1:51820")
    };
    let mut a = Controller::new(key(1), &[key(2)], sources, 1, t0);
    let first: Vec<Transmit> = std::iter::from_fn(|| a.poll_transmit()).collect();
    let sent: Vec<(Option<SocketAddr>, SocketAddr)> =
        first.iter().map(|t| (t.source, t.destination)).collect();
    // The STUN probes (of both servers) learn their base from the answer; the relay's
    // Allocate leaves from its configured local address.
    assert_eq!(
        sent,
        [(Some(host), turn), (None, stun), (None, turn)],
        "{first:?}"
    );
    let mut b = Controller::new(key(2), &[key(1)], host_only("10.0.0.2:51820"), 2, t0);
    let mut checks = Vec::new();
    let mut now = t0;
    while checks.is_empty() && now < t0 + Duration::from_secs(2) {
        now += Duration::from_millis(10);
        a.handle_timeout(now);
        b.handle_timeout(now);
        while let Some((_, offer)) = b.poll_offer() {
            a.handle_signal(now, key(2), offer);
        }
        while let Some((_, offer)) = a.poll_offer() {
            b.handle_signal(now, key(1), offer);
        }
        checks.extend(
            std::iter::from_fn(|| a.poll_transmit())
                .filter(|t| t.destination == addr("10.0.0.2:51820")),
        );
    }
    assert!(
        !checks.is_empty(),
        "a never checked b's host candidate: {:?}",
        a.status()
    );
    assert!(checks.iter().all(|t| t.source == Some(host)), "{checks:?}");
}

#[test]
fn the_controllers_deadline_names_the_child_it_is_for() {
    let t0 = Instant::now();
    let (host, stun) = (addr("10.0.0.1:51820"), addr("203.0.113.1:3478"));
    let sources = Sources {
        stun: vec![stun],
        ..host_only("10.0.0.1:51820")
    };
    let mut a = Controller::new(key(1), &[key(2)], sources, 1, t0);
    let request = a.poll_transmit().unwrap();
    // The probe's first retransmission comes before the session's first resend.
    assert_eq!(
        a.poll_timeout(t0),
        Some((
            t0 + Duration::from_millis(250),
            TimeoutReason::StunProbe { server: stun }
        ))
    );
    let answer = stun_answer(&request.contents, addr("198.51.100.7:40000"));
    assert_eq!(
        a.handle_datagram(t0, stun, Some(host), &answer),
        Routed::Server
    );
    assert_eq!(
        a.poll_timeout(t0),
        Some((
            t0 + crate::session::RESEND_INITIAL,
            TimeoutReason::Session {
                peer: key(2),
                reason: crate::session::TimeoutReason::ResendOffer
            }
        ))
    );
}
