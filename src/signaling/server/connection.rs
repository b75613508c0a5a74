//! Accepting TCP connections, with per-connection state the handlers can reach.
//!
//! tonic hands each request the `ConnectInfo` of the connection it came on; ours carries the
//! connection's [`TokenBucket`] (the rate limit is per connection and is freed with it), the
//! keys proven on it (what it may publish as), and its call activity.
//!
//! Timeouts, enforced under hyper by the connection's reads: a connection that has not
//! started a call within the handshake timeout (TCP, TLS, the HTTP/2 preface and the first
//! request) is closed, and so is one that has had no call open for the idle timeout. HTTP/2
//! pings do not count as activity.
//!
//! The accept loop never yields an error (tonic would retry at once and spin on `EMFILE`):
//! it logs, pauses briefly, and goes on. Beyond the connection limit (sized from the fd
//! limit) or the per-address limit, new connections are closed immediately and counted.

use std::collections::HashMap;
use std::future::Future as _;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tokio_stream::Stream;
use tonic::transport::server::Connected;

use super::budget::source_of;
use super::counters::ServerCounters;
use super::rate_limit::TokenBucket;
use wice_core::keys::PublicKey;

/// How long to pause accepting after an accept error (out of file descriptors, say).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Most keys one connection may prove; the oldest proof gives way.
pub(super) const MAX_PROVEN_KEYS_PER_CONNECTION: usize = 8;

/// State of one connection that its handlers update.
#[derive(Debug)]
struct Shared {
    proven: Mutex<Vec<PublicKey>>,
    open_calls: AtomicUsize,
    started_a_call: AtomicBool,
    last_call_ended: Mutex<Instant>,
}

/// What the handlers know about the connection a request came on.
#[derive(Debug, Clone)]
pub(super) struct ConnectionInfo {
    /// The client's address.
    pub(super) remote: SocketAddr,
    bucket: Arc<Mutex<TokenBucket>>,
    /// Where the source address's bucket is (shared by its connections).
    per_source: PerSource,
    shared: Arc<Shared>,
}

impl ConnectionInfo {
    fn new(
        remote: SocketAddr,
        rate_per_second: u32,
        burst: u32,
        per_source: PerSource,
        now: Instant,
    ) -> Self {
        Self {
            remote,
            bucket: Arc::new(Mutex::new(TokenBucket::new(rate_per_second, burst))),
            per_source,
            shared: Arc::new(Shared {
                proven: Mutex::new(Vec::new()),
                open_calls: AtomicUsize::new(0),
                started_a_call: AtomicBool::new(false),
                last_call_ended: Mutex::new(now),
            }),
        }
    }

    /// Takes `n` tokens from this connection's rate limit and from its source address's
    /// (shared by every connection from that address).
    pub(super) fn try_take(&self, n: u32, now: Instant) -> bool {
        let connection_ok = self
            .bucket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_take(n, now);
        connection_ok
            && self
                .per_source
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_mut(&source_of(self.remote.ip()))
                .is_none_or(|source| source.bucket.try_take(n, now))
    }

    fn proven(&self) -> std::sync::MutexGuard<'_, Vec<PublicKey>> {
        self.shared
            .proven
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that the client proved it holds `key`'s private half on this connection.
    pub(super) fn prove(&self, key: PublicKey) {
        let mut proven = self.proven();
        if proven.contains(&key) {
            return;
        }
        if proven.len() >= MAX_PROVEN_KEYS_PER_CONNECTION {
            proven.remove(0);
        }
        proven.push(key);
    }

    /// True when `key` was proven on this connection.
    pub(super) fn is_proven(&self, key: &PublicKey) -> bool {
        self.proven().contains(key)
    }

    /// True when any key was proven on this connection.
    pub(super) fn has_proven_any(&self) -> bool {
        !self.proven().is_empty()
    }

    /// Marks a call open until the guard is dropped (the idle timeout waits for it).
    pub(super) fn call(&self) -> OpenCall {
        self.shared.started_a_call.store(true, Ordering::Relaxed);
        self.shared.open_calls.fetch_add(1, Ordering::Relaxed);
        OpenCall {
            shared: Arc::clone(&self.shared),
        }
    }

    /// When the connection should be closed if nothing changes, and why; `None` while a
    /// call is open.
    fn deadline(&self, accepted: Instant, timeouts: Timeouts) -> Option<(Instant, Expiry)> {
        if !self.shared.started_a_call.load(Ordering::Relaxed) {
            return Some((accepted + timeouts.handshake, Expiry::Handshake));
        }
        if self.shared.open_calls.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let ended = *self
            .shared
            .last_call_ended
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Some((ended + timeouts.idle, Expiry::Idle))
    }
}

/// A call in progress on a connection.
pub(super) struct OpenCall {
    shared: Arc<Shared>,
}

