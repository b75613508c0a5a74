//! Is our TURN allocation still there? A server that loses an allocation silently (restarted,
//! failed over, or black-holed) says nothing until we send a request inside it, and
//! `turn-client-proto` sends one only at the next refresh, minutes later; until then every
//! path through the relay is dead. So when STUN requests we relayed (connectivity and consent
//! checks) get nothing back from the server for [`SILENCE_BEFORE_PROBE`], we ask the server
//! with a Refresh of our own: a success says the allocation lives (the silence is the peer's),
//! 437 says it is gone, and no answer within [`PROBE_TIMEOUT`] says the server is gone. Either
//! loss makes the relay re-allocate at once. Only an answer to a check relayed back from a
//! peer (or the probe's answer) ends the silence: a server that answers Binding requests may
//! still have lost our allocation, and a peer's own checks coming in prove only one way.
//!
//! The Refresh is authenticated like the crate's requests (long-term credentials, the realm
//! and nonce the server sent in its 401/438 answers, which pass through
//! [`AllocationProbe::handle_server_datagram`] on their way to the crate); its answer is
//! matched by its transaction id (96 bits from `stun-types`' CSPRNG, so an off-path sender
//! cannot answer it) and never reaches the crate. A live allocation is
//! probed at most once per [`PROBE_SPACING`], so a peer that stopped answering costs one
//! Refresh per spacing, not one per check.
//!
//! # Driving
//!
//! [`AllocationProbe::handle_relayed_request`] for each STUN request sent through the relay;
//! [`AllocationProbe::handle_peer_data`] for data relayed to us;
//! [`AllocationProbe::handle_server_datagram`] for every datagram from the server (it says
//! whether the datagram was the probe's answer, and what it meant);
//! [`AllocationProbe::handle_timeout`] at [`AllocationProbe::poll_timeout`];
//! [`AllocationProbe::poll_transmit`] for the datagram to send to the server.

use std::time::{Duration, Instant};

use turn_client_proto::types::TurnCredentials;
use turn_client_proto::types::attribute::Lifetime;
use turn_client_proto::types::message::{ALLOCATE, REFRESH};
use turn_client_proto::types::stun::attribute::{ErrorCode, Nonce, Realm, Userhash, Username};
use turn_client_proto::types::stun::message::{
    IntegrityAlgorithm, Message, MessageClass, MessageWriteVec, TransactionId,
};
use turn_client_proto::types::stun::prelude::*;

/// How long relayed STUN requests may go without anything from the server before we ask it:
/// well above a relayed round trip, well below the consent interval.
pub(super) const SILENCE_BEFORE_PROBE: Duration = Duration::from_secs(2);
/// How long the server has to answer the probe (sent again every [`PROBE_RETRANSMIT`]).
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Retransmission interval of the probe.
const PROBE_RETRANSMIT: Duration = Duration::from_millis(500);
/// Least time between two probes of an allocation that answered.
pub(super) const PROBE_SPACING: Duration = Duration::from_secs(15);

/// Times one probe is sent again with a new nonce (a 438 or 401 naming a nonce it did not
/// use); an error naming no new nonce ends it at once.
const NONCE_RETRIES: u8 = 2;

/// How the server knows us: the crate names us by USERHASH when the server's nonce offers
/// username anonymity (RFC 8489 §9.2), by USERNAME otherwise. The probe must do the same: a
/// server answers a request inside an allocation under the other name with 441 (Wrong
/// Credentials, RFC 8656 §6.2), which says nothing about the allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Identity {
    Username(String),
    Userhash([u8; 32]),
}

/// What the probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AllocationVerdict {
    /// The server answered the Refresh: the allocation is there.
    Alive,
    /// The server answered 437: it has no allocation for us.
    Mismatch,
    /// The server answered with another error (after any new nonce was tried): it is up,
    /// and the probe cannot tell whether the allocation lives. Nothing is lost on that;
    /// the crate's own refreshes find out.
    Refused(u16),
    /// No answer in time: the server or the path to it is gone.
    Unanswered,
}

