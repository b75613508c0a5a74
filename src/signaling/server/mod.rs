//! `wice signal`: the gRPC signaling server.
//!
//! A stateless fan-out by recipient key. It stores no envelope: a published envelope is
//! queued to the current subscribers of its recipient key and dropped when there are none.
//! It never sees plaintext (envelopes are sealed end to end), so it is trusted only not to
//! drop or delay, and it keeps each node's mailbox private: a subscriber must prove that it
//! holds the private key of the key it subscribes to ([`challenge`](wice_core::signaling::challenge)).
//!
//! Bad input and what happens to it (each is counted, see [`CounterSnapshot`]):
//!
//! | input | outcome |
//! |---|---|
//! | publish on a connection where no key was proven | `UNAUTHENTICATED`, `unauthenticated_publish` |
//! | envelope whose sender is not a key proven on its connection | skipped, `sender_not_proven` |
//! | envelope over [`ServerConfig::max_envelope_len`] | skipped, `rejected_oversized`; the rest of the batch goes on |
//! | envelope that is not protobuf or has bad key/nonce lengths | skipped, `rejected_malformed` |
//! | copy whose sender key or source address has its budget queued | skipped, `over_budget_source` |
//! | copy while the server has its memory budget queued | skipped, `over_budget_global` |
//! | batch over [`ServerConfig::max_batch`] envelopes | `INVALID_ARGUMENT`, `rejected_malformed` |
//! | request over [`MAX_REQUEST_LEN`] | `OUT_OF_RANGE` before it is buffered further, `rejected_oversized` |
//! | connection without a call within [`ServerConfig::handshake_timeout`], or without an open call for [`ServerConfig::idle_timeout`] | closed, `closed_handshake_timeout` / `closed_idle` |
//! | request body that is not protobuf | `INTERNAL` ("failed to decode"), `rejected_malformed` |
//! | bytes that are not HTTP/2 (or TLS) at all | connection closed by hyper; not counted (logged at debug) |
//! | publishing faster than the per-connection rate, or 8× it summed over one source address's connections | `RESOURCE_EXHAUSTED`, `rate_limited` (per envelope) |
//! | subscribe with a missing/short key, or wrong first step | `INVALID_ARGUMENT`, `rejected_malformed` |
//! | wrong answer to the key proof, or none within [`ServerConfig::auth_timeout`] | `UNAUTHENTICATED`, `auth_failed` |
//! | subscriber reading too slowly | its queue keeps the newest [`ServerConfig::queue_len`] envelopes within [`ServerConfig::queue_bytes`]; older ones dropped, `dropped_queue_full` |
//! | peer gone silent (no HTTP/2 keepalive answer) | connection closed, its subscriptions removed |
//! | too many connections (overall, sized from the fd limit, or per source address) / subscriptions | closed / `RESOURCE_EXHAUSTED`, `refused_capacity` |
//!
//! Published envelopes are copied out of their request's buffer before they are queued, so a
//! small queued envelope never keeps a large request alive.
//!
//! Shutdown (SIGINT/SIGTERM in `wice signal`): stop accepting, end every subscription
//! stream, let in-flight calls finish for up to [`ServerConfig::shutdown_grace`], log the
//! counters.

mod budget;
#[cfg(feature = "nats")]
mod bus;
mod connection;
mod counters;
mod fd_limit;
mod http_publish;
mod mailboxes;
mod publish;
mod queue;
mod rate_limit;
mod refusals;
mod ws;
mod ws_session;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::OsRng;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TlsConnectInfo;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};
use wice_proto::signaling as proto;
use wice_proto::signaling::signaling_server::{
    Signaling as SignalingService, SignalingServer as GeneratedServer,
};

pub use self::budget::{BudgetLimits, Budgets, OverBudget};
pub use self::counters::{CounterSnapshot, ServerCounters};
pub use self::fd_limit::raise_fd_limit;
pub use self::queue::{DropOldest, Pushed, SubscriberQueue};
pub use self::rate_limit::TokenBucket;

use self::connection::{AcceptLimits, ConnectionInfo, Incoming, Timeouts};
use self::mailboxes::{AddError, Mailboxes, OpenMailbox};
use self::publish::PublishRefusal;
use self::refusals::CountRefusals;
use crate::signaling::NatsUrl;
use wice_core::keys::{KEY_LEN, PublicKey};
use wice_core::signaling::challenge::PendingChallenge;
use wice_core::signaling::envelope::{Envelope, EnvelopeError, MAX_ENVELOPE_LEN};
pub use wice_core::signaling::size_limits::{MAX_BATCH, MAX_REQUEST_LEN};

