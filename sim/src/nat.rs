//! NAT models: how a router maps private sources to public ports and which inbound datagrams
//! it lets through, with conntrack-like timeouts and no hairpinning (design notes §5).
//!
//! Mapping (RFC 4787 §4.1) decides when two outbound flows share a public port; filtering
//! (§5) decides which remote endpoints may send to it. Each remote a mapping talks to is a
//! flow with its own timer: 30 s until the remote answered, 120 s after ("assured"), like
//! Linux conntrack. A mapping lives while one of its flows does.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use crate::rng::SimRng;

/// When two outbound flows from one private address share a public port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// One port for every destination (nftables `masquerade` with unsolicited input dropped).
    EndpointIndependent,
    /// One port per destination IP.
    AddressDependent,
    /// One random port per destination IP and port: a symmetric NAT (`masquerade
    /// fully-random`).
    Symmetric,
}

/// Which remotes may send to a mapped port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filtering {
    /// Anyone ("full cone").
    EndpointIndependent,
    /// Any port of an IP the mapping sent to.
    AddressDependent,
    /// Only the exact IP and port the mapping sent to: what Linux conntrack does.
    AddressAndPortDependent,
}

/// A NAT's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatBehaviour {
    /// How ports are assigned.
    pub mapping: Mapping,
    /// What gets in.
    pub filtering: Filtering,
    /// A flow no one answered expires after this idle time.
    pub unreplied_timeout: Duration,
    /// A flow that was answered expires after this idle time.
    pub assured_timeout: Duration,
}

impl NatBehaviour {
    /// conntrack's UDP timeouts.
    pub const UNREPLIED: Duration = Duration::from_secs(30);
    /// conntrack's UDP timeout once assured.
    pub const ASSURED: Duration = Duration::from_secs(120);

    /// The lab's endpoint-independent NAT (nftables `masquerade`).
    pub fn endpoint_independent() -> Self {
        Self {
            mapping: Mapping::EndpointIndependent,
            filtering: Filtering::AddressAndPortDependent,
            unreplied_timeout: Self::UNREPLIED,
            assured_timeout: Self::ASSURED,
        }
    }

    /// A NAT that maps per destination IP.
    pub fn address_dependent() -> Self {
        Self {
            mapping: Mapping::AddressDependent,
            ..Self::endpoint_independent()
        }
    }

    /// The lab's symmetric NAT (`masquerade fully-random`).
    pub fn symmetric() -> Self {
        Self {
            mapping: Mapping::Symmetric,
            ..Self::endpoint_independent()
        }
    }

