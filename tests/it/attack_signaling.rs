//! The attacker suite for `wice signal` (issue 9, finding 4): publishing without a key
//! proof, publishing as someone else, flooding a subscriber that never reads, pinning large
//! request buffers, and holding idle connections. Loopback only (127.0.0.0/8), no root.

use std::io::Read as _;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use prost::bytes::Bytes;
use rand_core::OsRng;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use wice::signaling::server::{BudgetLimits, ServerConfig};
use wice::signaling::{Backend, GrpcBackend};
use wice_core::keys::PrivateKey;
use wice_core::signaling::Sealer;
use wice_proto::signaling as proto;
use wice_proto::signaling::signaling_client::SignalingClient;

use crate::harness::WICE;
use crate::signaling::{
    Peer, RunningServer, WAIT, description, loopback_config, loopback_url, quick_reconnect,
    session_id, subscribe_on,
};

fn answer_with(key: &PrivateKey) -> impl FnOnce(&proto::Challenge) -> Vec<u8> + use<> {
    let key = key.clone();
    move |challenge| wice_core::signaling::challenge::answer(&key, challenge).expect("answer")
}

async fn channel_from(addr: SocketAddr, local: Option<IpAddr>) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .local_address(local)
        .connect()
        .await
        .expect("connect")
}

/// A channel whose HTTP/2 windows are tiny: a subscriber that never reads.
async fn never_reading_channel(addr: SocketAddr, local: Option<IpAddr>) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .local_address(local)
        .initial_stream_window_size(1024)
        .initial_connection_window_size(1024)
        .connect()
        .await
        .expect("connect")
}

fn grpc_peer_backend(addr: SocketAddr) -> Arc<dyn Backend> {
    Arc::new(
        GrpcBackend::new(&loopback_url(addr.port(), false), quick_reconnect()).expect("backend"),
    )
}