#[derive(Debug)]
struct InFlight {
    transaction: TransactionId,
    datagram: Vec<u8>,
    /// Its nonce was refused: the next send is a new request.
    stale: bool,
    /// The nonce it was sent with.
    nonce: String,
    /// New nonces tried so far.
    retries: u8,
    sent_at: Instant,
    next_send: Instant,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(super) struct AllocationProbe {
    realm: Option<String>,
    nonce: Option<String>,
    /// How the crate's requests name us (learnt from them; USERNAME until then).
    identity: Option<Identity>,
    /// The allocation's lifetime in seconds: as the server last granted it, else as the
    /// crate asked. A Refresh sets the allocation's expiry to now plus its LIFETIME, or
    /// the server's default (10 min, RFC 8656 §7) without one; the crate schedules its own
    /// refresh by the lifetime it was granted (30 min asked), so a probe without LIFETIME
    /// cut a live allocation short and the server dropped it 10 min later (issue 10
    /// finding 5).
    lifetime: Option<u32>,
    /// The first relayed STUN request the server has not been heard from since.
    unanswered_since: Option<Instant>,
    in_flight: Option<InFlight>,
    /// No new probe before this (after an answered one).
    quiet_until: Option<Instant>,
    /// The probe's datagram, waiting for [`AllocationProbe::poll_transmit`].
    transmit: Option<Vec<u8>>,
}

impl AllocationProbe {
    /// Forgets the allocation-specific state (a new allocation starts); keeps realm and nonce.
    pub(super) fn reset(&mut self) {
        self.unanswered_since = None;
        self.in_flight = None;
        self.quiet_until = None;
        self.transmit = None;
    }

    /// A STUN request (a check) left through the relay at `now`.
    pub(super) fn handle_relayed_request(&mut self, now: Instant) {
        self.unanswered_since.get_or_insert(now);
    }

    /// A datagram the crate sends to the server: a request names us the way the probe must.
    pub(super) fn handle_client_datagram(&mut self, datagram: &[u8]) {
        let Ok(message) = Message::from_bytes(datagram) else {
            return;
        };
        if !message.has_class(MessageClass::Request) {
            return;
        }
        let method = message.method();
        if (method == ALLOCATE || method == REFRESH)
            && let Ok(lifetime) = message.attribute::<Lifetime>()
            && lifetime.seconds() > 0
        {
            self.lifetime = Some(lifetime.seconds());
        }
        if let Ok(hash) = message.attribute::<Userhash>() {
            self.identity = Some(Identity::Userhash(*hash.hash()));
        } else if let Ok(name) = message.attribute::<Username>() {
            self.identity = Some(Identity::Username(name.username().to_owned()));
        }
    }

    /// `data` from a peer arrived through the relay. An answer to a check proves the
    /// allocation relays both ways; a peer's own check proves only the way in.
    pub(super) fn handle_peer_data(&mut self, data: &[u8]) {
        let stun_response =
            data.len() >= 20 && data[0] & 0xC1 == 0x01 && data[4..8] == [0x21, 0x12, 0xA4, 0x42];
        if stun_response {
            self.unanswered_since = None;
        }
    }

    /// A TURN message from the server. Returns the probe's outcome if it was the probe's
    /// answer (then it is not for the crate).
    pub(super) fn handle_server_datagram(&mut self, datagram: &[u8]) -> Option<AllocationVerdict> {
        let Ok(message) = Message::from_bytes(datagram) else {
            return None;
        };
        let method = message.method();
        if message.has_class(MessageClass::Success)
            && (method == ALLOCATE || method == REFRESH)
            && let Ok(lifetime) = message.attribute::<Lifetime>()
            && lifetime.seconds() > 0
        {
            self.lifetime = Some(lifetime.seconds());
        }
        if message.has_class(MessageClass::Error) {
            if let Ok(nonce) = message.attribute::<Nonce>() {
                self.nonce = Some(nonce.nonce().to_owned());
            }
            if let Ok(realm) = message.attribute::<Realm>() {
                self.realm = Some(realm.realm().to_owned());
            }
        }
        let probe = self
            .in_flight
            .as_mut()
            .filter(|probe| probe.transaction == message.transaction_id())?;
        if message.has_class(MessageClass::Success) {
            self.in_flight = None;
            self.unanswered_since = None;
            return Some(AllocationVerdict::Alive);
        }
        let code = message.attribute::<ErrorCode>().map(|code| code.code());
        if code == Ok(ErrorCode::ALLOCATION_MISMATCH) {
            self.in_flight = None;
            return Some(AllocationVerdict::Mismatch);
        }
        // 438 Stale Nonce or 401 naming a nonce we did not use (taken above): ask again at
        // once with it, within the same deadline. Any other error shows the server is up
        // but tells nothing of the allocation; asking again would draw the same answer.
        let code = code.unwrap_or(0);
        let new_nonce = self
            .nonce
            .as_ref()
            .is_some_and(|nonce| *nonce != probe.nonce);
        let stale = code == ErrorCode::STALE_NONCE || code == ErrorCode::UNAUTHORIZED;
        if stale && new_nonce && probe.retries < NONCE_RETRIES {
            probe.retries += 1;
            probe.stale = true;
            probe.next_send = probe.sent_at;
            return None;
        }
        self.in_flight = None;
        Some(AllocationVerdict::Refused(code))
    }

