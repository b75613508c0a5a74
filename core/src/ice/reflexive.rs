//! Server-reflexive discovery: STUN Binding requests to a STUN (or TURN) server, sent from the
//! WireGuard socket, tell us the address a NAT maps that socket to.
//!
//! The `is` agent cannot do this (its STUN parser wants MESSAGE-INTEGRITY, which a plain
//! server reply lacks), so requests and responses go through `stun-types`, which the TURN
//! client depends on anyway.
//!
//! # Driving
//!
//! [`ReflexiveProbe::new`] queues the first request. Send what [`ReflexiveProbe::poll_transmit`]
//! gives to [`ReflexiveProbe::server`]; hand every datagram from the server to
//! [`ReflexiveProbe::handle_response`]; call [`ReflexiveProbe::handle_timeout`] at
//! [`ReflexiveProbe::poll_timeout`]. Requests are retransmitted after 250 ms, doubling, five
//! times in all; an answered probe asks again every [`REFRESH`], which also keeps the NAT's
//! mapping toward the server alive and notices when the mapping changes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use turn_client_proto::types::stun::attribute::XorMappedAddress;
use turn_client_proto::types::stun::message::{
    BINDING, Message, MessageClass, MessageType, MessageWriteVec, TransactionId,
};
use turn_client_proto::types::stun::prelude::*;

use crate::Transmit;

/// First retransmission timeout (RFC 8489 §6.2.1 suggests 500 ms; a LAN-heavy mesh
/// benefits from a quicker first retry, and five tries still span 7.75 s).
const RTO_INITIAL: Duration = Duration::from_millis(250);
/// Requests per attempt before the probe counts as failed.
const ATTEMPTS: u32 = 5;
/// How often an answered probe asks again; under common 30 s NAT UDP timeouts.
pub(super) const REFRESH: Duration = Duration::from_secs(25);
/// How long a failed probe waits before trying again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// Where a probe stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeOutcome {
    /// No answer yet to the first attempt.
    Pending,
    /// The server answered: the address it saw.
    Mapped(SocketAddr),
    /// No answer after every retransmission.
    Unanswered,
}

/// One STUN server's view of our socket.
#[derive(Debug)]
pub(crate) struct ReflexiveProbe {
    server: SocketAddr,
    outcome: ProbeOutcome,
    /// The outstanding request, if one is in flight.
    request: Option<Request>,
    next_attempt_at: Option<Instant>,
    /// Requests built but not yet taken by the caller.
    outbox: Option<Vec<u8>>,
    /// Our own address that the server's latest answer arrived on (the candidate's base).
    base: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy)]
struct Request {
    transaction: TransactionId,
    sent: u32,
    retransmit_at: Instant,
}

impl ReflexiveProbe {
    /// A probe of `server`, first request queued at `now`. `transaction` seeds the request's
    /// transaction id (each retry draws the next from it).
    pub(crate) fn new(server: SocketAddr, now: Instant, transaction: u128) -> Self {
        let mut probe = Self {
            server,
            outcome: ProbeOutcome::Pending,
            request: None,
            next_attempt_at: None,
            outbox: None,
            base: None,
        };
        probe.start_attempt(now, transaction);
        probe
    }

    /// The server asked.
    pub(crate) fn server(&self) -> SocketAddr {
        self.server
    }

    /// What the server said so far.
    pub(crate) fn outcome(&self) -> ProbeOutcome {
        self.outcome
    }

    /// Our address the latest answer arrived on, when the datapath knew it.
    pub(crate) fn base(&self) -> Option<SocketAddr> {
        self.base
    }

    /// Whether the first attempt is over (answered or given up).
    pub(crate) fn settled(&self) -> bool {
        self.outcome != ProbeOutcome::Pending
    }

    fn start_attempt(&mut self, now: Instant, transaction: u128) {
        let transaction = TransactionId::from(transaction);
        self.request = Some(Request {
            transaction,
            sent: 0,
            retransmit_at: now,
        });
        self.next_attempt_at = None;
        self.send_request();
        if let Some(request) = self.request.as_mut() {
            request.retransmit_at = now + RTO_INITIAL;
        }
    }

    fn send_request(&mut self) {
        let Some(request) = self.request.as_mut() else {
            return;
        };
        request.sent += 1;
        let kind = MessageType::from_class_method(MessageClass::Request, BINDING);
        let mut message = Message::builder(kind, request.transaction, MessageWriteVec::new());
        // A fingerprint lets servers and middleboxes tell STUN from other UDP (RFC 8489 §7).
        let _ = message.add_fingerprint();
        self.outbox = Some(message.finish());
    }