impl Drop for OpenCall {
    fn drop(&mut self) {
        *self
            .shared
            .last_call_ended
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.shared.open_calls.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The connection timeouts.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    /// From accept to the first call.
    pub(super) handshake: Duration,
    /// Without an open call.
    pub(super) idle: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Handshake,
    Idle,
}

/// How many times a connection's rate and burst one source address gets across all its
/// connections.
pub(super) const SOURCE_RATE_FACTOR: u32 = 8;

/// What is kept per source address (IPv6: per /64) while it has connections open.
#[derive(Debug)]
struct SourceState {
    open: u32,
    bucket: TokenBucket,
}

/// Per source address: open connections and the shared rate limit.
type PerSource = Arc<Mutex<HashMap<IpAddr, SourceState>>>;

/// One accepted connection.
pub(super) struct Connection {
    stream: TcpStream,
    info: ConnectionInfo,
    counters: Arc<ServerCounters>,
    accepted: Instant,
    timeouts: Timeouts,
    timer: Pin<Box<Sleep>>,
    expired: bool,
}

impl Connection {
    /// True once the connection outlived its handshake or idle timeout (counted once).
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.expired {
            return true;
        }
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let now = Instant::now();
            match self.info.deadline(self.accepted, self.timeouts) {
                Some((deadline, why)) if deadline <= now => {
                    self.expired = true;
                    let counter = match why {
                        Expiry::Handshake => &self.counters.closed_handshake_timeout,
                        Expiry::Idle => &self.counters.closed_idle,
                    };
                    ServerCounters::add(counter, 1);
                    return true;
                }
                Some((deadline, _)) => self.timer.as_mut().reset(deadline.into()),
                // A call is open: look again after an idle period.
                None => self.timer.as_mut().reset((now + self.timeouts.idle).into()),
            }
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.counters.connections.fetch_sub(1, Ordering::Relaxed);
        let source = source_of(self.info.remote.ip());
        let mut per_source = self
            .info
            .per_source
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(state) = per_source.get_mut(&source) {
            state.open = state.open.saturating_sub(1);
            if state.open == 0 {
                per_source.remove(&source);
            }
        }
    }
}

impl Connected for Connection {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        self.info.clone()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.poll_expired(cx) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "handshake or idle timeout",
            )));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Limits applied when accepting.
#[derive(Debug, Clone, Copy)]
pub(super) struct AcceptLimits {
    /// Most connections overall (sized from the fd limit).
    pub(super) max_connections: u64,
    /// Most connections from one source address (IPv6: one /64).
    pub(super) max_connections_per_ip: u32,
    /// Per-connection rate.
    pub(super) rate_per_second: u32,
    /// Per-connection burst.
    pub(super) burst: u32,
    /// Handshake and idle timeouts.
    pub(super) timeouts: Timeouts,
}

/// The stream of accepted connections tonic serves.
pub(super) struct Incoming {
    listener: TcpListener,
    pause: Option<Pin<Box<Sleep>>>,
    counters: Arc<ServerCounters>,
    per_source: PerSource,
    limits: AcceptLimits,
}

impl Incoming {
    /// Accepts on `listener` within `limits`.
    pub(super) fn new(
        listener: TcpListener,
        counters: Arc<ServerCounters>,
        limits: AcceptLimits,
    ) -> Self {
        Self {
            listener,
            pause: None,
            counters,
            per_source: PerSource::default(),
            limits,
        }
    }
}

impl Stream for Incoming {
    type Item = Result<Connection, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(pause) = self.pause.as_mut() {
                ready!(pause.as_mut().poll(cx));
                self.pause = None;
            }
            match ready!(self.listener.poll_accept(cx)) {
                Ok((stream, remote)) => {
                    let now = Instant::now();
                    let limits = self.limits;
                    let open = self.counters.connections.fetch_add(1, Ordering::Relaxed);
                    let from_source = {
                        let mut per_source = self
                            .per_source
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner);
                        let state = per_source.entry(source_of(remote.ip())).or_insert_with(|| {
                            SourceState {
                                open: 0,
                                bucket: TokenBucket::new(
                                    limits.rate_per_second.saturating_mul(SOURCE_RATE_FACTOR),
                                    limits.burst.saturating_mul(SOURCE_RATE_FACTOR),
                                ),
                            }
                        });
                        state.open += 1;
                        state.open
                    };
                    let connection = Connection {
                        stream,
                        info: ConnectionInfo::new(
                            remote,
                            limits.rate_per_second,
                            limits.burst,
                            Arc::clone(&self.per_source),
                            now,
                        ),
                        counters: Arc::clone(&self.counters),
                        accepted: now,
                        timeouts: limits.timeouts,
                        timer: Box::pin(tokio::time::sleep_until(
                            (now + limits.timeouts.handshake).into(),
                        )),
                        expired: false,
                    };
                    if open >= limits.max_connections || from_source > limits.max_connections_per_ip
                    {
                        ServerCounters::add(&self.counters.refused_capacity, 1);
                        tracing::debug!(%remote, "connection refused: at the connection limit");
                        drop(connection);
                        continue;
                    }
                    let _ = connection.stream.set_nodelay(true);
                    return Poll::Ready(Some(Ok(connection)));
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed; pausing");
                    self.pause = Some(Box::pin(tokio::time::sleep(ACCEPT_ERROR_PAUSE)));
                }
            }
        }
    }
}
