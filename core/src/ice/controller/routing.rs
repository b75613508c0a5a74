//! Which datagrams from the shared socket reach the ICE side, and where (issue 9 finding 2).
//!
//! Anyone can send the node STUN-looking datagrams, so nothing reaches per-session work (an
//! `is` agent's parser, integrity check and logs) unless it can matter:
//!
//! 1. Per-source rate limit ([`super::super::source_limit`]) before anything beyond the header.
//! 2. Our configured TURN and STUN servers' datagrams go to the relay or probe that talks to
//!    that server, which takes only answers to its own transactions.
//! 3. STUN requests (connectivity checks) go to the one session whose current local ufrag is
//!    the local part of their USERNAME, found by a bounded walk over the first attributes and
//!    a hash lookup.
//! 4. STUN responses go to the one session that sent a check with that transaction id, to the
//!    address they come from; sessions' check ids are learnt from their transmits and kept for
//!    [`CHECK_LIFETIME`], at most [`MAX_CHECKS`] at once.
//! 5. Everything else is a counted drop, logged at most [`DROP_LOG_PER_SECOND`] times a second.
//!
//! So a datagram costs one hash lookup or two before it is dropped, never a parse per session.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::keys::PublicKey;
use crate::log_limit::LogLimit;
use crate::wire::classify::is_stun;

use super::super::source_limit::{SourceLimit, SourceLimiter};
use super::Controller;

/// How long a session's check waits for its answer; `is` gives up on a check well before.
pub(crate) const CHECK_LIFETIME: Duration = Duration::from_secs(10);
/// Check transactions remembered at once, across sessions (oldest forgotten first). Agents
/// pace checks at 20/s each, so this covers 20 checking sessions for the whole lifetime.
pub(crate) const MAX_CHECKS: usize = 4096;
/// Attributes looked at before USERNAME in a request; `is` puts USERNAME first.
const MAX_ATTRIBUTES_BEFORE_USERNAME: usize = 8;
/// Drop notes logged per second at most.
pub(crate) const DROP_LOG_PER_SECOND: u32 = 2;

const HEADER_LEN: usize = 20;
const BINDING: u16 = 0x0001;
const ATTRIBUTE_USERNAME: u16 = 0x0006;

/// What became of a datagram given to [`Controller::handle_datagram`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// Taken by the relay or probe of the configured server it came from.
    Server,
    /// Taken by this peer's session (a check for it, or an answer to one of its checks).
    Session(PublicKey),
    /// Dropped and counted.
    Dropped(DropReason),
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Its source sent more than its share.
    RateLimited,
    /// Neither STUN nor from a configured server.
    NotStun,
    /// A request that is not a Binding with a USERNAME in its first attributes.
    NotACheck,
    /// A check for a ufrag none of our live sessions has.
    UnknownUfrag,
    /// A response to no check of ours, or from an address the check did not go to.
    UnknownTransaction,
    /// An indication: nothing of ours waits for one.
    Indication,
    /// No local address of the sender's family to say where it arrived.
    NoLocalAddress,
    /// WireGuard through our relay before its channel was bound.
    RelayedWireGuardUnbound,
    /// The session's agent refused it (stale session, wrong credentials, bad integrity).
    Refused,
}

/// The routing tables. See the [module documentation](self).
pub(super) struct Routing {
    checks: CheckTransactions,
    /// Our sessions' current ufrags.
    ufrags: HashMap<Box<[u8]>, PublicKey>,
    ufrag_of: HashMap<PublicKey, Box<[u8]>>,
    limiter: SourceLimiter,
    drop_log: LogLimit,
}

impl Routing {
    pub(super) fn new() -> Self {
        Self {
            checks: CheckTransactions::default(),
            ufrags: HashMap::new(),
            ufrag_of: HashMap::new(),
            limiter: SourceLimiter::new(),
            drop_log: LogLimit::per_second(DROP_LOG_PER_SECOND),
        }
    }

    /// Learns the transaction of a check `peer`'s session sends to `destination`.
    pub(super) fn note_sent(
        &mut self,
        now: Instant,
        peer: PublicKey,
        destination: SocketAddr,
        datagram: &[u8],
    ) {
        if let Some(header) = StunHeader::parse(datagram)
            && header.class == StunClass::Request
        {
            self.checks
                .insert(now, header.transaction, peer, destination);
        }
    }

