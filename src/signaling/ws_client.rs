//! The WebSocket backend (`ws://`, `wss://`): a client of `wice signal --ws-listen`, for
//! networks where only HTTP/1.1 (often only through a proxy, often only to port 443) passes.
//!
//! Each subscribed key gets its own socket and task: connect (directly, or through the HTTP
//! proxy the environment names, with `CONNECT`), TLS for `wss://` (the public roots plus an
//! optional extra CA), the WebSocket handshake, the key proof (the same challenge as gRPC),
//! then envelopes stream in. When the socket breaks (server restart, network loss, no frame
//! for [`WsOptions::silence_limit`]) the task subscribes again after a jittered exponential
//! back-off, until unsubscribed or closed. Both sides ping a quiet socket.
//!
//! Publishing rides on a subscription of the sender's key: the envelopes go as one publish
//! frame on that socket and the server answers each frame in order. A publish waits (up to
//! the publish timeout) for that subscription to stand, and is tried once more when the
//! socket broke under it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prost::bytes::Bytes;
use rand_core::OsRng;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use wice_proto::signaling as proto;

use super::backend::{Backend, BackendError, BackendFuture, BackendKind, BackendUrl, Inbox};
use super::subscriptions::{FirstOutcome, Subscriber, Subscription, Subscriptions};
use super::ws_frame::{
    ClientFrame, MAX_CLIENT_FRAME_LEN, MAX_SERVER_FRAME_LEN, RefusalCode, ServerFrame, WS_PATH,
};
use super::ws_proxy::ProxyUrl;
use super::ws_socket;
use wice_core::backoff::Backoff;
use wice_core::keys::{PrivateKey, PublicKey};
use wice_core::signaling::challenge;
use wice_core::signaling::envelope::Envelope;
use wice_core::signaling::size_limits::MAX_BATCH;

/// How long each step of the key proof may take before the attempt is abandoned.
pub const AUTH_STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Publishes waiting on one socket for the server's answer.
const MAX_PENDING_PUBLISHES: usize = 16;

/// Settings of a [`WsBackend`].
#[derive(Debug, Clone)]
pub struct WsOptions {
    /// An extra CA certificate (PEM) trusted for `wss://`, for private servers.
    pub ca_certificate_pem: Option<Vec<u8>>,
    /// The HTTP proxy to tunnel through with `CONNECT`; `None`: connect directly.
    /// [`backends_from_urls`](super::backends_from_urls) takes it from the environment.
    pub proxy: Option<ProxyUrl>,
    /// Back-off before the first re-subscription; doubles up to `backoff_max`.
    pub backoff_initial: Duration,
    /// Longest back-off.
    pub backoff_max: Duration,
    /// TCP, proxy, TLS and WebSocket handshake, all together.
    pub connect_timeout: Duration,
    /// Timeout of one publish.
    pub publish_timeout: Duration,
    /// How often a quiet socket is pinged.
    pub ping_interval: Duration,
    /// A socket with no frame from the server for this long is taken as dead.
    pub silence_limit: Duration,
}

impl Default for WsOptions {
    fn default() -> Self {
        Self {
            ca_certificate_pem: None,
            proxy: None,
            backoff_initial: wice_core::backoff::DEFAULT_INITIAL,
            backoff_max: wice_core::backoff::DEFAULT_MAX,
            connect_timeout: Duration::from_secs(10),
            publish_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(20),
            silence_limit: Duration::from_secs(45),
        }
    }
}

/// What a [`WsBackend`] has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WsCounters {
    /// Subscriptions established, first ones and re-subscriptions alike.
    pub subscriptions_established: u64,
    /// Subscription attempts or sockets that failed.
    pub subscription_failures: u64,
    /// Frames or envelopes from the server that did not parse (dropped).
    pub malformed_frames: u64,
    /// Envelopes dropped because the inbox was full.
    pub inbox_full: u64,
}

#[derive(Default)]
struct Counters {
    established: AtomicU64,
    failures: AtomicU64,
    malformed: AtomicU64,
    inbox_full: AtomicU64,
}

/// Where the backend connects, and how.
struct Target {
    host: String,
    port: u16,
    /// `wss://`: the TLS settings.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    proxy: Option<ProxyUrl>,
    connect_timeout: Duration,
}

/// A client of one `wice signal --ws-listen`.
pub struct WsBackend {
    url: BackendUrl,
    target: Arc<Target>,
    options: WsOptions,
    subscriptions: Subscriptions<SocketLink>,
    counters: Arc<Counters>,
}

