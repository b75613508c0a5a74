//! `wice signal --ws-listen`: the HTTP/1.1 side of the server, for networks where only
//! HTTP(S) passes. One listener serves:
//!
//! - `GET /v1/ws` upgraded to a WebSocket: one key-proven subscription per socket, which may
//!   also publish (see [`ws_frame`](crate::signaling::ws_frame) and `ws_session`);
//! - `POST /v1/challenge` and `POST /v1/publish`: publishing with plain requests
//!   (see `http_publish`).
//!
//! It shares everything with the gRPC listener (mailboxes, budgets, counters, the NATS bus)
//! and takes the same bounds: connections accepted through the same limits (overall, per
//! source address, handshake and idle timeouts; the per-address count is per listener),
//! TLS with the same certificate as gRPCS, frames and bodies bounded before they are
//! buffered, and the same rates. Anything else gets a 4xx and is counted as malformed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Incoming as Body;
use hyper::header::{CONNECTION, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prost::bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_stream::StreamExt as _;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tonic::transport::server::Connected as _;

use super::connection::{AcceptLimits, ConnectionInfo, Incoming, Timeouts};
use super::counters::ServerCounters;
use super::http_publish::{self, reply};
use super::publish::within_rate;
use super::{ServerError, State, TlsIdentity, ws_session};
use crate::signaling::ws_frame::{
    CHALLENGE_PATH, MAX_CLIENT_FRAME_LEN, MAX_SERVER_FRAME_LEN, PUBLISH_PATH, WS_PATH,
};
use crate::signaling::ws_socket;

/// Largest request head (request line and headers) read.
const MAX_HEAD_LEN: usize = 16 * 1024;

/// The bound, not yet serving, WebSocket listener.
pub(super) struct WsListener {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<TlsAcceptor>,
}

impl WsListener {
    /// Binds `addr`; with `tls`, serves HTTPS (and `wss://`) with that certificate.
    pub(super) async fn bind(
        addr: SocketAddr,
        tls: Option<&TlsIdentity>,
    ) -> Result<Self, ServerError> {
        let tls = tls.map(tls_acceptor).transpose()?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        Ok(Self {
            listener,
            local_addr,
            tls,
        })
    }

    /// The address actually bound.
    pub(super) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

fn tls_acceptor(identity: &TlsIdentity) -> Result<TlsAcceptor, ServerError> {
    let tls = |e: &dyn std::fmt::Display| ServerError::Tls(e.to_string());
    let certs = CertificateDer::pem_slice_iter(&identity.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls(&e))?;
    let key = PrivateKeyDer::from_pem_slice(&identity.key_pem).map_err(|e| tls(&e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls(&e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves until `stop` turns true; then waits up to the shutdown grace for connections.
pub(super) async fn serve(
    listener: WsListener,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
) {
    let config = &state.config;
    let mut incoming = Incoming::new(
        listener.listener,
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
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = incoming.next() => {
                // The accept loop never yields an error or ends.
                let Some(Ok(connection)) = accepted else { continue };
                let info = connection.connect_info();
                let state = Arc::clone(&state);
                match listener.tls.clone() {
                    Some(acceptor) => connections.spawn(async move {
                        // The handshake is bounded by the connection's handshake timeout.
                        if let Ok(stream) = acceptor.accept(connection).await {
                            serve_http(stream, info, state).await;
                        }
                    }),
                    None => connections.spawn(serve_http(connection, info, state)),
                };
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stop.wait_for(|stop| *stop) => break,
        }
    }
    drop(incoming);
    let grace = config.shutdown_grace;
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        connections.abort_all();
    }
}

/// Serves HTTP/1.1 on one connection (upgrades included).
async fn serve_http<S>(stream: S, connection: ConnectionInfo, state: Arc<State>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let state = Arc::clone(&state);
        let connection = connection.clone();
        async move { Ok::<_, Infallible>(route(request, state, connection).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD_LEN.max(8192))
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
    if let Err(error) = served {
        tracing::debug!(target: "wice::signal", %error, "HTTP connection ended");
    }
}

async fn route(
    request: Request<Body>,
    state: Arc<State>,
    connection: ConnectionInfo,
) -> Response<Full<Bytes>> {
    let call = connection.call();
    match (request.method(), request.uri().path()) {
        (&Method::GET, WS_PATH) => upgrade(request, state, connection, call),
        (&Method::POST, CHALLENGE_PATH) => {
            http_publish::challenge(request, &state, &connection).await
        }
        (&Method::POST, PUBLISH_PATH) => http_publish::publish(request, &state, &connection).await,
        (_, path) => {
            ServerCounters::add(&state.counters.rejected_malformed, 1);
            // A stranger's stray requests cost its rate like any other.
            if !within_rate(&state, Some(&connection), 1) {
                return reply(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded\n");
            }
            if [WS_PATH, CHALLENGE_PATH, PUBLISH_PATH].contains(&path) {
                reply(StatusCode::METHOD_NOT_ALLOWED, "wrong method\n")
            } else {
                reply(StatusCode::NOT_FOUND, "not a wice signal endpoint\n")
            }
        }
    }
}

/// True when `name`'s value contains `token` as one comma-separated item (any case).
fn header_has(request: &Request<Body>, name: hyper::header::HeaderName, token: &str) -> bool {
    request.headers().get_all(name).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|item| item.trim().eq_ignore_ascii_case(token))
        })
    })
}

/// Answers a WebSocket upgrade and runs the subscription on the socket.
fn upgrade(
    mut request: Request<Body>,
    state: Arc<State>,
    connection: ConnectionInfo,
    call: super::connection::OpenCall,
) -> Response<Full<Bytes>> {
    let key = request.headers().get(SEC_WEBSOCKET_KEY).cloned();
    let version_13 = request
        .headers()
        .get("sec-websocket-version")
        .is_some_and(|v| v.as_bytes() == b"13");
    let (Some(key), true, true, true) = (
        key,
        version_13,
        header_has(&request, UPGRADE, "websocket"),
        header_has(&request, CONNECTION, "upgrade"),
    ) else {
        ServerCounters::add(&state.counters.rejected_malformed, 1);
        return reply(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade\n");
    };
    let upgraded = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgraded.await else { return };
        let config = ws_socket::config(MAX_CLIENT_FRAME_LEN, MAX_SERVER_FRAME_LEN);
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        ws_session::run(state, connection, ws, call).await;
    });
    let mut response = reply(StatusCode::SWITCHING_PROTOCOLS, Bytes::new());
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}
