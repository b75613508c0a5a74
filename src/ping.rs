//! `wice ping PEER`: ICMP echo through the tunnel to the peer's tunnel address, timed here,
//! and the path the daemon had the peer on while the echoes came back.
//!
//! Why ICMP through the tunnel rather than a WireGuard handshake or an ICE consent check:
//! an echo crosses exactly what user traffic crosses (TUN, WireGuard, the nominated path,
//! the peer's TUN and kernel) and needs nothing from the daemon but its status; a forced
//! handshake would rekey a fresh session, and consent checks run on the ICE schedule, not
//! on demand. The path is read from `wice status` after the echoes: the replies came in
//! over the peer's current endpoint (WireGuard moves it only on authenticated packets).
//! Needs a raw ICMP socket (root or CAP_NET_RAW) and a peer whose kernel answers echoes.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};

use crate::control;
use crate::status::{PeerStatus, Status};

/// Shortest key prefix accepted for a peer.
const MIN_PREFIX: usize = 4;
const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;
/// Gap between echoes.
const GAP: Duration = Duration::from_millis(200);

/// What `wice ping --json` prints (stable keys).
#[derive(Debug, Clone, Serialize)]
pub struct PingReport {
    /// The peer's public key.
    pub peer: String,
    /// The tunnel address pinged.
    pub address: IpAddr,
    /// Echoes sent.
    pub sent: u32,
    /// Replies received.
    pub received: u32,
    /// Each reply's round-trip time, milliseconds.
    pub rtt_ms: Vec<f64>,
    /// The peer's path as `wice status` names it (`host`, `srflx`, `prflx`, `relay`,
    /// `static`, `none`).
    pub path: String,
    /// Where the daemon sends the peer's packets.
    pub endpoint: Option<String>,
    /// ICE: our side of the nominated pair.
    pub local_candidate: Option<String>,
    /// ICE: the peer's side.
    pub remote_candidate: Option<String>,
    /// The status layer's verdict when the peer is not connected.
    pub reason: Option<String>,
}

/// Finds a peer by its full base64 key or a unique prefix of at least four characters.
pub fn find_peer<'a>(status: &'a Status, query: &str) -> Result<&'a PeerStatus, String> {
    if let Some(peer) = status.peers.iter().find(|p| p.public_key == query) {
        return Ok(peer);
    }
    if query.len() < MIN_PREFIX {
        return Err(format!(
            "{query:?}: give the peer's public key or at least {MIN_PREFIX} of its first characters"
        ));
    }
    let matches: Vec<&PeerStatus> = status
        .peers
        .iter()
        .filter(|p| p.public_key.starts_with(query))
        .collect();
    match matches.as_slice() {
        [peer] => Ok(peer),
        [] => Err(format!(
            "no peer of {} has a key starting with {query:?}",
            status.interface
        )),
        _ => Err(format!(
            "{query:?} matches {} peers: give more of the key",
            matches.len()
        )),
    }
}

/// The peer's tunnel address: its first single-address allowed IP.
pub fn tunnel_address(peer: &PeerStatus) -> Option<IpAddr> {
    peer.allowed_ips.iter().find_map(|net| {
        let net: ipnet::IpNet = net.parse().ok()?;
        (net.prefix_len() == net.max_prefix_len()).then(|| net.addr())
    })
}

/// Pings `query`'s peer of the daemon at `socket` `count` times.
pub fn run(
    socket: &Path,
    query: &str,
    address: Option<IpAddr>,
    count: u32,
    timeout: Duration,
) -> Result<PingReport, String> {
    let status = control::request_status(socket).map_err(|e| e.to_string())?;
    let peer = find_peer(&status, query)?;
    let target = address.or_else(|| tunnel_address(peer)).ok_or_else(|| {
        format!(
            "peer {} has no single-address allowed IP to ping: pass --address",
            peer.public_key
        )
    })?;
    let key = peer.public_key.clone();
    let rtts = echo(target, count, timeout).map_err(|e| format!("ping {target}: {e}"))?;
    let status = control::request_status(socket).map_err(|e| e.to_string())?;
    let peer = status
        .peers
        .iter()
        .find(|p| p.public_key == key)
        .ok_or_else(|| format!("peer {key} is gone from the node"))?;
    Ok(PingReport {
        peer: key.clone(),
        address: target,
        sent: count,
        received: rtts.iter().flatten().count() as u32,
        rtt_ms: rtts
            .iter()
            .flatten()
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect(),
        path: peer.path.clone(),
        endpoint: peer.endpoint.clone(),
        local_candidate: peer.local_candidate.clone(),
        remote_candidate: peer.remote_candidate.clone(),
        reason: peer.reason.clone(),
    })
}

