//! What peers control stays bounded, relay-only never sends from the host, and a lost TURN
//! allocation is replaced at once: the controller under fake time, with a TURN server
//! ([`FakeTurn`]) and a second node played in memory.

use crate::wire::Endpoint;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::fake_turn::FakeTurn;
use super::tests::{addr, key};
use super::*;
use crate::ice::CandidateTypes;
use crate::keys::PublicKey;
use crate::session::MAX_AGENT_REMOTE_CANDIDATES;
use crate::signaling::SessionDescription;
use crate::signaling::message::{Candidate, CandidateKind, MAX_CANDIDATES, Transport};

const A_HOST: &str = "10.0.0.1:51820";
const C_HOST: &str = "10.0.0.2:51820";
const TURN: &str = "203.0.113.1:3478";
const FLOOD_OFFERS: u64 = 10_000;

fn sources(types: CandidateTypes, host: &str, turn: bool) -> Sources {
    Sources {
        candidate_types: types,
        host: vec![addr(host)],
        stun: Vec::new(),
        turn: if turn {
            vec![TurnServer {
                address: addr(TURN),
                local: addr(host),
                username: "user".to_owned(),
                credential: "secret".into(),
            }]
        } else {
            Vec::new()
        },
        mesh: vec!["10.77.0.0/24".parse().unwrap()],
    }
}

const RELAY_ONLY: CandidateTypes = CandidateTypes {
    host: false,
    srflx: false,
    relay: true,
};

/// Node A (key 1, with a TURN server) and node C (key 2), wired in memory. Direct datagrams
/// between them can be blocked, so only the relayed pair works.
struct RelayNet {
    a: Controller,
    c: Controller,
    turn: FakeTurn,
    block_direct: bool,
    /// C is gone: nothing reaches it.
    c_down: bool,
    /// Every datagram A sent: (destination, contents).
    a_sent: Vec<(SocketAddr, Vec<u8>)>,
    a_paths: Vec<(Endpoint, PathKind)>,
}

impl RelayNet {
    fn new(a_types: CandidateTypes, t0: Instant) -> Self {
        let a = Controller::new(key(1), &[key(2)], sources(a_types, A_HOST, true), 1, t0);
        let c_sources = sources(CandidateTypes::ALL, C_HOST, false);
        let c = Controller::new(key(2), &[key(1)], c_sources, 2, t0);
        Self {
            a,
            c,
            turn: FakeTurn::new(addr(TURN), "user", "secret"),
            block_direct: true,
            c_down: false,
            a_sent: Vec::new(),
            a_paths: Vec::new(),
        }
    }

    fn exchange(&mut self, now: Instant) {
        loop {
            let mut moved = false;
            while let Some((to, offer)) = self.a.poll_offer() {
                if to == key(2) {
                    self.c.handle_signal(now, key(1), offer);
                    moved = true;
                }
            }
            while let Some((_, offer)) = self.c.poll_offer() {
                self.a.handle_signal(now, key(2), offer);
                moved = true;
            }
            while let Some(datagram) = self.a.poll_transmit() {
                moved = true;
                self.a_sent
                    .push((datagram.destination, datagram.contents.clone()));
                if datagram.destination == self.turn.address {
                    for answer in self.turn.handle(addr(A_HOST), &datagram.contents) {
                        self.a
                            .handle_datagram(now, self.turn.address, Some(addr(A_HOST)), &answer);
                    }
                    for (relayed, peer, payload) in std::mem::take(&mut self.turn.relayed_out) {
                        if peer == addr(C_HOST) && !self.c_down {
                            self.c
                                .handle_datagram(now, relayed, Some(addr(C_HOST)), &payload);
                        }
                    }
                } else if datagram.destination == addr(C_HOST) && !self.block_direct {
                    self.c.handle_datagram(
                        now,
                        addr(A_HOST),
                        Some(addr(C_HOST)),
                        &datagram.contents,
                    );
                }
            }
            while let Some(datagram) = self.c.poll_transmit() {
                moved = true;
                if Some(datagram.destination) == self.turn.relayed {
                    if let Some(framed) =
                        self.turn.relay_from_peer(addr(C_HOST), &datagram.contents)
                    {
                        self.a
                            .handle_datagram(now, self.turn.address, Some(addr(A_HOST)), &framed);
                    }
                } else if datagram.destination == addr(A_HOST) && !self.block_direct {
                    self.a.handle_datagram(
                        now,
                        addr(C_HOST),
                        Some(addr(A_HOST)),
                        &datagram.contents,
                    );
                }
            }
            while let Some(ControllerEvent::PathChanged { target, kind, .. }) = self.a.poll_event()
            {
                self.a_paths.push((target, kind));
            }
            while self.c.poll_event().is_some() {}
            if !moved {
                break;
            }
        }
    }

