//! Everything the simulator uses from the product, in one place: when the sans-IO code moves
//! to its own crate (`wice-core`), only these paths change.

pub(crate) use wice::config::CandidateTypes;
pub(crate) use wice::ice::{
    Controller, ControllerCounters, ControllerEvent, PathKind, PathTarget, PeerIceStatus, Sources,
    TurnServer,
};
pub(crate) use wice::keys::{PrivateKey, PublicKey};
pub(crate) use wice::signaling::{Opener, Sealer, SenderPolicy, SignalingMessage};

/// The pieces the offer-protocol model test drives directly.
pub mod session {
    pub use wice::keys::PublicKey;
    pub use wice::session::{GIVE_UP_AFTER, IgnoreReason, OfferOutcome, Session, SessionState};
    pub use wice::signaling::{Candidate, CandidateKind, SessionDescription, Transport};
}
