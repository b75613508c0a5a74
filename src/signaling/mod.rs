//! Signaling: how peers exchange session descriptions through backends nobody has to trust.
//!
//! What peers exchange and how it is sealed is in [`wice_core::signaling`]; this module carries
//! sealed envelopes:
//!
//! - [`backend`]: the [`Backend`] trait and its semantics; backends: [`inprocess`],
//!   [`grpc_client`], [`ws_client`] (frames in [`ws_frame`], proxies in [`ws_proxy`]) and
//!   (feature `nats`) `nats_client`; (feature `kubernetes`) `k8s_client` (objects in
//!   `k8s_object`); (feature `libp2p`) `libp2p_client` (the swarm in `libp2p_node`), its
//!   URL in [`libp2p_url`];
//! - [`Signaling`] ([`multiplexer`]): a node's signaling over all configured backends;
//!   the API the ICE layer uses;
//! - [`server`]: `wice signal`, the gRPC server (and its WebSocket/HTTP listener).

pub mod backend;
pub mod grpc_client;
pub mod inprocess;
#[cfg(feature = "kubernetes")]
pub mod k8s_client;
#[cfg(feature = "kubernetes")]
mod k8s_line_limit;
#[cfg(feature = "kubernetes")]
pub mod k8s_object;
#[cfg(feature = "libp2p")]
pub mod libp2p_client;
#[cfg(feature = "libp2p")]
mod libp2p_node;
#[cfg(feature = "libp2p")]
mod libp2p_records;
pub mod libp2p_url;
#[cfg(feature = "libp2p")]
mod libp2p_wire;
pub mod multiplexer;
#[cfg(feature = "nats")]
pub mod nats_client;
pub mod server;
mod subscriptions;
pub mod ws_client;
pub mod ws_frame;
pub mod ws_proxy;
mod ws_socket;

use std::sync::Arc;

pub use self::backend::{
    Backend, BackendError, BackendKind, BackendUrl, BackendUrlError, Delivery, Inbox,
    KubernetesUrl, Libp2pAddr, Libp2pUrl, NatsAuth, NatsUrl,
};
pub use self::grpc_client::{GrpcBackend, GrpcOptions};
pub use self::inprocess::{InProcessBackend, InProcessHub};
#[cfg(feature = "kubernetes")]
pub use self::k8s_client::{K8sBackend, K8sCounters, K8sOptions};
#[cfg(feature = "libp2p")]
pub use self::libp2p_client::{Libp2pBackend, Libp2pCounters, Libp2pOptions};
pub use self::multiplexer::{PublishError, Received, Signaling, SignalingCounters};
#[cfg(feature = "nats")]
pub use self::nats_client::{NatsBackend, NatsOptions};
pub use self::server::{ServerConfig, SignalingServer};
pub use self::ws_client::{WsBackend, WsOptions};
pub use self::ws_proxy::ProxyUrl;

/// Builds the backends a config names: `inprocess` is the process-wide hub, gRPC URLs get a
/// [`GrpcBackend`] trusting `ca_certificate_pem` in addition to the public roots, NATS URLs
/// a `NatsBackend` (an error when built without the `nats` feature), Kubernetes URLs a
/// `K8sBackend` (likewise, feature `kubernetes`), libp2p URLs a `Libp2pBackend` whose
/// libp2p identity derives from `node_key` (likewise, feature `libp2p`), WebSocket URLs a
/// [`WsBackend`] trusting the same CA and tunnelling through the HTTP proxy that
/// `https_proxy`/`http_proxy` name (see [`ProxyUrl::from_env`]). Must be called inside a
/// tokio runtime.
///
/// `socket_mark` marks the gRPC connections (`SO_MARK`) while an exit node's policy routing
/// is in place, so signaling keeps to the underlay.
pub fn backends_from_urls(
    urls: &[BackendUrl],
    node_key: &wice_core::keys::PrivateKey,
    ca_certificate_pem: Option<&[u8]>,
    socket_mark: Option<u32>,
) -> Result<Vec<Arc<dyn Backend>>, BackendError> {
    urls.iter()
        .map(|url| -> Result<Arc<dyn Backend>, BackendError> {
            match url {
                BackendUrl::InProcess => Ok(Arc::new(InProcessHub::global().backend())),
                BackendUrl::Grpc { .. } => {
                    let options = GrpcOptions {
                        ca_certificate_pem: ca_certificate_pem.map(<[u8]>::to_vec),
                        socket_mark,
                        ..GrpcOptions::default()
                    };
                    Ok(Arc::new(GrpcBackend::new(url, options)?))
                }
                BackendUrl::WebSocket { host, tls, .. } => {
                    let proxy = ProxyUrl::from_env(host, *tls)
                        .map_err(|e| BackendError::Setup(format!("{url}: {e}")))?;
                    let options = WsOptions {
                        ca_certificate_pem: ca_certificate_pem.map(<[u8]>::to_vec),
                        proxy,
                        ..WsOptions::default()
                    };
                    Ok(Arc::new(WsBackend::new(url, options)?))
                }
                #[cfg(feature = "nats")]
                BackendUrl::Nats(_) => Ok(Arc::new(NatsBackend::new(url, NatsOptions::default())?)),
                #[cfg(not(feature = "nats"))]
                BackendUrl::Nats(_) => Err(BackendError::Setup(format!(
                    "{url}: this wice was built without the `nats` feature"
                ))),
                #[cfg(feature = "kubernetes")]
                BackendUrl::Kubernetes(_) => {
                    Ok(Arc::new(K8sBackend::new(url, K8sOptions::default())?))
                }
                #[cfg(not(feature = "kubernetes"))]
                BackendUrl::Kubernetes(_) => Err(BackendError::Setup(format!(
                    "{url}: this wice was built without the `kubernetes` feature"
                ))),
                #[cfg(feature = "libp2p")]
                BackendUrl::Libp2p(_) => Ok(Arc::new(Libp2pBackend::new(
                    url,
                    node_key,
                    Libp2pOptions::default(),
                )?)),
                #[cfg(not(feature = "libp2p"))]
                BackendUrl::Libp2p(_) => {
                    let _ = node_key;
                    Err(BackendError::Setup(format!(
                        "{url}: this wice was built without the `libp2p` feature"
                    )))
                }
            }
        })
        .collect()
}