    /// Runs both nodes in `step`s from `from` up to `until` after it, stopping early when
    /// `done` says so; returns the time reached.
    fn run(
        &mut self,
        from: Instant,
        until: Duration,
        step: Duration,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Instant {
        let mut now = from;
        self.exchange(now);
        while now < from + until && !done(self) {
            now += step;
            self.a.handle_timeout(now);
            self.c.handle_timeout(now);
            self.exchange(now);
        }
        now
    }

    fn a_connected_through(&self, relayed: Option<SocketAddr>) -> bool {
        let status = &self.a.status()[&key(2)];
        status.state.is_connected()
            // Connected and relayed, with the channel bound (not still binding it).
            && status.reason != Some(crate::ice::PeerReason::BindingTurnChannel)
            && relayed.is_some()
            && status.local_candidate == relayed
    }
}

fn candidate(address: SocketAddr) -> Candidate {
    Candidate {
        kind: CandidateKind::Host,
        transport: Transport::Udp,
        address,
        priority: 2_130_706_431,
        foundation: "1".to_owned(),
        related: None,
    }
}

fn attacker_offer(version: u64, candidates: Vec<Candidate>) -> SessionDescription {
    SessionDescription {
        session_id: 77,
        version,
        ice_ufrag: "attackerufrag".to_owned(),
        ice_pwd: "attackerpasswordattacker".to_owned(),
        candidates,
        end_of_candidates: false,
    }
}

#[test]
fn refused_candidate_kinds_are_counted_and_never_reach_the_session() {
    let t0 = Instant::now();
    let mut a = Controller::new(
        key(1),
        &[key(2)],
        sources(CandidateTypes::ALL, A_HOST, false),
        1,
        t0,
    );
    let offered = [
        "127.0.0.1:51820",
        "[::1]:51820",
        "224.0.0.251:5353",
        "0.0.0.0:51820",
        "10.77.0.2:51820",
        "198.51.100.7:40000",
    ];
    let candidates = offered.iter().map(|a| candidate(addr(a))).collect();
    a.handle_signal(t0, key(2), attacker_offer(0, candidates));
    let refused = a.counters().refused_candidates;
    assert_eq!(
        (
            refused.loopback,
            refused.multicast,
            refused.unspecified,
            refused.inside_mesh
        ),
        (2, 1, 1, 1)
    );
    let session = a.session_for_test(&key(2));
    assert_eq!(
        session
            .remote_candidates()
            .iter()
            .map(|c| c.address)
            .collect::<Vec<_>>(),
        [addr("198.51.100.7:40000")]
    );
}

#[test]
fn a_peer_flooding_ten_thousand_offers_leaves_every_set_bounded_and_other_peers_connected() {
    let t0 = Instant::now();
    let attacker = key(3);
    let mut net = RelayNet::new(CandidateTypes::ALL, t0);
    // A has a second peer, the attacker, beside C; C can reach A directly.
    net.a = Controller::new(
        key(1),
        &[key(2), attacker],
        sources(CandidateTypes::ALL, A_HOST, true),
        1,
        t0,
    );
    net.block_direct = false;
    let mut now = net.run(t0, Duration::from_secs(2), Duration::from_millis(10), |n| {
        n.a.status()[&key(2)].state.is_connected()
    });
    assert!(net.a.status()[&key(2)].state.is_connected());
    let c_permissions = net.turn.permissions.clone();

    // 10 000 versions of one session, each with 64 fresh addresses, over ~17 minutes: far
    // more than a permission's lifetime, so releases and expiries are exercised too. Both
    // nodes run their timers every 50 offers (5 s).
    let mut next_ip = u32::from(Ipv4Addr::new(100, 64, 0, 0));
    for version in 0..FLOOD_OFFERS {
        let candidates = (0..MAX_CANDIDATES)
            .map(|_| {
                next_ip += 1;
                candidate(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(next_ip)), 40_000))
            })
            .collect();
        net.a
            .handle_signal(now, attacker, attacker_offer(version, candidates));
        now += Duration::from_millis(100);
        if version % 50 == 0 {
            net.a.handle_timeout(now);
            net.c.handle_timeout(now);
        }
        net.exchange(now);
        net.a_sent.clear();
        let session = net.a.session_for_test(&attacker);
        assert!(session.remote_candidates().len() <= MAX_CANDIDATES);
        assert!(session.agent_remote_candidates() <= MAX_AGENT_REMOTE_CANDIDATES);
        let (permissions, channels) = net.a.relay_use_for_test(&attacker);
        assert!(permissions <= PERMISSIONS_PER_PEER, "{permissions}");
        assert_eq!(channels, 0, "no path was nominated, so no channel");
        let relay = &net.a.relays_for_test()[0];
        assert!(
            relay.permissions_installed() <= PERMISSIONS_PER_PEER + c_permissions.len(),
            "{}",
            relay.permissions_installed()
        );
        // C's checks through the relay authenticated: its address has a channel; none of
        // the attacker's addresses ever sent a check that authenticated.
        assert!(
            relay.channels_installed() <= 1,
            "{}",
            relay.channels_installed()
        );
    }
    let counters = net.a.counters();
    assert!(counters.permissions_refused > 0, "{counters:?}");
    assert!(net.a.relays_for_test()[0].refreshes_dropped() > 0);
    // The server saw at most the budget's worth of the attacker's addresses at a time, and
    // C's permissions stayed wanted all along.
    let (wanted, _) = net.a.relays_for_test()[0].wanted();
    assert!(c_permissions.iter().all(|ip| wanted.contains(ip)));
    let status = net.a.status()[&key(2)].clone();
    assert!(status.state.is_connected(), "{status:?}");
    assert_eq!(status.restarts, 0, "C's session was never disturbed");
}

