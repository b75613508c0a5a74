//! wice meshes across NAT routers in a namespace lab (`wice_lab`): public sites,
//! endpoint-independent and symmetric NATs, a `wice signal` server and coturn for STUN and
//! TURN on the lab's "internet". Each test builds its own lab, starts its nodes together and
//! polls `wice status` every 100 ms; the setup time printed is from starting the daemons until
//! both sides of a pair report each other connected.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wice_lab::{self as lab, Lab, LabOptions, NatKind, PairReport, coturn};

use crate::harness::*;

/// Generous for debug builds on two shared cores; relayed pairs take longest.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(45);
const TRANSFER_BYTES: usize = 4_000_000;

/// A lab with the signaling server and coturn running.
fn new_lab() -> Lab {
    let mut lab = Lab::new(LabOptions::new(WICE)).expect("lab");
    lab.start_signal().expect("wice signal");
    lab.start_turn().expect("coturn (apt-get install coturn)");
    lab
}

/// Adds one node per entry: `Some(kind)` on a new site of that kind, `None` on the previous
/// entry's site (a second host on the same LAN).
fn add_nodes(lab: &mut Lab, layout: &[Option<NatKind>]) -> Vec<usize> {
    let mut site = None;
    let mut nodes = Vec::new();
    for (n, kind) in layout.iter().enumerate() {
        if let Some(kind) = kind {
            site = Some(lab.add_site(*kind).expect("site"));
        }
        let label = ((b'a' + n as u8) as char).to_string();
        nodes.push(
            lab.add_node(site.expect("the first node names its site"), &label)
                .expect("node"),
        );
    }
    nodes
}