/// The backend's handle on one subscription task's socket.
struct SocketLink {
    /// True while the key is proven on the task's current socket.
    established: watch::Receiver<bool>,
    /// Publishes for the task's socket.
    publishes: mpsc::Sender<PublishCommand>,
}

/// One publish frame and who waits for its answer.
struct PublishCommand {
    frame: Bytes,
    reply: oneshot::Sender<Result<(), BackendError>>,
}

fn unavailable(reason: impl Into<String>) -> BackendError {
    BackendError::Unavailable {
        kind: BackendKind::WebSocket,
        reason: reason.into(),
    }
}

impl WsBackend {
    /// A backend for `url` (`ws://` or `wss://`). Connects lazily, so this succeeds while
    /// the server is down; must be called inside a tokio runtime.
    pub fn new(url: &BackendUrl, options: WsOptions) -> Result<Self, BackendError> {
        let BackendUrl::WebSocket { host, port, tls } = url else {
            return Err(BackendError::Setup(format!(
                "{url} is not a WebSocket backend URL"
            )));
        };
        let tls = if *tls {
            let connector = tls_connector(options.ca_certificate_pem.as_deref())
                .map_err(|e| BackendError::Setup(format!("{url}: {e}")))?;
            let name = ServerName::try_from(host.clone())
                .map_err(|e| BackendError::Setup(format!("{url}: {e}")))?;
            Some((connector, name))
        } else {
            None
        };
        Ok(Self {
            url: url.clone(),
            target: Arc::new(Target {
                host: host.clone(),
                port: *port,
                tls,
                proxy: options.proxy.clone(),
                connect_timeout: options.connect_timeout,
            }),
            options,
            subscriptions: Subscriptions::default(),
            counters: Arc::default(),
        })
    }

    /// The server this backend talks to.
    pub fn url(&self) -> &BackendUrl {
        &self.url
    }

    /// What this backend has seen so far.
    pub fn counters(&self) -> WsCounters {
        WsCounters {
            subscriptions_established: self.counters.established.load(Ordering::Relaxed),
            subscription_failures: self.counters.failures.load(Ordering::Relaxed),
            malformed_frames: self.counters.malformed.load(Ordering::Relaxed),
            inbox_full: self.counters.inbox_full.load(Ordering::Relaxed),
        }
    }

    fn spawn_subscription(
        &self,
        subscriber: Subscriber,
        first: FirstOutcome,
    ) -> Subscription<SocketLink> {
        let (established_tx, established) = watch::channel(false);
        let (publishes, commands) = mpsc::channel(MAX_PENDING_PUBLISHES);
        let task = tokio::spawn(keep_subscribed(
            Arc::clone(&self.target),
            Mailbox {
                subscriber: subscriber.clone(),
                ping_interval: self.options.ping_interval,
                silence_limit: self.options.silence_limit,
            },
            Backoff::new(self.options.backoff_initial, self.options.backoff_max),
            Arc::clone(&self.counters),
            first,
            established_tx,
            commands,
        ));
        Subscription {
            task,
            subscriber,
            link: SocketLink {
                established,
                publishes,
            },
        }
    }

    /// The publish channel of a subscription of `sender` that stands, waiting up to `until`.
    async fn proven(
        &self,
        sender: &PublicKey,
        until: Instant,
    ) -> Result<mpsc::Sender<PublishCommand>, BackendError> {
        loop {
            let standing = self.subscriptions.inspect(sender, |list| {
                list.iter()
                    .find(|s| *s.link.established.borrow())
                    .map(|s| s.link.publishes.clone())
            });
            let Some(standing) = standing else {
                return Err(BackendError::Refused {
                    kind: BackendKind::WebSocket,
                    reason: format!(
                        "{sender} is not subscribed here; publishing needs its key proof"
                    ),
                });
            };
            if let Some(publishes) = standing {
                return Ok(publishes);
            }
            if self.subscriptions.is_closed() {
                return Err(BackendError::Closed);
            }
            if Instant::now() >= until {
                return Err(unavailable("publish timed out waiting for the key proof"));
            }
            // Rare (only while a socket is being set up): look again shortly.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Publishes one chunk from `sender`; retried once when the socket broke under it.
    async fn publish_chunk(
        &self,
        sender: &PublicKey,
        chunk: &[Envelope],
    ) -> Result<(), BackendError> {
        let frame = ClientFrame::Publish(proto::PublishRequest {
            envelopes: chunk.iter().map(Envelope::encode).collect(),
        })
        .encode();
        let until = Instant::now() + self.options.publish_timeout;
        let mut last = unavailable("publish failed");
        for _ in 0..2 {
            let publishes = self.proven(sender, until).await?;
            let (reply, answer) = oneshot::channel();
            let command = PublishCommand {
                frame: frame.clone(),
                reply,
            };
            if publishes.send(command).await.is_err() {
                last = unavailable("the socket closed");
                continue;
            }
            match tokio::time::timeout_at(until.into(), answer).await {
                Ok(Ok(Ok(()))) => return Ok(()),
                Ok(Ok(Err(error @ BackendError::Refused { .. }))) => return Err(error),
                Ok(Ok(Err(error))) => last = error,
                Ok(Err(_)) => last = unavailable("the socket closed before the answer"),
                Err(_) => return Err(unavailable("publish timed out")),
            }
        }
        Err(last)
    }
}

impl Backend for WsBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::WebSocket
    }

