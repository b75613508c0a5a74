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
mod input_cost_tests;
#[cfg(test)]
mod membership_tests;
#[cfg(test)]
mod random_tests;
#[cfg(test)]
mod relay_probe_tests;
#[cfg(test)]
mod routing_tests;
#[cfg(test)]
mod tests;

pub use candidate_types::CandidateTypes;
pub use controller::{
    Controller, ControllerCounters, ControllerEvent, DropReason, PathKind, PeerIceStatus, Routed,
    Sources, TimeoutReason, TurnServer,
};
pub use host::{InterfaceAddress, host_candidates};
pub use peer_reason::{NatEvidence, PeerReason, RelayNote};
pub use relay::{Relay, RelayEvent, RelayFailure, RelayReceive, RelayState};
pub use remote_filter::{RefusedCandidate, RefusedCounters, RemoteFilter};
pub use server::{DEFAULT_PORT, ServerScheme, ServerUrl, ServerUrlError};

// What the tests beside the modules reach through `super::*`.
#[cfg(test)]
use controller::{CHECK_LIFETIME, PERMISSIONS_PER_PEER};
#[cfg(test)]
use source_limit::SourceLimit;
