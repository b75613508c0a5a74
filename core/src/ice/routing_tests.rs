//! STUN lookalikes never reach a session; real checks and server answers still do (issue 9
//! finding 2). Two controllers wired in memory, a flood played by the test.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tracing_subscriber::layer::{Context, SubscriberExt as _};

use super::reflexive::tests::answer as stun_answer;
use super::tests::{addr, host_only, key};
use super::*;
use crate::keys::PublicKey;

const A: &str = "10.0.0.1:51820";
const B: &str = "10.0.0.2:51820";

/// What happened to every datagram one node handed the other, and `a`'s latest ufrag.
#[derive(Default)]
struct Verdicts {
    routed: Vec<(u16, Routed)>,
    ufrag_of_a: String,
}

/// Hands offers and datagrams both ways until nothing moves, noting each datagram's STUN
/// type and where it was routed.
fn exchange(a: &mut Controller, b: &mut Controller, now: Instant, verdicts: &mut Verdicts) {
    while transfer(a, key(1), A, b, now, verdicts) | transfer(b, key(2), B, a, now, verdicts) {}
}

/// Delivers what `from` (key `from_key`, at `from_addr`) produced to the other node.
fn transfer(
    from: &mut Controller,
    from_key: PublicKey,
    from_addr: &str,
    to: &mut Controller,
    now: Instant,
    verdicts: &mut Verdicts,
) -> bool {
    let (to_key, to_addr) = if from_key == key(1) {
        (key(2), B)
    } else {
        (key(1), A)
    };
    let mut moved = false;
    while let Some((peer, offer)) = from.poll_offer() {
        assert_eq!(peer, to_key);
        if from_key == key(1) {
            verdicts.ufrag_of_a.clone_from(&offer.ice_ufrag);
        }
        to.handle_signal(now, from_key, offer);
        moved = true;
    }
    while let Some(datagram) = from.poll_transmit() {
        if datagram.destination == addr(to_addr) {
            let kind = u16::from_be_bytes([datagram.contents[0], datagram.contents[1]]);
            let routed = to.handle_datagram(
                now,
                addr(from_addr),
                Some(addr(to_addr)),
                &datagram.contents,
            );
            verdicts.routed.push((kind, routed));
            moved = true;
        }
    }
    while from.poll_event().is_some() {}
    moved
}

/// Two nodes on one LAN, run until connected; returns the time reached.
fn connected_pair(t0: Instant, verdicts: &mut Verdicts) -> (Controller, Controller, Instant) {
    let mut a = Controller::new(key(1), &[key(2)], host_only(A), 1, t0);
    let mut b = Controller::new(key(2), &[key(1)], host_only(B), 2, t0);
    let mut now = t0;
    exchange(&mut a, &mut b, now, verdicts);
    while now < t0 + Duration::from_millis(500) {
        now += Duration::from_millis(10);
        a.handle_timeout(now);
        b.handle_timeout(now);
        exchange(&mut a, &mut b, now, verdicts);
    }
    assert!(a.status()[&key(2)].state.is_connected());
    (a, b, now)
}

/// A STUN message of type `kind` with id `id` and these attributes.
fn stun(kind: u16, id: [u8; 12], attributes: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (attribute, value) in attributes {
        body.extend_from_slice(&attribute.to_be_bytes());
        body.extend_from_slice(&(value.len() as u16).to_be_bytes());
        body.extend_from_slice(value);
        body.resize(body.len().next_multiple_of(4), 0);
    }
    let mut datagram = kind.to_be_bytes().to_vec();
    datagram.extend_from_slice(&(body.len() as u16).to_be_bytes());
    datagram.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
    datagram.extend_from_slice(&id);
    datagram.extend_from_slice(&body);
    datagram
}

/// MAPPED-ADDRESS attributes, as many as fit a 1400-byte datagram with `room` to spare.
fn mapped_addresses(room: usize) -> Vec<(u16, Vec<u8>)> {
    let one = (0x0001, vec![0, 1, 0x30, 0x39, 192, 0, 2, 1]);
    vec![one; (1400 - 20 - room) / 12]
}

