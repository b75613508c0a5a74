//! Signaling: the fixtures the conformance suite (`conformance`) shares, gRPC recovery,
//! sealing as a receiver sees it, the key proof, and `wice signal` under bad input. All traffic stays on 127.0.0.1;
//! nothing needs root.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use prost::bytes::{Buf as _, BufMut as _, Bytes};
use rand_core::OsRng;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use wice::signaling::server::{CounterHandle, CounterSnapshot, ServerConfig, SignalingServer};
use wice::signaling::{
    Backend, BackendUrl, Delivery, GrpcBackend, GrpcOptions, Inbox, Received, Signaling,
};
use wice_core::keys::{PrivateKey, PublicKey};
use wice_core::signaling::{
    Candidate, CandidateKind, Sealer, SenderPolicy, SessionDescription, SignalingMessage, Transport,
};
use wice_proto::signaling as proto;
use wice_proto::signaling::signaling_client::SignalingClient;

use crate::conformance::{Kind, World, test_certificate};
use crate::harness::WICE;

mod bad_input;

// ---- fixtures ----

/// A `wice signal` server running inside the test's runtime.
pub(crate) struct RunningServer {
    pub(crate) addr: SocketAddr,
    /// The WebSocket listener's address, when `ws_listen` was set.
    pub(crate) ws_addr: Option<SocketAddr>,
    pub(crate) counters: CounterHandle,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<CounterSnapshot>,
}

impl RunningServer {
    pub(crate) async fn start(config: ServerConfig) -> Self {
        let server = SignalingServer::bind(config).await.expect("bind");
        let addr = server.local_addr();
        let ws_addr = server.ws_local_addr();
        let counters = server.counters();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .serve(async move {
                    let _ = stopped.await;
                })
                .await
                .expect("serve")
        });
        Self {
            addr,
            ws_addr,
            counters,
            stop: Some(stop),
            task,
        }
    }

    /// Stops gracefully and returns the final counters.
    pub(crate) async fn stop(mut self) -> CounterSnapshot {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("the server stops within its grace period")
            .expect("server task")
    }
}

pub(crate) fn loopback_config() -> ServerConfig {
    ServerConfig::new("127.0.0.1:0".parse().expect("addr"))
}

/// The URL of a `wice signal` listening on 127.0.0.1.
pub(crate) fn loopback_url(port: u16, tls: bool) -> BackendUrl {
    BackendUrl::Grpc {
        host: "127.0.0.1".to_owned(),
        port,
        tls,
    }
}

pub(crate) fn quick_reconnect() -> GrpcOptions {
    GrpcOptions {
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        ..GrpcOptions::default()
    }
}

pub(crate) struct Peer {
    key: PrivateKey,
    pub(crate) signaling: Signaling,
    received: mpsc::Receiver<Received>,
}

impl Peer {
    pub(crate) async fn start(key: PrivateKey, backends: Vec<Arc<dyn Backend>>) -> Self {
        let (signaling, received) =
            Signaling::start(key.clone(), SenderPolicy::AnyKey, backends).await;
        Self {
            key,
            signaling,
            received,
        }
    }

    pub(crate) fn public(&self) -> PublicKey {
        self.key.public_key()
    }

    pub(crate) async fn publish(&self, to: &[PublicKey], message: &SignalingMessage) {
        self.signaling.publish(to, message).await.expect("publish");
    }

    /// The next message, or panic after `within`.
    pub(crate) async fn next(&mut self, within: Duration) -> Received {
        tokio::time::timeout(within, self.received.recv())
            .await
            .expect("a message in time")
            .expect("stream open")
    }

    /// Asserts nothing arrives for `quiet`.
    pub(crate) async fn assert_nothing_for(&mut self, quiet: Duration) {
        if let Ok(Some(got)) = tokio::time::timeout(quiet, self.received.recv()).await {
            panic!("expected nothing, got {got:?} from {}", got.sender);
        }
    }
}

/// `backend`, after subscribing `key` on it so that it may publish as `key`.
pub(crate) async fn publisher_on(
    backend: Arc<dyn Backend>,
    key: &PrivateKey,
) -> (Arc<dyn Backend>, mpsc::Receiver<Delivery>) {
    let (inbox, rx) = Inbox::channel(64);
    backend
        .subscribe(key.clone(), inbox)
        .await
        .expect("subscribe the publishing key");
    (backend, rx)
}

