//! Accepting TCP connections, with per-connection state the handlers can reach.
//!
//! tonic hands each request the `ConnectInfo` of the connection it came on; ours carries the
//! connection's [`TokenBucket`], so the rate limit is per connection and is freed with it.
//! The accept loop never yields an error (tonic would retry at once and spin on `EMFILE`):
//! it logs, pauses briefly, and goes on. Beyond the connection limit, new connections are
//! closed immediately and counted.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tokio_stream::Stream;
use tonic::transport::server::Connected;

use super::counters::ServerCounters;
use super::rate_limit::TokenBucket;

/// How long to pause accepting after an accept error (out of file descriptors, say).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// What the handlers know about the connection a request came on.
#[derive(Debug, Clone)]
pub(super) struct ConnectionInfo {
    /// The client's address.
    pub(super) remote: SocketAddr,
    bucket: Arc<Mutex<TokenBucket>>,
}

impl ConnectionInfo {
    /// Takes `n` tokens from this connection's rate limit.
    pub(super) fn try_take(&self, n: u32, now: Instant) -> bool {
        self.bucket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_take(n, now)
    }
}

/// One accepted connection.
pub(super) struct Connection {
    stream: TcpStream,
    info: ConnectionInfo,
    counters: Arc<ServerCounters>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.counters.connections.fetch_sub(1, Ordering::Relaxed);
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

/// The stream of accepted connections tonic serves.
pub(super) struct Incoming {
    listener: TcpListener,
    pause: Option<Pin<Box<Sleep>>>,
    counters: Arc<ServerCounters>,
    max_connections: u64,
    rate_per_second: u32,
    burst: u32,
}

impl Incoming {
    /// Accepts on `listener`, giving each connection a bucket of `rate_per_second`/`burst`.
    pub(super) fn new(
        listener: TcpListener,
        counters: Arc<ServerCounters>,
        max_connections: u64,
        rate_per_second: u32,
        burst: u32,
    ) -> Self {
        Self {
            listener,
            pause: None,
            counters,
            max_connections,
            rate_per_second,
            burst,
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
                    let open = self.counters.connections.fetch_add(1, Ordering::Relaxed);
                    let connection = Connection {
                        stream,
                        info: ConnectionInfo {
                            remote,
                            bucket: Arc::new(Mutex::new(TokenBucket::new(
                                self.rate_per_second,
                                self.burst,
                            ))),
                        },
                        counters: Arc::clone(&self.counters),
                    };
                    if open >= self.max_connections {
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
