//! A TURN server played in memory for the controller's tests: enough of RFC 8656 for
//! `turn-client-proto` (Allocate with the 401 round, Refresh, CreatePermission, ChannelBind,
//! Send indications and ChannelData), plus what the tests need to see and break: the
//! permissions and channels it holds, what it relayed to which peer, and a switch that makes
//! it forget the allocation and answer 437 (Allocation Mismatch), one that makes it forget it
//! without a word (requests inside it are then answered 437, as RFC 8656 says), and one that
//! makes it answer nothing at all.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use turn_client_proto::types::TurnCredentials;
use turn_client_proto::types::attribute::{
    ChannelNumber, Data, Lifetime, XorPeerAddress, XorRelayedAddress,
};
use turn_client_proto::types::message::{
    ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION, DATA, REFRESH, SEND,
};
use turn_client_proto::types::stun::attribute::{ErrorCode, Nonce, Realm, XorMappedAddress};
use turn_client_proto::types::stun::message::{
    IntegrityAlgorithm, LongTermKeyCredentials, Message, MessageClass, MessageWriteVec,
};
use turn_client_proto::types::stun::prelude::*;

const REALM: &str = "wice-test";

/// See the module documentation.
pub(super) struct FakeTurn {
    /// The server's address.
    pub(super) address: SocketAddr,
    credentials: LongTermKeyCredentials,
    /// The current allocation's relayed address.
    pub(super) relayed: Option<SocketAddr>,
    next_port: u16,
    /// Installed permissions (by peer IP).
    pub(super) permissions: BTreeSet<IpAddr>,
    /// Bound channels.
    pub(super) channels: BTreeMap<u16, SocketAddr>,
    /// Forget the allocation and answer the next request with 437.
    pub(super) lose_allocation: bool,
    /// Drop every datagram unanswered (the server died or the path to it broke).
    pub(super) black_hole: bool,
    /// Refresh requests received (the crate's and the relay's probes).
    pub(super) refreshes: usize,
    /// Allocations made so far.
    pub(super) allocations: usize,
    /// What the client asked us to relay: (relayed address it left from, peer, payload).
    pub(super) relayed_out: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
}

impl FakeTurn {
    pub(super) fn new(address: SocketAddr, username: &str, password: &str) -> Self {
        Self {
            address,
            credentials: TurnCredentials::new(username, password).into_long_term_credentials(REALM),
            relayed: None,
            next_port: 50_000,
            permissions: BTreeSet::new(),
            channels: BTreeMap::new(),
            lose_allocation: false,
            black_hole: false,
            refreshes: 0,
            allocations: 0,
            relayed_out: Vec::new(),
        }
    }

