//! Signaling: how peers exchange session descriptions through backends nobody has to trust.
//!
//! Layers, from the wire up:
//!
//! - [`message`]: the messages ([`SignalingMessage`], [`SessionDescription`], [`Candidate`])
//!   and their protobuf codec, with the limits receivers enforce;
//! - [`envelope`]: sealing ([`Sealer`]) and opening ([`Opener`]) with crypto_box from the
//!   sender's WireGuard key to the recipient's, and why each refused envelope was refused;
//! - [`replay`]: the per-sender, per-boot [`ReplayWindow`]s;
//! - [`size_limits`]: the largest envelope and request, computed from the message limits;
//! - [`challenge`]: the proof a subscriber gives that it holds its key;
//! - [`backend`]: the [`Backend`] trait and its semantics; backends: [`inprocess`],
//!   [`grpc_client`] and (feature `nats`) `nats_client`;
//! - [`Signaling`] ([`multiplexer`]): a node's signaling over all configured backends;
//!   the API the ICE layer uses;
//! - [`server`]: `wice signal`, the gRPC server.
//!
//! The first four (and [`backoff`]) are pure: no sockets, no clock, no tokio; time and
//! randomness are arguments.

pub mod backend;
pub mod backoff;
pub mod challenge;
pub mod envelope;
pub mod grpc_client;
pub mod inprocess;
pub mod message;
pub mod multiplexer;
#[cfg(feature = "nats")]
pub mod nats_client;
pub mod replay;
pub mod server;
pub mod size_limits;

#[cfg(test)]
mod clock_tests;

use std::sync::Arc;

pub use self::backend::{
    Backend, BackendError, BackendKind, BackendUrl, BackendUrlError, Delivery, Inbox, NatsAuth,
    NatsUrl,
};
pub use self::envelope::{
    Envelope, EnvelopeError, MAX_ENVELOPE_LEN, OpenCounters, OpenError, Opener, SealError, Sealer,
    SenderPolicy,
};
pub use self::grpc_client::{GrpcBackend, GrpcOptions};
pub use self::inprocess::{InProcessBackend, InProcessHub};
pub use self::message::{
    Candidate, CandidateKind, MessageError, SessionDescription, SignalingMessage, Transport,
};
pub use self::multiplexer::{PublishError, Received, Signaling, SignalingCounters};
#[cfg(feature = "nats")]
pub use self::nats_client::{NatsBackend, NatsOptions};
pub use self::replay::{ReplayError, ReplayWindow, SenderWindows};
pub use self::server::{ServerConfig, SignalingServer};

/// Builds the backends a config names: `inprocess` is the process-wide hub, gRPC URLs get a
/// [`GrpcBackend`] trusting `ca_certificate_pem` in addition to the public roots, NATS URLs
/// a `NatsBackend` (an error when built without the `nats` feature). Must be called inside
/// a tokio runtime.
pub fn backends_from_urls(
    urls: &[BackendUrl],
    ca_certificate_pem: Option<&[u8]>,
) -> Result<Vec<Arc<dyn Backend>>, BackendError> {
    urls.iter()
        .map(|url| -> Result<Arc<dyn Backend>, BackendError> {
            match url {
                BackendUrl::InProcess => Ok(Arc::new(InProcessHub::global().backend())),
                BackendUrl::Grpc { .. } => {
                    let options = GrpcOptions {
                        ca_certificate_pem: ca_certificate_pem.map(<[u8]>::to_vec),
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
