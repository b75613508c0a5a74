//! The simulation: nodes, sites, the server and the signaling backend on one simulated clock.
//!
//! # Driving
//!
//! Build with [`SimBuilder`], then [`Simulation::run_for`] / [`Simulation::run_until`]: each
//! step jumps the clock to the earliest thing due — a datagram or envelope arriving, a
//! controller's [`poll_timeout`](crate::product::Controller::poll_timeout), the server's
//! timer, a WireGuard stand-in keepalive — handles everything due then, and drains every
//! node that got an input (its transmits go into the network, its offers into the
//! signaling backend, its path events into the WireGuard stand-in). Nothing reads a clock or
//! an OS random source, so a seed replays a run (up to the `is` crate's own transaction ids,
//! which it draws from the thread RNG: the bytes differ, the decisions do not depend on them).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::clock::SimClock;
use crate::nat::Nat;
use crate::node::{KEEPALIVE, NodeSetup, SimNode};
use crate::product::{
    CandidateTypes, ControllerCounters, PathKind, PeerIceStatus, PrivateKey, PublicKey,
    SignalingMessage,
};
use crate::rng::SimRng;
use crate::signaling::{SignalingNet, SignalingProfile};
use crate::topology::{
    LinkProfile, MAX_SITES, SERVER, Site, SiteKind, lan_address, nat_public, public_address,
};
use crate::turn::SimTurnServer;

mod invariants;
mod network;

/// The TURN user every node is configured with.
pub const TURN_USER: &str = "wice";
/// Its password.
pub const TURN_PASSWORD: &str = "sim-secret";
/// A pair counts as connected only if each heard the other's WireGuard stand-in this
/// recently: three keepalives, so that a lossy link losing one or two in a row does not
/// count as a broken path (real WireGuard carries data and does not care).
pub const HEARD_WITHIN: Duration = Duration::from_secs(3 * KEEPALIVE.as_secs() + 5);
/// Steps at one instant before the simulation calls it a busy loop.
const MAX_STEPS_AT_ONE_INSTANT: u64 = 200_000;

/// Random-stream purposes.
mod stream {
    pub(super) const KEYS: u64 = 1;
    pub(super) const NETWORK: u64 = 2;
    pub(super) const SIGNALING: u64 = 3;
    pub(super) const SEALING: u64 = 4;
    pub(super) const NAT: u64 = 100;
}

/// What the whole simulation runs with.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The seed every random choice derives from.
    pub seed: u64,
    /// The signaling backend.
    pub signaling: SignalingProfile,
    /// The server's link.
    pub server_link: LinkProfile,
    /// One-way delay inside a LAN.
    pub lan_delay: Duration,
    /// Candidate types every node gathers.
    pub candidate_types: CandidateTypes,
    /// Whether nodes use the TURN server (they always use it for STUN).
    pub turn: bool,
}

impl SimConfig {
    /// Defaults under `seed`: 20 ms signaling, 5 ms server link, TURN on, every candidate type.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            signaling: SignalingProfile::default(),
            server_link: LinkProfile {
                delay: Duration::from_millis(5),
                ..LinkProfile::default()
            },
            lan_delay: Duration::from_micros(500),
            candidate_types: CandidateTypes::ALL,
            turn: true,
        }
    }
}

/// Builds a [`Simulation`].
#[derive(Debug)]
pub struct SimBuilder {
    config: SimConfig,
    sites: Vec<(SiteKind, LinkProfile)>,
    nodes: Vec<usize>,
}

impl SimBuilder {
    /// An empty world.
    pub fn new(config: SimConfig) -> Self {
        Self {
            config,
            sites: Vec::new(),
            nodes: Vec::new(),
        }
    }

    /// Adds a site; returns its index.
    pub fn site(&mut self, kind: SiteKind, link: LinkProfile) -> usize {
        assert!(self.sites.len() < MAX_SITES, "at most {MAX_SITES} sites");
        self.sites.push((kind, link));
        self.sites.len() - 1
    }

    /// Adds a node in `site`; returns its index. Every node is every other node's peer.
    pub fn node(&mut self, site: usize) -> usize {
        self.nodes.push(site);
        self.nodes.len() - 1
    }