    /// When [`AllocationProbe::handle_timeout`] has work.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        match &self.in_flight {
            Some(probe) => Some(probe.next_send.min(probe.sent_at + PROBE_TIMEOUT)),
            None => self.unanswered_since.map(|since| {
                let due = since + SILENCE_BEFORE_PROBE;
                self.quiet_until.map_or(due, |quiet| due.max(quiet))
            }),
        }
    }

    /// Starts, resends or gives up the probe. `username`/`password` are the TURN credentials.
    pub(super) fn handle_timeout(
        &mut self,
        now: Instant,
        username: &str,
        password: &str,
    ) -> Option<AllocationVerdict> {
        if let Some(probe) = &self.in_flight {
            if now >= probe.sent_at + PROBE_TIMEOUT {
                self.in_flight = None;
                return Some(AllocationVerdict::Unanswered);
            }
            if now >= probe.next_send {
                if probe.stale {
                    let (sent_at, retries) = (probe.sent_at, probe.retries);
                    self.send(now, sent_at, username, password);
                    if let Some(probe) = self.in_flight.as_mut() {
                        probe.retries = retries;
                    }
                    // Still stale: it could not be rebuilt (no realm or nonce to ask with).
                    // It waits for its deadline rather than being retried at once, which
                    // would spin until then.
                    if let Some(probe) = self.in_flight.as_mut().filter(|probe| probe.stale) {
                        probe.stale = false;
                        probe.next_send = probe.sent_at + PROBE_TIMEOUT;
                    }
                } else {
                    self.transmit = Some(probe.datagram.clone());
                    if let Some(probe) = self.in_flight.as_mut() {
                        probe.next_send = now + PROBE_RETRANSMIT;
                    }
                }
            }
            return None;
        }
        let due = self.poll_timeout()?;
        if now >= due {
            self.quiet_until = Some(now + PROBE_SPACING);
            self.send(now, now, username, password);
        }
        None
    }

    /// The probe's datagram for the server.
    pub(super) fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.take()
    }

    fn send(&mut self, now: Instant, sent_at: Instant, username: &str, password: &str) {
        let mut request = Message::builder_request(REFRESH, MessageWriteVec::new());
        let transaction = request.transaction_id();
        let (Some(realm), Some(nonce)) = (&self.realm, &self.nonce) else {
            // Never heard a realm: the allocation was not made through us. Nothing to ask with.
            return;
        };
        let credentials =
            TurnCredentials::new(username, password).into_long_term_credentials(realm);
        let identity = self
            .identity
            .clone()
            .unwrap_or_else(|| Identity::Username(username.to_owned()));
        let named = match identity {
            Identity::Username(name) => {
                Username::new(&name).and_then(|user| request.add_attribute(&user))
            }
            Identity::Userhash(hash) => request.add_attribute(&Userhash::new(hash)),
        };
        let lifetime = match self.lifetime {
            Some(seconds) => request.add_attribute(&Lifetime::new(seconds)),
            None => Ok(()),
        };
        let built = named
            .and(lifetime)
            .and_then(|()| Realm::new(realm).and_then(|r| request.add_attribute(&r)))
            .and_then(|()| Nonce::new(nonce).and_then(|n| request.add_attribute(&n)))
            .and_then(|()| {
                request.add_message_integrity(&credentials.into(), IntegrityAlgorithm::Sha1)
            });
        if built.is_err() {
            return;
        }
        let datagram = request.finish();
        self.transmit = Some(datagram.clone());
        self.in_flight = Some(InFlight {
            transaction,
            datagram,
            stale: false,
            nonce: nonce.clone(),
            retries: 0,
            sent_at,
            next_send: now + PROBE_RETRANSMIT,
        });
    }
}
