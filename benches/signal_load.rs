//! Load benchmark of `wice signal` on loopback: fan-out rate, delivery latency and memory per
//! subscriber, with 1 000 and 10 000 subscribers (each on its own connection, each having
//! proven its key).
//!
//! Run: `cargo bench --bench signal_load` (or `-- 1000` for one size, `-- ws 1000` for the
//! WebSocket transport of `--ws-listen` instead of gRPC, `-- nats 1000` for two `wice signal
//! --nats` front-ends on a three-server `nats-server` cluster: subscribers split over both,
//! publishers on the first, so half the envelopes cross the NATS bus). Not run in CI.
//!
//! For each size it starts a fresh `wice signal` (the release binary), subscribes N keys, and:
//! 1. memory: the server's RSS after the subscriptions minus its RSS before, over N;
//! 2. throughput: 4 publisher connections send batches of 100 envelopes (each batch a
//!    multicast to 100 random subscribers) as fast as the server takes them for 5 s; the
//!    rate is what the subscribers received;
//! 3. latency: 2 000 envelopes/s for 5 s; each envelope carries its send time, and
//!    subscribers record when it arrives (p50/p99).
//!
//! Client and server share the machine's cores, so the figures are a floor.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

#[path = "support/rss.rs"]
mod rss;

use prost::Message as _;
use prost::bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use wice::signaling::ws_frame::{ClientFrame, ServerFrame, WS_PATH};
use wice_core::keys::PrivateKey;
use wice_core::signaling::challenge;
use wice_proto::signaling as proto;
use wice_proto::signaling::signaling_client::SignalingClient;

use crate::rss::rss_kib;

const ENVELOPE_PAYLOAD: usize = 300;
const BATCH: usize = 100;
const PUBLISHERS: usize = 4;

/// Which transport of `wice signal` the clients use.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Transport {
    Grpc,
    Ws,
    /// gRPC clients of two front-ends that share a NATS cluster as their bus.
    GrpcOverNats,
}

/// The servers of one run: `wice signal` front-ends (and the NATS cluster behind them).
struct Servers {
    /// Each front-end's gRPC port, and its WebSocket port.
    front_ends: Vec<(u16, u16)>,
    children: Vec<std::process::Child>,
}

impl Servers {
    fn start(transport: Transport) -> Self {
        let mut children = Vec::new();
        let mut nats_urls = Vec::new();
        if transport == Transport::GrpcOverNats {
            let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
            let cluster_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
            for (i, client_port) in client_ports.iter().enumerate() {
                let routes: Vec<String> = (0..3)
                    .filter(|j| *j != i)
                    .map(|j| format!("nats://127.0.0.1:{}", cluster_ports[j]))
                    .collect();
                let child = std::process::Command::new("nats-server")
                    .args(["-a", "127.0.0.1", "-p", &client_port.to_string()])
                    .args([
                        "--cluster",
                        &format!("nats://127.0.0.1:{}", cluster_ports[i]),
                    ])
                    .args([
                        "--cluster_name",
                        "wice-bench",
                        "--routes",
                        &routes.join(","),
                    ])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("nats-server (Debian package nats-server)");
                children.push(child);
            }
            // Each front-end starts on a different server of the cluster.
            for first in 0..2 {
                let order: Vec<String> = (0..3)
                    .map(|k| format!("127.0.0.1:{}", client_ports[(first + k) % 3]))
                    .collect();
                nats_urls.push(format!("nats://{}", order.join(",")));
            }
            std::thread::sleep(Duration::from_millis(1500));
        }
        let count = if nats_urls.is_empty() { 1 } else { 2 };
        let mut front_ends = Vec::new();
        for i in 0..count {
            let (port, ws_port) = (free_port(), free_port());
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_wice"));
            command.args([
                "signal",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--ws-listen",
                &format!("127.0.0.1:{ws_port}"),
                "--rate-limit",
                "10000000",
                "--burst",
                "10000000",
                "--max-connections-per-ip",
                "1000000",
                "--log-level",
                "warn",
            ]);
            if let Some(url) = nats_urls.get(i) {
                command.args(["--nats", url]);
            }
            children.push(command.spawn().expect("wice signal"));
            front_ends.push((port, ws_port));
        }
        std::thread::sleep(Duration::from_millis(500));
        Self {
            front_ends,
            children,
        }
    }