/// Settings of a [`SignalingServer`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// `--ws-listen`: where to serve the WebSocket transport and the HTTP publish endpoint
    /// (TLS with the same certificate when `tls` is set); `None`: gRPC only.
    pub ws_listen: Option<SocketAddr>,
    /// PEM certificate chain and private key; `None` serves plain gRPC.
    pub tls: Option<TlsIdentity>,
    /// Envelopes queued per subscriber before the oldest are dropped.
    pub queue_len: usize,
    /// Bytes queued per subscriber before the oldest are dropped (the per-recipient budget;
    /// at least one largest envelope).
    pub queue_bytes: usize,
    /// Bytes queued per sender key, per source address, and overall.
    pub budgets: BudgetLimits,
    /// Largest envelope relayed.
    pub max_envelope_len: usize,
    /// Most envelopes in one publish call.
    pub max_batch: usize,
    /// Sustained envelopes (and subscription attempts) per second per connection.
    pub rate_per_second: u32,
    /// Burst allowance per connection.
    pub burst: u32,
    /// Time a subscriber has for each step of the key proof.
    pub auth_timeout: Duration,
    /// Most subscriptions overall.
    pub max_subscriptions: u64,
    /// Most subscriptions per key; a newer one ends the oldest.
    pub max_subscriptions_per_key: usize,
    /// Most group subscriptions per group (community) key: one per member node; past it a
    /// new one is refused (`refused_capacity`), none is ended.
    pub max_group_subscribers: usize,
    /// Most open connections; lowered to what the fd limit allows.
    pub max_connections: u64,
    /// Most open connections from one source address (IPv6: one /64).
    pub max_connections_per_ip: u32,
    /// Time from accept until the first call (TCP, TLS, HTTP/2 preface, first request).
    pub handshake_timeout: Duration,
    /// Time a connection may stay open without an open call.
    pub idle_timeout: Duration,
    /// How often the counters are logged.
    pub stats_interval: Duration,
    /// How long shutdown waits for connections to finish.
    pub shutdown_grace: Duration,
    /// `--nats`: the NATS cluster this server shares with other signal servers as a bus
    /// (see `bus`); `None`: a server of its own.
    pub nats_bus: Option<NatsUrl>,
}

impl ServerConfig {
    /// Defaults for a server listening on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            ws_listen: None,
            tls: None,
            queue_len: 64,
            queue_bytes: 256 * 1024,
            budgets: BudgetLimits::default(),
            max_envelope_len: MAX_ENVELOPE_LEN,
            max_batch: MAX_BATCH,
            rate_per_second: 200,
            burst: 2000,
            auth_timeout: Duration::from_secs(10),
            max_subscriptions: 100_000,
            max_subscriptions_per_key: 4,
            max_group_subscribers: 4096,
            max_connections: 100_000,
            max_connections_per_ip: 256,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            stats_interval: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(5),
            nats_bus: None,
        }
    }
}

/// A TLS certificate chain and key, PEM.
#[derive(Clone)]
pub struct TlsIdentity {
    /// Certificate chain, PEM.
    pub cert_pem: Vec<u8>,
    /// Private key, PEM.
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsIdentity(..)")
    }
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TLS certificate or key was refused.
    #[error("TLS certificate or key refused: {0}")]
    Tls(String),
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Serve(String),
    /// The NATS bus could not be set up (or this wice was built without the `nats` feature).
    #[error("NATS bus: {0}")]
    Bus(String),
}

struct State {
    config: ServerConfig,
    mailboxes: Mailboxes,
    counters: Arc<ServerCounters>,
    budgets: Arc<Budgets>,
    /// The key of the HTTP publish endpoint's stateless proofs, drawn at start.
    http_mac_key: [u8; 32],
    #[cfg(feature = "nats")]
    bus: Option<bus::Bus>,
}

/// A bound, not yet serving, signaling server.
pub struct SignalingServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<ServerTlsConfig>,
    ws: Option<ws::WsListener>,
    state: Arc<State>,
}

/// Reads a running server's counters.
#[derive(Clone)]
pub struct CounterHandle(Arc<ServerCounters>, Arc<Budgets>);

impl CounterHandle {
    /// The counters now.
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            queued_bytes: self.1.queued_bytes() as u64,
            ..self.0.snapshot()
        }
    }
}

