//! A TURN (and STUN) server in memory: `turn-server-proto` (sans-IO, RFC 8656: Allocate with
//! the 401/nonce round, Refresh, CreatePermission, ChannelBind, Send/Data indications,
//! ChannelData, expiry) plus the sockets it asks for, which here are just addresses.
//!
//! Relayed addresses share the server's IP (like coturn with `--relay-ip` = listening IP), so
//! the network hands the server every datagram to its IP.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use turn_server_proto::api::{TurnServerApi, TurnServerPollRet};
use turn_server_proto::server::TurnServer as Protocol;
use turn_server_proto::stun::Instant as ProtoInstant;
use turn_server_proto::stun::agent::Transmit;
use turn_server_proto::types::TurnCredentials;
use turn_server_proto::types::attribute::Lifetime;
use turn_server_proto::types::message::REFRESH;
use turn_server_proto::types::stun::TransportType;
use turn_server_proto::types::stun::attribute::{
    ErrorCode, Nonce, PasswordAlgorithmValue, PasswordAlgorithms, Realm, Userhash, XorMappedAddress,
};
use turn_server_proto::types::stun::message::{
    BINDING, IntegrityAlgorithm, Message, MessageClass, MessageWriteVec,
};
use turn_server_proto::types::stun::prelude::*;

use crate::clock::SimClock;

/// The realm the server announces.
pub const REALM: &str = "wice-sim";
/// Relayed ports start here.
const FIRST_RELAY_PORT: u16 = 49152;

/// A datagram the server sends: from its listening address or a relayed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTransmit {
    /// Source (listening or relayed address).
    pub from: SocketAddr,
    /// Destination.
    pub to: SocketAddr,
    /// Contents.
    pub data: Vec<u8>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct SimTurnServer {
    address: SocketAddr,
    users: Vec<(String, String)>,
    protocol: Protocol,
    next_port: u16,
    /// Allocations made since the start (across restarts).
    pub allocations: u64,
    /// Times the server lost all its state.
    pub restarts: u64,
    /// Error responses the server sent, by code (what a client had to cope with).
    pub errors: BTreeMap<u16, u64>,
    /// `SIM_TURN_TRACE` was set: print every datagram and its answers.
    trace: bool,
    /// 401s rewritten to RFC 8489's form (see `rfc_challenge`).
    pub challenges_rewritten: u64,
    /// The PASSWORD-ALGORITHMS the server offers in its challenges.
    password_algorithms: Option<Vec<PasswordAlgorithmValue>>,
    /// Client addresses (as the server sees them) that were given an allocation.
    clients: Vec<SocketAddr>,
    deadline: Option<Instant>,
}

impl SimTurnServer {
    /// A server listening on `address` that accepts `users` (name, password).
    pub fn new(address: SocketAddr, users: Vec<(String, String)>) -> Self {
        let protocol = Self::protocol(address, &users);
        Self {
            address,
            users,
            protocol,
            next_port: FIRST_RELAY_PORT,
            allocations: 0,
            restarts: 0,
            errors: BTreeMap::new(),
            trace: std::env::var_os("SIM_TURN_TRACE").is_some(),
            challenges_rewritten: 0,
            password_algorithms: None,
            clients: Vec::new(),
            deadline: None,
        }
    }

    fn protocol(address: SocketAddr, users: &[(String, String)]) -> Protocol {
        let mut protocol = Protocol::new(TransportType::Udp, address, REALM.to_owned());
        for (user, password) in users {
            protocol.add_user(user.clone(), password.clone());
        }
        protocol
    }

    /// The listening address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The server's IP (relayed addresses share it).
    pub fn ip(&self) -> IpAddr {
        self.address.ip()
    }

    /// Forgets every allocation, permission and channel (a restarted server). Clients learn
    /// it from the 438 and then 437 to their next request.
    ///
    /// `turn-server-proto` 0.7.3 checks a request's PASSWORD-ALGORITHMS against those it
    /// sent with the client's current nonce, before it checks whether the nonce is stale; a
    /// restarted server sent none, so it answers 400 where RFC 8489 §9.2.4 means 438 (the
    /// README's simulator finding 3). So the restarted server challenges each former client
    /// address once, unheard, as if that client had asked first: its later requests then
    /// draw 438 Stale Nonce, as from coturn.
    pub fn lose_state(&mut self, clock: &SimClock) {
        self.protocol = Self::protocol(self.address, &self.users);
        self.restarts += 1;
        self.deadline = None;
        let now = proto_time(clock, clock.now());
        for client in std::mem::take(&mut self.clients) {
            let unsigned = Message::builder_request(REFRESH, MessageWriteVec::new()).finish();
            let challenge = self.protocol.recv(
                Transmit::new(&unsigned[..], TransportType::Udp, client, self.address),
                now,
            );
            if let Some(challenge) = challenge {
                self.note_challenge(&challenge.build().data);
            }
        }
    }