#[test]
fn a_channel_is_bound_only_for_the_nominated_relayed_pair() {
    let t0 = Instant::now();
    let mut net = RelayNet::new(CandidateTypes::ALL, t0);
    let mut channels_before_nomination = None;
    net.run(t0, Duration::from_secs(3), Duration::from_millis(10), |n| {
        if n.a.session_for_test(&key(2)).nominated().is_none() {
            channels_before_nomination = Some(n.turn.channels.len());
        }
        n.a_connected_through(n.turn.relayed)
    });
    assert_eq!(channels_before_nomination, Some(0));
    let relayed = net.turn.relayed;
    assert!(net.a_connected_through(relayed), "{:?}", net.a.status());
    assert_eq!(
        net.turn.channels.values().copied().collect::<Vec<_>>(),
        [addr(C_HOST)],
        "one channel, to the nominated remote"
    );
    let channel = *net.turn.channels.keys().next().unwrap();
    assert_eq!(
        net.a_paths.last(),
        Some(&(
            Endpoint::Relayed {
                server: addr(TURN),
                channel
            },
            PathKind::Relay
        ))
    );
}

#[test]
fn relay_only_survives_an_allocation_loss_within_two_seconds_and_never_sends_from_the_host() {
    let t0 = Instant::now();
    let mut net = RelayNet::new(RELAY_ONLY, t0);
    // Direct datagrams would arrive: only the guard keeps A from using them.
    net.block_direct = false;
    let now = net.run(t0, Duration::from_secs(3), Duration::from_millis(10), |n| {
        n.a_connected_through(n.turn.relayed)
    });
    let first = net.turn.relayed;
    assert!(net.a_connected_through(first), "{:?}", net.a.status());

    // The server loses the allocation; A finds out with its next request (a refresh, minutes
    // later).
    net.turn.lose_allocation = true;
    let lost_at = net.run(
        now,
        Duration::from_secs(600),
        Duration::from_millis(50),
        |n| !n.turn.lose_allocation,
    );
    assert!(!net.turn.lose_allocation, "no request reached the server");
    let recovered = net.run(
        lost_at,
        Duration::from_secs(5),
        Duration::from_millis(10),
        |n| n.turn.relayed.is_some() && n.a_connected_through(n.turn.relayed),
    );
    assert_eq!(net.turn.allocations, 2);
    assert_ne!(net.turn.relayed, first);
    assert!(
        recovered - lost_at <= Duration::from_secs(2),
        "connected again through the new allocation after {:?}",
        recovered - lost_at
    );
    assert!(net.a_connected_through(net.turn.relayed));
    assert_eq!(net.a.counters().relay_allocations_lost, 1);
    // Keep running: checks for pairs of the old allocation must not leak either.
    net.run(
        recovered,
        Duration::from_secs(30),
        Duration::from_millis(50),
        |_| false,
    );
    let leaked: Vec<_> = net
        .a_sent
        .iter()
        .filter(|(destination, _)| *destination != addr(TURN))
        .map(|(destination, _)| *destination)
        .collect();
    assert!(leaked.is_empty(), "sent outside the relay to {leaked:?}");
    assert!(
        net.a_paths
            .iter()
            .all(|(target, _)| matches!(target, Endpoint::Relayed { .. })),
        "{:?}",
        net.a_paths
    );
    assert!(net.a_connected_through(net.turn.relayed));
}