    /// Makes `ufrag` the one that routes checks to `peer`.
    /// Forgets a removed peer's ufrag: checks carrying it no longer match.
    pub(super) fn forget(&mut self, peer: &PublicKey) {
        if let Some(old) = self.ufrag_of.remove(peer) {
            self.ufrags.remove(&old);
        }
    }

    pub(super) fn set_ufrag(&mut self, peer: PublicKey, ufrag: &str) {
        if self
            .ufrag_of
            .get(&peer)
            .is_some_and(|current| **current == *ufrag.as_bytes())
        {
            return;
        }
        if let Some(old) = self.ufrag_of.remove(&peer) {
            self.ufrags.remove(&old);
        }
        let ufrag: Box<[u8]> = ufrag.as_bytes().into();
        self.ufrags.insert(ufrag.clone(), peer);
        self.ufrag_of.insert(peer, ufrag);
    }

    /// Which session a STUN datagram from `from` is for.
    fn session_for(
        &mut self,
        now: Instant,
        header: StunHeader,
        datagram: &[u8],
        from: SocketAddr,
    ) -> Result<PublicKey, DropReason> {
        match header.class {
            StunClass::Request => {
                if header.method != BINDING {
                    return Err(DropReason::NotACheck);
                }
                let local = username_local_part(datagram).ok_or(DropReason::NotACheck)?;
                self.ufrags
                    .get(local)
                    .copied()
                    .ok_or(DropReason::UnknownUfrag)
            }
            StunClass::Success | StunClass::Error => self
                .checks
                .find(now, &header.transaction, from)
                .ok_or(DropReason::UnknownTransaction),
            StunClass::Indication => Err(DropReason::Indication),
        }
    }
}

impl Controller {
    /// A datagram from `from` that the datapath took for STUN or TURN, arrived on our address
    /// `to` if known. Says where it went; see the routing rules in [`routing`](self).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        to: Option<SocketAddr>,
        datagram: &[u8],
    ) -> Routed {
        let routed = self.route_datagram(now, from, to, datagram);
        match routed {
            Routed::Dropped(reason) => self.count_drop(now, from, reason),
            Routed::Server | Routed::Session(_) => self.process(now),
        }
        routed
    }

    fn route_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        to: Option<SocketAddr>,
        datagram: &[u8],
    ) -> Routed {
        let server = self.relays.iter().any(|r| r.server() == from)
            || self.probes.iter().any(|p| p.server() == from);
        let limit = if server {
            SourceLimit::SERVER
        } else {
            SourceLimit::PEER
        };
        if !self.routing.limiter.allow(now, from.ip(), limit) {
            return Routed::Dropped(DropReason::RateLimited);
        }
        if let Some(index) = self.relays.iter().position(|r| r.server() == from) {
            match self.relays[index].handle_datagram(now, datagram) {
                super::RelayReceive::Handled => return Routed::Server,
                super::RelayReceive::PeerData { peer, data } => {
                    return self.relayed_from_peer(now, index, peer, &data);
                }
                // Perhaps the answer to our Binding probe of the same server.
                super::RelayReceive::Ignored => {}
            }
        }
        if let Some(probe) = self.probes.iter_mut().find(|p| p.server() == from)
            && probe.handle_response(now, datagram, to)
        {
            return Routed::Server;
        }
        let Some(destination) = to.or_else(|| self.host_of_family(from)) else {
            return Routed::Dropped(DropReason::NoLocalAddress);
        };
        self.stun_to_session(now, datagram, from, destination)
    }

    /// Hands a STUN datagram that arrived from `from` on our `destination` (an interface
    /// address, or a relayed one) to the one session it is for, if any.
    pub(super) fn stun_to_session(
        &mut self,
        now: Instant,
        datagram: &[u8],
        from: SocketAddr,
        destination: SocketAddr,
    ) -> Routed {
        let Some(header) = StunHeader::parse(datagram) else {
            return Routed::Dropped(DropReason::NotStun);
        };
        let peer = match self.routing.session_for(now, header, datagram, from) {
            Ok(peer) => peer,
            Err(reason) => return Routed::Dropped(reason),
        };
        let Some(entry) = self.peers.get_mut(&peer) else {
            return Routed::Dropped(DropReason::Refused);
        };
        let handled = entry.session.handle_stun(now, datagram, from, destination);
        self.touch(peer);
        match handled {
            Ok(()) => Routed::Session(peer),
            Err(_) => Routed::Dropped(DropReason::Refused),
        }
    }

    /// Whether one more relayed datagram from the peer address `from` may pass.
    pub(super) fn allow_relayed(&mut self, now: Instant, from: SocketAddr) -> bool {
        self.routing
            .limiter
            .allow(now, from.ip(), SourceLimit::PEER)
    }

    fn count_drop(&mut self, now: Instant, from: SocketAddr, reason: DropReason) {
        let counters = &mut self.counters;
        match reason {
            DropReason::RateLimited => counters.rate_limited += 1,
            DropReason::NotStun => counters.unexpected_datagrams += 1,
            DropReason::RelayedWireGuardUnbound => counters.relayed_wireguard_unbound += 1,
            DropReason::NotACheck
            | DropReason::UnknownUfrag
            | DropReason::UnknownTransaction
            | DropReason::Indication
            | DropReason::NoLocalAddress
            | DropReason::Refused => counters.unmatched_stun += 1,
        }
        if let Some(suppressed) = self.routing.drop_log.allow(now) {
            tracing::debug!(%from, ?reason, suppressed, "control datagram dropped");
        }
    }
}

