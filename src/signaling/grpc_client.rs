//! The gRPC backend: a client of `wice signal`.
//!
//! One HTTP/2 channel per backend, opened lazily and re-opened by tonic after failures.
//! Each subscription runs in its own task that proves ownership of the key (see
//! [`wice_core::signaling::challenge`]), streams envelopes into the inbox, and when the stream
//! breaks (server restart, network loss, HTTP/2 keepalive timeout) subscribes again after a
//! jittered exponential back-off, until unsubscribed or closed. `grpcs://` URLs use TLS
//! (rustls) with the Mozilla roots plus an optional extra CA.
//!
//! Publishing rides on the subscription's proof: the server lets a connection publish
//! envelopes from the keys proven on it, and subscriptions and publishes share the one
//! HTTP/2 connection. So a publish waits (up to the publish timeout) until the sender's
//! subscription is established, then is one unary call: no extra round trip in steady
//! state. Batches larger than [`MAX_BATCH`] are split.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_core::OsRng;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};
use wice_proto::signaling as proto;
use wice_proto::signaling::signaling_client::SignalingClient;

use super::backend::{Backend, BackendError, BackendFuture, BackendKind, BackendUrl, Inbox};
use super::subscriptions::{FirstOutcome, Subscriber, Subscription, Subscriptions};
use wice_core::backoff::Backoff;
use wice_core::keys::{PrivateKey, PublicKey};
use wice_core::signaling::challenge;
use wice_core::signaling::envelope::Envelope;
use wice_core::signaling::size_limits::{MAX_BATCH, MAX_REQUEST_LEN, MAX_RESPONSE_LEN};

/// How long each step of the key proof may take before the attempt is abandoned.
pub const AUTH_STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of a [`GrpcBackend`].
#[derive(Debug, Clone)]
pub struct GrpcOptions {
    /// An extra CA certificate (PEM) trusted for `grpcs://`, for private servers.
    pub ca_certificate_pem: Option<Vec<u8>>,
    /// Back-off before the first re-subscription; doubles up to `backoff_max`.
    pub backoff_initial: Duration,
    /// Longest back-off.
    pub backoff_max: Duration,
    /// TCP (and TLS) connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of one publish call.
    pub publish_timeout: Duration,
    /// HTTP/2 keepalive ping interval; a server silent for this plus `keepalive_timeout` is
    /// taken as gone and the subscription is redone.
    pub keepalive_interval: Duration,
    /// How long to wait for a keepalive answer.
    pub keepalive_timeout: Duration,
    /// `SO_MARK` on the TCP connection, so policy routing (an exit node's default route)
    /// sends it through the underlay, not into the tunnel; `None`: unmarked.
    pub socket_mark: Option<u32>,
}

impl Default for GrpcOptions {
    fn default() -> Self {
        Self {
            ca_certificate_pem: None,
            backoff_initial: wice_core::backoff::DEFAULT_INITIAL,
            backoff_max: wice_core::backoff::DEFAULT_MAX,
            connect_timeout: Duration::from_secs(5),
            publish_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(10),
            socket_mark: None,
        }
    }
}

/// What a [`GrpcBackend`] has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GrpcCounters {
    /// Subscriptions established, first ones and re-subscriptions alike.
    pub subscriptions_established: u64,
    /// Subscription attempts or streams that failed.
    pub subscription_failures: u64,
    /// Envelopes from the server that did not parse (dropped).
    pub malformed_envelopes: u64,
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

/// A client of one `wice signal` server.
pub struct GrpcBackend {
    url: BackendUrl,
    endpoint: Endpoint,
    /// Replaced by [`Backend::reconnect`]; clones share one HTTP/2 connection.
    client: Mutex<SignalingClient<Channel>>,
    options: GrpcOptions,
    /// Each task's link is true while its key is proven on the current connection.
    subscriptions: Subscriptions<watch::Receiver<bool>>,
    counters: Arc<Counters>,
}