    /// Handles a datagram from the client at `from`; returns the answers to send back.
    pub(super) fn handle(&mut self, from: SocketAddr, datagram: &[u8]) -> Vec<Vec<u8>> {
        if self.black_hole {
            return Vec::new();
        }
        if matches!(datagram.first(), Some(0x40..=0x4F)) && datagram.len() >= 4 {
            let channel = u16::from_be_bytes([datagram[0], datagram[1]]);
            if let (Some(relayed), Some(peer)) = (self.relayed, self.channels.get(&channel)) {
                self.relayed_out
                    .push((relayed, *peer, datagram[4..].to_vec()));
            }
            return Vec::new();
        }
        let Ok(message) = Message::from_bytes(datagram) else {
            return Vec::new();
        };
        if message.has_class(MessageClass::Indication) {
            if message.method() == SEND
                && let (Some(relayed), Ok(peer), Ok(data)) = (
                    self.relayed,
                    message.attribute::<XorPeerAddress>(),
                    message.attribute::<Data>(),
                )
            {
                let peer = peer.addr(message.transaction_id());
                if self.permissions.contains(&peer.ip()) {
                    self.relayed_out.push((relayed, peer, data.data().to_vec()));
                }
            }
            return Vec::new();
        }
        if !message.has_class(MessageClass::Request) {
            return Vec::new();
        }
        let method = message.method();
        if method == ALLOCATE && message.attribute::<Nonce>().is_err() {
            let mut reply = Message::builder_error(&message, MessageWriteVec::new());
            reply.add_attribute(&Realm::new(REALM).unwrap()).unwrap();
            reply.add_attribute(&Nonce::new("nonce").unwrap()).unwrap();
            let code = ErrorCode::builder(ErrorCode::UNAUTHORIZED).build().unwrap();
            reply.add_attribute(&code).unwrap();
            return vec![reply.finish()];
        }
        if method == REFRESH {
            self.refreshes += 1;
        }
        if (self.lose_allocation || self.relayed.is_none()) && method != ALLOCATE {
            self.lose_allocation = false;
            self.forget();
            let mut reply = Message::builder_error(&message, MessageWriteVec::new());
            let code = ErrorCode::builder(ErrorCode::ALLOCATION_MISMATCH)
                .build()
                .unwrap();
            reply.add_attribute(&code).unwrap();
            return vec![self.sign(reply)];
        }
        let transaction = message.transaction_id();
        let mut reply = Message::builder_success(&message, MessageWriteVec::new());
        if method == ALLOCATE {
            let relayed = SocketAddr::new(self.address.ip(), self.next_port);
            self.next_port += 1;
            self.forget();
            self.relayed = Some(relayed);
            self.allocations += 1;
            reply
                .add_attribute(&XorRelayedAddress::new(relayed, transaction))
                .unwrap();
            reply
                .add_attribute(&XorMappedAddress::new(from, transaction))
                .unwrap();
            reply.add_attribute(&Lifetime::new(600)).unwrap();
        } else if method == REFRESH {
            reply.add_attribute(&Lifetime::new(600)).unwrap();
        } else if method == CREATE_PERMISSION {
            if let Ok(peer) = message.attribute::<XorPeerAddress>() {
                self.permissions.insert(peer.addr(transaction).ip());
            }
        } else if method == CHANNEL_BIND {
            if let (Ok(peer), Ok(channel)) = (
                message.attribute::<XorPeerAddress>(),
                message.attribute::<ChannelNumber>(),
            ) {
                let peer = peer.addr(transaction);
                self.permissions.insert(peer.ip());
                self.channels.insert(channel.channel(), peer);
            }
        } else {
            return Vec::new();
        }
        vec![self.sign(reply)]
    }

    /// What a peer at `peer` sending `data` to our relayed address makes us send the client:
    /// ChannelData when a channel is bound, a Data indication otherwise, nothing without a
    /// permission.
    pub(super) fn relay_from_peer(&self, peer: SocketAddr, data: &[u8]) -> Option<Vec<u8>> {
        if self.black_hole || !self.permissions.contains(&peer.ip()) {
            return None;
        }
        if let Some((channel, _)) = self.channels.iter().find(|(_, p)| **p == peer) {
            let mut framed = channel.to_be_bytes().to_vec();
            framed.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
            framed.extend_from_slice(data);
            return Some(framed);
        }
        let mut indication = Message::builder_indication(DATA, MessageWriteVec::new());
        let transaction = indication.transaction_id();
        indication
            .add_attribute(&XorPeerAddress::new(peer, transaction))
            .unwrap();
        indication.add_attribute(&Data::new(data)).unwrap();
        Some(indication.finish())
    }

    /// Forgets the allocation without telling the client (a restart, a fail-over).
    pub(super) fn forget_silently(&mut self) {
        self.forget();
    }

    fn forget(&mut self) {
        self.relayed = None;
        self.permissions.clear();
        self.channels.clear();
    }

    fn sign(&self, mut reply: MessageWriteVec) -> Vec<u8> {
        reply
            .add_message_integrity(&self.credentials.clone().into(), IntegrityAlgorithm::Sha1)
            .unwrap();
        reply.finish()
    }
}