impl SignalingServer {
    /// Binds the listen address.
    pub async fn bind(mut config: ServerConfig) -> Result<Self, ServerError> {
        // Every connection costs a descriptor: take all the process may have, and never
        // accept more connections than fit.
        let fd_limit = raise_fd_limit();
        config.max_connections = fd_limit::connections_for(fd_limit, config.max_connections);
        config.queue_bytes = config.queue_bytes.max(config.max_envelope_len);
        // Refuse a bad certificate or key now, before anything is announced as listening.
        let tls = match &config.tls {
            Some(tls) => {
                let tls = ServerTlsConfig::new()
                    .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem))
                    .timeout(Duration::from_secs(10));
                Server::builder()
                    .tls_config(tls.clone())
                    .map_err(|e| ServerError::Tls(error_chain(&e)))?;
                Some(tls)
            }
            None => None,
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
        let ws = match config.ws_listen {
            Some(addr) => Some(ws::WsListener::bind(addr, config.tls.as_ref()).await?),
            None => None,
        };
        #[cfg(feature = "nats")]
        let bus = match &config.nats_bus {
            Some(url) => Some(bus::Bus::connect(url).await.map_err(ServerError::Bus)?),
            None => None,
        };
        #[cfg(not(feature = "nats"))]
        if config.nats_bus.is_some() {
            return Err(ServerError::Bus(
                "this wice was built without the `nats` feature".to_owned(),
            ));
        }
        let state = Arc::new(State {
            #[cfg(feature = "nats")]
            bus,
            mailboxes: Mailboxes::new(
                config.max_subscriptions,
                config.max_subscriptions_per_key,
                config.max_group_subscribers,
            ),
            counters: Arc::default(),
            budgets: Budgets::new(config.budgets),
            http_mac_key: {
                let mut key = [0; 32];
                rand_core::RngCore::fill_bytes(&mut OsRng, &mut key);
                key
            },
            config,
        });
        Ok(Self {
            listener,
            local_addr,
            tls,
            ws,
            state,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The WebSocket listener's address actually bound, when there is one.
    pub fn ws_local_addr(&self) -> Option<SocketAddr> {
        self.ws.as_ref().map(ws::WsListener::local_addr)
    }

    /// A handle to read the counters while the server runs.
    pub fn counters(&self) -> CounterHandle {
        CounterHandle(
            Arc::clone(&self.state.counters),
            Arc::clone(&self.state.budgets),
        )
    }

    /// Serves until `shutdown` resolves, then shuts down gracefully and returns the final
    /// counters.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<CounterSnapshot, ServerError> {
        let state = self.state;
        let config = &state.config;
        let mut builder = Server::builder()
            // A peer that stops answering pings is gone; free its subscriptions.
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            // Bounds what one connection can make the server buffer.
            .initial_connection_window_size(Some(256 * 1024))
            .initial_stream_window_size(Some(128 * 1024))
            // Each stream can hold one request of up to MAX_REQUEST_LEN while it is decoded.
            .max_concurrent_streams(Some(16))
            .http2_max_header_list_size(Some(16 * 1024))
            // Unary calls (publish) must complete in this time, a stalled upload included;
            // subscription streams are not affected once their response has started.
            .timeout(Duration::from_secs(30))
            .layer(CountRefusals {
                counters: Arc::clone(&state.counters),
            });
        if let Some(tls) = self.tls {
            builder = builder
                .tls_config(tls)
                .map_err(|e| ServerError::Tls(error_chain(&e)))?;
        }
        let service = GeneratedServer::new(Service {
            state: Arc::clone(&state),
        })
        .max_decoding_message_size(MAX_REQUEST_LEN)
        .max_encoding_message_size(MAX_REQUEST_LEN);
        let incoming = Incoming::new(
            self.listener,
            Arc::clone(&state.counters),
            AcceptLimits {
                max_connections: config.max_connections,
                max_connections_per_ip: config.max_connections_per_ip,
                rate_per_second: config.rate_per_second,
                burst: config.burst,
                timeouts: Timeouts {
                    handshake: config.handshake_timeout,
                    idle: config.idle_timeout,
                },
            },
        );

        let stats = tokio::spawn({
            let counters = CounterHandle(Arc::clone(&state.counters), Arc::clone(&state.budgets));
            let interval = config.stats_interval;
            async move {
                let mut ticker = tokio::time::interval(interval);
                ticker.tick().await;
                loop {
                    ticker.tick().await;
                    tracing::info!(target: "wice::signal", "counters: {}", counters.snapshot());
                }
            }
        });

        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let ws_task = self
            .ws
            .map(|listener| tokio::spawn(ws::serve(listener, Arc::clone(&state), stop_rx.clone())));
        let serve =
            builder
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stop_rx.wait_for(|stop| *stop).await;
                });
        tokio::pin!(serve);
        let grace = config.shutdown_grace;
        let result = tokio::select! {
            result = &mut serve => result.map_err(|e| ServerError::Serve(error_chain(&e))),
            () = shutdown => {
                tracing::info!(target: "wice::signal", "shutting down");
                let _ = stop_tx.send(true);
                // Subscription streams never end by themselves: end them so connections drain.
                state.mailboxes.close_all();
                match tokio::time::timeout(grace, &mut serve).await {
                    Ok(result) => result.map_err(|e| ServerError::Serve(error_chain(&e))),
                    Err(_) => {
                        tracing::info!(target: "wice::signal", "connections still open after {grace:?}; closing anyway");
                        Ok(())
                    }
                }
            }
        };
        stats.abort();
        if let Some(task) = ws_task {
            let _ = stop_tx.send(true);
            // It waits up to the grace period itself.
            let _ = task.await;
        }
        let last =
            CounterHandle(Arc::clone(&state.counters), Arc::clone(&state.budgets)).snapshot();
        tracing::info!(target: "wice::signal", "final counters: {last}");
        result.map(|()| last)
    }
}

