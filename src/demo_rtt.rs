//! The demo's own round-trip measurement through the tunnel, so it needs no `ping`.
//!
//! An echo socket on the far node's overlay address (inside its namespace) sends every
//! datagram back; the near node (inside its namespace) sends numbered probes one at a time
//! and times each answer. UDP, not ICMP: no raw socket and no external tool.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wice_lab::netns::Netns;

/// How long one probe waits for its echo.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the echo side checks whether the prober is done.
const ECHO_POLL: Duration = Duration::from_millis(50);

/// The mean RTT of `count` UDP probes from namespace `from` to `to_addr` (an address in
/// namespace `to`), or `None` when no probe came back.
pub(crate) fn udp_rtt(from: &Netns, to: &Netns, to_addr: IpAddr, count: u32) -> Option<Duration> {
    let echo = to
        .within(move || UdpSocket::bind(SocketAddr::new(to_addr, 0)))
        .join()
        .ok()?
        .ok()?;
    let target = echo.local_addr().ok()?;
    let done = Arc::new(AtomicBool::new(false));
    let echo_done = done.clone();
    let echo_thread = std::thread::spawn(move || serve_echo(&echo, &echo_done));
    let probes = from
        .within(move || probe(target, count))
        .join()
        .ok()
        .flatten();
    done.store(true, Ordering::Relaxed);
    let _ = echo_thread.join();
    probes
}

/// Echoes datagrams until `done` is set.
fn serve_echo(socket: &UdpSocket, done: &AtomicBool) {
    let _ = socket.set_read_timeout(Some(ECHO_POLL));
    let mut buf = [0u8; 64];
    while !done.load(Ordering::Relaxed) {
        if let Ok((len, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..len], from);
        }
    }
}

/// Sends `count` probes to `target` one after another; the mean RTT of those answered.
fn probe(target: SocketAddr, count: u32) -> Option<Duration> {
    let unspecified = match target {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    };
    let socket = UdpSocket::bind(unspecified).ok()?;
    socket.connect(target).ok()?;
    socket.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
    let mut total = Duration::ZERO;
    let mut answered = 0u32;
    let mut buf = [0u8; 64];
    for seq in 0..count {
        let sent = Instant::now();
        socket.send(&seq.to_be_bytes()).ok()?;
        // Skip late echoes of earlier probes: only this probe's number counts.
        while let Ok(len) = socket.recv(&mut buf) {
            if buf[..len] == seq.to_be_bytes() {
                total += sent.elapsed();
                answered += 1;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (answered > 0).then(|| total / answered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_time_their_own_echo_on_loopback() {
        let echo = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let target = echo.local_addr().expect("addr");
        let done = Arc::new(AtomicBool::new(false));
        let echo_done = done.clone();
        let echo_thread = std::thread::spawn(move || serve_echo(&echo, &echo_done));
        let rtt = probe(target, 3).expect("echoed");
        done.store(true, Ordering::Relaxed);
        assert!(rtt < PROBE_TIMEOUT, "{rtt:?}");
        echo_thread.join().expect("echo thread");
    }

    #[test]
    fn no_echo_means_no_rtt() {
        // A bound socket that never answers.
        let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
        assert_eq!(probe(silent.local_addr().expect("addr"), 1), None);
    }
}
