//! RFC 5780 §4.3 and §4.4 against one server with two addresses, as one sequence of Binding
//! probes from one socket.
//!
//! The first test (a plain Binding to the primary address) is the server check that found
//! the server's OTHER-ADDRESS; from there:
//!
//! 1. Filtering first, while our NAT has sent nothing toward the alternate address (a
//!    mapping test to it would open the filter and make every NAT look open):
//!    CHANGE-REQUEST ip+port to the primary; an answer means endpoint-independent filtering.
//!    Otherwise CHANGE-REQUEST port: an answer means address-dependent, silence address- and
//!    port-dependent.
//! 2. Mapping, unless the first answer showed our own address (no NAT): a Binding to the
//!    alternate IP at the primary port; the same mapped address as the first means
//!    endpoint-independent. Otherwise one to the alternate IP and port: the same mapped
//!    address as the second means address-dependent, another one address- and port-dependent.

use std::net::SocketAddr;
use std::time::Instant;

use super::message::Change;
use super::probe::{BindingProbe, ProbeResult};

/// How a NAT maps one local socket toward different destinations (RFC 4787 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// No NAT: the server saw our own address.
    NoNat,
    /// One external address and port for every destination.
    EndpointIndependent,
    /// A new mapping per destination address.
    AddressDependent,
    /// A new mapping per destination address and port ("symmetric").
    AddressAndPortDependent,
    /// Different STUN servers saw different ports (no RFC 5780 server to tell which kind).
    EndpointDependent,
    /// Not measured, or the tests did not answer.
    Unknown,
}

/// Which senders a NAT lets through to a mapping (RFC 4787 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filtering {
    /// Anyone may send to the mapping.
    EndpointIndependent,
    /// Only addresses the socket sent to.
    AddressDependent,
    /// Only address and port pairs the socket sent to.
    AddressAndPortDependent,
    /// Not measured, or the server ignored CHANGE-REQUEST.
    Unknown,
}

/// What discovery found out about our NAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatBehaviour {
    /// The RFC 5780 server's primary address.
    pub server: SocketAddr,
    /// Its alternate address.
    pub other: SocketAddr,
    /// Where it saw us first.
    pub mapped: SocketAddr,
    /// Mapping behaviour.
    pub mapping: Mapping,
    /// Filtering behaviour.
    pub filtering: Filtering,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    FilterIpAndPort,
    FilterPort,
    MapOtherIp,
    MapOtherIpAndPort,
    Done,
}

/// The sequence; see the [module documentation](self).
#[derive(Debug, Clone)]
pub(crate) struct Discovery {
    behaviour: NatBehaviour,
    /// The first answer's mapped address equals our own.
    no_nat: bool,
    /// The mapped address of the test to the alternate IP.
    mapped_other_ip: Option<SocketAddr>,
    step: Step,
    probe: Option<BindingProbe>,
}

impl Discovery {
    /// Starts after the first test: `server` answered `mapped` and named `other`; `local`
    /// is our own address toward it, when known.
    pub(crate) fn new(
        server: SocketAddr,
        other: SocketAddr,
        mapped: SocketAddr,
        local: Option<SocketAddr>,
        now: Instant,
        transaction: u128,
    ) -> Self {
        let mut discovery = Self {
            behaviour: NatBehaviour {
                server,
                other,
                mapped,
                mapping: Mapping::Unknown,
                filtering: Filtering::Unknown,
            },
            no_nat: local == Some(mapped),
            mapped_other_ip: None,
            step: Step::FilterIpAndPort,
            probe: None,
        };
        discovery.probe = Some(BindingProbe::new(
            server,
            Change::IP_AND_PORT,
            transaction,
            now,
        ));
        discovery
    }

    pub(crate) fn behaviour(&self) -> NatBehaviour {
        self.behaviour
    }

    pub(crate) fn done(&self) -> bool {
        self.step == Step::Done
    }

    pub(crate) fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) -> bool {
        self.probe
            .as_mut()
            .is_some_and(|p| p.handle_datagram(now, from, datagram))
    }

    /// Advances when the current test settled; `transaction` is used for the next request.
    pub(crate) fn handle_timeout(&mut self, now: Instant, transaction: u128) {
        let Some(probe) = self.probe.as_mut() else {
            return;
        };
        probe.handle_timeout(now);
        if !probe.settled() {
            return;
        }
        let result = probe.result();
        self.probe = None;
        let server = self.behaviour.server;
        let other = self.behaviour.other;
        let answered_from = match result {
            ProbeResult::Answered(a) => Some((a.from, a.answer.mapped)),
            _ => None,
        };
        let next = match self.step {
            Step::FilterIpAndPort => match answered_from {
                Some((from, _)) if from.ip() != server.ip() && from.port() != server.port() => {
                    self.behaviour.filtering = Filtering::EndpointIndependent;
                    self.mapping_step()
                }
                // The server answered from the address we asked: it ignores CHANGE-REQUEST.
                Some(_) => self.mapping_step(),
                None => Step::FilterPort,
            },
            Step::FilterPort => {
                self.behaviour.filtering = match answered_from {
                    Some((from, _)) if from.ip() == server.ip() && from.port() != server.port() => {
                        Filtering::AddressDependent
                    }
                    Some(_) => Filtering::Unknown,
                    None => Filtering::AddressAndPortDependent,
                };
                self.mapping_step()
            }
            Step::MapOtherIp => match answered_from {
                Some((_, mapped)) if mapped == self.behaviour.mapped => {
                    self.behaviour.mapping = Mapping::EndpointIndependent;
                    Step::Done
                }
                Some((_, mapped)) => {
                    self.mapped_other_ip = Some(mapped);
                    Step::MapOtherIpAndPort
                }
                None => Step::Done,
            },
            Step::MapOtherIpAndPort => {
                self.behaviour.mapping = match answered_from {
                    Some((_, mapped)) if Some(mapped) == self.mapped_other_ip => {
                        Mapping::AddressDependent
                    }
                    Some(_) => Mapping::AddressAndPortDependent,
                    None => Mapping::Unknown,
                };
                Step::Done
            }
            Step::Done => Step::Done,
        };
        self.step = next;
        let (destination, change) = match next {
            Step::FilterPort => (server, Change::PORT),
            Step::MapOtherIp => (SocketAddr::new(other.ip(), server.port()), Change::NONE),
            Step::MapOtherIpAndPort => (other, Change::NONE),
            Step::FilterIpAndPort | Step::Done => return,
        };
        let mut probe = BindingProbe::new(destination, change, transaction, now);
        probe.handle_timeout(now);
        self.probe = Some(probe);
    }

    fn mapping_step(&mut self) -> Step {
        if self.no_nat {
            self.behaviour.mapping = Mapping::NoNat;
            Step::Done
        } else {
            Step::MapOtherIp
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.probe.as_ref().and_then(BindingProbe::poll_timeout)
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        let probe = self.probe.as_mut()?;
        let destination = probe.destination();
        probe.poll_transmit().map(|r| (destination, r.to_vec()))
    }
}