    /// The simulation, started at time zero.
    pub fn build(self) -> Simulation {
        let clock = SimClock::new();
        let config = self.config;
        let seed = config.seed;
        let mut sites: Vec<Site> = self
            .sites
            .iter()
            .enumerate()
            .map(|(index, (kind, link))| Site {
                kind: *kind,
                link: *link,
                nat: match kind {
                    SiteKind::Public => None,
                    SiteKind::Nat(behaviour) => Some(Nat::new(
                        nat_public(index),
                        *behaviour,
                        SimRng::new(seed, stream::NAT + index as u64),
                    )),
                },
                placed: 1,
                cut: false,
            })
            .collect();
        let mut key_rng = SimRng::new(seed, stream::KEYS);
        let privates: Vec<PrivateKey> = self
            .nodes
            .iter()
            .map(|_| PrivateKey::from_bytes(key_rng.bytes32()))
            .collect();
        let keys: Vec<PublicKey> = privates.iter().map(PrivateKey::public_key).collect();
        let turn = (TURN_USER.to_owned(), TURN_PASSWORD.to_owned());
        let mut nodes = Vec::with_capacity(self.nodes.len());
        let mut setups = Vec::with_capacity(self.nodes.len());
        for (index, (site, private)) in self.nodes.iter().zip(privates).enumerate() {
            sites[*site].placed += 1;
            let placed = sites[*site].placed;
            let address = match sites[*site].kind {
                SiteKind::Public => public_address(*site, placed),
                SiteKind::Nat(_) => lan_address(*site, placed),
            };
            let setup = NodeSetup {
                peers: keys
                    .iter()
                    .enumerate()
                    .filter(|(other, _)| *other != index)
                    .map(|(_, key)| *key)
                    .collect(),
                candidate_types: config.candidate_types,
                stun: vec![SERVER],
                turn: config
                    .turn
                    .then(|| (SERVER, turn.0.clone(), turn.1.clone())),
                seed: seed.wrapping_mul(1_000_003).wrapping_add(index as u64),
            };
            nodes.push(SimNode::new(private, *site, address, &setup, clock.now()));
            setups.push(setup);
        }
        let by_key = keys.iter().enumerate().map(|(i, k)| (*k, i)).collect();
        let by_address = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.address, i))
            .collect();
        Simulation {
            clock,
            signaling: SignalingNet::new(
                config.signaling.clone(),
                SimRng::new(seed, stream::SIGNALING),
                SimRng::new(seed, stream::SEALING),
            ),
            net_rng: SimRng::new(seed, stream::NETWORK),
            server: SimTurnServer::new(SERVER, vec![turn]),
            config,
            sites,
            nodes,
            setups,
            by_key,
            by_address,
            queue: BinaryHeap::new(),
            sequence: 0,
            stats: NetStats::default(),
        }
    }
}

/// What the network did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Simulation steps (clock jumps).
    pub steps: u64,
    /// Datagrams put on the network.
    pub datagrams: u64,
    /// Lost to link loss or a cut link.
    pub lost: u64,
    /// To an address nothing routes to (another LAN, nowhere).
    pub unroutable: u64,
    /// Dropped by a NAT (hairpin, no mapping, filtered).
    pub nat_dropped: u64,
    /// Arrived at a node that was down.
    pub to_down_node: u64,
    /// WireGuard stand-ins sent.
    pub markers: u64,
    /// Datagrams a node asked to send from an address it does not have (`Transmit.source`):
    /// dropped, as the kernel refuses to send from an address not on any interface.
    pub wrong_source: u64,
}

#[derive(Debug)]
enum Payload {
    Datagram {
        from: SocketAddr,
        to: SocketAddr,
        data: Vec<u8>,
        /// Delivered inside this site's LAN (no NAT on the way).
        lan: bool,
    },
    Signal {
        to: usize,
        bytes: Vec<u8>,
    },
}

#[derive(Debug)]
struct Scheduled {
    at: Instant,
    sequence: u64,
    payload: Payload,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.sequence) == (other.at, other.sequence)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.sequence).cmp(&(other.at, other.sequence))
    }
}

