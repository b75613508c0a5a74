//! A TURN allocation on the WireGuard socket: the relayed candidate, permissions and channels.
//!
//! The TURN protocol itself is `turn-client-proto` (sans-IO: Allocate with the 401 retry,
//! Refresh, CreatePermission, ChannelBind, stale-nonce retry). This wrapper adds what wice
//! needs around it: a deadline for the allocation (wrong credentials otherwise fail silently
//! for ~30 s), the channel number of each bound peer (the datapath frames WireGuard in
//! ChannelData itself, so it must know it), and conversion between our `Instant` and the
//! crate's.
//!
//! **What is installed follows what the owner wants.** The owner says which peer addresses
//! need a permission (the candidates of peers' current offers) and which need a channel (the
//! remotes of nominated relayed paths) with [`Relay::set_wanted`]. The crate refreshes every
//! permission and channel it ever made and has no way to release one, so this wrapper drops
//! its refresh requests for what is no longer wanted: the server lets those expire (5 min for
//! a permission, 10 for a channel) and the crate then forgets them, freeing the channel
//! number. The owner bounds how much each peer may have installed or expiring.
//!
//! **A lost allocation is replaced at once.** The server says so with 437 (Allocation
//! Mismatch) to one of our requests, the crate reports the allocation closed, or relayed
//! checks go unanswered and a Refresh of ours finds the allocation or the server gone
//! ([`super::relay_probe`]: a server that dropped it silently is noticed within seconds,
//! not at the next refresh); a new
//! Allocate follows after [`REALLOCATE_AFTER_LOSS`], and [`RelayEvent::Failed`] names the
//! relayed address that is gone so no session keeps or nominates a path through it.
//!
//! # Driving
//!
//! Send [`Relay::poll_transmit`]'s datagrams to [`Relay::server`]; hand every datagram from
//! the server to [`Relay::handle_datagram`]; call [`Relay::handle_timeout`] at
//! [`Relay::poll_timeout`]; drain [`Relay::poll_event`].

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use turn_client_proto::api::{DelayedMessageOrChannelSend, TurnConfig, TurnEvent, TurnPollRet};
use turn_client_proto::prelude::*;
use turn_client_proto::stun::agent::Transmit as TurnTransmit;
use turn_client_proto::types::TurnCredentials;
use turn_client_proto::types::attribute::XorPeerAddress;
use turn_client_proto::types::message::{CHANNEL_BIND, CREATE_PERMISSION};
use turn_client_proto::types::stun::TransportType;
use turn_client_proto::types::stun::attribute::ErrorCode;
use turn_client_proto::types::stun::message::{Message, MessageClass};
use turn_client_proto::udp::TurnClientUdp;

use super::relay_probe::{AllocationProbe, AllocationVerdict};
use crate::Transmit;
use crate::secret::SecretString;
use crate::wire::classify::is_stun;

/// How long an allocation may take before the relay counts as failed (the crate itself
/// only notices wrong credentials after its own retransmissions, ~30 s).
pub(super) const ALLOCATE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a failed or closed allocation waits before a new Allocate: servers restart,
/// and coturn closes an allocation when relaying to a peer fails with a network error.
pub(super) const REALLOCATE_AFTER: Duration = Duration::from_secs(10);
/// How long a working allocation that was lost waits before a new Allocate: at once in
/// practice (the loss was an answer from the server, so it is up), paced only so a server
/// that keeps dropping allocations cannot make us loop.
pub(crate) const REALLOCATE_AFTER_LOSS: Duration = Duration::from_millis(250);

/// Where the allocation stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayState {
    /// Allocate sent, no answer yet.
    Allocating,
    /// The server relays for us from this address.
    Allocated(SocketAddr),
    /// No allocation, for the reason given.
    Failed(RelayFailure),
}

/// Why a relay has no allocation (`wice status` words them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelayFailure {
    /// The server answered 437 to a Refresh sent because relayed checks went unanswered: it
    /// had lost the allocation.
    LostAfterUnansweredChecks,
    /// The server answered 437 (Allocation Mismatch).
    AllocationMismatch,
    /// Relayed checks and a Refresh went unanswered.
    StoppedAnswering,
    /// Allocate was never answered: the server is unreachable, or the credentials are wrong
    /// (the client cannot tell them apart).
    NoAnswerToAllocate,
    /// The TURN client closed the allocation: the server closed or refused it.
    Closed,
    /// The server refused the allocation.
    Refused,
}