/// A session description that names its sender's index and a sequence number.
pub(crate) fn description(session_id: u64, version: u64) -> SignalingMessage {
    SignalingMessage::SessionDescription(SessionDescription {
        session_id,
        version,
        ice_ufrag: "ufrag".to_owned(),
        ice_pwd: "password-password-pass".to_owned(),
        candidates: vec![Candidate {
            kind: CandidateKind::Host,
            transport: Transport::Udp,
            address: "192.0.2.10:51820".parse().expect("addr"),
            priority: 2_130_706_431,
            foundation: "1".to_owned(),
            related: None,
        }],
        end_of_candidates: false,
    })
}

pub(crate) fn session_id(message: &SignalingMessage) -> u64 {
    match message {
        SignalingMessage::SessionDescription(sd) => sd.session_id,
        SignalingMessage::Announcement(_) => panic!("an announcement, not a description"),
    }
}

pub(crate) const WAIT: Duration = Duration::from_secs(5);
pub(crate) const QUIET: Duration = Duration::from_millis(300);

// ---- gRPC: recovery ----

// The restart of the server side: `conformance::scenarios::every_subscription_is_restored_after_the_server_side_restarts`.

#[tokio::test]
async fn a_reconnect_replaces_the_connection_and_keeps_every_subscription() {
    let server = RunningServer::start(loopback_config()).await;
    let url = loopback_url(server.addr.port(), false);
    let mut peers = Vec::new();
    for _ in 0..2 {
        let backend: Arc<dyn Backend> =
            Arc::new(GrpcBackend::new(&url, quick_reconnect()).expect("backend"));
        peers.push(Peer::start(PrivateKey::generate(), vec![backend]).await);
    }
    let keys: Vec<PublicKey> = peers.iter().map(Peer::public).collect();
    exchange_until_all_heard(&mut peers, &keys, 0).await;

    // What the daemon does when its addresses change: new connections, subscriptions again.
    for peer in &peers {
        peer.signaling.reconnect().await;
    }
    exchange_until_all_heard(&mut peers, &keys, 1).await;
    let counters = server.counters.snapshot();
    assert_eq!(
        counters.subscriptions, 2,
        "the old subscriptions were replaced, not added to"
    );
    server.stop().await;
}

/// Each peer multicasts (session `round`) every 200 ms until every peer has heard from all
/// the others in this round; publishes that fail while the server is away are retried.
pub(crate) async fn exchange_until_all_heard(peers: &mut [Peer], keys: &[PublicKey], round: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut heard: Vec<BTreeSet<PublicKey>> = vec![BTreeSet::new(); peers.len()];
    let complete = |heard: &[BTreeSet<PublicKey>]| heard.iter().all(|h| h.len() == keys.len() - 1);
    while !complete(&heard) {
        assert!(
            Instant::now() < deadline,
            "not everyone recovered: {heard:?}"
        );
        for (i, peer) in peers.iter().enumerate() {
            let others: Vec<PublicKey> = keys.iter().copied().filter(|k| *k != keys[i]).collect();
            let _ = peer
                .signaling
                .publish(&others, &description(round, 0))
                .await;
        }
        let until = Instant::now() + Duration::from_millis(200);
        for (i, peer) in peers.iter_mut().enumerate() {
            while let Ok(Some(got)) = tokio::time::timeout(
                until.saturating_duration_since(Instant::now()),
                peer.received.recv(),
            )
            .await
            {
                if session_id(&got.message) == round {
                    heard[i].insert(got.sender);
                }
            }
        }
    }
}