/// See the module documentation.
pub struct Simulation {
    /// The simulated clock.
    pub clock: SimClock,
    config: SimConfig,
    sites: Vec<Site>,
    nodes: Vec<SimNode>,
    setups: Vec<NodeSetup>,
    by_key: BTreeMap<PublicKey, usize>,
    by_address: BTreeMap<SocketAddr, usize>,
    server: SimTurnServer,
    signaling: SignalingNet,
    net_rng: SimRng,
    queue: BinaryHeap<Reverse<Scheduled>>,
    sequence: u64,
    /// What the network did.
    pub stats: NetStats,
}

impl Simulation {
    /// The configuration it runs with.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The nodes.
    pub fn nodes(&self) -> &[SimNode] {
        &self.nodes
    }

    /// Node `index`.
    pub fn node(&self, index: usize) -> &SimNode {
        &self.nodes[index]
    }

    /// The sites.
    pub fn sites(&self) -> &[Site] {
        &self.sites
    }

    /// Site `index`, to change at run time (cut its link, read its NAT).
    pub fn site_mut(&mut self, index: usize) -> &mut Site {
        &mut self.sites[index]
    }

    /// Live mappings of site `index`'s NAT (expiring the idle ones first).
    pub fn nat_mappings(&mut self, index: usize) -> Option<usize> {
        let now = self.clock.now();
        self.sites[index].nat.as_mut().map(|nat| nat.mappings(now))
    }

    /// The TURN/STUN server.
    pub fn server(&self) -> &SimTurnServer {
        &self.server
    }

    /// The signaling backend.
    pub fn signaling(&self) -> &SignalingNet {
        &self.signaling
    }

    /// The signaling backend, to add outages.
    pub fn signaling_mut(&mut self) -> &mut SignalingNet {
        &mut self.signaling
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        self.clock.elapsed()
    }

    /// Runs for `duration` of simulated time.
    pub fn run_for(&mut self, duration: Duration) {
        let until = self.clock.now() + duration;
        self.run_until(until);
    }

    /// Runs until `until`.
    pub fn run_until(&mut self, until: Instant) {
        let mut last = None;
        let mut at_one_instant = 0u64;
        loop {
            self.flush_dirty();
            let Some(next) = self.next_deadline().filter(|at| *at <= until) else {
                self.clock.advance_to(until);
                return;
            };
            let next = next.max(self.clock.now());
            if last == Some(next) {
                at_one_instant += 1;
                assert!(
                    at_one_instant < MAX_STEPS_AT_ONE_INSTANT,
                    "busy loop: {at_one_instant} steps at {:?} (seed {}); due: {}",
                    self.clock.elapsed(),
                    self.config.seed,
                    self.due_timeouts(next)
                );
            } else {
                at_one_instant = 0;
                last = Some(next);
            }
            self.clock.advance_to(next);
            self.step();
        }
    }

    /// Runs until every pair in `pairs` is connected, checking every 100 ms of simulated
    /// time; returns the simulated time it took, or the pairs still apart at `timeout`.
    pub fn run_until_connected(
        &mut self,
        pairs: &[(usize, usize)],
        timeout: Duration,
    ) -> Result<Duration, Vec<(usize, usize)>> {
        let start = self.clock.now();
        loop {
            let apart: Vec<(usize, usize)> = pairs
                .iter()
                .copied()
                .filter(|(a, b)| !self.connected(*a, *b))
                .collect();
            if apart.is_empty() {
                return Ok(self.clock.now() - start);
            }
            if self.clock.now() - start >= timeout {
                return Err(apart);
            }
            self.run_for(Duration::from_millis(100));
        }
    }

    /// Every pair of nodes.
    pub fn all_pairs(&self) -> Vec<(usize, usize)> {
        let n = self.nodes.len();
        (0..n)
            .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
            .collect()
    }

    /// Whether `a` and `b` both point WireGuard at each other and each heard the other's
    /// stand-in lately: the path is nominated on both sides and the network carries it.
    pub fn connected(&self, a: usize, b: usize) -> bool {
        let now = self.clock.now();
        let heard = |x: &SimNode, y: &SimNode| {
            x.up && x.paths.contains_key(&y.key)
                && x.heard
                    .get(&y.key)
                    .is_some_and(|at| now.saturating_duration_since(*at) <= HEARD_WITHIN)
        };
        let (na, nb) = (&self.nodes[a], &self.nodes[b]);
        heard(na, nb) && heard(nb, na)
    }

