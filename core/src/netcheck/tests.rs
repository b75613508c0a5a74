//! Netcheck against a simulated NAT and an RFC 5780 server with two addresses, in fake time.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::*;

const IP1: &str = "203.0.113.2";
const IP2: &str = "203.0.113.3";
const PORT1: u16 = 3478;
const PORT2: u16 = 3479;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn local() -> SocketAddr {
    addr("192.168.2.2:51820")
}

/// A NAT between `local()` and the servers.
struct FakeNat {
    mapping: Mapping,
    filtering: Filtering,
    ports: HashMap<(Option<IpAddr>, Option<u16>), u16>,
    sent_to: HashSet<SocketAddr>,
    next_port: u16,
}

impl FakeNat {
    fn new(mapping: Mapping, filtering: Filtering) -> Self {
        Self {
            mapping,
            filtering,
            ports: HashMap::new(),
            sent_to: HashSet::new(),
            next_port: 40000,
        }
    }

    /// The address the packet toward `to` leaves with.
    fn outbound(&mut self, to: SocketAddr) -> SocketAddr {
        self.sent_to.insert(to);
        let key = match self.mapping {
            Mapping::NoNat => return local(),
            Mapping::EndpointIndependent => (None, None),
            Mapping::AddressDependent => (Some(to.ip()), None),
            _ => (Some(to.ip()), Some(to.port())),
        };
        let next = &mut self.next_port;
        let port = *self.ports.entry(key).or_insert_with(|| {
            *next += 1;
            *next
        });
        SocketAddr::new(ip("198.18.2.2"), port)
    }

    fn lets_in(&self, from: SocketAddr) -> bool {
        match self.filtering {
            Filtering::EndpointIndependent => true,
            Filtering::AddressDependent => self.sent_to.iter().any(|s| s.ip() == from.ip()),
            _ => self.sent_to.contains(&from),
        }
    }
}

/// Answers a Binding request that arrived at `to` from `mapped`, as coturn with two
/// listening IPs does (`rfc5780`), or as a plain server that ignores CHANGE-REQUEST.
fn serve(
    request: &[u8],
    to: SocketAddr,
    mapped: SocketAddr,
    rfc5780: bool,
) -> Option<(SocketAddr, Vec<u8>)> {
    let (transaction, change) = requested_change(request)?;
    if !rfc5780 {
        return Some((to, binding_success(transaction, mapped, to, None)));
    }
    let flip_ip = |a: IpAddr| if a == ip(IP1) { ip(IP2) } else { ip(IP1) };
    let flip_port = |p: u16| if p == PORT1 { PORT2 } else { PORT1 };
    let origin = SocketAddr::new(
        if change.ip { flip_ip(to.ip()) } else { to.ip() },
        if change.port {
            flip_port(to.port())
        } else {
            to.port()
        },
    );
    let other = SocketAddr::new(flip_ip(to.ip()), flip_port(to.port()));
    Some((
        origin,
        binding_success(transaction, mapped, origin, Some(other)),
    ))
}

/// Runs a netcheck of `servers` through `nat` to completion; `rfc5780` says whether the
/// servers at IP1/IP2 do RFC 5780, `udp` whether anything gets through at all.
fn run(nat: &mut FakeNat, servers: &[SocketAddr], rfc5780: bool, udp: bool) -> NetcheckReport {
    let mut now = Instant::now();
    let mut check = Netcheck::new(servers, Some(local()), now, IceRandom::from_seed(5));
    for _ in 0..1000 {
        while let Some((to, request)) = check.poll_transmit() {
            if !udp {
                continue;
            }
            let mapped = nat.outbound(to);
            let five = rfc5780 && (to.ip() == ip(IP1) || to.ip() == ip(IP2));
            if let Some((from, answer)) = serve(&request, to, mapped, five)
                && nat.lets_in(from)
            {
                check.handle_datagram(now, from, &answer);
            }
        }
        if check.done() {
            return check.report();
        }
        now = check
            .poll_timeout()
            .expect("an unfinished check has a deadline");
        check.handle_timeout(now);
    }
    panic!("the check never finished");
}

fn primary() -> SocketAddr {
    SocketAddr::new(ip(IP1), PORT1)
}