/// An error and its sources, as one line: tonic's transport errors say little on their own.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Checks one published envelope: its size, then that it parses with well-formed keys and
/// nonce. Pure (bytes in, result out): the server's per-envelope parser, and a fuzz target's.
pub fn check_published(bytes: &[u8], max_envelope_len: usize) -> Result<Envelope, EnvelopeError> {
    if bytes.len() > max_envelope_len {
        return Err(EnvelopeError::Oversized { len: bytes.len() });
    }
    Envelope::decode(bytes)
}

#[derive(Clone)]
struct Service {
    state: Arc<State>,
}

fn connection_of<T>(request: &Request<T>) -> Option<ConnectionInfo> {
    let extensions = request.extensions();
    extensions.get::<ConnectionInfo>().cloned().or_else(|| {
        extensions
            .get::<TlsConnectInfo<ConnectionInfo>>()
            .map(|tls| tls.get_ref().clone())
    })
}

impl Service {
    fn rate_limit(&self, connection: Option<&ConnectionInfo>, n: u32) -> Result<(), Status> {
        if publish::within_rate(&self.state, connection, n) {
            Ok(())
        } else {
            Err(Status::resource_exhausted(
                PublishRefusal::RateLimited.to_string(),
            ))
        }
    }
}

#[tonic::async_trait]
impl SignalingService for Service {
    async fn publish(
        &self,
        request: Request<proto::PublishRequest>,
    ) -> Result<Response<proto::PublishResponse>, Status> {
        let connection = connection_of(&request);
        let _call = connection.as_ref().map(ConnectionInfo::call);
        let envelopes = request.into_inner().envelopes;
        match publish::publish_envelopes(&self.state, connection.as_ref(), envelopes).await {
            Ok(response) => Ok(Response::new(response)),
            Err(refusal @ PublishRefusal::Unauthenticated) => {
                Err(Status::unauthenticated(refusal.to_string()))
            }
            Err(refusal @ PublishRefusal::TooMany { .. }) => {
                Err(Status::invalid_argument(refusal.to_string()))
            }
            Err(refusal @ PublishRefusal::RateLimited) => {
                Err(Status::resource_exhausted(refusal.to_string()))
            }
        }
    }

    type SubscribeStream = ReceiverStream<Result<proto::SubscribeResponse, Status>>;

    async fn subscribe(
        &self,
        request: Request<Streaming<proto::SubscribeRequest>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let connection = connection_of(&request);
        self.rate_limit(connection.as_ref(), 1)?;
        let call = connection.as_ref().map(ConnectionInfo::call);
        // One slot: the task waits for the client to read, while its queue absorbs (and
        // trims) what arrives meanwhile.
        let (out, stream) = mpsc::channel(1);
        let state = Arc::clone(&self.state);
        let inbound = request.into_inner();
        tokio::spawn(async move {
            run_subscription(state, connection, inbound, out).await;
            drop(call);
        });
        Ok(Response::new(ReceiverStream::new(stream)))
    }
}

type Out = mpsc::Sender<Result<proto::SubscribeResponse, Status>>;