// ---- sealing as a receiver sees it ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_truncated_oversized_and_misaddressed_envelopes_are_refused_and_counted() {
    let world = World::new(Kind::InProcess).await;
    let mut bob = world.peer().await;
    let alice = PrivateKey::generate();
    let mut sealer = Sealer::new(&alice);
    let seal = |sealer: &mut Sealer, to: &PublicKey, id| {
        sealer
            .seal(to, &description(id, 0), SystemTime::now(), &mut OsRng)
            .expect("seal")
    };
    let (injector, _alice_inbox) = world.publisher(&alice).await;
    let good = seal(&mut sealer, &bob.public(), 1);

    let mut tampered = seal(&mut sealer, &bob.public(), 2);
    let mut bytes = tampered.ciphertext.to_vec();
    bytes[20] ^= 0x40;
    tampered.ciphertext = Bytes::from(bytes);

    let mut truncated = seal(&mut sealer, &bob.public(), 3);
    truncated.ciphertext = truncated.ciphertext.slice(..10);

    let mut oversized = seal(&mut sealer, &bob.public(), 4);
    oversized.ciphertext = Bytes::from(vec![0u8; 70 * 1024]);

    // Sealed to Carol, re-addressed to Bob: it does not open with Bob's key.
    let mut wrong_key = seal(&mut sealer, &PrivateKey::generate().public_key(), 5);
    wrong_key.recipient = bob.public();

    injector
        .publish(vec![
            good.clone(),
            tampered,
            truncated,
            oversized,
            wrong_key,
            good.clone(),
        ])
        .await
        .expect("publish");
    let got = bob.next(WAIT).await;
    assert_eq!(
        (got.sender, session_id(&got.message)),
        (alice.public_key(), 1)
    );
    bob.assert_nothing_for(QUIET).await;
    let open = bob.signaling.counters().open;
    assert_eq!(open.accepted, 1);
    assert_eq!(
        open.tampered, 2,
        "the flipped bit and the re-addressed envelope"
    );
    assert_eq!(open.truncated, 1);
    assert_eq!(open.oversized, 1);
    assert_eq!(open.replayed, 1);
    assert_eq!(open.rejected(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_accepts_only_its_peers_refuses_a_stranger() {
    let world = World::new(Kind::InProcess).await;
    let friend = world.peer().await;
    let stranger = world.peer().await;
    let bob_key = PrivateKey::generate();
    let (bob, mut received) = Signaling::start(
        bob_key.clone(),
        SenderPolicy::Only([friend.public()].into_iter().collect()),
        vec![world.backend()],
    )
    .await;
    stranger
        .publish(&[bob_key.public_key()], &description(7, 0))
        .await;
    friend
        .publish(&[bob_key.public_key()], &description(8, 0))
        .await;
    let got = tokio::time::timeout(WAIT, received.recv())
        .await
        .expect("in time")
        .expect("open");
    assert_eq!((got.sender, session_id(&got.message)), (friend.public(), 8));
    assert_eq!(bob.counters().open.unknown_sender, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_arriving_through_two_backends_is_handed_on_once() {
    let first = World::new(Kind::InProcess).await;
    let second = World::new(Kind::Grpc).await;
    let alice_key = PrivateKey::generate();
    let bob_key = PrivateKey::generate();
    let alice = Peer::start(alice_key, vec![first.backend(), second.backend()]).await;
    let mut bob = Peer::start(bob_key, vec![first.backend(), second.backend()]).await;
    alice.publish(&[bob.public()], &description(5, 0)).await;
    assert_eq!(session_id(&bob.next(WAIT).await.message), 5);
    bob.assert_nothing_for(QUIET).await;
    let counters = bob.signaling.counters();
    assert_eq!(counters.duplicates, 1);
    assert_eq!(counters.open.accepted, 1);
    assert_eq!(counters.open.replayed, 0);
}

// ---- the key proof ----

/// A raw client: hello with `key`, then answers the challenge with `answer(challenge)`.
pub(crate) async fn subscribe_raw(
    addr: SocketAddr,
    key: PublicKey,
    answer: impl FnOnce(&proto::Challenge) -> Vec<u8>,
) -> Result<tonic::Streaming<proto::SubscribeResponse>, Status> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    subscribe_on(channel, key, answer).await
}

/// Subscribes `key` on `channel` (its connection then may publish as `key`).
pub(crate) async fn subscribe_on(
    channel: Channel,
    key: PublicKey,
    answer: impl FnOnce(&proto::Challenge) -> Vec<u8>,
) -> Result<tonic::Streaming<proto::SubscribeResponse>, Status> {
    use proto::subscribe_request::Step;
    let mut client = SignalingClient::new(channel);
    let (steps, requests) = mpsc::channel(2);
    steps
        .send(proto::SubscribeRequest {
            step: Some(Step::Hello(proto::Hello {
                public_key: Bytes::copy_from_slice(key.as_bytes()),
                group: false,
            })),
        })
        .await
        .expect("hello");
    let mut stream = client
        .subscribe(ReceiverStream::new(requests))
        .await?
        .into_inner();
    let Some(proto::SubscribeResponse {
        event: Some(proto::subscribe_response::Event::Challenge(challenge)),
    }) = stream.message().await?
    else {
        panic!("expected a challenge");
    };
    // The server may have given up already (a slow answer): its verdict is in the stream.
    let _ = steps
        .send(proto::SubscribeRequest {
            step: Some(Step::Answer(proto::ChallengeAnswer {
                secret: answer(&challenge).into(),
            })),
        })
        .await;
    match stream.message().await? {
        Some(proto::SubscribeResponse {
            event: Some(proto::subscribe_response::Event::Subscribed(_)),
        }) => {
            // Keep the request side open as long as the stream lives.
            tokio::spawn(async move {
                steps.closed().await;
            });
            Ok(stream)
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_hold_a_key_cannot_subscribe_to_it() {
    let server = RunningServer::start(loopback_config()).await;
    let victim = PrivateKey::generate();
    let attacker = PrivateKey::generate();

    // Guessing the secret fails.
    let guessed = subscribe_raw(server.addr, victim.public_key(), |_| vec![0u8; 32]).await;
    assert_eq!(guessed.expect_err("refused").code(), Code::Unauthenticated);
    // Answering with another key fails: the challenge does not open.
    let answered = subscribe_raw(server.addr, victim.public_key(), |challenge| {
        wice_core::signaling::challenge::answer(&attacker, challenge)
            .unwrap_or_else(|_| vec![1u8; 32])
    })
    .await;
    assert_eq!(answered.expect_err("refused").code(), Code::Unauthenticated);
    assert_eq!(server.counters.snapshot().auth_failed, 2);
    assert_eq!(server.counters.snapshot().subscriptions, 0);

    // Nothing sent to the victim reached anyone: there is no subscriber.
    let sender = Peer::start(
        PrivateKey::generate(),
        vec![Arc::new(
            GrpcBackend::new(&loopback_url(server.addr.port(), false), quick_reconnect())
                .expect("backend"),
        )],
    )
    .await;
    sender
        .publish(&[victim.public_key()], &description(9, 0))
        .await;
    assert_eq!(server.counters.snapshot().delivered, 0);

    // The key holder itself subscribes fine.
    let mut stream = subscribe_raw(server.addr, victim.public_key(), |challenge| {
        wice_core::signaling::challenge::answer(&victim, challenge).expect("our own challenge")
    })
    .await
    .expect("the key holder is let in");
    sender
        .publish(&[victim.public_key()], &description(10, 0))
        .await;
    let got = tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("in time")
        .expect("ok");
    assert!(matches!(
        got,
        Some(proto::SubscribeResponse {
            event: Some(proto::subscribe_response::Event::Envelope(_))
        })
    ));
    server.stop().await;
}

// ---- the binary ----

#[test]
fn wice_signal_serves_until_sigterm_and_logs_its_counters() {
    use std::process::{Command, Stdio};

    // Find a free port, then let the server take it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new(WICE)
        .args([
            "signal",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--stats-interval",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wice signal");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let url = BackendUrl::Grpc {
            host: "127.0.0.1".to_owned(),
            port,
            tls: false,
        };
        let backend = || -> Arc<dyn Backend> {
            Arc::new(GrpcBackend::new(&url, quick_reconnect()).expect("backend"))
        };
        // The server may still be starting: subscriptions retry by themselves, and the
        // first publishes may fail until it is up.
        let alice = Peer::start(PrivateKey::generate(), vec![backend()]).await;
        let mut bob = Peer::start(PrivateKey::generate(), vec![backend()]).await;
        let deadline = Instant::now() + WAIT;
        loop {
            let _ = alice
                .signaling
                .publish(&[bob.public()], &description(1, 0))
                .await;
            let heard = tokio::time::timeout(Duration::from_millis(200), bob.received.recv()).await;
            if let Ok(Some(_)) = heard {
                break;
            }
            assert!(Instant::now() < deadline, "wice signal never came up");
        }
        alice.publish(&[bob.public()], &description(2, 0)).await;
        assert_eq!(session_id(&bob.next(WAIT).await.message), 2);
    });
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let output = child.wait_with_output().expect("exit");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("signaling server listening"), "{stderr}");
    assert!(stderr.contains("final counters: accepted="), "{stderr}");
    assert!(
        stderr.contains("signal=\"SIGTERM\"") || stderr.contains("signal=SIGTERM"),
        "{stderr}"
    );
}

#[test]
fn wice_signal_refuses_a_tls_cert_without_a_key() {
    let out = std::process::Command::new(WICE)
        .args([
            "signal",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "/nonexistent.pem",
        ])
        .output()
        .expect("wice");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"));
}

#[test]
fn wice_signal_refuses_a_certificate_that_is_not_pem_before_listening() {
    let dir = std::env::temp_dir().join(format!("wice-signal-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let identity = test_certificate();
    std::fs::write(dir.join("bad.pem"), "not a certificate\n").expect("write");
    std::fs::write(dir.join("key.pem"), &identity.key_pem).expect("write");
    let out = std::process::Command::new(WICE)
        .args(["signal", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(dir.join("bad.pem"))
        .arg("--tls-key")
        .arg(dir.join("key.pem"))
        .output()
        .expect("wice");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("wice: TLS certificate or key refused: "),
        "{stderr}"
    );
    assert!(!stderr.contains("listening"), "{stderr}");
}