#[test]
fn behind_each_kind_of_nat_the_rfc5780_tests_read_its_mapping_and_filtering() {
    use Filtering as F;
    use Mapping as M;
    for mapping in [
        M::NoNat,
        M::EndpointIndependent,
        M::AddressDependent,
        M::AddressAndPortDependent,
    ] {
        for filtering in [
            F::EndpointIndependent,
            F::AddressDependent,
            F::AddressAndPortDependent,
        ] {
            let report = run(
                &mut FakeNat::new(mapping, filtering),
                &[primary()],
                true,
                true,
            );
            let behaviour = report.behaviour.expect("the server does RFC 5780");
            assert_eq!(
                (behaviour.mapping, behaviour.filtering),
                (mapping, filtering),
                "behind a {mapping:?}/{filtering:?} NAT"
            );
            assert_eq!(report.mapping, mapping);
            assert_eq!(behaviour.other, SocketAddr::new(ip(IP2), PORT2));
        }
    }
}

#[test]
fn the_verdict_follows_the_mapping_and_says_when_a_relay_answers() {
    use Filtering as F;
    use Mapping as M;
    let cases = [
        (M::NoNat, F::EndpointIndependent, false, Verdict::Open),
        (
            M::NoNat,
            F::AddressAndPortDependent,
            false,
            Verdict::DirectLikely,
        ),
        (
            M::EndpointIndependent,
            F::AddressAndPortDependent,
            false,
            Verdict::DirectLikely,
        ),
        (
            M::AddressAndPortDependent,
            F::AddressAndPortDependent,
            true,
            Verdict::RelayForSymmetricPeers {
                relay_answers: true,
            },
        ),
        (
            M::AddressDependent,
            F::AddressDependent,
            false,
            Verdict::RelayForSymmetricPeers {
                relay_answers: false,
            },
        ),
    ];
    for (mapping, filtering, relay, expected) in cases {
        let report = run(
            &mut FakeNat::new(mapping, filtering),
            &[primary()],
            true,
            true,
        );
        assert_eq!(
            verdict(&report, relay),
            expected,
            "{mapping:?}/{filtering:?}"
        );
    }
}

#[test]
fn every_server_reports_its_answer_and_the_public_addresses_are_listed_once() {
    let plain = addr("198.51.100.7:3478");
    let mut nat = FakeNat::new(
        Mapping::EndpointIndependent,
        Filtering::AddressAndPortDependent,
    );
    let report = run(&mut nat, &[primary(), plain], true, true);
    assert_eq!(report.servers.len(), 2);
    assert!(report.servers.iter().all(|s| s.rtt().is_some()));
    assert_eq!(report.public_addresses, [addr("198.18.2.2:40001")]);
}

#[test]
fn silence_from_every_server_is_udp_blocked_after_the_give_up_time() {
    let mut nat = FakeNat::new(
        Mapping::EndpointIndependent,
        Filtering::AddressAndPortDependent,
    );
    let report = run(&mut nat, &[primary()], true, false);
    assert_eq!(report.servers[0].result, ProbeResult::TimedOut);
    assert_eq!(report.behaviour, None);
    assert_eq!(verdict(&report, false), Verdict::UdpBlocked);
    assert_eq!(
        verdict(&run(&mut nat, &[], true, true), false),
        Verdict::NoServers
    );
}

#[test]
fn without_rfc5780_two_servers_at_different_addresses_still_tell_a_symmetric_nat() {
    let other = addr("198.51.100.7:3478");
    let sym = run(
        &mut FakeNat::new(
            Mapping::AddressAndPortDependent,
            Filtering::AddressAndPortDependent,
        ),
        &[primary(), other],
        false,
        true,
    );
    assert_eq!(sym.behaviour, None);
    assert_eq!(sym.mapping, Mapping::EndpointDependent);
    assert_eq!(sym.public_addresses.len(), 2);
    let eim = run(
        &mut FakeNat::new(
            Mapping::EndpointIndependent,
            Filtering::AddressAndPortDependent,
        ),
        &[primary(), other],
        false,
        true,
    );
    assert_eq!(eim.mapping, Mapping::EndpointIndependent);
    let one = run(
        &mut FakeNat::new(
            Mapping::EndpointIndependent,
            Filtering::AddressAndPortDependent,
        ),
        &[primary()],
        false,
        true,
    );
    assert_eq!(verdict(&one, false), Verdict::Unknown);
}

#[test]
fn answers_to_no_request_of_ours_are_not_taken() {
    let now = Instant::now();
    let mut check = Netcheck::new(&[primary()], None, now, IceRandom::from_seed(5));
    let _ = check.poll_transmit().unwrap();
    let forged = binding_success(12345, addr("6.6.6.6:6"), primary(), None);
    assert!(!check.handle_datagram(now, primary(), &forged));
    assert!(!check.handle_datagram(now, primary(), b"garbage"));
    assert_eq!(check.report().servers[0].result, ProbeResult::Pending);
}
