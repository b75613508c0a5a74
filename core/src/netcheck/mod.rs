//! `wice netcheck` without the socket: which configured STUN/TURN servers answer over UDP
//! and how fast, the public addresses they saw, and the NAT's mapping and filtering
//! behaviour (RFC 5780) against the first server that names an alternate address; then a
//! one-line [`Verdict`].
//!
//! # Driving
//!
//! [`Netcheck::new`] with the servers (one address family: one socket per family) queues a
//! Binding request to each. Send what [`Netcheck::poll_transmit`] gives from one socket;
//! hand every datagram it receives to [`Netcheck::handle_datagram`]; call
//! [`Netcheck::handle_timeout`] at [`Netcheck::poll_timeout`]. When [`Netcheck::done`],
//! read [`Netcheck::report`] and pass it to [`verdict`].
//!
//! The servers are asked first, all at once; the behaviour tests run after every server
//! settled, so that no other traffic opens the NAT's filter toward the alternate address
//! while the filtering tests run.

mod discovery;
mod message;
mod probe;
mod verdict;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::session::rng::{IceRandom, TransactionIds};

use discovery::Discovery;
pub use discovery::{Filtering, Mapping, NatBehaviour};
pub use message::{BindingAnswer, Change, binding_success, requested_change};
use probe::BindingProbe;
pub use probe::{Answered, GIVE_UP_AFTER, ProbeResult};
pub use verdict::{Verdict, verdict};

/// Servers asked at most; the rest of a long list is left out of the report.
pub const MAX_SERVERS: usize = 16;

/// One server's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerReport {
    /// The server.
    pub server: SocketAddr,
    /// Its answer to a plain Binding request, or silence.
    pub result: ProbeResult,
}

impl ServerReport {
    /// Round-trip time of the answer.
    pub fn rtt(&self) -> Option<Duration> {
        match self.result {
            ProbeResult::Answered(a) => Some(a.rtt),
            _ => None,
        }
    }

    /// Where the server saw us.
    pub fn mapped(&self) -> Option<SocketAddr> {
        match self.result {
            ProbeResult::Answered(a) => Some(a.answer.mapped),
            _ => None,
        }
    }
}

/// What a netcheck found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetcheckReport {
    /// Every server asked, in the order given.
    pub servers: Vec<ServerReport>,
    /// The RFC 5780 tests, when a server named an alternate address.
    pub behaviour: Option<NatBehaviour>,
    /// Without RFC 5780: the mapping as far as comparing servers tells.
    pub mapping: Mapping,
    /// Distinct addresses the servers saw us at, in the order first seen.
    pub public_addresses: Vec<SocketAddr>,
}

impl NetcheckReport {
    /// Whether any server answered.
    pub fn udp_works(&self) -> bool {
        self.servers.iter().any(|s| s.mapped().is_some())
    }
}

/// The whole check; see the [module documentation](self).
pub struct Netcheck {
    local: Option<SocketAddr>,
    servers: Vec<BindingProbe>,
    discovery: Option<Discovery>,
    /// Discovery was considered (started or found impossible).
    discovery_decided: bool,
    transactions: TransactionIds,
}

impl Netcheck {
    /// A check of `servers` (at most [`MAX_SERVERS`]) from a socket whose own address is
    /// `local` (when known, to tell "no NAT"), started at `now`. `random` draws the
    /// transaction ids: [`IceRandom::from_os`] in the binary.
    pub fn new(
        servers: &[SocketAddr],
        local: Option<SocketAddr>,
        now: Instant,
        mut random: IceRandom,
    ) -> Self {
        let mut transactions = random.transaction_ids();
        let servers = servers
            .iter()
            .take(MAX_SERVERS)
            .map(|server| BindingProbe::new(*server, Change::NONE, transactions.next_id(), now))
            .collect();
        let mut check = Self {
            local,
            servers,
            discovery: None,
            discovery_decided: false,
            transactions,
        };
        check.handle_timeout(now);
        check
    }