#[test]
fn a_connected_session_checks_its_path_on_the_slow_consent_schedule() {
    let t0 = Instant::now();
    let mut net = RelayNet::new(CandidateTypes::ALL, t0);
    net.block_direct = false;
    let connected = net.run(t0, Duration::from_secs(2), Duration::from_millis(10), |n| {
        n.a.status()[&key(2)].state.is_connected() && n.c.status()[&key(1)].state.is_connected()
    });
    // Let nomination and the first consent checks settle, then count A's checks to C.
    let settled = net.run(
        connected,
        Duration::from_secs(20),
        Duration::from_millis(10),
        |_| false,
    );
    net.a_sent.clear();
    // The path carries WireGuard traffic (the daemon reports it every 5 s): the active
    // consent schedule, not the idle one.
    let mut now = settled;
    for _ in 0..12 {
        net.a.handle_traffic(now, &key(2));
        net.c.handle_traffic(now, &key(1));
        now = net.run(
            now,
            Duration::from_secs(5),
            Duration::from_millis(10),
            |_| false,
        );
    }
    let checks = net
        .a_sent
        .iter()
        .filter(|(destination, contents)| {
            *destination == addr(C_HOST) && contents[0] == 0x00 && contents[1] == 0x01
        })
        .count();
    // One pair, one check every 10 s (the pair through the relay failed or is checked via
    // the relay, not to C directly).
    assert!((5..=7).contains(&checks), "{checks} checks in 60 s");
}

/// Not a test: prints the ICE side's wake-ups of a node with 12 connected idle peers over a
/// minute of fake time (timer wake-ups at `poll_timeout`, and datagrams received).
/// `cargo test -p wice --lib idle_wakeups -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, run by hand"]
fn idle_wakeups_with_twelve_connected_peers() {
    let t0 = Instant::now();
    let peers: Vec<PublicKey> = (2..14).map(key).collect();
    let host = |i: u8| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)), 51820);
    let mut hub = Controller::new(
        key(1),
        &peers,
        sources(CandidateTypes::ALL, "10.0.0.1:51820", false),
        1,
        t0,
    );
    let mut spokes: Vec<Controller> = (2..14u8)
        .map(|i| {
            let text = host(i).to_string();
            Controller::new(
                key(i),
                &[key(1)],
                sources(CandidateTypes::ALL, &text, false),
                u64::from(i),
                t0,
            )
        })
        .collect();
    let mut received = 0u64;
    let exchange = |hub: &mut Controller,
                    spokes: &mut Vec<Controller>,
                    now: Instant,
                    count: bool,
                    received: &mut u64| loop {
        let mut moved = false;
        while let Some((to, offer)) = hub.poll_offer() {
            let i = usize::from(to.to_bytes()[0]) - 2;
            spokes[i].handle_signal(now, key(1), offer);
            moved = true;
        }
        while let Some(d) = hub.poll_transmit() {
            if let IpAddr::V4(v4) = d.destination.ip() {
                let i = usize::from(v4.octets()[3]) - 2;
                spokes[i].handle_datagram(now, host(1), Some(d.destination), &d.contents);
                moved = true;
            }
        }
        for (i, spoke) in spokes.iter_mut().enumerate() {
            while let Some((_, offer)) = spoke.poll_offer() {
                hub.handle_signal(now, key(u8::try_from(i).unwrap() + 2), offer);
                moved = true;
            }
            while let Some(d) = spoke.poll_transmit() {
                hub.handle_datagram(
                    now,
                    host(u8::try_from(i).unwrap() + 2),
                    Some(host(1)),
                    &d.contents,
                );
                if count {
                    *received += 1;
                }
                moved = true;
            }
            while spoke.poll_event().is_some() {}
        }
        while hub.poll_event().is_some() {}
        if !moved {
            break;
        }
    };
    // Connect and settle for 30 s in 10 ms steps.
    let mut now = t0;
    while now < t0 + Duration::from_secs(30) {
        now += Duration::from_millis(10);
        hub.handle_timeout(now);
        spokes.iter_mut().for_each(|s| s.handle_timeout(now));
        exchange(&mut hub, &mut spokes, now, false, &mut received);
    }
    assert!(hub.status().values().all(|s| s.state.is_connected()));
    // Then a minute driven by the hub's own deadlines, as the daemon's task is.
    let start = now;
    let mut timer_wakeups = 0u64;
    while now < start + Duration::from_secs(60) {
        let hub_at = hub
            .poll_timeout(now)
            .map_or(now + Duration::from_secs(60), |(at, _)| at);
        let spoke_at = spokes
            .iter_mut()
            .filter_map(|s| s.poll_timeout(now).map(|(at, _)| at))
            .min()
            .unwrap_or(hub_at);
        let next = hub_at.min(spoke_at).max(now + Duration::from_millis(1));
        now = next;
        if hub_at <= now {
            timer_wakeups += 1;
            hub.handle_timeout(now);
        }
        spokes.iter_mut().for_each(|s| s.handle_timeout(now));
        exchange(&mut hub, &mut spokes, now, true, &mut received);
    }
    eprintln!(
        "12 idle peers, 60 s: {timer_wakeups} timer wake-ups, {received} datagrams received: {:.1} wake-ups/s",
        (timer_wakeups + received) as f64 / 60.0
    );
}

