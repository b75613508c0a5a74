//! A candidate flood end to end (issue 9, finding 5): a configured peer whose key we accept
//! turns hostile and publishes thousands of candidates through the real `wice signal`, in
//! sealed offers of 64 candidates each, version after version. The node under attack must
//! hold a bounded set (each version replaces the last; the agent is reset when it would
//! grow past `MAX_AGENT_REMOTE_CANDIDATES`), stay small in memory, and keep its tunnel to
//! an honest peer answering. Root (namespaces, TUN).
//!
//! The hostile peer is this test process itself, publishing from a thread moved into the
//! honest peer's namespace (`setns`), so every byte stays inside the test's namespaces. The
//! flooded candidates are in 10.9.0.0/16, which no namespace routes: checks to them fail
//! locally.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wice::signaling::{Backend, BackendUrl, GrpcBackend, GrpcOptions, Signaling};
use wice_core::keys::PrivateKey;
use wice_core::session::MAX_AGENT_REMOTE_CANDIDATES;
use wice_core::signaling::message::MAX_CANDIDATES;
use wice_core::signaling::{
    Candidate, CandidateKind, SenderPolicy, SessionDescription, SignalingMessage, Transport,
};

use crate::harness::{Keys, Netns, PeerSpec, TempDir, WICE, WiceNode, root_or_skip, unique, veth};

const SIGNAL_PORT: u16 = 8443;
/// Offers the hostile peer publishes: 64 fresh candidates each, 19,200 in all.
const FLOOD_OFFERS: u64 = 300;

fn private_key(keys: &Keys) -> PrivateKey {
    keys.private.parse().expect("a private key")
}

/// Version `version` of the hostile session: 64 candidates no earlier version had.
fn flood_offer(version: u64) -> SignalingMessage {
    let candidates = (0..MAX_CANDIDATES as u64)
        .map(|i| {
            let n = version * MAX_CANDIDATES as u64 + i;
            let address: SocketAddr = format!(
                "10.9.{}.{}:{}",
                (n / 250) % 250,
                n % 250 + 1,
                1024 + n % 60_000
            )
            .parse()
            .expect("address");
            Candidate {
                kind: CandidateKind::Host,
                transport: Transport::Udp,
                address,
                priority: 2_130_706_431 - u32::try_from(i).expect("small"),
                foundation: format!("{n}"),
                related: None,
            }
        })
        .collect();
    SignalingMessage::SessionDescription(SessionDescription {
        session_id: 0x0bad_0bad,
        version,
        ice_ufrag: "hostileufragxxxx".to_owned(),
        ice_pwd: "hostile-password-xxxxxxx".to_owned(),
        candidates,
        end_of_candidates: false,
    })
}

