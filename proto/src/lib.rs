//! wice's wire messages, generated from `proto/*.proto` at build time.
//!
//! - [`signaling`]: the `Envelope` a signaling backend carries, the `SealedContent` inside
//!   its ciphertext, and (with the `grpc` feature) the client and server stubs of the
//!   `Signaling` gRPC service behind `wice signal`.

/// `wice.signaling.v1`: envelopes, their sealed content, and the signaling service.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)] // generated code
pub mod signaling {
    include!(concat!(env!("OUT_DIR"), "/wice.signaling.v1.rs"));
}
