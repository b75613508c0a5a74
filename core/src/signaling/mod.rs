//! The pure half of signaling: what peers exchange, and how it is sealed so that no backend has
//! to be trusted. The backends that carry envelopes (and `wice signal`) live in the binary.
//!
//! - [`message`]: the messages ([`SignalingMessage`], [`SessionDescription`], [`Candidate`])
//!   and their protobuf codec, with the limits receivers enforce;
//! - [`envelope`]: sealing ([`Sealer`]) and opening ([`Opener`]) with crypto_box from the
//!   sender's WireGuard key to the recipient's, and why each refused envelope was refused;
//! - `replay` (crate-internal): the per-sender, per-boot replay windows ([`ReplayError`]);
//! - [`size_limits`]: the largest envelope and request, computed from the message limits;
//! - [`challenge`]: the proof a subscriber gives that it holds its key.

pub mod challenge;
pub mod envelope;
pub mod message;
pub(crate) mod replay;
pub mod size_limits;

#[cfg(test)]
mod clock_tests;

pub use self::envelope::{
    Envelope, EnvelopeError, MAX_ENVELOPE_LEN, OpenCounters, OpenError, Opener, SealError, Sealer,
    SenderPolicy,
};
pub use self::message::{
    Candidate, CandidateKind, MessageError, SessionDescription, SignalingMessage, Transport,
};
pub use self::replay::ReplayError;