    /// With both flow timeouts set to `idle`.
    pub fn with_timeout(self, idle: Duration) -> Self {
        Self {
            unreplied_timeout: idle,
            assured_timeout: idle,
            ..self
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct MappingKey {
    private: SocketAddrV4,
    /// The part of the destination the mapping depends on (zero where it does not).
    destination: SocketAddrV4,
}

#[derive(Debug, Clone, Copy)]
struct Flow {
    last: Instant,
    assured: bool,
}

#[derive(Debug, Clone)]
struct Entry {
    port: u16,
    flows: BTreeMap<SocketAddrV4, Flow>,
}

/// Counters of what a NAT refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NatCounters {
    /// Inbound datagrams to a port with no live mapping.
    pub no_mapping: u64,
    /// Inbound datagrams the filter refused.
    pub filtered: u64,
    /// Datagrams from inside to the NAT's own public address (no hairpinning).
    pub hairpin: u64,
    /// Mappings that expired.
    pub expired: u64,
}

/// One NAT router: a public address and its mapping table.
#[derive(Debug)]
pub struct Nat {
    /// The router's public address.
    pub public: Ipv4Addr,
    behaviour: NatBehaviour,
    entries: BTreeMap<MappingKey, Entry>,
    by_port: BTreeMap<u16, MappingKey>,
    rng: SimRng,
    counters: NatCounters,
    /// Idle flows are swept at most once per [`SWEEP_INTERVAL`]: a per-datagram walk of every
    /// mapping would make big meshes quadratic.
    next_sweep: Option<Instant>,
}

/// How precisely flow timeouts are kept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Ports a symmetric NAT draws from.
const RANDOM_PORTS: std::ops::Range<u16> = 1024..65535;

impl Nat {
    /// A router at `public` behaving as `behaviour`, drawing ports from `rng`.
    pub fn new(public: Ipv4Addr, behaviour: NatBehaviour, rng: SimRng) -> Self {
        Self {
            public,
            behaviour,
            entries: BTreeMap::new(),
            by_port: BTreeMap::new(),
            rng,
            counters: NatCounters::default(),
            next_sweep: None,
        }
    }

    /// How it behaves.
    pub fn behaviour(&self) -> NatBehaviour {
        self.behaviour
    }

    /// What it refused so far.
    pub fn counters(&self) -> NatCounters {
        self.counters
    }

    /// Live mappings (after expiring the idle ones at `now`).
    pub fn mappings(&mut self, now: Instant) -> usize {
        self.next_sweep = None;
        self.expire(now);
        self.entries.len()
    }

    /// Translates an outbound datagram from `private` to `destination`: the public source
    /// it leaves with, or `None` for a hairpin (dropped).
    pub fn outbound(
        &mut self,
        now: Instant,
        private: SocketAddrV4,
        destination: SocketAddrV4,
    ) -> Option<SocketAddrV4> {
        if *destination.ip() == self.public {
            self.counters.hairpin += 1;
            return None;
        }
        self.expire(now);
        let key = MappingKey {
            private,
            destination: match self.behaviour.mapping {
                Mapping::EndpointIndependent => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                Mapping::AddressDependent => SocketAddrV4::new(*destination.ip(), 0),
                Mapping::Symmetric => destination,
            },
        };
        let port = match self.entries.get(&key) {
            Some(entry) => entry.port,
            None => {
                let port = self.free_port(private.port());
                self.entries.insert(
                    key,
                    Entry {
                        port,
                        flows: BTreeMap::new(),
                    },
                );
                self.by_port.insert(port, key);
                port
            }
        };
        let entry = self.entries.get_mut(&key)?;
        let flow = entry.flows.entry(destination).or_insert(Flow {
            last: now,
            assured: false,
        });
        flow.last = now;
        Some(SocketAddrV4::new(self.public, port))
    }

    /// Translates an inbound datagram from `remote` to our public `port`: the private
    /// destination, or `None` when no mapping or the filter refuses it.
    pub fn inbound(
        &mut self,
        now: Instant,
        remote: SocketAddrV4,
        port: u16,
    ) -> Option<SocketAddrV4> {
        self.expire(now);
        let Some(key) = self.by_port.get(&port).copied() else {
            self.counters.no_mapping += 1;
            return None;
        };
        let filtering = self.behaviour.filtering;
        let entry = self.entries.get_mut(&key)?;
        let allowed = match filtering {
            Filtering::EndpointIndependent => true,
            Filtering::AddressDependent => entry.flows.keys().any(|r| r.ip() == remote.ip()),
            Filtering::AddressAndPortDependent => entry.flows.contains_key(&remote),
        };
        if !allowed {
            self.counters.filtered += 1;
            return None;
        }
        let flow = entry.flows.entry(remote).or_insert(Flow {
            last: now,
            assured: true,
        });
        flow.last = now;
        flow.assured = true;
        Some(key.private)
    }

    fn free_port(&mut self, preferred: u16) -> u16 {
        if self.behaviour.mapping != Mapping::Symmetric && !self.by_port.contains_key(&preferred) {
            return preferred;
        }
        loop {
            let span = u64::from(RANDOM_PORTS.end - RANDOM_PORTS.start);
            let port = RANDOM_PORTS.start + self.rng.below(span) as u16;
            if !self.by_port.contains_key(&port) {
                return port;
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|at| now < at) {
            return;
        }
        self.next_sweep = Some(now + SWEEP_INTERVAL);
        let behaviour = self.behaviour;
        let mut gone = Vec::new();
        for (key, entry) in &mut self.entries {
            entry.flows.retain(|_, flow| {
                let timeout = if flow.assured {
                    behaviour.assured_timeout
                } else {
                    behaviour.unreplied_timeout
                };
                now.saturating_duration_since(flow.last) < timeout
            });
            if entry.flows.is_empty() {
                gone.push((*key, entry.port));
            }
        }
        for (key, port) in gone {
            self.entries.remove(&key);
            self.by_port.remove(&port);
            self.counters.expired += 1;
        }
    }
}

/// `address` as IPv4 (the simulated internet is IPv4 only).
pub(crate) fn v4(address: SocketAddr) -> Option<SocketAddrV4> {
    match address {
        SocketAddr::V4(v4) => Some(v4),
        SocketAddr::V6(_) => None,
    }
}