/// Outgoing check transactions, by id, with their expiry; oldest first in `order`.
#[derive(Default)]
struct CheckTransactions {
    by_id: HashMap<[u8; 12], SentCheck>,
    order: VecDeque<([u8; 12], Instant)>,
}

#[derive(Debug, Clone, Copy)]
struct SentCheck {
    peer: PublicKey,
    destination: SocketAddr,
    expires: Instant,
}

impl CheckTransactions {
    fn insert(&mut self, now: Instant, id: [u8; 12], peer: PublicKey, destination: SocketAddr) {
        self.expire(now);
        while self.by_id.len() >= MAX_CHECKS || self.order.len() >= MAX_CHECKS {
            self.pop_oldest();
        }
        let expires = now + CHECK_LIFETIME;
        self.by_id.insert(
            id,
            SentCheck {
                peer,
                destination,
                expires,
            },
        );
        self.order.push_back((id, expires));
    }

    fn find(&mut self, now: Instant, id: &[u8; 12], from: SocketAddr) -> Option<PublicKey> {
        self.expire(now);
        self.by_id
            .get(id)
            .filter(|check| check.destination == from)
            .map(|check| check.peer)
    }

    fn expire(&mut self, now: Instant) {
        while self.order.front().is_some_and(|(_, at)| *at <= now) {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((id, expires)) = self.order.pop_front()
            && self.by_id.get(&id).is_some_and(|c| c.expires == expires)
        {
            self.by_id.remove(&id);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_id.len()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StunClass {
    Request,
    Indication,
    Success,
    Error,
}

#[derive(Debug, Clone, Copy)]
struct StunHeader {
    class: StunClass,
    method: u16,
    transaction: [u8; 12],
}

impl StunHeader {
    /// The datapath's STUN test ([`is_stun`]), then class, method and id.
    fn parse(datagram: &[u8]) -> Option<Self> {
        if !is_stun(datagram) {
            return None;
        }
        let kind = u16::from_be_bytes([datagram[0], datagram[1]]);
        let class = match (kind & 0x0100 != 0, kind & 0x0010 != 0) {
            (false, false) => StunClass::Request,
            (false, true) => StunClass::Indication,
            (true, false) => StunClass::Success,
            (true, true) => StunClass::Error,
        };
        let method = (kind & 0x000F) | ((kind & 0x00E0) >> 1) | ((kind & 0x3E00) >> 2);
        let mut transaction = [0u8; 12];
        transaction.copy_from_slice(&datagram[8..HEADER_LEN]);
        Some(Self {
            class,
            method,
            transaction,
        })
    }
}

/// The part of USERNAME before the colon (the receiver's ufrag in a check, RFC 8445 §7.2.2),
/// found among the first few attributes.
fn username_local_part(datagram: &[u8]) -> Option<&[u8]> {
    let mut offset = HEADER_LEN;
    for _ in 0..=MAX_ATTRIBUTES_BEFORE_USERNAME {
        let header = datagram.get(offset..offset + 4)?;
        let kind = u16::from_be_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let value = datagram.get(offset + 4..offset + 4 + len)?;
        if kind == ATTRIBUTE_USERNAME {
            let colon = value.iter().position(|b| *b == b':')?;
            return Some(&value[..colon]).filter(|local| !local.is_empty());
        }
        offset += 4 + len.next_multiple_of(4);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(first: u8) -> PublicKey {
        let mut bytes = [0u8; 32];
        bytes[0] = first;
        PublicKey::from(bytes)
    }

    fn message(kind: u16, id: u8, attributes: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (attribute, value) in attributes {
            body.extend_from_slice(&attribute.to_be_bytes());
            body.extend_from_slice(&(value.len() as u16).to_be_bytes());
            body.extend_from_slice(value);
            body.resize(body.len().next_multiple_of(4), 0);
        }
        let mut datagram = kind.to_be_bytes().to_vec();
        datagram.extend_from_slice(&(body.len() as u16).to_be_bytes());
        datagram.extend_from_slice(&crate::wire::classify::STUN_MAGIC_COOKIE);
        datagram.extend_from_slice(&[id; 12]);
        datagram.extend_from_slice(&body);
        datagram
    }

    #[test]
    fn the_header_gives_class_method_and_transaction() {
        let request = StunHeader::parse(&message(0x0001, 7, &[])).unwrap();
        assert_eq!(
            (request.class, request.method),
            (StunClass::Request, BINDING)
        );
        assert_eq!(request.transaction, [7; 12]);
        let success = StunHeader::parse(&message(0x0101, 1, &[])).unwrap();
        assert_eq!(success.class, StunClass::Success);
        let error = StunHeader::parse(&message(0x0111, 1, &[])).unwrap();
        assert_eq!(error.class, StunClass::Error);
        let allocate = StunHeader::parse(&message(0x0003, 1, &[])).unwrap();
        assert_eq!(allocate.method, 0x0003);
        assert!(StunHeader::parse(&[0u8; 19]).is_none());
    }

    #[test]
    fn the_username_walk_is_bounded_and_takes_the_local_part() {
        let check = message(0x0001, 1, &[(0x0006, b"ours:theirs"), (0x0024, &[0; 4])]);
        assert_eq!(username_local_part(&check), Some(&b"ours"[..]));
        let late = {
            let mut attributes: Vec<(u16, &[u8])> = vec![(0x0001, &[0u8; 8]); 9];
            attributes.push((0x0006, b"ours:theirs"));
            message(0x0001, 1, &attributes)
        };
        assert_eq!(username_local_part(&late), None);
        assert_eq!(
            username_local_part(&message(0x0001, 1, &[(0x0006, b"nocolon")])),
            None
        );
        assert_eq!(
            username_local_part(&message(0x0001, 1, &[(0x0006, b":x")])),
            None
        );
        let mut truncated = check.clone();
        truncated[23] = 200; // USERNAME claims more than there is
        assert_eq!(username_local_part(&truncated), None);
    }

    #[test]
    fn check_transactions_answer_only_from_where_they_went_and_expire_and_stay_bounded() {
        let t0 = Instant::now();
        let peer: SocketAddr = "10.0.0.2:51820".parse().unwrap();
        let other: SocketAddr = "10.0.0.3:51820".parse().unwrap();
        let mut checks = CheckTransactions::default();
        checks.insert(t0, [1; 12], key(2), peer);
        assert_eq!(checks.find(t0, &[1; 12], peer), Some(key(2)));
        assert_eq!(checks.find(t0, &[1; 12], other), None);
        assert_eq!(checks.find(t0, &[2; 12], peer), None);
        assert_eq!(checks.find(t0 + CHECK_LIFETIME, &[1; 12], peer), None);
        for n in 0..(MAX_CHECKS as u32 * 2) {
            let mut id = [0u8; 12];
            id[..4].copy_from_slice(&n.to_be_bytes());
            checks.insert(t0, id, key(2), peer);
        }
        assert_eq!(checks.len(), MAX_CHECKS);
        assert!(checks.order.len() <= MAX_CHECKS);
    }
}
