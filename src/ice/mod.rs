//! ICE for the whole node: candidate sources shared by every peer's [`crate::session`], and
//! the routing of STUN and TURN datagrams between the shared socket and the sessions.
//!
//! Sans-IO like the sessions: the daemon enumerates interfaces, reads the clock and owns the
//! socket; everything here takes `now` and bytes and returns bytes, offers and path changes.

mod controller;
mod host;
mod reflexive;
mod relay;
mod server;
mod source_limit;

#[cfg(test)]
mod random_tests;
#[cfg(test)]
mod routing_tests;
#[cfg(test)]
mod tests;

pub use controller::{
    CHECK_LIFETIME, Controller, ControllerCounters, ControllerEvent, DROP_LOG_PER_SECOND, Datagram,
    DropReason, MAX_CHECKS, PathKind, PathTarget, PeerIceStatus, Routed, Sources, TurnServer,
};
pub use host::{InterfaceAddress, MAX_HOST_CANDIDATES, host_candidates};
pub use reflexive::{ProbeOutcome, ReflexiveProbe};
pub use relay::{Relay, RelayEvent, RelayReceive, RelayState};
pub use server::{DEFAULT_PORT, ServerScheme, ServerUrl, ServerUrlError};
pub use source_limit::{MAX_SOURCES, SourceLimit};