/// The lookalikes of issue 9: requests for a ufrag nobody has, requests that hide a live
/// ufrag behind hundreds of attributes, answers to transactions nobody started, indications.
fn lookalikes(live_ufrag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut id = [0u8; 12];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            match i % 4 {
                0 => {
                    let mut attributes = vec![(0x0006, b"nosuchufrag:x".to_vec())];
                    attributes.extend(mapped_addresses(20));
                    stun(0x0001, id, &attributes)
                }
                1 => {
                    let mut attributes = mapped_addresses(40);
                    attributes.push((0x0006, format!("{live_ufrag}:x").into_bytes()));
                    stun(0x0001, id, &attributes)
                }
                2 => stun(0x0101, id, &mapped_addresses(0)),
                _ => stun(0x0011, id, &mapped_addresses(0)),
            }
        })
        .collect()
}

/// Counts the events the `is` crate logs on this thread (it warns per odd STUN attribute it
/// parses: a sign that a datagram reached a session's agent).
struct CountAgentLogs(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountAgentLogs {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let target = event.metadata().target();
        if target == "is" || target.starts_with("is::") {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[test]
fn a_flood_of_stun_lookalikes_reaches_no_session_and_is_counted() {
    let t0 = Instant::now();
    let mut verdicts = Verdicts::default();
    let (mut a, _b, now) = connected_pair(t0, &mut verdicts);
    let session_id = a.status()[&key(2)].session_id;
    let before = a.counters();
    let agent_logs = Arc::new(AtomicUsize::new(0));
    let subscriber = tracing_subscriber::registry().with(CountAgentLogs(Arc::clone(&agent_logs)));
    let flood = lookalikes(&verdicts.ufrag_of_a, 2000);
    tracing::subscriber::with_default(subscriber, || {
        for (i, datagram) in flood.iter().enumerate() {
            // From many addresses, each under its rate limit.
            let from = SocketAddr::from(([198, 51, 100, (i % 200) as u8], 40000));
            a.handle_datagram(now, from, Some(addr(A)), datagram);
        }
    });
    assert_eq!(
        agent_logs.load(Ordering::Relaxed),
        0,
        "a lookalike reached an ICE agent"
    );
    let after = a.counters();
    assert_eq!(after.unmatched_stun - before.unmatched_stun, 2000);
    assert_eq!(after.rate_limited, before.rate_limited);
    let status = a.status()[&key(2)].clone();
    assert!(status.state.is_connected(), "{status:?}");
    assert_eq!(status.session_id, session_id);
}

#[test]
fn checks_and_answers_between_real_peers_route_to_their_session() {
    let t0 = Instant::now();
    let mut verdicts = Verdicts::default();
    let (a, b, _) = connected_pair(t0, &mut verdicts);
    let requests: Vec<Routed> = verdicts
        .routed
        .iter()
        .filter(|(kind, _)| *kind == 0x0001)
        .map(|(_, routed)| *routed)
        .collect();
    let answers: Vec<Routed> = verdicts
        .routed
        .iter()
        .filter(|(kind, _)| *kind == 0x0101)
        .map(|(_, routed)| *routed)
        .collect();
    assert!(!requests.is_empty() && !answers.is_empty());
    for routed in requests.iter().chain(&answers) {
        assert!(
            matches!(routed, Routed::Session(peer) if *peer == key(1) || *peer == key(2)),
            "{routed:?}"
        );
    }
    assert_eq!(a.counters().unmatched_stun + b.counters().unmatched_stun, 0);
}

#[test]
fn an_answer_to_our_check_from_another_address_is_dropped_and_from_the_right_one_routed() {
    let t0 = Instant::now();
    let mut a = Controller::new(key(1), &[key(2)], host_only(A), 1, t0);
    let mut b = Controller::new(key(2), &[key(1)], host_only(B), 2, t0);
    let mut verdicts = Verdicts::default();
    exchange(&mut a, &mut b, t0, &mut verdicts);
    // Hold a's next check back and answer it ourselves.
    let mut now = t0;
    let check = loop {
        now += Duration::from_millis(10);
        a.handle_timeout(now);
        if let Some(datagram) = std::iter::from_fn(|| a.poll_transmit())
            .find(|d| d.destination == addr(B) && d.contents[..2] == [0x00, 0x01])
        {
            break datagram;
        }
        assert!(now < t0 + Duration::from_secs(2), "a never checked b");
    };
    let mut id = [0u8; 12];
    id.copy_from_slice(&check.contents[8..20]);
    let answer = stun(0x0101, id, &[]);
    assert_eq!(
        a.handle_datagram(now, addr("10.0.0.66:51820"), Some(addr(A)), &answer),
        Routed::Dropped(DropReason::UnknownTransaction)
    );
    // From b's address the session gets it, and its agent refuses it (no integrity).
    assert_eq!(
        a.handle_datagram(now, addr(B), Some(addr(A)), &answer),
        Routed::Dropped(DropReason::Refused)
    );
    // And once the check's time is up, the id routes nowhere.
    assert_eq!(
        a.handle_datagram(now + CHECK_LIFETIME, addr(B), Some(addr(A)), &answer),
        Routed::Dropped(DropReason::UnknownTransaction)
    );
}

#[test]
fn a_stun_server_answer_still_routes_to_its_probe() {
    let t0 = Instant::now();
    let stun_server = addr("203.0.113.1:3478");
    let sources = Sources {
        stun: vec![stun_server],
        ..host_only(A)
    };
    let mut a = Controller::new(key(1), &[key(2)], sources, 1, t0);
    let request = a.poll_transmit().unwrap();
    let answer = stun_answer(&request.contents, addr("198.51.100.7:40000"));
    // The same answer from anyone else is nobody's.
    assert_eq!(
        a.handle_datagram(t0, addr("203.0.113.2:3478"), Some(addr(A)), &answer),
        Routed::Dropped(DropReason::UnknownTransaction)
    );
    assert_eq!(
        a.handle_datagram(t0, stun_server, Some(addr(A)), &answer),
        Routed::Server
    );
}

#[test]
fn one_source_flooding_is_rate_limited_before_its_datagrams_are_looked_at() {
    let t0 = Instant::now();
    let mut a = Controller::new(key(1), &[key(2)], host_only(A), 1, t0);
    let from = addr("198.51.100.1:40000");
    let flood = lookalikes("x", 10_000);
    let limited = flood
        .iter()
        .filter(|d| {
            a.handle_datagram(t0, from, Some(addr(A)), d)
                == Routed::Dropped(DropReason::RateLimited)
        })
        .count();
    let burst = SourceLimit::PEER.burst as usize;
    assert_eq!(limited, 10_000 - burst);
    let counters = a.counters();
    assert_eq!(counters.rate_limited, (10_000 - burst) as u64);
    assert_eq!(counters.unmatched_stun, burst as u64);
    // Another source is not affected.
    assert_ne!(
        a.handle_datagram(t0, addr("198.51.100.2:40000"), Some(addr(A)), &flood[0]),
        Routed::Dropped(DropReason::RateLimited)
    );
}

#[test]
fn a_datagram_the_datapath_gives_wireguard_is_not_a_check_to_the_controller() {
    // A check for a's live ufrag whose USERNAME is left unpadded, with a length field that
    // covers exactly what is there (not a multiple of 4). The datapath gives it to WireGuard;
    // the controller's own STUN test once took it for a check and handed it to the agent.
    let t0 = Instant::now();
    let mut verdicts = Verdicts::default();
    let (mut a, _b, now) = connected_pair(t0, &mut verdicts);
    let mut username = format!("{}:x", verdicts.ufrag_of_a).into_bytes();
    if (4 + username.len()) % 4 != 2 {
        username.resize(username.len() + (6 - (4 + username.len()) % 4) % 4, b'y');
    }
    let mut datagram = vec![0x00, 0x01];
    datagram.extend_from_slice(&(4 + username.len() as u16).to_be_bytes());
    datagram.extend_from_slice(&crate::wire::classify::STUN_MAGIC_COOKIE);
    datagram.extend_from_slice(&[7; 12]);
    datagram.extend_from_slice(&0x0006u16.to_be_bytes());
    datagram.extend_from_slice(&(username.len() as u16).to_be_bytes());
    datagram.extend_from_slice(&username);
    assert_eq!((datagram.len() - 20) % 4, 2);
    assert_eq!(
        crate::wire::classify(&datagram),
        crate::wire::DatagramKind::WireGuard
    );
    let before = a.counters();
    assert_eq!(
        a.handle_datagram(now, addr(B), Some(addr(A)), &datagram),
        Routed::Dropped(DropReason::NotStun)
    );
    let after = a.counters();
    assert_eq!(after.unexpected_datagrams, before.unexpected_datagrams + 1);
    assert_eq!(after.unmatched_stun, before.unmatched_stun);
}
