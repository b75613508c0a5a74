//! Everything the simulator uses from the product, in one place: the sans-IO core
//! (`wice-core`) and nothing of the binary, so the simulator runs the same code the daemon
//! drives, without sockets, clock or tokio.

pub(crate) use wice_core::ice::CandidateTypes;
pub(crate) use wice_core::ice::{
    Controller, ControllerCounters, ControllerEvent, PathKind, PeerIceStatus, Sources,
    TimeoutReason, TurnServer,
};
pub(crate) use wice_core::keys::{PrivateKey, PublicKey};
pub(crate) use wice_core::signaling::{Opener, Sealer, SenderPolicy, SignalingMessage};
pub(crate) use wice_core::wire::Endpoint;
pub(crate) use wice_core::wire::classify::{DatagramKind, classify, is_stun};

/// Why a peer is not connected directly, as tests match it.
pub mod ice {
    pub use wice_core::ice::{NatEvidence, PeerReason, RelayNote};
}

/// The pieces the offer-protocol model test drives directly.
pub mod session {
    pub use wice_core::keys::PublicKey;
    pub use wice_core::session::{
        GIVE_UP_AFTER, IgnoreReason, OfferOutcome, Session, SessionState,
    };
    pub use wice_core::signaling::{Candidate, CandidateKind, SessionDescription, Transport};
}