impl GrpcBackend {
    /// A backend for `url` (`grpc://` or `grpcs://`). Connects lazily, so this succeeds
    /// while the server is down; must be called inside a tokio runtime.
    pub fn new(url: &BackendUrl, options: GrpcOptions) -> Result<Self, BackendError> {
        let BackendUrl::Grpc { host, port, tls } = url else {
            return Err(BackendError::Setup(format!(
                "{url} is not a gRPC backend URL"
            )));
        };
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let scheme = if *tls { "https" } else { "http" };
        let setup = |e: tonic::transport::Error| BackendError::Setup(format!("{url}: {e}"));
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{authority}"))
            .map_err(setup)?
            .connect_timeout(options.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(options.keepalive_interval)
            .keep_alive_timeout(options.keepalive_timeout)
            .keep_alive_while_idle(true);
        if *tls {
            let mut config = ClientTlsConfig::new()
                .with_webpki_roots()
                .domain_name(host.clone());
            if let Some(pem) = &options.ca_certificate_pem {
                config = config.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint.tls_config(config).map_err(setup)?;
        }
        let client = new_client(&endpoint, options.socket_mark);
        Ok(Self {
            url: url.clone(),
            endpoint,
            client: Mutex::new(client),
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
    pub fn counters(&self) -> GrpcCounters {
        GrpcCounters {
            subscriptions_established: self.counters.established.load(Ordering::Relaxed),
            subscription_failures: self.counters.failures.load(Ordering::Relaxed),
            malformed_envelopes: self.counters.malformed.load(Ordering::Relaxed),
            inbox_full: self.counters.inbox_full.load(Ordering::Relaxed),
        }
    }

    fn client(&self) -> SignalingClient<Channel> {
        self.client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Starts the task keeping `subscriber` subscribed.
    fn spawn_subscription(
        &self,
        subscriber: Subscriber,
        first: FirstOutcome,
    ) -> Subscription<watch::Receiver<bool>> {
        let (established_tx, established) = watch::channel(false);
        let task = tokio::spawn(keep_subscribed(
            self.client(),
            subscriber.clone(),
            Backoff::new(self.options.backoff_initial, self.options.backoff_max),
            Arc::clone(&self.counters),
            first,
            established_tx,
        ));
        Subscription {
            task,
            subscriber,
            link: established,
        }
    }

    /// Waits until a subscription of `sender` has proven the key on the current connection.
    async fn proven(&self, sender: &PublicKey) -> Result<(), BackendError> {
        let watchers: Vec<_> = self
            .subscriptions
            .inspect(sender, |list| list.iter().map(|s| s.link.clone()).collect())
            .unwrap_or_default();
        if watchers.is_empty() {
            return Err(BackendError::Refused {
                kind: BackendKind::Grpc,
                reason: format!("{sender} is not subscribed here; publishing needs its key proof"),
            });
        }
        let any = watchers.into_iter().map(|mut established| {
            Box::pin(async move { established.wait_for(|up| *up).await.map(|_| ()) })
        });
        match tokio::time::timeout(
            self.options.publish_timeout,
            futures_select_ok(any.collect()),
        )
        .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(BackendError::Closed),
            Err(_) => Err(protocol_error(
                "publish timed out waiting for the key proof",
            )),
        }
    }

    async fn publish_chunk(&self, chunk: &[Envelope]) -> Result<(), BackendError> {
        let request = proto::PublishRequest {
            envelopes: chunk.iter().map(Envelope::encode).collect(),
        };
        let mut client = self.client();
        match tokio::time::timeout(self.options.publish_timeout, client.publish(request)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(status_error(&status)),
            Err(_) => Err(protocol_error("publish timed out")),
        }
    }
}

fn status_error(status: &Status) -> BackendError {
    let reason = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        Code::ResourceExhausted
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::InvalidArgument
        | Code::FailedPrecondition => BackendError::Refused {
            kind: BackendKind::Grpc,
            reason,
        },
        _ => BackendError::Unavailable {
            kind: BackendKind::Grpc,
            reason,
        },
    }
}

fn protocol_error(reason: &str) -> BackendError {
    BackendError::Unavailable {
        kind: BackendKind::Grpc,
        reason: reason.to_owned(),
    }
}

impl Backend for GrpcBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Grpc
    }

    fn publish(&self, envelopes: Vec<Envelope>) -> BackendFuture<'_, ()> {
        Box::pin(async move {
            if self.subscriptions.is_closed() {
                return Err(BackendError::Closed);
            }
            let mut senders: Vec<PublicKey> = envelopes.iter().map(|e| e.sender).collect();
            senders.sort_unstable_by_key(|key| *key.as_bytes());
            senders.dedup();
            for sender in &senders {
                self.proven(sender).await?;
            }
            for chunk in envelopes.chunks(MAX_BATCH) {
                match self.publish_chunk(chunk).await {
                    // The connection was replaced under us since the proof: wait for the
                    // subscription to prove the key again on the new one, and retry once.
                    Err(BackendError::Refused { reason, .. })
                        if reason.starts_with("Unauthenticated") =>
                    {
                        for sender in &senders {
                            self.proven(sender).await?;
                        }
                        self.publish_chunk(chunk).await?;
                    }
                    other => other?,
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
        Box::pin(async move {
            if self.subscriptions.is_closed() {
                return Err(BackendError::Closed);
            }
            // A new channel means a new TCP connection from whatever address routing picks
            // now; the old one is dropped with its last user.
            *self
                .client
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                new_client(&self.endpoint, self.options.socket_mark);
            self.subscriptions
                .restart_all(|subscriber, first| self.spawn_subscription(subscriber, first))
        })
    }
}

/// True as soon as one of `waits` succeeds; false when all failed (their tasks ended).
async fn futures_select_ok<F>(mut waits: Vec<std::pin::Pin<Box<F>>>) -> bool
where
    F: std::future::Future<Output = Result<(), watch::error::RecvError>>,
{
    std::future::poll_fn(|cx| {
        let mut index = 0;
        while index < waits.len() {
            match waits[index].as_mut().poll(cx) {
                std::task::Poll::Ready(Ok(())) => return std::task::Poll::Ready(true),
                std::task::Poll::Ready(Err(_)) => {
                    drop(waits.swap_remove(index));
                }
                std::task::Poll::Pending => index += 1,
            }
        }
        if waits.is_empty() {
            std::task::Poll::Ready(false)
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

fn new_client(endpoint: &Endpoint, socket_mark: Option<u32>) -> SignalingClient<Channel> {
    let channel = match socket_mark {
        None => endpoint.connect_lazy(),
        Some(mark) => {
            // tonic's own connector, plus the mark (tonic cannot set one); tonic still adds
            // TLS and the connect timeout around it.
            let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
            connector.enforce_http(false);
            connector.set_nodelay(true);
            connector.set_mark(Some(mark));
            endpoint.connect_with_connector_lazy(connector)
        }
    };
    SignalingClient::new(channel)
        .max_decoding_message_size(MAX_RESPONSE_LEN)
        .max_encoding_message_size(MAX_REQUEST_LEN)
}

impl Drop for GrpcBackend {
    fn drop(&mut self) {
        self.subscriptions.abort_all();
    }
}

/// Keeps one key subscribed until the inbox closes or the task is aborted. Reports the
/// first attempt's outcome on `first`.
async fn keep_subscribed(
    mut client: SignalingClient<Channel>,
    subscriber: Subscriber,
    mut backoff: Backoff,
    counters: Arc<Counters>,
    first: FirstOutcome,
    established: watch::Sender<bool>,
) {
    let Subscriber {
        identity, inbox, ..
    } = &subscriber;
    let mut first = Some(first);
    loop {
        let outcome = tokio::select! {
            outcome = subscribe_once(&mut client, &subscriber, &mut backoff, &counters, &mut first, &established) => outcome,
            () = inbox.closed() => return,
        };
        established.send_replace(false);
        counters.failures.fetch_add(1, Ordering::Relaxed);
        let error = outcome
            .err()
            .unwrap_or_else(|| protocol_error("server ended the stream"));
        tracing::debug!(key = %identity.public_key(), %error, "signaling subscription lost");
        if let Some(first) = first.take() {
            let _ = first.send(Err(error));
        }
        let delay = backoff.next_jittered_delay(&mut OsRng);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = inbox.closed() => return,
        }
    }
}

/// One subscription: prove the key, then stream envelopes until the stream ends.
async fn subscribe_once(
    client: &mut SignalingClient<Channel>,
    subscriber: &Subscriber,
    backoff: &mut Backoff,
    counters: &Counters,
    first: &mut Option<FirstOutcome>,
    established: &watch::Sender<bool>,
) -> Result<(), BackendError> {
    use proto::subscribe_request::Step;
    use proto::subscribe_response::Event;

    let Subscriber {
        identity,
        inbox,
        group,
    } = subscriber;
    // The request stream stays open (`steps` alive) for as long as the subscription lasts.
    let (steps, requests) = mpsc::channel(2);
    let hello = proto::SubscribeRequest {
        step: Some(Step::Hello(proto::Hello {
            public_key: prost::bytes::Bytes::copy_from_slice(identity.public_key().as_bytes()),
            group: *group,
        })),
    };
    steps
        .send(hello)
        .await
        .map_err(|_| protocol_error("request stream closed"))?;
    let mut stream = client
        .subscribe(ReceiverStream::new(requests))
        .await
        .map_err(|s| status_error(&s))?
        .into_inner();

    let mut next = async || match tokio::time::timeout(AUTH_STEP_TIMEOUT, stream.message()).await {
        Ok(Ok(Some(response))) => Ok(response.event),
        Ok(Ok(None)) => Err(protocol_error("stream ended during the key proof")),
        Ok(Err(status)) => Err(status_error(&status)),
        Err(_) => Err(protocol_error("server silent during the key proof")),
    };
    let Some(Event::Challenge(challenge)) = next().await? else {
        return Err(protocol_error("expected a challenge"));
    };
    let secret = challenge::answer(identity, &challenge).map_err(|e| BackendError::Refused {
        kind: BackendKind::Grpc,
        reason: e.to_string(),
    })?;
    let answer = proto::SubscribeRequest {
        step: Some(Step::Answer(proto::ChallengeAnswer {
            secret: secret.into(),
        })),
    };
    steps
        .send(answer)
        .await
        .map_err(|_| protocol_error("request stream closed"))?;
    let Some(Event::Subscribed(_)) = next().await? else {
        return Err(protocol_error("expected the subscription to be confirmed"));
    };

    counters.established.fetch_add(1, Ordering::Relaxed);
    established.send_replace(true);
    backoff.reset();
    if let Some(first) = first.take() {
        let _ = first.send(Ok(()));
    }

    loop {
        let event = match stream.message().await {
            Ok(Some(response)) => response.event,
            Ok(None) => return Ok(()),
            Err(status) => return Err(status_error(&status)),
        };
        let Some(Event::Envelope(bytes)) = event else {
            continue;
        };
        match Envelope::decode(&bytes) {
            Ok(envelope) => {
                if !inbox.deliver(envelope) {
                    counters.inbox_full.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(error) => {
                counters.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%error, "malformed envelope from the signaling server");
            }
        }
    }
}
