//! The one-line answer to "will my peers reach me directly?", as data; `wice netcheck`
//! words it.
//!
//! From the lab's findings (and RFC 4787): hole punching works between two endpoint-
//! independent mappings whatever their filtering, and from a mapping that changes per
//! destination only toward a peer whose filter lets a new port of a known address in (no
//! NAT, endpoint-independent or address-dependent filtering). Between two such NATs, or such
//! a NAT and a port-restricted one, only a relay works.

use super::NetcheckReport;
use super::discovery::{Filtering, Mapping};

/// What a person should expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No STUN or TURN server to ask.
    NoServers,
    /// No server answered over UDP.
    UdpBlocked,
    /// A public address and no filter: every peer can reach this node directly.
    Open,
    /// One mapping per socket (or no NAT behind a filter): direct connections likely.
    DirectLikely,
    /// A mapping per destination ("symmetric"): peers behind symmetric or port-restricted
    /// NATs need a relay. `relay_answers`: a configured TURN server answered.
    RelayForSymmetricPeers {
        /// A configured TURN server answered.
        relay_answers: bool,
    },
    /// Servers answered, but none does RFC 5780 and comparing them told nothing.
    Unknown,
}

/// The verdict for `report`; `relay_answers` says whether a configured TURN server answered.
pub fn verdict(report: &NetcheckReport, relay_answers: bool) -> Verdict {
    if report.servers.is_empty() {
        return Verdict::NoServers;
    }
    if !report.udp_works() {
        return Verdict::UdpBlocked;
    }
    let filtering = report.behaviour.map(|b| b.filtering);
    match report.mapping {
        Mapping::NoNat if filtering == Some(Filtering::EndpointIndependent) => Verdict::Open,
        Mapping::NoNat | Mapping::EndpointIndependent => Verdict::DirectLikely,
        Mapping::AddressDependent
        | Mapping::AddressAndPortDependent
        | Mapping::EndpointDependent => Verdict::RelayForSymmetricPeers { relay_answers },
        Mapping::Unknown => Verdict::Unknown,
    }
}