    /// The resident memory of every server process, summed.
    fn rss_kib(&self) -> u64 {
        self.children.iter().map(|c| rss_kib(c.id())).sum()
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for child in &mut self.children {
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }
}

type WsSocket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// The WebSocket twin of `subscriber`: its own socket, the key proof, then counting.
async fn ws_subscriber(port: u16, key: PrivateKey, shared: Arc<Shared>, ready: mpsc::Sender<()>) {
    let mut socket = ws_proven(port, &key).await;
    ready.send(()).await.expect("ready");
    while let Some(frame) = ws_next(&mut socket).await {
        if let ServerFrame::Event(proto::SubscribeResponse {
            event: Some(proto::subscribe_response::Event::Envelope(bytes)),
        }) = frame
        {
            count(&shared, bytes);
        }
    }
}

async fn ws_send(socket: &mut WsSocket, frame: ClientFrame) {
    use futures_sink::Sink as _;
    let mut socket = std::pin::Pin::new(socket);
    std::future::poll_fn(|cx| socket.as_mut().poll_ready(cx))
        .await
        .expect("ready");
    socket
        .as_mut()
        .start_send(tokio_tungstenite::tungstenite::Message::Binary(
            frame.encode(),
        ))
        .expect("send");
    std::future::poll_fn(|cx| socket.as_mut().poll_flush(cx))
        .await
        .expect("flush");
}

async fn ws_next(socket: &mut WsSocket) -> Option<ServerFrame> {
    use tokio_stream::StreamExt as _;
    loop {
        match socket.next().await? {
            Ok(tokio_tungstenite::tungstenite::Message::Binary(bytes)) => {
                return ServerFrame::decode(&bytes).ok();
            }
            Ok(tokio_tungstenite::tungstenite::Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// A WebSocket that proved `key`.
async fn ws_proven(port: u16, key: &PrivateKey) -> WsSocket {
    use proto::subscribe_request::Step;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let _ = tcp.set_nodelay(true);
    let (mut socket, _) =
        tokio_tungstenite::client_async(format!("ws://127.0.0.1:{port}{WS_PATH}"), tcp)
            .await
            .expect("handshake");
    let hello = proto::Hello {
        public_key: Bytes::copy_from_slice(key.public_key().as_bytes()),
        group: false,
    };
    ws_send(
        &mut socket,
        ClientFrame::Step(proto::SubscribeRequest {
            step: Some(Step::Hello(hello)),
        }),
    )
    .await;
    let Some(ServerFrame::Event(proto::SubscribeResponse {
        event: Some(proto::subscribe_response::Event::Challenge(c)),
    })) = ws_next(&mut socket).await
    else {
        panic!("no challenge");
    };
    let secret = challenge::answer(key, &c).expect("answer");
    ws_send(
        &mut socket,
        ClientFrame::Step(proto::SubscribeRequest {
            step: Some(Step::Answer(proto::ChallengeAnswer {
                secret: secret.into(),
            })),
        }),
    )
    .await;
    let _ = ws_next(&mut socket).await.expect("subscribed");
    socket
}

/// Where publishes go: a gRPC client or a WebSocket, each with a proven key.
enum Publisher {
    Grpc(SignalingClient<Channel>),
    Ws(Box<WsSocket>),
}

impl Publisher {
    async fn publish(&mut self, request: proto::PublishRequest) {
        match self {
            Self::Grpc(client) => {
                let _ = client.publish(request).await;
            }
            Self::Ws(socket) => {
                ws_send(socket, ClientFrame::Publish(request)).await;
                // Frames are answered in order; nothing else is sent to a publisher's key.
                let _ = ws_next(socket).await;
            }
        }
    }
}

struct Shared {
    start: Instant,
    received: AtomicU64,
    record_latency: AtomicBool,
    latencies_us: Mutex<Vec<u32>>,
}

async fn connect(port: u16) -> Channel {
    Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("uri")
        .tcp_nodelay(true)
        .connect()
        .await
        .expect("connect")
}

/// Subscribes one key on `channel` and counts what arrives. The subscription is also the
/// key proof that lets the connection publish as the key.
async fn subscriber(
    channel: Channel,
    key: PrivateKey,
    shared: Arc<Shared>,
    ready: mpsc::Sender<()>,
) {
    use proto::subscribe_request::Step;
    use proto::subscribe_response::Event;
    let mut client = SignalingClient::new(channel);
    let (steps, requests) = mpsc::channel(2);
    let hello = proto::SubscribeRequest {
        step: Some(Step::Hello(proto::Hello {
            public_key: Bytes::copy_from_slice(key.public_key().as_bytes()),
            group: false,
        })),
    };
    steps.send(hello).await.expect("hello");
    let mut stream = client
        .subscribe(ReceiverStream::new(requests))
        .await
        .expect("subscribe")
        .into_inner();
    let Ok(Some(proto::SubscribeResponse {
        event: Some(Event::Challenge(c)),
    })) = stream.message().await
    else {
        panic!("no challenge");
    };
    let secret = challenge::answer(&key, &c).expect("answer");
    steps
        .send(proto::SubscribeRequest {
            step: Some(Step::Answer(proto::ChallengeAnswer {
                secret: secret.into(),
            })),
        })
        .await
        .expect("answer");
    let _ = stream.message().await.expect("subscribed");
    ready.send(()).await.expect("ready");
    while let Ok(Some(response)) = stream.message().await {
        if let Some(Event::Envelope(bytes)) = response.event {
            count(&shared, bytes);
        }
    }
    drop(steps);
}

/// Counts one received envelope, and its latency while that is recorded.
fn count(shared: &Shared, bytes: Bytes) {
    shared.received.fetch_add(1, Ordering::Relaxed);
    if shared.record_latency.load(Ordering::Relaxed)
        && let Ok(envelope) = proto::Envelope::decode(bytes)
        && envelope.ciphertext.len() >= 8
    {
        let sent = u64::from_le_bytes(envelope.ciphertext[..8].try_into().expect("8"));
        let now = shared.start.elapsed().as_micros() as u64;
        let latency = u32::try_from(now.saturating_sub(sent)).unwrap_or(u32::MAX);
        shared
            .latencies_us
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(latency);
    }
}

/// An envelope the server will relay: real key lengths, the send time in the ciphertext.
fn envelope(sender: &[u8; 32], recipient: &[u8; 32], shared: &Shared) -> Bytes {
    let mut ciphertext = vec![0u8; ENVELOPE_PAYLOAD];
    let now = shared.start.elapsed().as_micros() as u64;
    ciphertext[..8].copy_from_slice(&now.to_le_bytes());
    Bytes::from(
        proto::Envelope {
            sender: Bytes::copy_from_slice(sender),
            recipient: Bytes::copy_from_slice(recipient),
            nonce: Bytes::from_static(&[1u8; 24]),
            ciphertext: Bytes::from(ciphertext),
        }
        .encode_to_vec(),
    )
}

fn batch(
    keys: &[[u8; 32]],
    sender: &[u8; 32],
    seed: &mut u64,
    shared: &Shared,
    n: usize,
) -> proto::PublishRequest {
    proto::PublishRequest {
        envelopes: (0..n)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                envelope(sender, &keys[(*seed % keys.len() as u64) as usize], shared)
            })
            .collect(),
    }
}

/// A connection that proved a fresh key (publishing needs it), and that key.
async fn publisher(
    transport: Transport,
    port: u16,
    ws_port: u16,
    shared: &Arc<Shared>,
) -> (Publisher, [u8; 32]) {
    let key = PrivateKey::generate();
    if transport == Transport::Ws {
        let socket = ws_proven(ws_port, &key).await;
        return (Publisher::Ws(Box::new(socket)), key.public_key().to_bytes());
    }
    let channel = connect(port).await;
    let (ready_tx, mut ready) = mpsc::channel(1);
    tokio::spawn(subscriber(
        channel.clone(),
        key.clone(),
        Arc::clone(shared),
        ready_tx,
    ));
    ready.recv().await.expect("publisher's key proven");
    (
        Publisher::Grpc(SignalingClient::new(channel)),
        key.public_key().to_bytes(),
    )
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[index]) / 1000.0
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

async fn run(transport: Transport, n: usize) {
    let servers = Servers::start(transport);
    // Publishers use the first front-end; subscribers take turns over all of them.
    let (port, ws_port) = servers.front_ends[0];

    let shared = Arc::new(Shared {
        start: Instant::now(),
        received: AtomicU64::new(0),
        record_latency: AtomicBool::new(false),
        latencies_us: Mutex::new(Vec::new()),
    });
    let rss_before = servers.rss_kib();
    let keys: Vec<PrivateKey> = (0..n).map(|_| PrivateKey::generate()).collect();
    let public: Vec<[u8; 32]> = keys.iter().map(|k| k.public_key().to_bytes()).collect();
    let (ready_tx, mut ready) = mpsc::channel(n);
    let subscribe_start = Instant::now();
    for (c, chunk) in keys.chunks(200).enumerate() {
        for (i, key) in chunk.iter().enumerate() {
            let (port, ws_port) = servers.front_ends[(c * 200 + i) % servers.front_ends.len()];
            match transport {
                Transport::Grpc | Transport::GrpcOverNats => tokio::spawn(subscriber(
                    connect(port).await,
                    key.clone(),
                    Arc::clone(&shared),
                    ready_tx.clone(),
                )),
                Transport::Ws => tokio::spawn(ws_subscriber(
                    ws_port,
                    key.clone(),
                    Arc::clone(&shared),
                    ready_tx.clone(),
                )),
            };
        }
        for _ in chunk {
            ready.recv().await.expect("subscribed");
        }
    }
    let subscribe_secs = subscribe_start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = servers.rss_kib();

    // Throughput.
    let stop = Arc::new(AtomicBool::new(false));
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let (mut client, sender) = publisher(transport, port, ws_port, &shared).await;
        let (public, shared, stop) = (public.clone(), Arc::clone(&shared), Arc::clone(&stop));
        publishers.push(tokio::spawn(async move {
            let mut seed = 0x9E37_79B9_7F4A_7C15 ^ p as u64;
            while !stop.load(Ordering::Relaxed) {
                client
                    .publish(batch(&public, &sender, &mut seed, &shared, BATCH))
                    .await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let received_start = shared.received.load(Ordering::Relaxed);
    let measure = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let throughput = (shared.received.load(Ordering::Relaxed) - received_start) as f64
        / measure.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for publisher in publishers {
        let _ = publisher.await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Latency at a steady 2 000 envelopes/s.
    shared.record_latency.store(true, Ordering::Relaxed);
    let (mut client, sender) = publisher(transport, port, ws_port, &shared).await;
    let mut seed = 0xDEAD_BEEF_u64;
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    for _ in 0..500 {
        ticker.tick().await;
        client
            .publish(batch(&public, &sender, &mut seed, &shared, 20))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut latencies = std::mem::take(
        &mut *shared
            .latencies_us
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    latencies.sort_unstable();

    drop(servers);

    println!(
        "| {transport:?} | {n} | {subscribe_secs:.1} s | {:.1} KiB | {throughput:.0} | {:.2} ms | {:.2} ms | {} |",
        (rss_after.saturating_sub(rss_before)) as f64 / n as f64,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.len(),
    );
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let transport = if std::env::args().any(|a| a == "ws") {
        Transport::Ws
    } else if std::env::args().any(|a| a == "nats") {
        Transport::GrpcOverNats
    } else {
        Transport::Grpc
    };
    let sizes = if sizes.is_empty() {
        vec![1000, 10_000]
    } else {
        sizes
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "| transport | subscribers | subscribe all | server RSS per subscriber | envelopes/s fanned out | p50 latency | p99 latency | latency samples |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for n in sizes {
        runtime.block_on(run(transport, n));
    }
}