fn event(event: proto::subscribe_response::Event) -> Result<proto::SubscribeResponse, Status> {
    Ok(proto::SubscribeResponse { event: Some(event) })
}

/// One subscription: the key proof, then the mailbox until either side ends it.
async fn run_subscription(
    state: Arc<State>,
    connection: Option<ConnectionInfo>,
    mut inbound: Streaming<proto::SubscribeRequest>,
    out: Out,
) {
    use proto::subscribe_request::Step;
    use proto::subscribe_response::Event;

    let counters = &state.counters;
    let timeout = state.config.auth_timeout;
    let remote = connection.as_ref().map(|c| c.remote);
    let refuse = async |counter: &std::sync::atomic::AtomicU64, status: Status| {
        ServerCounters::add(counter, 1);
        tracing::debug!(target: "wice::signal", ?remote, %status, "subscription refused");
        let _ = out.send(Err(status)).await;
    };

    // 1. Hello: which key, and whether it is a group key.
    let (key, group) = match tokio::time::timeout(timeout, inbound.message()).await {
        Ok(Ok(Some(proto::SubscribeRequest {
            step: Some(Step::Hello(hello)),
        }))) => match <[u8; KEY_LEN]>::try_from(hello.public_key.as_ref()) {
            Ok(bytes) => (PublicKey::from_bytes(bytes), hello.group),
            Err(_) => {
                return refuse(
                    &counters.rejected_malformed,
                    Status::invalid_argument("the public key must be 32 bytes"),
                )
                .await;
            }
        },
        Ok(Ok(Some(_))) => {
            return refuse(
                &counters.rejected_malformed,
                Status::invalid_argument("the first message must be a hello"),
            )
            .await;
        }
        // The client left, or sent something tonic could not decode.
        Ok(Ok(None)) => return,
        Ok(Err(status)) => {
            return refuse(&counters.rejected_malformed, status).await;
        }
        Err(_) => {
            return refuse(
                &counters.auth_failed,
                Status::deadline_exceeded("no hello in time"),
            )
            .await;
        }
    };

    // 2. The challenge, and its answer.
    let (pending, challenge) = PendingChallenge::issue(&key, &mut OsRng);
    if out.send(event(Event::Challenge(challenge))).await.is_err() {
        return;
    }
    let proven = match tokio::time::timeout(timeout, inbound.message()).await {
        Ok(Ok(Some(proto::SubscribeRequest {
            step: Some(Step::Answer(answer)),
        }))) => pending.verify(&answer.secret),
        Ok(Ok(None)) => return,
        _ => false,
    };
    if !proven {
        return refuse(
            &counters.auth_failed,
            Status::unauthenticated("proof of key ownership failed"),
        )
        .await;
    }

    // 3. The mailbox; and this connection may now publish as `key`.
    if let Some(connection) = &connection {
        connection.prove(key);
    }
    let mailbox = match OpenMailbox::open(&state, key, group) {
        Ok(mailbox) => mailbox,
        Err(AddError::Full) => {
            return refuse(
                &counters.refused_capacity,
                Status::resource_exhausted("server at its subscription limit"),
            )
            .await;
        }
        Err(AddError::Closing) => {
            let _ = out.send(Err(Status::unavailable("shutting down"))).await;
            return;
        }
    };
    tracing::debug!(target: "wice::signal", ?remote, %key, "subscribed");
    if out
        .send(event(Event::Subscribed(proto::Subscribed {})))
        .await
        .is_ok()
    {
        loop {
            tokio::select! {
                envelope = mailbox.queue.pop() => match envelope {
                    Some(bytes) => {
                        if out.send(event(Event::Envelope(bytes))).await.is_err() {
                            break;
                        }
                    }
                    // Ended by shutdown or by a newer subscription of the same key.
                    None => break,
                },
                message = inbound.message() => match message {
                    // Nothing more is expected; extra messages cost the sender's rate.
                    Ok(Some(_)) => {
                        let allowed = connection
                            .as_ref()
                            .is_none_or(|c| c.try_take(1, Instant::now()));
                        if !allowed {
                            ServerCounters::add(&counters.rate_limited, 1);
                            break;
                        }
                    }
                    // The client closed its side or went away: unsubscribe.
                    Ok(None) | Err(_) => break,
                },
                () = out.closed() => break,
            }
        }
    }
    drop(mailbox);
    tracing::debug!(target: "wice::signal", ?remote, %key, "unsubscribed");
}
