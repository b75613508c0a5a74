//! Signaling: how peers exchange session descriptions through backends nobody has to trust.
//!
//! What peers exchange and how it is sealed is in [`wice_core::signaling`]; this module carries
//! sealed envelopes:
//!
//! - [`backend`]: the [`Backend`] trait and its semantics; backends: [`inprocess`],
//!   [`grpc_client`] and (feature `nats`) `nats_client`;
//! - [`Signaling`] ([`multiplexer`]): a node's signaling over all configured backends;
//!   the API the ICE layer uses;
//! - [`server`]: `wice signal`, the gRPC server.

pub mod backend;
pub mod grpc_client;
pub mod inprocess;
pub mod multiplexer;
#[cfg(feature = "nats")]
pub mod nats_client;
pub mod server;

use std::sync::Arc;

pub use self::backend::{
    Backend, BackendError, BackendKind, BackendUrl, BackendUrlError, Delivery, Inbox, NatsAuth,
    NatsUrl,
};
pub use self::grpc_client::{GrpcBackend, GrpcOptions};
pub use self::inprocess::{InProcessBackend, InProcessHub};
pub use self::multiplexer::{PublishError, Received, Signaling, SignalingCounters};
#[cfg(feature = "nats")]
pub use self::nats_client::{NatsBackend, NatsOptions};
pub use self::server::{ServerConfig, SignalingServer};

/// Builds the backends a config names: `inprocess` is the process-wide hub, gRPC URLs get a
/// [`GrpcBackend`] trusting `ca_certificate_pem` in addition to the public roots, NATS URLs
/// a `NatsBackend` (an error when built without the `nats` feature). Must be called inside
/// a tokio runtime.
///
/// `socket_mark` marks the gRPC connections (`SO_MARK`) while an exit node's policy routing
/// is in place, so signaling keeps to the underlay.
pub fn backends_from_urls(
    urls: &[BackendUrl],
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
                #[cfg(feature = "nats")]
                BackendUrl::Nats(_) => Ok(Arc::new(NatsBackend::new(url, NatsOptions::default())?)),
                #[cfg(not(feature = "nats"))]
                BackendUrl::Nats(_) => Err(BackendError::Setup(format!(
                    "{url}: this wice was built without the `nats` feature"
                ))),
            }
        })
        .collect()
}