    /// The path kinds `a` and `b` use for each other, as their status says (the kind of a
    /// direct path is settled once the peer's offer names the address: see `path_kind` in
    /// the controller), or as the latest path event said.
    pub fn path_kinds(&self, a: usize, b: usize) -> (Option<PathKind>, Option<PathKind>) {
        let kind = |x: usize, y: usize| {
            let (nx, ny) = (&self.nodes[x], &self.nodes[y]);
            let event = nx.paths.get(&ny.key).map(|p| p.kind);
            let status = nx.controller.status().get(&ny.key).and_then(|s| s.path);
            status.or(event)
        };
        (kind(a, b), kind(b, a))
    }

    /// How a pair is connected: `host`, `direct` (through NATs without a relay) or `relay`.
    pub fn path_class(&self, a: usize, b: usize) -> &'static str {
        match self.path_kinds(a, b) {
            (Some(PathKind::Relay), _) | (_, Some(PathKind::Relay)) => "relay",
            (Some(PathKind::Host), Some(PathKind::Host)) => "host",
            (Some(_), Some(_)) => "direct",
            _ => "none",
        }
    }

    /// `a`'s status of `b`, as `wice status` shows it.
    pub fn status(&self, a: usize, b: usize) -> PeerIceStatus {
        let key = self.nodes[b].key;
        self.nodes[a].controller.status()[&key].clone()
    }

    /// Node `index`'s controller counters.
    pub fn counters(&self, index: usize) -> ControllerCounters {
        self.nodes[index].controller.counters()
    }

    /// Kills node `index` (its process stops; datagrams and envelopes to it are lost).
    pub fn stop_node(&mut self, index: usize) {
        self.nodes[index].up = false;
    }

    /// Starts node `index` again as a new process (new sessions, new boot id).
    pub fn restart_node(&mut self, index: usize) {
        let now = self.clock.now();
        let setup = self.setups[index].clone();
        self.nodes[index].restart(&setup, now);
    }

    /// Gives node `index` the `n`th address of its site instead of its own (a DHCP
    /// renumbering); the controller learns it as the daemon's address scan would.
    pub fn renumber_node(&mut self, index: usize, n: u8) {
        let now = self.clock.now();
        let site = self.nodes[index].site;
        let address = match self.sites[site].kind {
            SiteKind::Public => public_address(site, n),
            SiteKind::Nat(_) => lan_address(site, n),
        };
        let node = &mut self.nodes[index];
        self.by_address.remove(&node.address);
        node.address = address;
        self.by_address.insert(address, index);
        let turn = SimNode::turn_servers(address, &self.setups[index]);
        node.controller.handle_addresses(now, vec![address], &turn);
        node.dirty = true;
    }

    /// Makes the TURN server forget everything, nonces included (a server restart).
    pub fn restart_turn_server(&mut self) {
        self.server.lose_state(&self.clock);
    }

    /// Makes the TURN server delete every allocation; returns how many it deleted.
    pub fn delete_turn_allocations(&mut self) -> usize {
        self.server.delete_allocations(&self.clock)
    }

    fn schedule(&mut self, at: Instant, payload: Payload) {
        self.sequence += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            sequence: self.sequence,
            payload,
        }));
    }

    fn next_deadline(&self) -> Option<Instant> {
        let queue = self.queue.peek().map(|Reverse(s)| s.at);
        let nodes = self
            .nodes
            .iter()
            .filter(|n| n.up)
            .flat_map(|n| [n.deadline.map(|(at, _)| at), n.next_keepalive])
            .flatten();
        queue
            .into_iter()
            .chain(nodes)
            .chain(self.server.poll_timeout())
            .min()
    }

    /// Which nodes' controllers are due at `at`, and why: what a busy loop reports.
    fn due_timeouts(&self, at: Instant) -> String {
        let due: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(index, node)| match node.deadline {
                Some((deadline, reason)) if node.up && deadline <= at => {
                    Some(format!("node {index}: {reason:?}"))
                }
                _ => None,
            })
            .collect();
        if due.is_empty() {
            "no controller (datagrams, keepalives or the server)".to_owned()
        } else {
            due.join(", ")
        }
    }

    /// Handles everything due at the clock's now.
    fn step(&mut self) {
        self.stats.steps += 1;
        let now = self.clock.now();
        while self.queue.peek().is_some_and(|Reverse(s)| s.at <= now) {
            let Some(Reverse(scheduled)) = self.queue.pop() else {
                break;
            };
            match scheduled.payload {
                Payload::Datagram {
                    from,
                    to,
                    data,
                    lan,
                } => self.arrive(from, to, data, lan),
                Payload::Signal { to, bytes } => self.signal_arrives(to, &bytes),
            }
        }
        for index in 0..self.nodes.len() {
            let node = &mut self.nodes[index];
            if !node.up {
                continue;
            }
            if node.deadline.is_some_and(|(at, _)| at <= now) {
                node.controller.handle_timeout(now);
                node.dirty = true;
            }
            if node.next_keepalive.is_some_and(|at| at <= now) {
                for peer in node.due_markers(now) {
                    self.send_marker(index, &peer);
                }
            }
        }
        if self.server.poll_timeout().is_some_and(|at| at <= now) {
            let out = self.server.handle_timeout(&self.clock);
            self.server_sends(out);
        }
    }

    fn flush_dirty(&mut self) {
        for index in 0..self.nodes.len() {
            if self.nodes[index].dirty && self.nodes[index].up {
                self.flush(index);
            }
        }
    }

    /// Drains node `index`'s outputs into the network and the backend.
    fn flush(&mut self, index: usize) {
        let now = self.clock.now();
        let node = &mut self.nodes[index];
        let mut transmits = Vec::new();
        while let Some(transmit) = node.controller.poll_transmit() {
            transmits.push(transmit);
        }
        let mut changed = Vec::new();
        while let Some(event) = node.controller.poll_event() {
            changed.extend(node.handle_event(event, now));
        }
        let mut offers = Vec::new();
        while let Some(offer) = node.controller.poll_offer() {
            offers.push(offer);
        }
        node.deadline = node.controller.poll_timeout(now);
        node.dirty = false;
        let source = node.address;
        for transmit in transmits {
            // A node has one address; the product names the one each datagram leaves from.
            if transmit.source.is_some_and(|from| from != source) {
                self.stats.wrong_source += 1;
                continue;
            }
            self.send_from_node(index, source, transmit.destination, transmit.contents);
        }
        for peer in changed {
            self.send_marker(index, &peer);
        }
        for (peer, offer) in offers {
            let Some(&to) = self.by_key.get(&peer) else {
                continue;
            };
            self.nodes[index].offers_published += 1;
            let message = SignalingMessage::SessionDescription(offer);
            let deliveries =
                self.signaling
                    .publish(&self.clock, &mut self.nodes[index].sealer, &peer, &message);
            for (at, bytes) in deliveries {
                self.schedule(at, Payload::Signal { to, bytes });
            }
        }
    }

    fn send_marker(&mut self, index: usize, peer: &PublicKey) {
        let node = &self.nodes[index];
        if let Some((to, data)) = node.marker_for(peer) {
            let source = node.address;
            self.stats.markers += 1;
            self.send_from_node(index, source, to, data);
        }
    }

    fn signal_arrives(&mut self, to: usize, bytes: &[u8]) {
        let now = self.clock.now();
        let system_now = self.clock.system_now();
        let node = &mut self.nodes[to];
        if !node.up {
            return;
        }
        match node.opener.open_bytes(bytes, system_now) {
            Ok((sender, SignalingMessage::SessionDescription(offer))) => {
                self.signaling.counters.delivered += 1;
                node.controller.handle_signal(now, sender, offer);
                node.dirty = true;
            }
            // The simulated meshes are configured, not discovered: no node announces.
            Ok((_, SignalingMessage::Announcement(_))) | Err(_) => {
                self.signaling.counters.refused += 1;
            }
        }
    }
}