fn sealed(from: &mut Sealer, to: &PrivateKey, id: u64) -> Bytes {
    from.seal(
        &to.public_key(),
        &description(id, 0),
        SystemTime::now(),
        &mut OsRng,
    )
    .expect("seal")
    .encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_publish_is_refused_and_reaches_nobody() {
    let server = RunningServer::start(loopback_config()).await;
    let mut bob = Peer::start(PrivateKey::generate(), vec![grpc_peer_backend(server.addr)]).await;
    let mallory = PrivateKey::generate();
    let mut sealer = Sealer::new(&mallory);
    let envelope = sealer
        .seal(
            &bob.public(),
            &description(66, 0),
            SystemTime::now(),
            &mut OsRng,
        )
        .expect("seal")
        .encode();

    // A connection that proved nothing.
    let mut client = SignalingClient::new(channel_from(server.addr, None).await);
    let refused = client
        .publish(proto::PublishRequest {
            envelopes: vec![envelope],
        })
        .await
        .expect_err("publishing needs a key proof");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused}");
    bob.assert_nothing_for(Duration::from_millis(500)).await;
    let counters = server.counters.snapshot();
    assert_eq!(counters.unauthenticated_publish, 1, "{counters}");
    assert_eq!(counters.delivered, 0, "{counters}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_with_another_keys_sender_is_refused() {
    let server = RunningServer::start(loopback_config()).await;
    let mut bob = Peer::start(PrivateKey::generate(), vec![grpc_peer_backend(server.addr)]).await;
    let alice = PrivateKey::generate();
    let mallory = PrivateKey::generate();
    // Mallory proves her own key on her connection...
    let channel = channel_from(server.addr, None).await;
    let _proof = subscribe_on(channel.clone(), mallory.public_key(), answer_with(&mallory))
        .await
        .expect("mallory's own key");
    // ...then publishes an envelope that claims Alice as its sender (a recording of a real
    // one from Alice, say).
    let mut alice_sealer = Sealer::new(&alice);
    let recorded = sealed(&mut alice_sealer, &PrivateKey::from_bytes([0; 32]), 1);
    let mut as_alice = proto::Envelope::default();
    prost::Message::merge(&mut as_alice, recorded).expect("decode");
    as_alice.recipient = Bytes::copy_from_slice(bob.public().as_bytes());
    let response = SignalingClient::new(channel)
        .publish(proto::PublishRequest {
            envelopes: vec![Bytes::from(prost::Message::encode_to_vec(&as_alice))],
        })
        .await
        .expect("the call itself is allowed")
        .into_inner();
    assert_eq!((response.delivered, response.rejected), (0, 1));
    bob.assert_nothing_for(Duration::from_millis(500)).await;
    assert_eq!(
        bob.signaling.counters().open.rejected(),
        0,
        "never reached Bob"
    );
    let counters = server.counters.snapshot();
    assert_eq!(counters.sender_not_proven, 1, "{counters}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_key_and_address_to_a_never_reading_subscriber_stays_within_its_budgets() {
    const PER_KEY: usize = 32 * 1024;
    const PER_IP: usize = 96 * 1024;
    const GLOBAL: usize = 256 * 1024;
    let server = RunningServer::start(ServerConfig {
        queue_len: 100_000,
        queue_bytes: 1 << 20,
        budgets: BudgetLimits {
            per_sender_key: PER_KEY,
            per_source_ip: PER_IP,
            global: GLOBAL,
        },
        rate_per_second: 100_000,
        burst: 100_000,
        ..loopback_config()
    })
    .await;
    let addr = server.addr;
    // The attacker comes from 127.0.0.2; everyone else from 127.0.0.1.
    let attacker_ip: Option<IpAddr> = Some("127.0.0.2".parse().expect("ip"));

    // Carol is a real recipient who has not read yet: what is queued for her must stay.
    let carol = PrivateKey::generate();
    let carol_channel = never_reading_channel(addr, None).await;
    let mut carol_stream = subscribe_on(carol_channel, carol.public_key(), answer_with(&carol))
        .await
        .expect("carol");
    let alice = PrivateKey::generate();
    let alice_channel = channel_from(addr, None).await;
    let _alice_proof = subscribe_on(
        alice_channel.clone(),
        alice.public_key(),
        answer_with(&alice),
    )
    .await
    .expect("alice");
    let mut alice_sealer = Sealer::new(&alice);
    let mut alice_client = SignalingClient::new(alice_channel);
    let for_carol: Vec<Bytes> = (0..5)
        .map(|i| sealed(&mut alice_sealer, &carol, i))
        .collect();
    alice_client
        .publish(proto::PublishRequest {
            envelopes: for_carol,
        })
        .await
        .expect("alice publishes");

    // The attacker: a victim key it subscribes and never reads, and four flooding keys.
    let victim = PrivateKey::generate();
    let _victim_stream = subscribe_on(
        never_reading_channel(addr, attacker_ip).await,
        victim.public_key(),
        answer_with(&victim),
    )
    .await
    .expect("victim");
    let mut proofs = Vec::new();
    for _ in 0..4 {
        let flooder = PrivateKey::generate();
        let channel = channel_from(addr, attacker_ip).await;
        proofs.push(
            subscribe_on(channel.clone(), flooder.public_key(), answer_with(&flooder))
                .await
                .expect("flooder"),
        );
        let mut sealer = Sealer::new(&flooder);
        let mut client = SignalingClient::new(channel);
        for round in 0..10 {
            let batch: Vec<Bytes> = (0..100)
                .map(|i| sealed(&mut sealer, &victim, round * 100 + i))
                .collect();
            client
                .publish(proto::PublishRequest { envelopes: batch })
                .await
                .expect("flood");
        }
    }
    let counters = server.counters.snapshot();
    assert!(counters.over_budget_source > 0, "{counters}");
    assert!(
        counters.queued_bytes <= PER_IP as u64 + 5 * 1024,
        "the flood holds at most its address's budget: {counters}"
    );

    // Alice is still served, and Carol gets everything queued for her before the flood.
    alice_client
        .publish(proto::PublishRequest {
            envelopes: vec![sealed(&mut alice_sealer, &carol, 5)],
        })
        .await
        .expect("alice publishes after the flood");
    let mut heard = Vec::new();
    while heard.len() < 6 {
        let message = tokio::time::timeout(WAIT, carol_stream.message())
            .await
            .expect("in time")
            .expect("ok")
            .expect("open");
        if let Some(proto::subscribe_response::Event::Envelope(bytes)) = message.event {
            let envelope = wice_core::signaling::Envelope::decode(&bytes).expect("envelope");
            assert_eq!(envelope.sender, alice.public_key());
            heard.push(envelope);
        }
    }
    assert!(server.counters.snapshot().over_budget_global == 0);
    server.stop().await;
}

/// `wice signal` as its own process, started with the soft fd limit most systems default to.
struct SignalProcess {
    child: Child,
    addr: SocketAddr,
}

impl SignalProcess {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr: SocketAddr = format!("0.0.0.0:{port}").parse().expect("addr");
        let child = Command::new("prlimit")
            .arg("--nofile=1024:")
            .arg(WICE)
            .args([
                "signal",
                "--listen",
                &addr.to_string(),
                "--log-level",
                "warn",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("wice signal under prlimit");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "wice signal never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, addr }
    }

    /// The server's resident memory, from /proc.
    fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc status");
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        kib * 1024
    }
}

impl Drop for SignalProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Alice and Bob, fresh, exchange one message through the server.
async fn two_peers_still_talk(addr: SocketAddr) {
    let alice = Peer::start(PrivateKey::generate(), vec![grpc_peer_backend(addr)]).await;
    let mut bob = Peer::start(PrivateKey::generate(), vec![grpc_peer_backend(addr)]).await;
    alice.publish(&[bob.public()], &description(31, 0)).await;
    assert_eq!(session_id(&bob.next(WAIT).await.message), 31);
}

#[test]
fn small_envelopes_in_large_requests_do_not_pin_server_memory() {
    let server = SignalProcess::start();
    runtime().block_on(async {
        let addr = server.addr;
        // Four subscribers that never read, each keeping a full queue.
        let victims: Vec<PrivateKey> = (0..4).map(|_| PrivateKey::generate()).collect();
        let mut streams = Vec::new();
        for victim in &victims {
            streams.push(
                subscribe_on(
                    never_reading_channel(addr, None).await,
                    victim.public_key(),
                    answer_with(victim),
                )
                .await
                .expect("victim"),
            );
        }
        let flooder = PrivateKey::generate();
        let channel = channel_from(addr, None).await;
        let _proof = subscribe_on(channel.clone(), flooder.public_key(), answer_with(&flooder))
            .await
            .expect("flooder");
        let mut sealer = Sealer::new(&flooder);
        let mut client = SignalingClient::new(channel);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = server.rss_bytes();
        // Each request: one small envelope and ~780 KiB of junk that is refused. A queued
        // slice of the request would keep all 780 KiB alive.
        for i in 0..256u64 {
            let victim = &victims[(i % 4) as usize];
            let request = proto::PublishRequest {
                envelopes: vec![
                    sealed(&mut sealer, victim, i),
                    Bytes::from(vec![0x5a; 780 * 1024]),
                ],
            };
            client.publish(request).await.expect("publish");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let grown = server.rss_bytes().saturating_sub(before);
        eprintln!("server RSS grew by {} KiB during the flood", grown >> 10);
        assert!(
            grown < 48 << 20,
            "server RSS grew by {} MiB for 256 queued envelopes of ~400 bytes",
            grown >> 20
        );
        two_peers_still_talk(addr).await;
        drop(streams);
    });
}

fn raise_own_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write only the struct passed.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit);
    }
}

