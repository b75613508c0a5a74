//! Attacker suite, handshakes: someone who knows a node's public key (and can
//! capture its peers' initiations) floods it with forged and replayed
//! handshake initiations from an address of their own. The victim must keep
//! its peer's endpoint and keep answering through the tunnel.
//!
//! Topology: `a` ─veth─ `b` (the peers), `a` ─veth─ `x` (the attacker).

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::harness::*;

#[path = "../../datapath/src/forge.rs"]
mod forge;

const ATTACKER: &str = "10.0.1.2";
const VICTIM_FROM_ATTACKER: &str = "10.0.1.1:51820";

/// Copies of the first UDP payloads of `len` bytes, type 1 (initiation), that
/// `source` sends to port 51820, seen from inside the namespace the thread
/// runs in (an AF_PACKET socket: what an eavesdropper on the link sees).
fn capture_initiations(source: [u8; 4], want: usize, timeout: Duration) -> Vec<Vec<u8>> {
    const ETH_P_IP: u16 = 0x0800;
    // SAFETY: plain socket(2); the descriptor is closed below.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM,
            i32::from(ETH_P_IP.to_be()),
        )
    };
    assert!(fd >= 0, "AF_PACKET: {}", std::io::Error::last_os_error());
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 200_000,
    };
    // SAFETY: SO_RCVTIMEO with a timeval of the right size on our socket.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    let mut found = Vec::new();
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + timeout;
    while found.len() < want && Instant::now() < deadline {
        // SAFETY: reads into a live buffer of the given length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        let Ok(n) = usize::try_from(n) else { continue };
        let packet = &buf[..n];
        let header = usize::from(packet.first().copied().unwrap_or(0) & 0x0f) * 4;
        let is_ours = n == header + 8 + 148
            && packet[9] == 17
            && packet[12..16] == source
            && packet[header + 2..header + 4] == 51820u16.to_be_bytes()
            && packet[header + 8] == 1;
        if is_ours {
            found.push(packet[header + 8..].to_vec());
        }
    }
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(fd) };
    found
}

#[test]
fn forged_and_replayed_initiations_never_move_a_peer_and_pings_keep_answering() {
    if !root_or_skip("forged_and_replayed_initiations_never_move_a_peer_and_pings_keep_answering") {
        return;
    }
    let mut a = Netns::new();
    let mut b = Netns::new();
    let x = Netns::new();
    veth(&a, "10.0.0.1/24", &b, "10.0.0.2/24");
    veth(&a, "10.0.1.1/24", &x, &format!("{ATTACKER}/24"));
    let dir = TempDir::new();
    let StaticPair {
        keys_a,
        keys_b,
        config_a,
        config_b,
    } = static_pair(&dir);

    // An eavesdropper on a's link records b's real initiations.
    let capture = a.within(|| capture_initiations([10, 0, 0, 2], 1, Duration::from_secs(20)));
    let node_a = WiceNode::start(&mut a, &dir, "a", &config_a);
    let node_b = WiceNode::start(&mut b, &dir, "b", &config_b);
    assert!(b.ping("10.77.0.1", 2, 10), "b → a before the attack");
    let captured = capture.join().expect("capture thread");
    assert!(!captured.is_empty(), "b's initiation was captured");
    let endpoint_before = node_a.status()["peers"][0]["endpoint"].clone();
    assert_eq!(endpoint_before, "10.0.0.2:51820");

    let decode = |text: &str| -> [u8; 32] {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .expect("base64 key")
            .try_into()
            .expect("32-byte key")
    };
    let (victim, claimed) = (decode(&keys_a.public), decode(&keys_b.public));
    // About 400 handshake datagrams a second for 8 s: forged initiations
    // claiming b, a mac1-valid response to a receiver index nobody holds
    // (shifts the parity of a load counter bumped twice per initiation), and
    // the captured initiation replayed.
    let flood = x.within(move || {
        let socket = UdpSocket::bind(format!("{ATTACKER}:6666")).expect("bind attacker");
        let target: SocketAddr = VICTIM_FROM_ATTACKER.parse().expect("addr");
        let (mut seed, mut sent) = (0u64, 0usize);
        let end = Instant::now() + Duration::from_secs(8);
        while Instant::now() < end {
            let response = forge::forged_response(&victim, 0xffff_ff00);
            let _ = socket.send_to(&response, target);
            for _ in 0..38 {
                seed += 1;
                let forged = forge::forged_initiation(&victim, &claimed, seed);
                let _ = socket.send_to(&forged, target);
            }
            for replay in &captured {
                let _ = socket.send_to(replay, target);
            }
            sent += 40;
            std::thread::sleep(Duration::from_millis(100));
        }
        sent
    });

    let mut endpoints = Vec::new();
    let mut pings_answered = 0;
    let mut rounds = 0;
    while !flood.is_finished() {
        rounds += 1;
        if a.ping("10.77.0.2", 1, 1) {
            pings_answered += 1;
        }
        endpoints.push(node_a.status()["peers"][0]["endpoint"].clone());
    }
    let sent = flood.join().expect("flood thread");
    assert!(sent >= 2000, "the attacker sent {sent} datagrams");
    let status = node_a.status();
    let moved: Vec<_> = endpoints
        .iter()
        .filter(|e| **e != endpoint_before)
        .collect();
    assert!(
        moved.is_empty(),
        "a's endpoint for b stayed {endpoint_before} during the attack, but {} of {} samples \
         showed {:?}",
        moved.len(),
        endpoints.len(),
        moved.first()
    );
    assert_eq!(status["peers"][0]["endpoint"], endpoint_before);
    assert!(
        !node_a.log_text().contains(&format!("{ATTACKER}:6666")),
        "a never moved b to the attacker"
    );
    assert!(
        status["drops"]["under_load"].as_u64() > Some(0),
        "the flood did load a: {status}"
    );
    assert_eq!(
        pings_answered, rounds,
        "every ping through the tunnel answered during the attack"
    );
    assert!(a.ping("10.77.0.2", 3, 5), "a → b after the attack");
    assert!(b.ping("10.77.0.1", 3, 5), "b → a after the attack");
    drop(node_b);
}