/// The text form.
pub fn render(report: &PingReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let via = match (&report.local_candidate, &report.remote_candidate) {
        (Some(local), Some(remote)) => format!("{} path {local} -> {remote}", report.path),
        _ => format!(
            "{} path to {}",
            report.path,
            report.endpoint.as_deref().unwrap_or("(no endpoint)")
        ),
    };
    for rtt in &report.rtt_ms {
        let _ = writeln!(
            out,
            "reply from {} over the {via}: time={rtt:.2} ms",
            report.address
        );
    }
    let _ = writeln!(
        out,
        "peer {}: {}/{} replies",
        report.peer, report.received, report.sent
    );
    if report.received == 0
        && let Some(reason) = &report.reason
    {
        let _ = writeln!(out, "why not connected: {reason}");
    }
    out
}

/// Sends `count` echoes one after another; each reply's RTT, `None` for a lost one.
fn echo(target: IpAddr, count: u32, timeout: Duration) -> io::Result<Vec<Option<Duration>>> {
    let (domain, protocol, request_type) = match target {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4, ECHO_REQUEST_V4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6, ECHO_REQUEST_V6),
    };
    // A raw socket behind std's UDP API: send_to and recv_from are the same system calls,
    // the port is ignored, and no `unsafe` is needed to read the buffer.
    let socket: UdpSocket = Socket::new(domain, Type::RAW, Some(protocol))?.into();
    let destination = SocketAddr::new(target, 0);
    let identifier = (std::process::id() & 0xffff) as u16;
    let mut results = Vec::new();
    for sequence in 0..count {
        let sequence = sequence as u16;
        let request = echo_request(request_type, identifier, sequence);
        let sent = Instant::now();
        socket.send_to(&request, destination)?;
        results.push(await_reply(
            &socket, target, identifier, sequence, sent, timeout,
        )?);
        if u32::from(sequence) + 1 < count {
            std::thread::sleep(GAP);
        }
    }
    Ok(results)
}

fn await_reply(
    socket: &UdpSocket,
    target: IpAddr,
    identifier: u16,
    sequence: u16,
    sent: Instant,
    timeout: Duration,
) -> io::Result<Option<Duration>> {
    let mut buf = [0u8; 1500];
    loop {
        let left = timeout.saturating_sub(sent.elapsed());
        if left.is_zero() {
            return Ok(None);
        }
        socket.set_read_timeout(Some(left))?;
        let (len, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        // A raw socket sees every ICMP message to this host: keep only our echo's reply.
        if from.ip() == target && is_reply(&buf[..len], target.is_ipv4(), identifier, sequence) {
            return Ok(Some(sent.elapsed()));
        }
    }
}

/// An ICMP (or ICMPv6) echo request; ICMPv6's checksum is the kernel's to fill.
fn echo_request(kind: u8, identifier: u16, sequence: u16) -> Vec<u8> {
    let mut packet = vec![kind, 0, 0, 0];
    packet.extend_from_slice(&identifier.to_be_bytes());
    packet.extend_from_slice(&sequence.to_be_bytes());
    packet.extend_from_slice(b"wice ping");
    if kind == ECHO_REQUEST_V4 {
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    packet
}

/// Whether `bytes` (an IPv4 packet, or an ICMPv6 message) is our echo's reply.
fn is_reply(bytes: &[u8], v4: bool, identifier: u16, sequence: u16) -> bool {
    let (icmp, reply) = if v4 {
        let header = usize::from(bytes.first().map_or(0, |b| b & 0x0f)) * 4;
        (bytes.get(header..), ECHO_REPLY_V4)
    } else {
        (Some(bytes), ECHO_REPLY_V6)
    };
    let Some(icmp) = icmp.filter(|m| m.len() >= 8) else {
        return false;
    };
    icmp[0] == reply
        && icmp[4..6] == identifier.to_be_bytes()
        && icmp[6..8] == sequence.to_be_bytes()
}

/// The Internet checksum (RFC 1071).
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echo_request_checksums_to_zero_and_its_reply_is_recognised() {
        let request = echo_request(ECHO_REQUEST_V4, 0x1234, 7);
        assert_eq!(checksum(&request), 0);
        let mut reply = vec![0x45; 20];
        reply.extend_from_slice(&request);
        reply[20] = ECHO_REPLY_V4;
        assert!(is_reply(&reply, true, 0x1234, 7));
        assert!(!is_reply(&reply, true, 0x1234, 8));
        assert!(!is_reply(&reply, true, 0x4321, 7));
        assert!(!is_reply(&reply[..25], true, 0x1234, 7));
    }
}