/// Starts `nodes` together and waits for every pair; panics with the reasons and logs.
fn connect(lab: &mut Lab, nodes: &[usize], test: &str) -> Vec<PairReport> {
    let since = Instant::now();
    lab.start_nodes(nodes).expect("daemons start");
    let reports = lab
        .wait_connected(&Lab::pairs(nodes), since, CONNECT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{test}: {e}\n{}", lab.logs(25)));
    for r in &reports {
        eprintln!(
            "{test}: {} ↔ {} connected over {} in {} ms",
            lab.node(r.a).label,
            lab.node(r.b).label,
            r.path(),
            r.setup.as_millis()
        );
    }
    reports
}

/// Ping both ways through the tunnel and a TCP transfer a → b with a matching checksum.
fn assert_traffic(lab: &Lab, a: usize, b: usize) {
    let (na, nb) = (lab.node(a), lab.node(b));
    assert!(
        na.ns.ping(&nb.overlay.to_string(), 3, 10),
        "{} → {} ping through the tunnel\n{}",
        na.label,
        nb.label,
        lab.logs(25)
    );
    assert!(
        nb.ns.ping(&na.overlay.to_string(), 3, 10),
        "{} → {} ping through the tunnel",
        nb.label,
        na.label
    );
    tcp_transfer(
        &na.ns,
        &nb.ns,
        SocketAddr::new(nb.overlay_ip(), 5201),
        TRANSFER_BYTES,
    );
}

/// The one pair of a two-node lab of the given layout: connected, traffic checked.
fn two_nodes(test: &str, layout: &[Option<NatKind>]) -> (Lab, PairReport) {
    let mut lab = new_lab();
    let nodes = add_nodes(&mut lab, layout);
    let report = connect(&mut lab, &nodes, test).remove(0);
    assert_traffic(&lab, nodes[0], nodes[1]);
    (lab, report)
}

fn assert_direct(report: &PairReport) {
    assert!(
        lab::is_direct(&report.path_a) && lab::is_direct(&report.path_b),
        "expected a direct path, got {}",
        report.path()
    );
}

/// Both sides use the LAN: path `host` (or `prflx` when the peer's check arrived before its
/// trickled candidate) and the remote candidate is the peer's LAN address.
fn assert_lan_path(lab: &Lab, r: &PairReport) {
    for (i, j, path) in [(r.a, r.b, &r.path_a), (r.b, r.a, &r.path_b)] {
        let p = lab.peer_status(i, j).expect("status");
        let remote = p["remote_candidate"].as_str().unwrap_or("");
        let peer_lan = lab.node(j).underlay.to_string();
        assert!(
            (path == "host" || path == "prflx") && remote.split(':').next() == Some(&peer_lan),
            "{} → {}: expected the LAN path to {peer_lan}, got {path} to {remote}",
            lab.node(i).label,
            lab.node(j).label
        );
    }
}

#[test]
fn the_lab_nats_map_and_filter_as_their_kind_says_and_every_node_reaches_the_servers() {
    let test = "the_lab_nats_map_and_filter_as_their_kind_says_and_every_node_reaches_the_servers";
    if !root_or_skip(test) {
        return;
    }
    let mut lab = new_lab();
    use NatKind::*;
    let nodes = add_nodes(
        &mut lab,
        &[
            Some(Public),
            Some(EndpointIndependent),
            None,
            Some(Symmetric),
        ],
    );
    let (public, eim1, eim2, sym) = (nodes[0], nodes[1], nodes[2], nodes[3]);

    // Probe servers on the internet: 4001 and 4002 answer with the source they saw; a probe
    // to 4001 also makes 4003 send an unsolicited datagram to that source.
    let stop = Arc::new(AtomicBool::new(false));
    let stop_servers = stop.clone();
    let (ready_tx, ready_rx) = mpsc::channel();
    let servers = lab.internet().within(move || {
        let bind = |port| {
            let s = UdpSocket::bind((lab::PUBLIC_ADDR, port)).expect("bind probe server");
            s.set_read_timeout(Some(Duration::from_millis(20)))
                .expect("timeout");
            s
        };
        let (s1, s2, s3) = (bind(4001), bind(4002), bind(4003));
        ready_tx.send(()).expect("ready");
        let until = Instant::now() + Duration::from_secs(60);
        let mut buf = [0u8; 64];
        while !stop_servers.load(Ordering::Relaxed) && Instant::now() < until {
            for (i, s) in [&s1, &s2].into_iter().enumerate() {
                if let Ok((_, from)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(from.to_string().as_bytes(), from);
                    if i == 0 {
                        let _ = s3.send_to(b"unsolicited", from);
                    }
                }
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("probe servers up");

    struct Probe {
        seen_by_4001: SocketAddr,
        seen_by_4002: SocketAddr,
        seen_by_stun: SocketAddr,
        unsolicited_arrived: bool,
        hairpin_arrived: bool,
    }
    // Probes from node `i`; while it listens, `hairpin_from` (if any) sends to its mapping.
    let probe = |lab: &Lab, i: usize, hairpin_from: Option<usize>| -> Probe {
        let (mapped_tx, mapped_rx) = mpsc::channel();
        let listener = lab.node(i).ns.within(move || {
            let s = UdpSocket::bind("0.0.0.0:5000").expect("bind");
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            let mut seen = Vec::new();
            let mut unsolicited = false;
            let mut hairpin = false;
            let mut buf = [0u8; 64];
            for port in [4001, 4002] {
                let to = SocketAddr::new(lab::PUBLIC_ADDR.into(), port);
                for _ in 0..20 {
                    s.send_to(b"probe", to).expect("send probe");
                    let Ok((n, from)) = s.recv_from(&mut buf) else {
                        continue;
                    };
                    unsolicited |= &buf[..n] == b"unsolicited";
                    if from == to {
                        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                        seen.push(text.parse::<SocketAddr>().expect("address"));
                        break;
                    }
                }
            }
            mapped_tx.send(seen[0]).expect("mapping");
            let until = Instant::now() + Duration::from_millis(800);
            while Instant::now() < until {
                if let Ok((n, _)) = s.recv_from(&mut buf) {
                    unsolicited |= &buf[..n] == b"unsolicited";
                    hairpin |= &buf[..n] == b"hairpin";
                }
            }
            let stun_socket = UdpSocket::bind("0.0.0.0:5001").expect("bind");
            let server = SocketAddr::new(lab::PUBLIC_ADDR.into(), lab::TURN_PORT);
            let stun = coturn::binding(&stun_socket, server, Duration::from_secs(3))
                .expect("coturn answers a STUN binding from every node");
            (seen, unsolicited, hairpin, stun)
        });
        let mapped = mapped_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("probe answered");
        if let Some(j) = hairpin_from {
            lab.node(j)
                .ns
                .within(move || {
                    let s = UdpSocket::bind("0.0.0.0:5002").expect("bind");
                    for _ in 0..3 {
                        let _ = s.send_to(b"hairpin", mapped);
                        std::thread::sleep(Duration::from_millis(50));
                    }
                })
                .join()
                .expect("hairpin sender");
        }
        let (seen, unsolicited_arrived, hairpin_arrived, seen_by_stun) =
            listener.join().expect("probe thread");
        Probe {
            seen_by_4001: seen[0],
            seen_by_4002: seen[1],
            seen_by_stun,
            unsolicited_arrived,
            hairpin_arrived,
        }
    };

    let p = probe(&lab, public, None);
    let public_addr = SocketAddr::new(lab.node(public).underlay.into(), 5000);
    assert_eq!(
        p.seen_by_4001, public_addr,
        "a public node is seen as itself"
    );
    assert_eq!(p.seen_by_4002, public_addr);
    assert_eq!(p.seen_by_stun.ip(), lab.node(public).underlay);
    assert!(p.unsolicited_arrived, "nothing filters a public node");

    let e = probe(&lab, eim1, Some(eim2));
    let wan = lab.site(lab.node(eim1).site).wan;
    assert_eq!(
        e.seen_by_4001.ip(),
        wan,
        "the eim NAT maps to its WAN address"
    );
    assert_eq!(
        e.seen_by_4001, e.seen_by_4002,
        "endpoint-independent: one mapping for both destinations"
    );
    assert_eq!(e.seen_by_stun.ip(), wan);
    assert!(
        !e.unsolicited_arrived,
        "the eim NAT filters by address and port"
    );
    assert!(!e.hairpin_arrived, "the eim NAT does not hairpin");

    let s = probe(&lab, sym, None);
    let wan = lab.site(lab.node(sym).site).wan;
    assert_eq!(s.seen_by_4001.ip(), wan);
    assert_eq!(s.seen_by_4002.ip(), wan);
    assert_ne!(
        s.seen_by_4001.port(),
        s.seen_by_4002.port(),
        "symmetric: a new mapping per destination"
    );
    assert!(!s.unsolicited_arrived, "the symmetric NAT filters too");
    stop.store(true, Ordering::Relaxed);
    servers.join().expect("probe servers");

    let signal = SocketAddr::new(lab::PUBLIC_ADDR.into(), lab::SIGNAL_PORT);
    for node in lab.nodes() {
        assert!(
            node.ns.tcp_reachable(signal, Duration::from_secs(3)),
            "{} reaches wice signal",
            node.label
        );
    }
}

#[test]
fn two_nodes_on_one_lan_connect_over_a_host_path() {
    let test = "two_nodes_on_one_lan_connect_over_a_host_path";
    if !root_or_skip(test) {
        return;
    }
    let (lab, r) = two_nodes(test, &[Some(NatKind::Public), None]);
    assert_lan_path(&lab, &r);
}

#[test]
fn two_nodes_behind_endpoint_independent_nats_connect_directly() {
    let test = "two_nodes_behind_endpoint_independent_nats_connect_directly";
    if !root_or_skip(test) {
        return;
    }
    use NatKind::*;
    let (_lab, r) = two_nodes(
        test,
        &[Some(EndpointIndependent), Some(EndpointIndependent)],
    );
    assert_direct(&r);
    assert_ne!(r.path_a, "host", "the LANs are not connected");
    assert_ne!(r.path_b, "host", "the LANs are not connected");
}

#[test]
fn a_node_behind_an_endpoint_independent_nat_and_a_public_node_connect_directly() {
    let test = "a_node_behind_an_endpoint_independent_nat_and_a_public_node_connect_directly";
    if !root_or_skip(test) {
        return;
    }
    use NatKind::*;
    let (_lab, r) = two_nodes(test, &[Some(EndpointIndependent), Some(Public)]);
    assert_direct(&r);
}

#[test]
fn endpoint_independent_and_symmetric_nats_connect_through_the_turn_relay() {
    let test = "endpoint_independent_and_symmetric_nats_connect_through_the_turn_relay";
    if !root_or_skip(test) {
        return;
    }
    use NatKind::*;
    let (_lab, r) = two_nodes(test, &[Some(EndpointIndependent), Some(Symmetric)]);
    assert!(r.relayed(), "expected relay, got {}", r.path());
}

#[test]
fn two_symmetric_nats_connect_through_the_turn_relay() {
    let test = "two_symmetric_nats_connect_through_the_turn_relay";
    if !root_or_skip(test) {
        return;
    }
    use NatKind::*;
    let (_lab, r) = two_nodes(test, &[Some(Symmetric), Some(Symmetric)]);
    assert!(r.relayed(), "expected relay, got {}", r.path());
}

#[test]
fn two_nodes_behind_the_same_nat_connect_over_their_lan() {
    let test = "two_nodes_behind_the_same_nat_connect_over_their_lan";
    if !root_or_skip(test) {
        return;
    }
    // No hairpinning: only the LAN path works.
    let (lab, r) = two_nodes(test, &[Some(NatKind::EndpointIndependent), None]);
    assert_lan_path(&lab, &r);
}

/// The path class a pair must get in the mesh test.
fn expected(lab: &Lab, a: usize, b: usize) -> &'static str {
    let (sa, sb) = (lab.node(a).site, lab.node(b).site);
    let (ka, kb) = (lab.site(sa).nat, lab.site(sb).nat);
    if sa == sb {
        "host"
    } else if (ka == NatKind::Symmetric && kb != NatKind::Public)
        || (kb == NatKind::Symmetric && ka != NatKind::Public)
    {
        "relay"
    } else {
        "direct"
    }
}

#[test]
fn a_mesh_of_five_nodes_across_four_sites_connects_every_pair() {
    let test = "a_mesh_of_five_nodes_across_four_sites_connects_every_pair";
    if !root_or_skip(test) {
        return;
    }
    use NatKind::*;
    let mut lab = new_lab();
    let nodes = add_nodes(
        &mut lab,
        &[
            Some(Public),
            Some(EndpointIndependent),
            None,
            Some(EndpointIndependent),
            Some(Symmetric),
        ],
    );
    let reports = connect(&mut lab, &nodes, test);
    assert_eq!(reports.len(), 10);
    for r in &reports {
        let (na, nb) = (lab.node(r.a), lab.node(r.b));
        assert!(
            na.ns.ping(&nb.overlay.to_string(), 1, 5) && nb.ns.ping(&na.overlay.to_string(), 1, 5),
            "{} ↔ {} ping both ways",
            na.label,
            nb.label
        );
        if expected(&lab, r.a, r.b) == "host" {
            assert_lan_path(&lab, r);
            continue;
        }
        let ok = match expected(&lab, r.a, r.b) {
            "relay" => r.relayed(),
            _ => lab::is_direct(&r.path_a) && lab::is_direct(&r.path_b),
        };
        assert!(
            ok,
            "{} ↔ {}: expected {}, got {}",
            na.label,
            nb.label,
            expected(&lab, r.a, r.b),
            r.path()
        );
    }
    assert_traffic(&lab, nodes[0], nodes[4]);
}

/// The restart evidence `i` shows for `j`: its session id and restart count.
fn session_of(lab: &Lab, i: usize, j: usize) -> (serde_json::Value, u64) {
    let p = lab.peer_status(i, j).expect("peer status");
    (p["session_id"].clone(), p["restarts"].as_u64().unwrap_or(0))
}

/// Kills `b` (a crash), starts it again and waits until the pair is back.
fn restart_and_reconnect(lab: &mut Lab, a: usize, b: usize, test: &str) -> PairReport {
    let before = session_of(lab, a, b);
    lab.stop_node(b, libc::SIGKILL);
    let since = Instant::now();
    lab.start_nodes(&[b]).expect("restart");
    let r = lab
        .wait_connected(&[(a, b)], since, CONNECT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{test}: after the restart: {e}\n{}", lab.logs(25)))
        .remove(0);
    // Connected right after the restart could still be the old session's handshake state:
    // wait for the evidence that a saw the new session.
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let mut after = session_of(lab, a, b);
    while after.0 == before.0 && after.1 <= before.1 && Instant::now() < deadline {
        std::thread::sleep(lab::POLL);
        after = session_of(lab, a, b);
    }
    assert!(
        after.0 != before.0 || after.1 > before.1,
        "{} saw {}'s new session: session_id {} → {}, restarts {} → {}",
        lab.node(a).label,
        lab.node(b).label,
        before.0,
        after.0,
        before.1,
        after.1
    );
    eprintln!(
        "{test}: {} ↔ {} reconnected over {} in {} ms after the restart",
        lab.node(a).label,
        lab.node(b).label,
        r.path(),
        r.setup.as_millis()
    );
    r
}

#[test]
fn a_peer_that_restarts_reconnects_with_a_new_session() {
    let test = "a_peer_that_restarts_reconnects_with_a_new_session";
    if !root_or_skip(test) {
        return;
    }
    use NatKind::*;
    let mut lab = new_lab();
    let nodes = add_nodes(&mut lab, &[Some(Public), Some(EndpointIndependent)]);
    let (a, b) = (nodes[0], nodes[1]);
    connect(&mut lab, &nodes, test);
    assert!(lab.node(a).ns.ping(&lab.node(b).overlay.to_string(), 2, 10));
    let r = restart_and_reconnect(&mut lab, a, b, test);
    assert_direct(&r);
    assert_traffic(&lab, a, b);
}

#[test]
fn tunnels_survive_a_signaling_outage_and_a_restarted_peer_reconnects_after_it() {
    let test = "tunnels_survive_a_signaling_outage_and_a_restarted_peer_reconnects_after_it";
    if !root_or_skip(test) {
        return;
    }
    use NatKind::*;
    let mut lab = new_lab();
    let nodes = add_nodes(
        &mut lab,
        &[Some(EndpointIndependent), Some(EndpointIndependent)],
    );
    let (a, b) = (nodes[0], nodes[1]);
    connect(&mut lab, &nodes, test);

    lab.stop_signal();
    // Established tunnels carry traffic for a while with no signaling at all.
    for _ in 0..3 {
        assert_traffic(&lab, a, b);
        std::thread::sleep(Duration::from_secs(1));
    }
    for (i, j) in [(a, b), (b, a)] {
        let p = lab.peer_status(i, j).expect("status");
        assert!(lab::connected(&p), "still connected without signaling: {p}");
    }

    lab.start_signal().expect("signal returns");
    let r = restart_and_reconnect(&mut lab, a, b, test);
    assert_direct(&r);
    assert_traffic(&lab, a, b);
}

#[test]
fn a_node_whose_underlay_address_changes_starts_a_new_session_on_the_new_address() {
    let test = "a_node_whose_underlay_address_changes_starts_a_new_session_on_the_new_address";
    if !root_or_skip(test) {
        return;
    }
    let (lab, r) = two_nodes(test, &[Some(NatKind::Public), None]);
    let (a, b) = (r.a, r.b);
    let (_, restarts_before) = session_of(&lab, b, a);
    let nb = lab.node(b);
    let old = nb.underlay;
    let new = std::net::Ipv4Addr::new(old.octets()[0], old.octets()[1], old.octets()[2], 200);

    let listing = nb.ns.exec("ip", &["-o", "-4", "addr", "show"]);
    let device = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .find(|line| line.contains(&format!(" {old}/")))
        .and_then(|line| line.split_whitespace().nth(1).map(str::to_owned))
        .expect("b's LAN device");
    // Like a DHCP renumbering: the old address (and the default route with it) goes, the new
    // one comes, the default route is set again.
    let [x, y, z, _] = old.octets();
    nb.ns
        .ip(&["addr", "del", &format!("{old}/24"), "dev", &device]);
    nb.ns
        .ip(&["addr", "add", &format!("{new}/24"), "dev", &device]);
    nb.ns.ip(&[
        "route",
        "replace",
        "default",
        "via",
        &format!("{x}.{y}.{z}.1"),
    ]);
    let moved = Instant::now();

    // b notices within its 5 s address scan, starts a new session, a follows.
    let expected = format!("{new}:51820");
    let deadline = moved + CONNECT_TIMEOUT;
    let reconnected = loop {
        let at_b = lab.peer_status(b, a).expect("b's status");
        let at_a = lab.peer_status(a, b).expect("a's status");
        if at_b["local_candidate"] == expected.as_str()
            && at_a["remote_candidate"] == expected.as_str()
            && at_a["state"] == "connected"
        {
            break moved.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "{test}: no new path on {new}: b sees {at_b}, a sees {at_a}\n{}",
            lab.logs(25)
        );
        std::thread::sleep(lab::POLL);
    };
    let (_, restarts_after) = session_of(&lab, b, a);
    assert!(
        restarts_after > restarts_before,
        "b started a new session ({restarts_before} → {restarts_after})"
    );
    eprintln!(
        "{test}: new path from {new} in {} ms after the address changed",
        reconnected.as_millis()
    );
    assert_traffic(&lab, a, b);
}