    fn publish(&self, envelopes: Vec<Envelope>) -> BackendFuture<'_, ()> {
        Box::pin(async move {
            if self.subscriptions.is_closed() {
                return Err(BackendError::Closed);
            }
            // Per sender, in the order given: each sender's envelopes go on its own socket.
            let mut by_sender: Vec<(PublicKey, Vec<Envelope>)> = Vec::new();
            for envelope in envelopes {
                match by_sender.iter_mut().find(|(s, _)| *s == envelope.sender) {
                    Some((_, list)) => list.push(envelope),
                    None => by_sender.push((envelope.sender, vec![envelope])),
                }
            }
            for (sender, list) in &by_sender {
                for chunk in list.chunks(MAX_BATCH) {
                    self.publish_chunk(sender, chunk).await?;
                }
            }
            Ok(())
        })
    }

    fn subscribe(&self, identity: PrivateKey, inbox: Inbox) -> BackendFuture<'_, ()> {
        let subscriber = Subscriber {
            identity,
            inbox,
            group: false,
        };
        Box::pin(self.subscriptions.add(subscriber, |subscriber, first| {
            self.spawn_subscription(subscriber, first)
        }))
    }

    fn subscribe_group(&self, identity: PrivateKey, inbox: Inbox) -> BackendFuture<'_, ()> {
        let subscriber = Subscriber {
            identity,
            inbox,
            group: true,
        };
        Box::pin(self.subscriptions.add(subscriber, |subscriber, first| {
            self.spawn_subscription(subscriber, first)
        }))
    }

    fn unsubscribe(&self, key: PublicKey) -> BackendFuture<'_, ()> {
        Box::pin(async move {
            self.subscriptions.remove(&key);
            Ok(())
        })
    }

    fn close(&self) -> BackendFuture<'_, ()> {
        Box::pin(async move {
            self.subscriptions.close();
            Ok(())
        })
    }

    fn reconnect(&self) -> BackendFuture<'_, ()> {
        // New sockets, from whatever address routing picks now.
        Box::pin(async move {
            self.subscriptions
                .restart_all(|subscriber, first| self.spawn_subscription(subscriber, first))
        })
    }
}

impl Drop for WsBackend {
    fn drop(&mut self) {
        self.subscriptions.abort_all();
    }
}

