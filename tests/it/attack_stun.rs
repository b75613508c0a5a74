//! Attacker suite, STUN floods (issue 9 finding 2): a stranger floods a running node's port
//! with 1400-byte STUN lookalikes (magic cookie, a USERNAME for nobody, ~110 MAPPED-ADDRESS
//! attributes, a fresh transaction id each) at ~10,000 datagrams/s for 10 s from the lab's
//! "internet" namespace. What a user would notice: the log stays small, the tunnel keeps
//! answering, and `wice status` counts the flood as drops.

use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use wice_lab::{self as lab, Lab, LabOptions, NatKind};

use crate::harness::*;

/// Datagrams per second, in bursts every 10 ms.
const FLOOD_RATE: u32 = 10_000;
const FLOOD_SECS: u32 = 10;
/// How much the flooded node's log (at `--log-level debug`) may grow during the flood:
/// room for its own routine lines and two rate-limited drop notes a second, nowhere near
/// one line per datagram (that would be ~100,000 lines).
const LOG_GROWTH_BOUND: u64 = 64 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(45);

/// The lookalike: a Binding request whose USERNAME names no ufrag of ours, padded to 1400
/// bytes with MAPPED-ADDRESS attributes (which `is` warns about one by one).
fn lookalike() -> Vec<u8> {
    let mut body = Vec::new();
    let username = b"nosuchufrag:attacker";
    body.extend_from_slice(&0x0006u16.to_be_bytes());
    body.extend_from_slice(&(username.len() as u16).to_be_bytes());
    body.extend_from_slice(username);
    body.resize(body.len().next_multiple_of(4), 0);
    while body.len() + 12 <= 1400 - 20 {
        body.extend_from_slice(&[0x00, 0x01, 0x00, 0x08, 0x00, 0x01, 0x30, 0x39, 192, 0, 2, 1]);
    }
    let mut datagram = vec![0x00, 0x01];
    datagram.extend_from_slice(&(body.len() as u16).to_be_bytes());
    datagram.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
    datagram.extend_from_slice(&[0; 12]);
    datagram.extend_from_slice(&body);
    datagram
}

/// Sends the flood from namespace `netns` (this thread enters it) to `target`; returns how
/// many datagrams left.
fn flood_from(netns: &str, target: SocketAddr) -> u64 {
    let namespace = File::open(format!("/run/netns/{netns}")).expect("attacker namespace");
    // SAFETY: setns(2) moves only this thread, with a descriptor we hold open.
    let entered = unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
    let socket = UdpSocket::bind("0.0.0.0:0").expect("attacker socket");
    let mut datagram = lookalike();
    let start = Instant::now();
    let mut sent = 0u64;
    for tick in 0..FLOOD_SECS * 100 {
        for _ in 0..FLOOD_RATE / 100 {
            sent += 1;
            datagram[8..16].copy_from_slice(&sent.to_be_bytes());
            if socket.send_to(&datagram, target).is_err() {
                sent -= 1;
            }
        }
        let next = start + Duration::from_millis(10 * u64::from(tick + 1));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    sent
}

/// The drops `wice status` shows for STUN that went nowhere, by any stage's counter.
fn stun_drops(lab: &Lab, i: usize) -> u64 {
    let status = lab.status(i).expect("status");
    ["ice_unmatched_stun", "ice_rate_limited", "control_dropped"]
        .iter()
        .map(|name| status["drops"][name].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn a_stun_lookalike_flood_leaves_the_log_small_the_tunnel_answering_and_is_counted() {
    let test = "a_stun_lookalike_flood_leaves_the_log_small_the_tunnel_answering_and_is_counted";
    if !root_or_skip(test) {
        return;
    }
    let mut options = LabOptions::new(WICE);
    options.log_level = "debug".into();
    let mut lab = Lab::new(options).expect("lab");
    lab.start_signal().expect("wice signal");
    let site_a = lab.add_site(NatKind::Public).expect("site");
    let a = lab.add_node(site_a, "a").expect("node");
    let site_b = lab.add_site(NatKind::Public).expect("site");
    let b = lab.add_node(site_b, "b").expect("node");
    let since = Instant::now();
    lab.start_nodes(&[a, b]).expect("daemons start");
    lab.wait_connected(&[(a, b)], since, CONNECT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{test}: {e}\n{}", lab.logs(25)));
    let overlay_a = lab.node(a).overlay.to_string();
    assert!(
        lab.node(b).ns.ping(&overlay_a, 2, 10),
        "tunnel before the flood"
    );

    let target = SocketAddr::new(lab.node(a).underlay.into(), lab::NODE_PORT);
    let log_size = || std::fs::metadata(&lab.node(a).log).map_or(0, |m| m.len());
    let (log_before, drops_before) = (log_size(), stun_drops(&lab, a));
    let flood_started = Instant::now();
    let (sent, pinged) = std::thread::scope(|scope| {
        let attacker = lab.internet().name.clone();
        let flood = scope.spawn(move || flood_from(&attacker, target));
        std::thread::sleep(Duration::from_secs(1));
        let pinged = lab.node(b).ns.ping(&overlay_a, 5, 8);
        (flood.join().expect("flood thread"), pinged)
    });
    let flood_took = flood_started.elapsed();
    // Let the node drain its queue before counting.
    std::thread::sleep(Duration::from_secs(1));
    let growth = log_size().saturating_sub(log_before);
    let dropped = stun_drops(&lab, a).saturating_sub(drops_before);
    eprintln!(
        "{test}: sent {sent} lookalikes in {:.1} s; log grew {growth} bytes; drops counted {dropped}",
        flood_took.as_secs_f64()
    );
    assert!(
        pinged,
        "the tunnel stopped answering under the flood\n{}",
        lab.logs(25)
    );
    assert!(
        growth < LOG_GROWTH_BOUND,
        "log grew {growth} bytes under the flood; its tail:\n{}",
        lab::tail(&lab.node(a).log, 20)
    );
    assert!(
        dropped >= sent / 2,
        "only {dropped} of {sent} lookalikes counted as drops"
    );
}
