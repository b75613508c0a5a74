//! A simulated node: the product's ICE [`Controller`], its envelope sealer and opener, and a
//! stand-in for WireGuard that only proves a path carries datagrams both ways.
//!
//! WireGuard data is not simulated. When the controller points a peer at a path, the node
//! sends a marker datagram along it (WireGuard's data type byte, then the sender's key) and
//! again every [`KEEPALIVE`]; the receiving node notes whom it heard from. A pair is connected
//! when both controllers say so and both heard the other recently: the network's physics
//! (NATs, losses, the relay) allowed the nominated path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::product::{
    CandidateTypes, Controller, ControllerEvent, Endpoint, Opener, PathKind, PrivateKey, PublicKey,
    Sealer, SenderPolicy, Sources, TimeoutReason, TurnServer,
};

/// How often a node sends its WireGuard stand-in along a path the peer answered on
/// (WireGuard's persistent keepalive as commonly configured).
pub const KEEPALIVE: Duration = Duration::from_secs(25);
/// How often it sends along a path the peer has not answered on yet (WireGuard retries a
/// handshake after `REKEY_TIMEOUT`, 5 s).
pub const HANDSHAKE_RETRY: Duration = Duration::from_secs(5);
/// The marker's first bytes: WireGuard's transport data type.
const MARKER_TYPE: [u8; 4] = [4, 0, 0, 0];
/// The marker's length: type, key, padding to a WireGuard keepalive's 32 bytes and more.
const MARKER_LEN: usize = 48;

/// A path the controller chose for a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChosenPath {
    /// Where WireGuard goes.
    pub target: Endpoint,
    /// What kind of path.
    pub kind: PathKind,
    /// When it was chosen.
    pub since: Instant,
    /// When the stand-in last went along it.
    pub last_sent: Instant,
}

/// See the module documentation.
pub struct SimNode {
    /// The node's key.
    pub key: PublicKey,
    private: PrivateKey,
    /// The site (LAN) it sits in.
    pub site: usize,
    /// Its interface address and listening port.
    pub address: SocketAddr,
    /// Whether its process runs.
    pub up: bool,
    /// Times it was (re)started.
    pub boots: u64,
    pub(crate) controller: Controller,
    pub(crate) sealer: Sealer,
    pub(crate) opener: Opener,
    /// The path per peer, as the latest `PathChanged` said.
    pub paths: BTreeMap<PublicKey, ChosenPath>,
    /// When each peer's WireGuard stand-in last arrived.
    pub heard: BTreeMap<PublicKey, Instant>,
    /// `PathChanged` events seen.
    pub path_changes: u64,
    /// Offers published.
    pub offers_published: u64,
    /// Datagrams sent (control and markers).
    pub datagrams_sent: u64,
    /// The controller's cached deadline and its reason (valid unless `dirty`).
    pub(crate) deadline: Option<(Instant, TimeoutReason)>,
    pub(crate) dirty: bool,
    pub(crate) next_keepalive: Option<Instant>,
}

/// What a node needs to build its controller.
#[derive(Debug, Clone)]
pub(crate) struct NodeSetup {
    pub(crate) peers: Vec<PublicKey>,
    pub(crate) candidate_types: CandidateTypes,
    pub(crate) stun: Vec<SocketAddr>,
    pub(crate) turn: Option<(SocketAddr, String, String)>,
    pub(crate) seed: u64,
}

impl SimNode {
    pub(crate) fn new(
        private: PrivateKey,
        site: usize,
        address: SocketAddr,
        setup: &NodeSetup,
        now: Instant,
    ) -> Self {
        let key = private.public_key();
        let controller = Self::new_controller(key, address, setup, 0, now);
        let opener = Opener::new(
            &private,
            SenderPolicy::Only(setup.peers.iter().copied().collect()),
        );
        Self {
            key,
            sealer: Sealer::new(&private),
            private,
            site,
            address,
            up: true,
            boots: 1,
            controller,
            opener,
            paths: BTreeMap::new(),
            heard: BTreeMap::new(),
            path_changes: 0,
            offers_published: 0,
            datagrams_sent: 0,
            deadline: None,
            dirty: true,
            next_keepalive: None,
        }
    }

    fn new_controller(
        key: PublicKey,
        address: SocketAddr,
        setup: &NodeSetup,
        boot: u64,
        now: Instant,
    ) -> Controller {
        let sources = Sources {
            candidate_types: setup.candidate_types,
            host: vec![address],
            stun: setup.stun.clone(),
            turn: Self::turn_servers(address, setup),
            mesh: Vec::new(),
        };
        let seed = setup.seed ^ boot.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Controller::new(key, &setup.peers, sources, seed, now)
    }