fn tls_connector(extra_ca_pem: Option<&[u8]>) -> Result<TlsConnector, String> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(pem) = extra_ca_pem {
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("extra CA: {e}"))?;
            roots.add(cert).map_err(|e| format!("extra CA: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// A byte stream the WebSocket runs on: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Socket = WebSocketStream<Box<dyn Io>>;

/// TCP (through the proxy, if any), TLS, and the WebSocket handshake.
async fn connect(target: &Target) -> Result<Socket, BackendError> {
    let attempt = async {
        let tcp = match &target.proxy {
            Some(proxy) => proxy
                .connect(&target.host, target.port, target.connect_timeout)
                .await
                .map_err(|e| unavailable(e.to_string()))?,
            None => {
                let tcp = TcpStream::connect((target.host.as_str(), target.port))
                    .await
                    .map_err(|e| unavailable(format!("connect: {e}")))?;
                let _ = tcp.set_nodelay(true);
                tcp
            }
        };
        let stream: Box<dyn Io> = match &target.tls {
            Some((connector, name)) => Box::new(
                connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| unavailable(format!("TLS: {e}")))?,
            ),
            None => Box::new(tcp),
        };
        let scheme = if target.tls.is_some() { "wss" } else { "ws" };
        let host = if target.host.contains(':') {
            format!("[{}]", target.host)
        } else {
            target.host.clone()
        };
        let request = format!("{scheme}://{host}:{}{WS_PATH}", target.port);
        let config = ws_socket::config(MAX_SERVER_FRAME_LEN, MAX_CLIENT_FRAME_LEN);
        let (socket, _) =
            tokio_tungstenite::client_async_with_config(request.as_str(), stream, Some(config))
                .await
                .map_err(|e| unavailable(format!("WebSocket handshake: {e}")))?;
        Ok(socket)
    };
    tokio::time::timeout(target.connect_timeout, attempt)
        .await
        .map_err(|_| unavailable("connect timed out"))?
}

/// What one subscription task keeps subscribed, and where its envelopes go.
struct Mailbox {
    subscriber: Subscriber,
    ping_interval: Duration,
    silence_limit: Duration,
}

/// Keeps one key subscribed until the inbox closes or the task is aborted. Reports the first
/// attempt's outcome on `first`.
async fn keep_subscribed(
    target: Arc<Target>,
    mailbox: Mailbox,
    mut backoff: Backoff,
    counters: Arc<Counters>,
    first: FirstOutcome,
    established: watch::Sender<bool>,
    mut commands: mpsc::Receiver<PublishCommand>,
) {
    let mut first = Some(first);
    loop {
        let outcome = tokio::select! {
            outcome = subscribe_once(&target, &mailbox, &mut backoff, &counters, &mut first, &established, &mut commands) => outcome,
            () = mailbox.subscriber.inbox.closed() => return,
        };
        established.send_replace(false);
        counters.failures.fetch_add(1, Ordering::Relaxed);
        let error = outcome
            .err()
            .unwrap_or_else(|| unavailable("server closed the socket"));
        tracing::debug!(key = %mailbox.subscriber.identity.public_key(), %error, "WebSocket subscription lost");
        if let Some(first) = first.take() {
            let _ = first.send(Err(error));
        }
        // Publishes queued for the dead socket fail now rather than at their timeout.
        while let Ok(command) = commands.try_recv() {
            let _ = command.reply.send(Err(unavailable("the socket closed")));
        }
        let delay = backoff.next_jittered_delay(&mut OsRng);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = mailbox.subscriber.inbox.closed() => return,
        }
    }
}

fn refused(code: RefusalCode, reason: String) -> BackendError {
    match code {
        RefusalCode::Unavailable => unavailable(reason),
        _ => BackendError::Refused {
            kind: BackendKind::WebSocket,
            reason: format!("{code:?}: {reason}"),
        },
    }
}

/// The next frame from the server during the key proof.
async fn next_event(
    socket: &mut Socket,
) -> Result<Option<proto::subscribe_response::Event>, BackendError> {
    loop {
        let message = tokio::time::timeout(AUTH_STEP_TIMEOUT, ws_socket::next(socket))
            .await
            .map_err(|_| unavailable("server silent during the key proof"))?;
        match message {
            Some(Ok(Message::Binary(bytes))) => {
                return match ServerFrame::decode(&bytes) {
                    Ok(ServerFrame::Event(event)) => Ok(event.event),
                    Ok(ServerFrame::Refused(refusal)) => Err(refused(refusal.code, refusal.reason)),
                    Ok(ServerFrame::Published(_)) | Err(_) => {
                        Err(unavailable("unexpected frame during the key proof"))
                    }
                };
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(_)) => return Err(unavailable("unexpected frame during the key proof")),
            Some(Err(error)) => return Err(unavailable(error.to_string())),
            None => return Err(unavailable("socket closed during the key proof")),
        }
    }
}

async fn send_frame(socket: &mut Socket, frame: Bytes) -> Result<(), BackendError> {
    ws_socket::send(socket, Message::Binary(frame))
        .await
        .map_err(|e| unavailable(e.to_string()))
}

