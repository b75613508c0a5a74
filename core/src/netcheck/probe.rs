//! One Binding transaction of a netcheck: send, retransmit, and either an answer with its
//! round-trip time or a give-up.
//!
//! Shorter than a candidate probe's schedule: netcheck runs while a person waits, and a
//! filtering test *expects* silence from a filtering NAT, so its give-up time is the cost
//! of every such test.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::message::{BindingAnswer, Change, binding_request, parse_binding_success};

/// Gaps between sends: the request goes out at 0, 250, 750 and 1750 ms.
const RETRANSMIT_AFTER: [Duration; 3] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_millis(1000),
];
/// How long after the first send an unanswered probe gives up.
pub const GIVE_UP_AFTER: Duration = Duration::from_millis(2750);

/// What one probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    /// Still waiting.
    Pending,
    /// The server answered.
    Answered(Answered),
    /// No answer within [`GIVE_UP_AFTER`].
    TimedOut,
}

/// An answer and how it came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answered {
    /// What the server said.
    pub answer: BindingAnswer,
    /// Where the answer came from.
    pub from: SocketAddr,
    /// From the latest send to the answer.
    pub rtt: Duration,
}

/// One Binding transaction toward `destination`.
#[derive(Debug, Clone)]
pub(crate) struct BindingProbe {
    destination: SocketAddr,
    transaction: u128,
    request: Vec<u8>,
    started: Instant,
    last_sent: Instant,
    sends: usize,
    next_send_at: Option<Instant>,
    outbox: bool,
    result: ProbeResult,
}

impl BindingProbe {
    /// A probe whose first request is queued at `now`.
    pub(crate) fn new(
        destination: SocketAddr,
        change: Change,
        transaction: u128,
        now: Instant,
    ) -> Self {
        Self {
            destination,
            transaction,
            request: binding_request(transaction, change),
            started: now,
            last_sent: now,
            sends: 0,
            next_send_at: Some(now),
            outbox: false,
            result: ProbeResult::Pending,
        }
    }

    pub(crate) fn destination(&self) -> SocketAddr {
        self.destination
    }

    pub(crate) fn result(&self) -> ProbeResult {
        self.result
    }

    pub(crate) fn settled(&self) -> bool {
        self.result != ProbeResult::Pending
    }

    /// Takes a datagram if it answers this probe; returns whether it did.
    pub(crate) fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) -> bool {
        if self.settled() {
            return false;
        }
        let Some(answer) = parse_binding_success(datagram) else {
            return false;
        };
        if answer.transaction != self.transaction {
            return false;
        }
        self.result = ProbeResult::Answered(Answered {
            answer,
            from,
            rtt: now.saturating_duration_since(self.last_sent),
        });
        self.next_send_at = None;
        true
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.settled() {
            return;
        }
        if now >= self.started + GIVE_UP_AFTER && self.sends > 0 {
            self.result = ProbeResult::TimedOut;
            self.next_send_at = None;
            return;
        }
        if let Some(at) = self.next_send_at
            && now >= at
        {
            self.outbox = true;
            if self.sends == 0 {
                self.started = now;
            }
            self.last_sent = now;
            self.next_send_at = RETRANSMIT_AFTER.get(self.sends).map(|gap| now + *gap);
            self.sends += 1;
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.settled() {
            return None;
        }
        let give_up = (self.sends > 0).then_some(self.started + GIVE_UP_AFTER);
        match (self.next_send_at, give_up) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<&[u8]> {
        if std::mem::take(&mut self.outbox) {
            Some(&self.request)
        } else {
            None
        }
    }
}