/// Connects from `local` (any 127/8 address) to `addr`.
async fn connect_from(local: [u8; 4], addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((local, 0)))?;
    let stream = socket.connect(addr).await?.into_std()?;
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// True when the server closed `stream` within `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let _ = stream.set_read_timeout(Some(within));
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

#[test]
fn eleven_hundred_idle_connections_neither_exhaust_fds_nor_stay_open() {
    let server = SignalProcess::start();
    // Our side needs the descriptors too (after the server started with its low limit).
    raise_own_fd_limit();
    let runtime = runtime();
    // From five source addresses, under the per-address connection limit.
    let mut idle: Vec<TcpStream> = runtime.block_on(async {
        let mut idle = Vec::new();
        for i in 0..1100u32 {
            let local = [127, 0, 0, 2 + (i % 5) as u8];
            idle.push(connect_from(local, server.addr).await.expect("connect"));
        }
        idle
    });
    let connected = Instant::now();
    runtime.block_on(two_peers_still_talk(server.addr));
    // The handshake timeout (5 s from each accept) closes every one of them.
    let deadline = connected + Duration::from_secs(5 + 2);
    let mut open = 0;
    for stream in &mut idle {
        let left = deadline.saturating_duration_since(Instant::now());
        if !closed_within(stream, left.max(Duration::from_millis(1))) {
            open += 1;
        }
    }
    assert_eq!(
        open, 0,
        "idle connections still open after the handshake timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_open_connections_are_closed_within_the_timeouts() {
    let server = RunningServer::start(ServerConfig {
        handshake_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(2),
        ..loopback_config()
    })
    .await;
    let addr = server.addr;
    let started = Instant::now();
    let (silent_closed, half_closed) = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut silent = TcpStream::connect(addr).expect("tcp");
        let mut half = TcpStream::connect(addr).expect("tcp");
        half.write_all(b"PRI * HTTP/2.0\r\n")
            .expect("half a preface");
        let silent_closed = closed_within(&mut silent, Duration::from_secs(3));
        let half_closed = closed_within(&mut half, Duration::from_secs(3));
        (silent_closed, half_closed)
    })
    .await
    .expect("task");
    assert!(silent_closed, "a silent connection is closed");
    assert!(half_closed, "a half-open HTTP/2 connection is closed");
    assert!(started.elapsed() < Duration::from_secs(3));

    // A connection that made one call and then stays idle (its pings do not count).
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .http2_keep_alive_interval(Duration::from_millis(300))
        .keep_alive_while_idle(true)
        .connect()
        .await
        .expect("connect");
    let _ = SignalingClient::new(channel.clone())
        .publish(proto::PublishRequest::default())
        .await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let counters = server.counters.snapshot();
    assert_eq!(counters.closed_handshake_timeout, 2, "{counters}");
    assert_eq!(counters.closed_idle, 1, "{counters}");
    assert_eq!(counters.connections, 0, "{counters}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_connections_from_one_address_share_its_rate_limit() {
    // Per connection 5/s with a burst of 10; per address eight times that (a burst of 80).
    let server = RunningServer::start(ServerConfig {
        rate_per_second: 5,
        burst: 10,
        ..loopback_config()
    })
    .await;
    let addr = server.addr;
    let attacker_ip: Option<IpAddr> = Some("127.0.0.3".parse().expect("ip"));
    let target = PrivateKey::generate();
    let mut refused = 0;
    let mut proofs = Vec::new();
    // Twelve connections, each staying within its own burst (1 subscription + 9 envelopes).
    for _ in 0..12 {
        let key = PrivateKey::generate();
        let channel = channel_from(addr, attacker_ip).await;
        match subscribe_on(channel.clone(), key.public_key(), answer_with(&key)).await {
            Ok(proof) => proofs.push(proof),
            Err(status) if status.code() == Code::ResourceExhausted => {
                refused += 1;
                continue;
            }
            Err(status) => panic!("{status}"),
        }
        let mut sealer = Sealer::new(&key);
        let batch: Vec<Bytes> = (0..9).map(|i| sealed(&mut sealer, &target, i)).collect();
        match SignalingClient::new(channel)
            .publish(proto::PublishRequest { envelopes: batch })
            .await
        {
            Ok(_) => {}
            Err(status) if status.code() == Code::ResourceExhausted => refused += 1,
            Err(status) => panic!("{status}"),
        }
    }
    assert!(
        refused >= 3,
        "the address's shared budget ran out: {refused} refused"
    );
    assert!(server.counters.snapshot().rate_limited > 0);
    // Another address is not affected.
    two_peers_still_talk(addr).await;
    server.stop().await;
}