/// Runs A and C connected through A's relay (relay-only on A), settled for 20 s.
fn relayed_and_settled(t0: Instant) -> (RelayNet, Instant, Option<SocketAddr>) {
    let mut net = RelayNet::new(RELAY_ONLY, t0);
    let now = net.run(t0, Duration::from_secs(3), Duration::from_millis(10), |n| {
        n.a_connected_through(n.turn.relayed)
    });
    let first = net.turn.relayed;
    assert!(net.a_connected_through(first), "{:?}", net.a.status());
    let now = net.run(
        now,
        Duration::from_secs(20),
        Duration::from_millis(50),
        |_| false,
    );
    assert!(net.a_connected_through(first));
    (net, now, first)
}

#[test]
fn an_allocation_the_server_drops_silently_is_replaced_within_seconds() {
    let t0 = Instant::now();
    let (mut net, now, first) = relayed_and_settled(t0);
    // The server forgets the allocation and says nothing; the crate's next refresh of it is
    // minutes away. Relayed checks go unanswered, our Refresh gets 437.
    net.turn.forget_silently();
    let recovered = net.run(
        now,
        Duration::from_secs(60),
        Duration::from_millis(50),
        |n| n.turn.allocations == 2 && n.a_connected_through(n.turn.relayed),
    );
    assert_eq!(net.turn.allocations, 2, "{:?}", net.a.status());
    assert_ne!(net.turn.relayed, first);
    // At most one consent interval until a check goes unanswered, then the probe's wait.
    assert!(
        recovered - now <= Duration::from_secs(15),
        "connected through a new allocation {:?} after the loss",
        recovered - now
    );
    assert_eq!(net.a.counters().relay_allocations_lost, 1);
}

#[test]
fn a_turn_server_that_stops_answering_is_given_up_within_seconds_and_used_again_when_back() {
    let t0 = Instant::now();
    let (mut net, now, first) = relayed_and_settled(t0);
    net.turn.black_hole = true;
    let given_up = net.run(
        now,
        Duration::from_secs(60),
        Duration::from_millis(50),
        |n| n.a.counters().relay_allocations_lost == 1,
    );
    assert_eq!(net.a.counters().relay_allocations_lost, 1);
    assert!(
        given_up - now <= Duration::from_secs(15),
        "allocation given up {:?} after the server went silent",
        given_up - now
    );
    // No path is kept through the allocation that is gone.
    assert_ne!(net.a.status()[&key(2)].local_candidate, first);
    net.turn.black_hole = false;
    let back = net.run(
        given_up,
        Duration::from_secs(60),
        Duration::from_millis(50),
        |n| n.turn.relayed.is_some() && n.a_connected_through(n.turn.relayed),
    );
    assert!(
        net.a_connected_through(net.turn.relayed),
        "{:?}",
        net.a.status()
    );
    assert!(
        back - given_up <= Duration::from_secs(30),
        "{:?}",
        back - given_up
    );
}

#[test]
fn a_silent_peer_behind_a_live_relay_costs_a_few_refreshes_not_the_allocation() {
    let t0 = Instant::now();
    let (mut net, now, first) = relayed_and_settled(t0);
    let refreshes = net.turn.refreshes;
    net.c_down = true;
    net.run(
        now,
        Duration::from_secs(60),
        Duration::from_millis(50),
        |_| false,
    );
    assert_eq!(net.turn.allocations, 1);
    assert_eq!(net.turn.relayed, first);
    assert_eq!(net.a.counters().relay_allocations_lost, 0);
    // Probes are spaced: a minute of unanswered checks costs a handful of Refreshes.
    let probes = net.turn.refreshes - refreshes;
    assert!((1..=5).contains(&probes), "{probes} Refreshes in a minute");
}