    /// A datagram that arrived on the socket from `from`. Returns whether a probe took it.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> bool {
        let taken = self
            .discovery
            .as_mut()
            .is_some_and(|d| d.handle_datagram(now, from, datagram))
            || self
                .servers
                .iter_mut()
                .any(|probe| probe.handle_datagram(now, from, datagram));
        if taken {
            // The next test starts at once.
            self.handle_timeout(now);
        }
        taken
    }

    /// Retransmits, gives up, moves to the next test.
    pub fn handle_timeout(&mut self, now: Instant) {
        for probe in &mut self.servers {
            probe.handle_timeout(now);
        }
        if !self.discovery_decided && self.servers.iter().all(BindingProbe::settled) {
            self.discovery_decided = true;
            self.discovery = self.start_discovery(now);
        }
        if let Some(discovery) = self.discovery.as_mut() {
            discovery.handle_timeout(now, self.transactions.next_id());
        }
    }

    /// The first server that answered with an alternate address, preferring one whose
    /// alternate address is not itself a configured server (asking that one opened the
    /// filter toward it already).
    fn start_discovery(&mut self, now: Instant) -> Option<Discovery> {
        let answers: Vec<(SocketAddr, BindingAnswer)> = self
            .servers
            .iter()
            .filter_map(|p| match p.result() {
                ProbeResult::Answered(a) => a.answer.other.map(|_| (p.destination(), a.answer)),
                _ => None,
            })
            .collect();
        let asked = |ip| self.servers.iter().any(|p| p.destination().ip() == ip);
        let (server, answer) = answers
            .iter()
            .find(|(_, a)| a.other.is_some_and(|o| !asked(o.ip())))
            .or_else(|| answers.first())
            .copied()?;
        let other = answer.other?;
        let mut discovery = Discovery::new(
            server,
            other,
            answer.mapped,
            self.local,
            now,
            self.transactions.next_id(),
        );
        discovery.handle_timeout(now, self.transactions.next_id());
        Some(discovery)
    }

    /// When [`Netcheck::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.servers
            .iter()
            .filter_map(BindingProbe::poll_timeout)
            .chain(self.discovery.as_ref().and_then(Discovery::poll_timeout))
            .min()
    }

    /// The next request: where to, and its bytes.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        for probe in &mut self.servers {
            let destination = probe.destination();
            if let Some(request) = probe.poll_transmit() {
                return Some((destination, request.to_vec()));
            }
        }
        self.discovery.as_mut().and_then(Discovery::poll_transmit)
    }

    /// Whether every test is over.
    pub fn done(&self) -> bool {
        self.discovery_decided && self.discovery.as_ref().is_none_or(Discovery::done)
    }

    /// What was found so far.
    pub fn report(&self) -> NetcheckReport {
        let servers: Vec<ServerReport> = self
            .servers
            .iter()
            .map(|p| ServerReport {
                server: p.destination(),
                result: p.result(),
            })
            .collect();
        let mut public_addresses: Vec<SocketAddr> = Vec::new();
        for mapped in servers.iter().filter_map(ServerReport::mapped) {
            if !public_addresses.contains(&mapped) {
                public_addresses.push(mapped);
            }
        }
        let behaviour = self.discovery.as_ref().map(Discovery::behaviour);
        let mapping = match behaviour {
            Some(b) => b.mapping,
            None => compare_servers(&servers, self.local),
        };
        NetcheckReport {
            servers,
            behaviour,
            mapping,
            public_addresses,
        }
    }
}

/// The mapping as plain STUN servers at different IP addresses show it: the same mapped
/// address from all means endpoint-independent, different ones endpoint-dependent.
fn compare_servers(servers: &[ServerReport], local: Option<SocketAddr>) -> Mapping {
    let answers: Vec<(SocketAddr, SocketAddr)> = servers
        .iter()
        .filter_map(|s| s.mapped().map(|m| (s.server, m)))
        .collect();
    let Some((first_server, first_mapped)) = answers.first().copied() else {
        return Mapping::Unknown;
    };
    if local == Some(first_mapped) {
        return Mapping::NoNat;
    }
    let others: Vec<SocketAddr> = answers
        .iter()
        .filter(|(server, _)| server.ip() != first_server.ip())
        .map(|(_, mapped)| *mapped)
        .collect();
    if others.is_empty() {
        Mapping::Unknown
    } else if others.iter().all(|m| *m == first_mapped) {
        Mapping::EndpointIndependent
    } else {
        Mapping::EndpointDependent
    }
}