/// One subscription: connect, prove the key, then stream envelopes and carry publishes until
/// the socket ends.
async fn subscribe_once(
    target: &Target,
    mailbox: &Mailbox,
    backoff: &mut Backoff,
    counters: &Counters,
    first: &mut Option<FirstOutcome>,
    established: &watch::Sender<bool>,
    commands: &mut mpsc::Receiver<PublishCommand>,
) -> Result<(), BackendError> {
    use proto::subscribe_request::Step;
    use proto::subscribe_response::Event;

    let identity = &mailbox.subscriber.identity;
    let mut socket = connect(target).await?;
    let hello = ClientFrame::Step(proto::SubscribeRequest {
        step: Some(Step::Hello(proto::Hello {
            public_key: Bytes::copy_from_slice(identity.public_key().as_bytes()),
            group: mailbox.subscriber.group,
        })),
    });
    send_frame(&mut socket, hello.encode()).await?;
    let Some(Event::Challenge(challenge)) = next_event(&mut socket).await? else {
        return Err(unavailable("expected a challenge"));
    };
    let secret = challenge::answer(identity, &challenge).map_err(|e| BackendError::Refused {
        kind: BackendKind::WebSocket,
        reason: e.to_string(),
    })?;
    let answer = ClientFrame::Step(proto::SubscribeRequest {
        step: Some(Step::Answer(proto::ChallengeAnswer {
            secret: secret.into(),
        })),
    });
    send_frame(&mut socket, answer.encode()).await?;
    let Some(Event::Subscribed(_)) = next_event(&mut socket).await? else {
        return Err(unavailable("expected the subscription to be confirmed"));
    };

    counters.established.fetch_add(1, Ordering::Relaxed);
    established.send_replace(true);
    backoff.reset();
    if let Some(first) = first.take() {
        let _ = first.send(Ok(()));
    }
    let outcome = stream_mailbox(&mut socket, mailbox, counters, commands).await;
    established.send_replace(false);
    outcome
}

/// What to do after one turn of the select (the socket has one writer: this task).
enum Next {
    Frame(Bytes),
    Ping,
    Nothing,
}

async fn stream_mailbox(
    socket: &mut Socket,
    mailbox: &Mailbox,
    counters: &Counters,
    commands: &mut mpsc::Receiver<PublishCommand>,
) -> Result<(), BackendError> {
    let mut pending: VecDeque<oneshot::Sender<Result<(), BackendError>>> = VecDeque::new();
    let mut last_heard = Instant::now();
    let mut ping = tokio::time::interval(mailbox.ping_interval);
    ping.reset();
    let outcome = loop {
        let next = tokio::select! {
            message = ws_socket::next(socket) => {
                last_heard = Instant::now();
                match message {
                    Some(Ok(Message::Binary(bytes))) => match ServerFrame::decode(&bytes) {
                        Ok(ServerFrame::Event(proto::SubscribeResponse {
                            event: Some(proto::subscribe_response::Event::Envelope(bytes)),
                        })) => {
                            match Envelope::decode(&bytes) {
                                Ok(envelope) => {
                                    if !mailbox.subscriber.inbox.deliver(envelope) {
                                        counters.inbox_full.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                                Err(error) => {
                                    counters.malformed.fetch_add(1, Ordering::Relaxed);
                                    tracing::debug!(%error, "malformed envelope from the signaling server");
                                }
                            }
                            Next::Nothing
                        }
                        Ok(ServerFrame::Published(_)) => {
                            if let Some(reply) = pending.pop_front() {
                                let _ = reply.send(Ok(()));
                            }
                            Next::Nothing
                        }
                        Ok(ServerFrame::Refused(refusal)) => match pending.pop_front() {
                            Some(reply) => {
                                let _ = reply.send(Err(refused(refusal.code, refusal.reason)));
                                Next::Nothing
                            }
                            None => break Err(refused(refusal.code, refusal.reason)),
                        },
                        Ok(ServerFrame::Event(_)) => Next::Nothing,
                        Err(_) => {
                            counters.malformed.fetch_add(1, Ordering::Relaxed);
                            Next::Nothing
                        }
                    },
                    Some(Ok(Message::Close(_))) | None => break Ok(()),
                    Some(Ok(_)) => Next::Nothing,
                    Some(Err(error)) => break Err(unavailable(error.to_string())),
                }
            }
            command = commands.recv(), if pending.len() < MAX_PENDING_PUBLISHES => match command {
                Some(command) => {
                    pending.push_back(command.reply);
                    Next::Frame(command.frame)
                }
                None => Next::Nothing,
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > mailbox.silence_limit {
                    break Err(unavailable("server silent"));
                }
                Next::Ping
            }
        };
        let sent = match next {
            Next::Frame(frame) => send_frame(socket, frame).await,
            Next::Ping => ws_socket::send(socket, Message::Ping(Bytes::new()))
                .await
                .map_err(|e| unavailable(e.to_string())),
            Next::Nothing => Ok(()),
        };
        if let Err(error) = sent {
            break Err(error);
        }
    };
    for reply in pending {
        let _ = reply.send(Err(unavailable("the socket closed before the answer")));
    }
    outcome
}