/// Something the owner should act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayEvent {
    /// The allocation exists: a relayed candidate for every session.
    Allocated(SocketAddr),
    /// The allocation failed or closed.
    Failed {
        /// Why.
        why: RelayFailure,
        /// The relayed address of the allocation that was lost, if one worked.
        lost: Option<SocketAddr>,
    },
    /// A channel to `peer` is bound: WireGuard to it can use ChannelData on `channel`.
    ChannelBound {
        /// The peer's address as the server sees it.
        peer: SocketAddr,
        /// The channel number (0x4000..=0x4FFF).
        channel: u16,
    },
}

/// What a datagram from the server carried.
#[derive(Debug, PartialEq, Eq)]
pub enum RelayReceive {
    /// TURN control traffic, handled.
    Handled,
    /// Not for this client (for instance the answer to a plain Binding probe).
    Ignored,
    /// Data a peer sent to our relayed address.
    PeerData {
        /// The peer's address.
        peer: SocketAddr,
        /// What it sent.
        data: Vec<u8>,
    },
}

/// One TURN server's allocation for this node. `Debug` leaves out the credentials (and the
/// crate's client, whose own `Debug` would print the password).
pub struct Relay {
    client: TurnClientUdp,
    /// What a new allocation after a failure needs.
    local: SocketAddr,
    credentials: (String, SecretString),
    reallocate_at: Option<Instant>,
    /// The zero of the crate's clock.
    epoch: Instant,
    state: RelayState,
    allocate_deadline: Option<Instant>,
    channels: HashMap<SocketAddr, u16>,
    /// Peers a ChannelBind was sent for: a second bind of the same peer would take another
    /// channel number, which the server refuses (RFC 8656 §12.2).
    requested: HashSet<SocketAddr>,
    /// Peer addresses the owner wants a permission for.
    wanted_permissions: BTreeSet<IpAddr>,
    /// Peer addresses the owner wants a channel to.
    wanted_channels: BTreeSet<SocketAddr>,
    /// Refreshes of permissions and channels nobody wants any more, not sent.
    refreshes_dropped: u64,
    /// Asks the server whether the allocation lives when relayed checks go unanswered.
    probe: AllocationProbe,
    events: VecDeque<RelayEvent>,
}

impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("server", &self.server())
            .field("local", &self.local)
            .field("username", &self.credentials.0)
            .field("state", &self.state)
            .field("channels", &self.channels.len())
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// Starts an allocation on `server` from our address `local` (the address the server
    /// will see as the 5-tuple's client side before NAT) at `now`.
    pub fn new(
        local: SocketAddr,
        server: SocketAddr,
        username: &str,
        credential: &str,
        now: Instant,
    ) -> Self {
        let config = TurnConfig::new(TurnCredentials::new(username, credential));
        Self {
            client: TurnClientUdp::allocate(local, server, config),
            local,
            credentials: (username.to_owned(), SecretString::new(credential)),
            reallocate_at: None,
            epoch: now,
            state: RelayState::Allocating,
            allocate_deadline: Some(now + ALLOCATE_TIMEOUT),
            channels: HashMap::new(),
            requested: HashSet::new(),
            wanted_permissions: BTreeSet::new(),
            wanted_channels: BTreeSet::new(),
            refreshes_dropped: 0,
            probe: AllocationProbe::default(),
            events: VecDeque::new(),
        }
    }

    fn time(&self, now: Instant) -> turn_client_proto::stun::Instant {
        let nanos = now.saturating_duration_since(self.epoch).as_nanos();
        turn_client_proto::stun::Instant::from_nanos(i64::try_from(nanos).unwrap_or(i64::MAX))
    }

    fn instant(&self, time: turn_client_proto::stun::Instant) -> Instant {
        let zero = turn_client_proto::stun::Instant::from_nanos(0);
        self.epoch + time.saturating_duration_since(zero)
    }

    /// Our address the allocation was requested from.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// The TURN server.
    pub fn server(&self) -> SocketAddr {
        self.client.remote_addr()
    }

    /// Where the allocation stands.
    pub fn state(&self) -> &RelayState {
        &self.state
    }

    /// The relayed address, once allocated.
    pub fn relayed(&self) -> Option<SocketAddr> {
        match self.state {
            RelayState::Allocated(address) => Some(address),
            _ => None,
        }
    }

    /// Whether the first allocation attempt is over (allocated or failed).
    pub fn settled(&self) -> bool {
        self.state != RelayState::Allocating
    }

    /// The channel bound to `peer`, if any.
    pub fn channel(&self, peer: SocketAddr) -> Option<u16> {
        self.channels.get(&peer).copied()
    }

    /// Permissions for `permissions` and channels to `channels` from now on: what is new is
    /// requested (once the allocation exists), what is no longer listed is not refreshed.
    pub fn set_wanted(
        &mut self,
        now: Instant,
        permissions: BTreeSet<IpAddr>,
        channels: BTreeSet<SocketAddr>,
    ) {
        let new_permissions: Vec<IpAddr> = permissions
            .difference(&self.wanted_permissions)
            .copied()
            .collect();
        self.wanted_permissions = permissions;
        self.wanted_channels = channels;
        for ip in new_permissions {
            self.request_permission(now, ip);
        }
        let channels: Vec<SocketAddr> = self.wanted_channels.iter().copied().collect();
        for peer in channels {
            self.request_channel(now, peer);
        }
        self.pump(now);
    }

    /// Peer addresses with a permission wanted, and peers with a channel wanted.
    pub fn wanted(&self) -> (&BTreeSet<IpAddr>, &BTreeSet<SocketAddr>) {
        (&self.wanted_permissions, &self.wanted_channels)
    }

    /// Peers the crate holds a channel to (bound, being bound, or expiring unrefreshed).
    pub fn channels_installed(&self) -> usize {
        self.requested.len()
    }

    /// Permissions the crate holds (wanted or expiring unrefreshed).
    pub fn permissions_installed(&self) -> usize {
        self.relayed().map_or(0, |relayed| {
            self.client.permissions(TransportType::Udp, relayed).count()
        })
    }

    /// Refresh requests dropped because nobody wants what they would refresh.
    pub fn refreshes_dropped(&self) -> u64 {
        self.refreshes_dropped
    }

    fn same_family(&self, ip: IpAddr) -> bool {
        self.relayed()
            .is_some_and(|relayed| relayed.is_ipv4() == ip.is_ipv4())
    }

    fn request_permission(&mut self, now: Instant, ip: IpAddr) {
        if !self.same_family(ip) {
            return;
        }
        let time = self.time(now);
        // `AlreadyExists` is fine: a permission released earlier is still installed, and its
        // next refresh goes out again now that it is wanted.
        if let Err(error) = self.client.create_permission(TransportType::Udp, ip, time) {
            tracing::trace!(%ip, %error, "TURN permission not requested");
        }
    }

    /// ChannelBind installs the permission too (RFC 8656 §12.2); the crate only lets
    /// `send_to` use it once the server confirmed.
    fn request_channel(&mut self, now: Instant, peer: SocketAddr) {
        if !self.same_family(peer.ip()) || !self.requested.insert(peer) {
            return;
        }
        let time = self.time(now);
        if let Err(error) = self.client.bind_channel(TransportType::Udp, peer, time) {
            tracing::debug!(%peer, %error, "TURN channel bind not sent");
        }
    }

    /// Whether `datagram` (from the crate, to the server) refreshes a permission or channel
    /// nobody wants.
    fn unwanted_refresh(&self, datagram: &[u8]) -> bool {
        let Ok(message) = Message::from_bytes(datagram) else {
            return false;
        };
        if !message.has_class(MessageClass::Request) {
            return false;
        }
        let method = message.method();
        if method != CREATE_PERMISSION && method != CHANNEL_BIND {
            return false;
        }
        let Ok(peer) = message.attribute::<XorPeerAddress>() else {
            return false;
        };
        let peer = peer.addr(message.transaction_id());
        if method == CHANNEL_BIND {
            !self.wanted_channels.contains(&peer)
        } else {
            !self.wanted_permissions.contains(&peer.ip())
                && !self.wanted_channels.iter().any(|c| c.ip() == peer.ip())
        }
    }

    /// Wraps `data` for `peer` (ChannelData when a channel is bound, else a Send indication)
    /// into a transmit to the server. `None` until the server confirmed a permission for the
    /// peer.
    pub fn send_to(&mut self, now: Instant, peer: SocketAddr, data: &[u8]) -> Option<Transmit> {
        let time = self.time(now);
        match self.client.send_to(TransportType::Udp, peer, data, time) {
            Ok(Some(transmit)) => {
                if is_stun_request(data) {
                    self.probe.handle_relayed_request(now);
                }
                Some(self.to_server(transmit.build().data))
            }
            Ok(None) | Err(_) => None,
        }
    }

    /// A datagram that arrived from the server.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) -> RelayReceive {
        match self.probe.handle_server_datagram(datagram) {
            Some(AllocationVerdict::Mismatch) => {
                self.fail(now, RelayFailure::LostAfterUnansweredChecks);
                return RelayReceive::Handled;
            }
            Some(_) => return RelayReceive::Handled,
            None => {}
        }
        let time = self.time(now);
        let transmit = TurnTransmit {
            data: datagram,
            transport: TransportType::Udp,
            from: self.client.remote_addr(),
            to: self.client.local_addr(),
        };
        let received = match self.client.recv(transmit, time) {
            turn_client_proto::api::TurnRecvRet::Handled if allocation_mismatch(datagram) => {
                // An answer to one of our own requests (the crate matched its transaction):
                // the server no longer has our allocation.
                self.fail(now, RelayFailure::AllocationMismatch);
                RelayReceive::Handled
            }
            turn_client_proto::api::TurnRecvRet::Handled => RelayReceive::Handled,
            turn_client_proto::api::TurnRecvRet::Ignored(_) => RelayReceive::Ignored,
            turn_client_proto::api::TurnRecvRet::PeerData(data) => {
                self.probe.handle_peer_data(data.data());
                RelayReceive::PeerData {
                    peer: data.peer,
                    data: data.data().to_vec(),
                }
            }
            turn_client_proto::api::TurnRecvRet::PeerIcmp { .. } => RelayReceive::Handled,
        };
        self.pump(now);
        received
    }

    /// Refreshes, retransmits, the allocation deadline and re-allocation after a failure.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.reallocate_at.is_some_and(|at| now >= at) {
            self.reallocate_at = None;
            let server = self.client.remote_addr();
            let (username, credential) = &self.credentials;
            let config = TurnConfig::new(TurnCredentials::new(username, credential.expose()));
            self.client = TurnClientUdp::allocate(self.local, server, config);
            self.epoch = now;
            self.state = RelayState::Allocating;
            self.allocate_deadline = Some(now + ALLOCATE_TIMEOUT);
            self.channels.clear();
            self.requested.clear();
            self.probe.reset();
        }
        if matches!(self.state, RelayState::Allocated(_)) {
            let (username, credential) = &self.credentials;
            let outcome = self
                .probe
                .handle_timeout(now, username, credential.expose());
            if outcome == Some(AllocationVerdict::Unanswered) {
                self.fail(now, RelayFailure::StoppedAnswering);
            }
        }
        if self.allocate_deadline.is_some_and(|at| now >= at) {
            self.allocate_deadline = None;
            if self.state == RelayState::Allocating {
                self.fail(now, RelayFailure::NoAnswerToAllocate);
            }
        }
        self.pump(now);
    }

    /// When [`Relay::handle_timeout`] has work.
    pub fn poll_timeout(&mut self, now: Instant) -> Option<Instant> {
        let time = self.time(now);
        let client = match self.client.poll(time) {
            TurnPollRet::WaitUntil(at) => Some(self.instant(at)),
            _ => None,
        };
        let probe = match self.state {
            RelayState::Allocated(_) => self.probe.poll_timeout(),
            _ => None,
        };
        [client, self.allocate_deadline, self.reallocate_at, probe]
            .into_iter()
            .flatten()
            .min()
    }

    /// A datagram to send to [`Relay::server`].
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if let Some(probe) = self.probe.poll_transmit() {
            return Some(self.to_server(probe));
        }
        let time = self.time(now);
        loop {
            let transmit = self.client.poll_transmit(time)?;
            let datagram = transmit.data.as_ref();
            self.probe.handle_client_datagram(datagram);
            if self.unwanted_refresh(datagram) {
                self.refreshes_dropped += 1;
                continue;
            }
            return Some(self.to_server(datagram.to_vec()));
        }
    }

    fn to_server(&self, contents: Vec<u8>) -> Transmit {
        Transmit {
            source: Some(self.local),
            destination: self.server(),
            contents,
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<RelayEvent> {
        self.events.pop_front()
    }

    fn fail(&mut self, now: Instant, why: RelayFailure) {
        if matches!(self.state, RelayState::Failed(_)) {
            return;
        }
        let lost = self.relayed();
        let wait = if lost.is_some() {
            REALLOCATE_AFTER_LOSS
        } else {
            REALLOCATE_AFTER
        };
        self.reallocate_at = Some(now + wait);
        self.allocate_deadline = None;
        self.state = RelayState::Failed(why);
        self.channels.clear();
        self.requested.clear();
        self.probe.reset();
        self.events.push_back(RelayEvent::Failed { why, lost });
    }

    /// Runs the client and turns its events into ours.
    fn pump(&mut self, now: Instant) {
        let time = self.time(now);
        if let TurnPollRet::Closed = self.client.poll(time) {
            self.fail(now, RelayFailure::Closed);
        }
        while let Some(event) = self.client.poll_event() {
            match event {
                TurnEvent::AllocationCreated(TransportType::Udp, relayed) => {
                    self.allocate_deadline = None;
                    self.state = RelayState::Allocated(relayed);
                    self.events.push_back(RelayEvent::Allocated(relayed));
                    let permissions: Vec<IpAddr> =
                        self.wanted_permissions.iter().copied().collect();
                    for ip in permissions {
                        self.request_permission(now, ip);
                    }
                    let channels: Vec<SocketAddr> = self.wanted_channels.iter().copied().collect();
                    for peer in channels {
                        self.request_channel(now, peer);
                    }
                }
                TurnEvent::ChannelCreateFailed(TransportType::Udp, peer) => {
                    // Refused, or expired unrefreshed: the number is free again.
                    self.channels.remove(&peer);
                    self.requested.remove(&peer);
                }
                TurnEvent::AllocationCreateFailed(_) => {
                    self.fail(now, RelayFailure::Refused);
                }
                TurnEvent::ChannelCreated(TransportType::Udp, peer) => {
                    if let Some(channel) = self.channel_number(now, peer) {
                        self.channels.insert(peer, channel);
                        self.events
                            .push_back(RelayEvent::ChannelBound { peer, channel });
                    }
                }
                _ => {}
            }
        }
    }

    /// The crate keeps channel numbers private; its ChannelData framing for the peer names
    /// it in the first two bytes (RFC 8656 §12.4).
    fn channel_number(&mut self, now: Instant, peer: SocketAddr) -> Option<u16> {
        let time = self.time(now);
        let transmit = self
            .client
            .send_to(TransportType::Udp, peer, [0u8; 0], time)
            .ok()??;
        match transmit.data {
            DelayedMessageOrChannelSend::Channel(_) => {
                let framed = transmit.build().data;
                let channel = u16::from_be_bytes([*framed.first()?, *framed.get(1)?]);
                (0x4000..=0x4FFF).contains(&channel).then_some(channel)
            }
            _ => None,
        }
    }
}

/// Whether `datagram` is an error response with code 437 (Allocation Mismatch).
fn allocation_mismatch(datagram: &[u8]) -> bool {
    Message::from_bytes(datagram).is_ok_and(|message| {
        message.has_class(MessageClass::Error)
            && message
                .attribute::<ErrorCode>()
                .is_ok_and(|code| code.code() == ErrorCode::ALLOCATION_MISMATCH)
    })
}

/// Whether `data` (sent through the relay) is a STUN request, such as an ICE check: STUN by
/// the one test ([`is_stun`]), with both class bits (C1 in byte 0, C0 in byte 1) clear.
fn is_stun_request(data: &[u8]) -> bool {
    is_stun(data) && data[0] & 0x01 == 0 && data[1] & 0x10 == 0
}