    /// Remembers the PASSWORD-ALGORITHMS the server offers, from a challenge that has them.
    fn note_challenge(&mut self, data: &[u8]) {
        if let Ok(message) = Message::from_bytes(data)
            && let Ok(algorithms) = message.attribute::<PasswordAlgorithms>()
        {
            self.password_algorithms = Some(algorithms.algorithms().to_vec());
        }
    }

    /// A 401 as RFC 8489 §9.2.4 has it: REALM, NONCE and, when the nonce announces them,
    /// PASSWORD-ALGORITHMS; no MESSAGE-INTEGRITY. `turn-server-proto` 0.7.3 sends a client
    /// address it authenticated before (its table of them outlives their allocations) a
    /// signed 401 without PASSWORD-ALGORITHMS, which a new `turn-client-proto` (allocating
    /// again after a 437, from the same 5-tuple: the socket is shared) rightly refuses, so
    /// it never allocates again (the README's simulator finding 2). coturn sends the
    /// challenge unsigned; this server rewrites it so.
    fn rfc_challenge(&self, data: &[u8]) -> Option<Vec<u8>> {
        let sent = Message::from_bytes(data).ok()?;
        if sent.attribute::<PasswordAlgorithms>().is_ok() {
            return None;
        }
        let algorithms = self.password_algorithms.as_ref()?;
        let mut reply = Message::builder(
            sent.get_type(),
            sent.transaction_id(),
            MessageWriteVec::new(),
        );
        reply
            .add_attribute(&sent.attribute::<ErrorCode>().ok()?)
            .ok()?;
        reply.add_attribute(&sent.attribute::<Realm>().ok()?).ok()?;
        reply.add_attribute(&sent.attribute::<Nonce>().ok()?).ok()?;
        reply
            .add_attribute(&PasswordAlgorithms::new(algorithms))
            .ok()?;
        Some(reply.finish())
    }

    /// Deletes every allocation as if each client had sent a Refresh with lifetime 0 (an
    /// operator's teardown, or coturn dropping an allocation after a relay error): the
    /// server keeps its nonces, and clients learn it from the 437 to their next request.
    /// Returns how many allocations were deleted.
    pub fn delete_allocations(&mut self, clock: &SimClock) -> usize {
        let now = proto_time(clock, clock.now());
        let mut deleted = 0;
        for client in std::mem::take(&mut self.clients) {
            // An unsigned request draws a 401 with the client's current nonce and the realm.
            let probe = Message::builder_request(REFRESH, MessageWriteVec::new()).finish();
            let Some(challenge) = self
                .protocol
                .recv(
                    Transmit::new(&probe[..], TransportType::Udp, client, self.address),
                    now,
                )
                .map(|reply| reply.build().data)
            else {
                continue;
            };
            let Ok(challenge) = Message::from_bytes(&challenge) else {
                continue;
            };
            let (Ok(nonce), Ok(realm)) = (
                challenge.attribute::<Nonce>(),
                challenge.attribute::<Realm>(),
            ) else {
                continue;
            };
            let Some((user, password)) = self.users.first() else {
                continue;
            };
            let credentials =
                TurnCredentials::new(user, password).into_long_term_credentials(realm.realm());
            let mut refresh = Message::builder_request(REFRESH, MessageWriteVec::new());
            let added = refresh
                .add_attribute(&Nonce::new(nonce.nonce()).expect("nonce from the server"))
                .and_then(|()| refresh.add_attribute(&realm))
                .and_then(|()| {
                    // turn-client-proto identifies itself by USERHASH; the server wants the same.
                    let hash = Userhash::compute(user, realm.realm());
                    refresh.add_attribute(&Userhash::new(hash))
                })
                .and_then(|()| refresh.add_attribute(&Lifetime::new(0)))
                .and_then(|()| {
                    refresh.add_message_integrity(&credentials.into(), IntegrityAlgorithm::Sha1)
                });
            if added.is_err() {
                continue;
            }
            let refresh = refresh.finish();
            let answer = self.protocol.recv(
                Transmit::new(&refresh[..], TransportType::Udp, client, self.address),
                now,
            );
            let answer = answer.map(|a| a.build().data);
            if answer
                .as_deref()
                .and_then(|data| Message::from_bytes(data).ok())
                .is_some_and(|m| m.class() == MessageClass::Success)
            {
                deleted += 1;
            }
        }
        let mut ignored = Vec::new();
        self.drive(clock, now, &mut ignored);
        deleted
    }