/// Publishes the flood as `hostile` to `victim` from inside namespace `ns`; returns how many
/// offers the server took.
fn publish_flood_from(ns: &str, hostile: PrivateKey, victim: PrivateKey) -> u64 {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("namespace file");
        // SAFETY: setns on this thread only (network namespaces are per thread); the fd is
        // open for the call.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let url = BackendUrl::Grpc {
                host: "10.0.0.2".to_owned(),
                port: SIGNAL_PORT,
                tls: false,
            };
            let backend: Arc<dyn Backend> =
                Arc::new(GrpcBackend::new(&url, GrpcOptions::default()).expect("backend"));
            let (signaling, _received) =
                Signaling::start(hostile, SenderPolicy::AnyKey, vec![backend]).await;
            let mut published = 0;
            for version in 0..FLOOD_OFFERS {
                if signaling
                    .publish(&[victim.public_key()], &flood_offer(version))
                    .await
                    .is_ok()
                {
                    published += 1;
                }
                // Within the server's per-key budget: the flood is meant to reach the node.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            published
        })
    })
    .join()
    .expect("publisher thread")
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn peer_status(node: &WiceNode, public: &str) -> serde_json::Value {
    node.status()["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .find(|p| p["public_key"] == public)
        .cloned()
        .expect("the peer in status")
}

#[test]
fn a_configured_peer_flooding_candidates_stays_bounded_and_the_tunnel_answers() {
    if !root_or_skip("a_configured_peer_flooding_candidates_stays_bounded_and_the_tunnel_answers") {
        return;
    }
    let mut a = Netns::new();
    let mut b = Netns::new();
    veth(&a, "10.0.0.1/24", &b, "10.0.0.2/24");
    let dir = TempDir::new();
    let (keys_a, keys_b, keys_c) = (Keys::generate(), Keys::generate(), Keys::generate());
    let id = unique();
    let signaling = format!("\n[signaling]\nbackends = [\"grpc://10.0.0.2:{SIGNAL_PORT}\"]\n");
    let config_a = crate::harness::node_config(
        &format!("wa{id}"),
        &keys_a,
        51820,
        &["10.77.0.1/24"],
        &dir.path("a.sock"),
        &[
            PeerSpec {
                public_key: &keys_b.public,
                allowed_ips: &["10.77.0.2/32"],
                endpoint: None,
            },
            PeerSpec {
                public_key: &keys_c.public,
                allowed_ips: &["10.77.0.3/32"],
                endpoint: None,
            },
        ],
    ) + &signaling;
    let config_b = crate::harness::node_config(
        &format!("wb{id}"),
        &keys_b,
        51820,
        &["10.77.0.2/24"],
        &dir.path("b.sock"),
        &[PeerSpec {
            public_key: &keys_a.public,
            allowed_ips: &["10.77.0.1/32"],
            endpoint: None,
        }],
    ) + &signaling;
    let mut server = b.command(WICE);
    server
        .args(["signal", "--listen", &format!("10.0.0.2:{SIGNAL_PORT}")])
        .args(["--log-level", "warn"]);
    b.spawn(server);
    let node_a = WiceNode::start(&mut a, &dir, "a", &config_a);
    let _node_b = WiceNode::start(&mut b, &dir, "b", &config_b);

    let deadline = Instant::now() + Duration::from_secs(30);
    while peer_status(&node_a, &keys_b.public)["state"] != "connected" {
        assert!(
            Instant::now() < deadline,
            "a never connected to b: {}",
            node_a.status()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(a.ping("10.77.0.2", 3, 10), "a → b before the flood");
    let rss_before = rss_kib(node_a.pid);

    let published = publish_flood_from(&b.name, private_key(&keys_c), private_key(&keys_a));
    assert!(
        published >= FLOOD_OFFERS / 2,
        "only {published} of {FLOOD_OFFERS} offers published"
    );
    // Let the node take in everything that reached it.
    let mut most = 0;
    let settle = Instant::now() + Duration::from_secs(5);
    while Instant::now() < settle {
        let c = peer_status(&node_a, &keys_c.public);
        most = most.max(c["remote_candidates"].as_u64().expect("remote_candidates"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let c = peer_status(&node_a, &keys_c.public);
    let version = c["session_version"].as_u64();
    assert!(most > 0, "the flood never reached a: {c}");
    assert!(
        most <= MAX_AGENT_REMOTE_CANDIDATES as u64,
        "a held {most} remote candidates of the hostile peer (bound {MAX_AGENT_REMOTE_CANDIDATES}): {c}"
    );
    let rss_after = rss_kib(node_a.pid);
    assert!(
        rss_after < rss_before + 32 * 1024,
        "a's memory grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert!(a.ping("10.77.0.2", 5, 10), "a → b after the flood");
    assert_eq!(
        peer_status(&node_a, &keys_b.public)["state"],
        "connected",
        "{version:?}"
    );
    eprintln!(
        "candidate flood: {published} offers of {MAX_CANDIDATES} candidates published; a held at most {most}; RSS {rss_before} → {rss_after} KiB"
    );
}