    pub(crate) fn turn_servers(address: SocketAddr, setup: &NodeSetup) -> Vec<TurnServer> {
        setup
            .turn
            .iter()
            .map(|(server, user, password)| TurnServer {
                address: *server,
                local: address,
                username: user.clone(),
                credential: password.as_str().into(),
            })
            .collect()
    }

    /// A crash and a start: a new controller (new sessions), a new sealer (new boot id), a
    /// new opener; paths and what was heard are gone with the process.
    pub(crate) fn restart(&mut self, setup: &NodeSetup, now: Instant) {
        self.controller = Self::new_controller(self.key, self.address, setup, self.boots, now);
        self.boots += 1;
        self.sealer = Sealer::new(&self.private);
        self.opener = Opener::new(
            &self.private,
            SenderPolicy::Only(setup.peers.iter().copied().collect()),
        );
        self.paths.clear();
        self.heard.clear();
        self.up = true;
        self.dirty = true;
        self.next_keepalive = None;
    }

    /// The controller (read-only), for status and counters.
    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    /// Applies a controller event.
    pub(crate) fn handle_event(
        &mut self,
        event: ControllerEvent,
        now: Instant,
    ) -> Option<PublicKey> {
        match event {
            ControllerEvent::PathChanged { peer, target, kind } => {
                self.path_changes += 1;
                self.paths.insert(
                    peer,
                    ChosenPath {
                        target,
                        kind,
                        since: now,
                        last_sent: now,
                    },
                );
                self.next_keepalive = Some(
                    self.next_keepalive
                        .map_or(now + HANDSHAKE_RETRY, |at| at.min(now + HANDSHAKE_RETRY)),
                );
                Some(peer)
            }
        }
    }

    /// Whether `peer` answered on its current path (a handshake completed, in WireGuard's
    /// terms).
    fn answered(&self, peer: &PublicKey) -> bool {
        let since = self.paths.get(peer).map(|p| p.since);
        since.is_some_and(|since| self.heard.get(peer).is_some_and(|at| *at >= since))
    }

    /// The WireGuard stand-in to send to `peer` along its path: (destination, bytes). Until
    /// the peer answered, it asks for an answer, as a handshake initiation does.
    pub(crate) fn marker_for(&self, peer: &PublicKey) -> Option<(SocketAddr, Vec<u8>)> {
        let path = self.paths.get(peer)?;
        let mut marker = Vec::with_capacity(MARKER_LEN + 4);
        marker.extend_from_slice(&MARKER_TYPE);
        marker.extend_from_slice(self.key.as_bytes());
        marker.push(u8::from(!self.answered(peer)));
        marker.resize(MARKER_LEN, 0);
        Some(match path.target {
            Endpoint::Direct(to) => (to, marker),
            Endpoint::Relayed { server, channel } => {
                let mut framed = Vec::with_capacity(marker.len() + 4);
                framed.extend_from_slice(&channel.to_be_bytes());
                framed.extend_from_slice(&(marker.len() as u16).to_be_bytes());
                framed.extend_from_slice(&marker);
                (server, framed)
            }
        })
    }

    /// The peers whose stand-in is due at `now` (marking it sent), and when the next is due.
    pub(crate) fn due_markers(&mut self, now: Instant) -> Vec<PublicKey> {
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        for (peer, path) in &mut self.paths {
            let answered = self.heard.get(peer).is_some_and(|at| *at >= path.since);
            let period = if answered { KEEPALIVE } else { HANDSHAKE_RETRY };
            if path.last_sent + period <= now {
                path.last_sent = now;
                due.push(*peer);
            }
            let at = path.last_sent + period;
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        self.next_keepalive = next;
        due
    }

    /// Notes a WireGuard stand-in: `None` if it is not one, else the peer to answer at once
    /// (it asked, and we have a path to it), if any.
    pub(crate) fn handle_marker(
        &mut self,
        payload: &[u8],
        now: Instant,
    ) -> Option<Option<PublicKey>> {
        if payload.len() < 37 || payload[..4] != MARKER_TYPE {
            return None;
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&payload[4..36]);
        let peer = PublicKey::from(key);
        self.heard.insert(peer, now);
        let asked = payload[36] == 1;
        Some((asked && self.paths.contains_key(&peer)).then_some(peer))
    }
}