    /// A datagram from `from` to `to` (the listening address or a relayed one); returns what
    /// to send. With `SIM_TURN_TRACE` set, prints each datagram and the answers (debugging
    /// a client's exchange with the server).
    pub fn handle_datagram(
        &mut self,
        clock: &SimClock,
        from: SocketAddr,
        to: SocketAddr,
        data: &[u8],
    ) -> Vec<ServerTransmit> {
        let now = proto_time(clock, clock.now());
        let mut out = Vec::new();
        if to == self.address
            && let Some(reply) = binding_answer(data, from)
        {
            out.push(ServerTransmit {
                from: to,
                to: from,
                data: reply,
            });
            return out;
        }
        let transmit = Transmit::new(data, TransportType::Udp, from, to);
        if let Some(reply) = self.protocol.recv(transmit, now) {
            let built = reply.build();
            let code = error_code(&built.data);
            if let Some(code) = code {
                *self.errors.entry(code).or_default() += 1;
            }
            let mut data = built.data;
            if code == Some(ErrorCode::UNAUTHORIZED) {
                self.note_challenge(&data);
                if let Some(challenge) = self.rfc_challenge(&data) {
                    self.challenges_rewritten += 1;
                    data = challenge;
                }
            }
            out.push(ServerTransmit {
                from: built.from,
                to: built.to,
                data,
            });
        }
        self.drive(clock, now, &mut out);
        if self.trace {
            let describe = |d: &[u8]| {
                Message::from_bytes(d)
                    .map(|m| format!("{m}"))
                    .unwrap_or_else(|_| format!("non-stun {}", d.len()))
            };
            eprintln!(
                "TURN {:?} {from} -> {to}: {} => {:?}",
                clock.elapsed(),
                describe(data),
                out.iter().map(|t| describe(&t.data)).collect::<Vec<_>>()
            );
        }
        out
    }

    /// Runs the server's timers; returns what to send.
    pub fn handle_timeout(&mut self, clock: &SimClock) -> Vec<ServerTransmit> {
        let mut out = Vec::new();
        self.drive(clock, proto_time(clock, clock.now()), &mut out);
        out
    }

    /// When to call [`SimTurnServer::handle_timeout`] next (known after the first input).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Serves socket requests, collects what to send, and notes the next deadline.
    fn drive(&mut self, clock: &SimClock, now: ProtoInstant, out: &mut Vec<ServerTransmit>) {
        loop {
            match self.protocol.poll(now) {
                TurnServerPollRet::AllocateSocket {
                    transport,
                    listen_addr,
                    client_addr,
                    allocation_transport,
                    family,
                } => {
                    let relayed = SocketAddr::new(self.address.ip(), self.next_port);
                    self.next_port = self.next_port.checked_add(1).unwrap_or(FIRST_RELAY_PORT);
                    self.allocations += 1;
                    self.clients.push(client_addr);
                    self.protocol.allocated_socket(
                        transport,
                        listen_addr,
                        client_addr,
                        allocation_transport,
                        family,
                        Ok(relayed),
                        now,
                    );
                }
                TurnServerPollRet::WaitUntil(at) => {
                    let nanos = u64::try_from(at.as_nanos()).unwrap_or(0);
                    let wake = clock.at(std::time::Duration::from_nanos(nanos));
                    // turn-server-proto 0.7.3 keeps answering a time already past once a
                    // permission has expired (nothing left to do for it): wait a second
                    // then, as a real server's timer tick would, instead of spinning.
                    let now = clock.now();
                    self.deadline = Some(if wake <= now {
                        now + std::time::Duration::from_secs(1)
                    } else {
                        wake
                    });
                    break;
                }
                // TCP and socket closes: nothing to do for UDP sockets that are addresses.
                _ => {}
            }
        }
        while let Some(transmit) = self.protocol.poll_transmit(now) {
            out.push(ServerTransmit {
                from: transmit.from,
                to: transmit.to,
                data: transmit.data,
            });
        }
    }
}

/// The code of an error response.
fn error_code(data: &[u8]) -> Option<u16> {
    let message = Message::from_bytes(data).ok()?;
    if message.class() != MessageClass::Error {
        return None;
    }
    message
        .attribute::<ErrorCode>()
        .ok()
        .map(|code| code.code())
}

fn proto_time(clock: &SimClock, at: Instant) -> ProtoInstant {
    let nanos = clock.since_start(at).as_nanos();
    ProtoInstant::from_nanos(i64::try_from(nanos).unwrap_or(i64::MAX))
}

/// A STUN server's answer to a Binding request: where it saw the sender. `turn-server-proto`
/// answers Binding only on a client's allocation, and coturn answers anyone, as the lab does.
fn binding_answer(data: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    let request = Message::from_bytes(data).ok()?;
    if request.method() != BINDING || request.class() != MessageClass::Request {
        return None;
    }
    let mut reply = Message::builder_success(&request, MessageWriteVec::new());
    reply
        .add_attribute(&XorMappedAddress::new(from, request.transaction_id()))
        .ok()?;
    Some(reply.finish())
}