    /// A datagram from the server, arrived on our address `local` if known. Returns whether
    /// it answered our request (false: not ours, stale, or not a Binding response).
    /// `transaction` seeds the next attempt if this one needs a new request id.
    pub(crate) fn handle_response(
        &mut self,
        now: Instant,
        datagram: &[u8],
        local: Option<SocketAddr>,
    ) -> bool {
        let Some(request) = self.request else {
            return false;
        };
        let Ok(message) = Message::from_bytes(datagram) else {
            return false;
        };
        if message.transaction_id() != request.transaction
            || message.method() != BINDING
            || !message.is_response()
        {
            return false;
        }
        self.request = None;
        self.next_attempt_at = Some(now + REFRESH);
        if message.has_class(MessageClass::Error) {
            self.outcome = ProbeOutcome::Unanswered;
            return true;
        }
        let transaction = message.transaction_id();
        // Every RFC 5389 server sends XOR-MAPPED-ADDRESS; RFC 3489's MAPPED-ADDRESS is not
        // worth supporting for a VPN that needs a modern STUN/TURN server anyway.
        let mapped = message
            .attribute::<XorMappedAddress>()
            .map(|a| a.addr(transaction));
        match mapped {
            Ok(address) => {
                self.outcome = ProbeOutcome::Mapped(address);
                if local.is_some() {
                    self.base = local;
                }
            }
            Err(_) => self.outcome = ProbeOutcome::Unanswered,
        }
        true
    }

    /// Retransmits or starts a new attempt when due. `transaction` is used if a new attempt
    /// starts.
    pub(crate) fn handle_timeout(&mut self, now: Instant, transaction: u128) {
        if let Some(request) = self.request
            && now >= request.retransmit_at
        {
            if request.sent >= ATTEMPTS {
                self.request = None;
                if self.outcome == ProbeOutcome::Pending {
                    self.outcome = ProbeOutcome::Unanswered;
                }
                self.next_attempt_at = Some(now + RETRY_AFTER_FAILURE);
            } else {
                let backoff = RTO_INITIAL * 2u32.pow(request.sent);
                self.send_request();
                if let Some(request) = self.request.as_mut() {
                    request.retransmit_at = now + backoff;
                }
            }
        }
        if let Some(at) = self.next_attempt_at
            && now >= at
        {
            self.start_attempt(now, transaction);
        }
    }

    /// When [`ReflexiveProbe::handle_timeout`] has work.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self.request {
            Some(request) => Some(request.retransmit_at),
            None => self.next_attempt_at,
        }
    }

    /// A request to send to [`ReflexiveProbe::server`].
    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        let contents = self.outbox.take()?;
        Some(Transmit {
            source: None,
            destination: self.server,
            contents,
        })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn server() -> SocketAddr {
        "203.0.113.1:3478".parse().unwrap()
    }

    /// A STUN server's success answer to `request`, saying it saw the sender at `mapped`.
    pub(in crate::ice) fn answer(request: &[u8], mapped: SocketAddr) -> Vec<u8> {
        let request = Message::from_bytes(request).unwrap();
        let mut reply = Message::builder_success(&request, MessageWriteVec::new());
        reply
            .add_attribute(&XorMappedAddress::new(mapped, request.transaction_id()))
            .unwrap();
        reply.finish()
    }

    #[test]
    fn an_answered_probe_reports_the_mapped_address_and_its_base() {
        let start = Instant::now();
        let mut probe = ReflexiveProbe::new(server(), start, 7);
        let request = probe.poll_transmit().unwrap();
        assert_eq!((request.source, request.destination), (None, server()));
        let request = request.contents;
        assert!(!probe.settled());
        let mapped: SocketAddr = "198.51.100.9:40001".parse().unwrap();
        let local: SocketAddr = "10.0.0.2:51820".parse().unwrap();
        assert!(probe.handle_response(start, &answer(&request, mapped), Some(local)));
        assert_eq!(probe.outcome(), ProbeOutcome::Mapped(mapped));
        assert_eq!(probe.base(), Some(local));
        assert_eq!(probe.poll_timeout(), Some(start + REFRESH));
    }

    #[test]
    fn answers_to_other_transactions_and_garbage_are_not_taken() {
        let start = Instant::now();
        let mut probe = ReflexiveProbe::new(server(), start, 7);
        let _ = probe.poll_transmit().unwrap();
        let other = ReflexiveProbe::new(server(), start, 8)
            .poll_transmit()
            .unwrap()
            .contents;
        let mapped = "198.51.100.9:40001".parse().unwrap();
        assert!(!probe.handle_response(start, &answer(&other, mapped), None));
        assert!(!probe.handle_response(start, b"\x00\x01garbage", None));
        assert!(!probe.handle_response(start, &[], None));
        assert_eq!(probe.outcome(), ProbeOutcome::Pending);
    }

    #[test]
    fn an_unanswered_probe_retransmits_with_backoff_then_gives_up_and_retries_later() {
        let start = Instant::now();
        let mut probe = ReflexiveProbe::new(server(), start, 7);
        let mut sent = vec![start];
        assert!(probe.poll_transmit().is_some());
        while let Some(at) = probe.poll_timeout() {
            probe.handle_timeout(at, 9);
            if probe.settled() {
                break;
            }
            assert!(probe.poll_transmit().is_some());
            sent.push(at);
        }
        let gaps: Vec<u128> = sent.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
        assert_eq!(gaps, [250, 500, 1000, 2000]);
        assert_eq!(probe.outcome(), ProbeOutcome::Unanswered);
        let retry = probe.poll_timeout().unwrap();
        assert_eq!(retry - *sent.last().unwrap(), Duration::from_secs(4 + 30));
        probe.handle_timeout(retry, 9);
        assert!(probe.poll_transmit().is_some());
    }
}
