//! ICE for the whole node: candidate sources shared by every peer's [`crate::session`], and
//! the routing of STUN and TURN datagrams between the shared socket and the sessions.
//!
//! Sans-IO like the sessions: the daemon enumerates interfaces, reads the clock and owns the
//! socket; everything here takes `now` and bytes and returns bytes, offers and path changes.

mod candidate_types;
mod controller;
mod host;
mod peer_reason;
mod reflexive;
mod relay;
mod relay_probe;
mod remote_filter;
mod server;
mod source_limit;

#[cfg(test)]
mod bounds_tests;
#[cfg(test)]
mod fake_turn;
#[cfg(test)]
mod random_tests;
#[cfg(test)]
mod routing_tests;
#[cfg(test)]
mod tests;

pub use candidate_types::CandidateTypes;
pub use controller::{
    CHANNELS_PER_PEER, CHECK_LIFETIME, Controller, ControllerCounters, ControllerEvent,
    DROP_LOG_PER_SECOND, Datagram, DropReason, MAX_CHECKS, PERMISSIONS_PER_PEER, PathKind,
    PeerIceStatus, Routed, Sources, TurnServer,
};
pub use host::{InterfaceAddress, MAX_HOST_CANDIDATES, host_candidates};
pub use peer_reason::{NatEvidence, PeerReason, RelayNote};
pub use reflexive::{ProbeOutcome, ReflexiveProbe};
pub use relay::{REALLOCATE_AFTER_LOSS, Relay, RelayEvent, RelayReceive, RelayState};
pub use remote_filter::{RefusedCandidate, RefusedCounters, RemoteFilter};
pub use server::{DEFAULT_PORT, ServerScheme, ServerUrl, ServerUrlError};
pub use source_limit::{MAX_SOURCES, SourceLimit};
