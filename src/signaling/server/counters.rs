//! What `wice signal` counts, logged periodically and at shutdown.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters, shared by every connection.
#[derive(Debug, Default)]
pub struct ServerCounters {
    pub(super) accepted: AtomicU64,
    pub(super) delivered: AtomicU64,
    pub(super) dropped_no_subscriber: AtomicU64,
    pub(super) dropped_queue_full: AtomicU64,
    pub(super) rejected_oversized: AtomicU64,
    pub(super) rejected_malformed: AtomicU64,
    pub(super) auth_failed: AtomicU64,
    pub(super) rate_limited: AtomicU64,
    pub(super) refused_capacity: AtomicU64,
    pub(super) unauthenticated_publish: AtomicU64,
    pub(super) sender_not_proven: AtomicU64,
    pub(super) over_budget_source: AtomicU64,
    pub(super) over_budget_global: AtomicU64,
    pub(super) closed_handshake_timeout: AtomicU64,
    pub(super) closed_idle: AtomicU64,
    pub(super) subscriptions: AtomicU64,
    pub(super) connections: AtomicU64,
    pub(super) bus_published: AtomicU64,
    pub(super) bus_received: AtomicU64,
    pub(super) bus_failed: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Well-formed envelopes taken for fan-out.
    pub accepted: u64,
    /// Envelope copies queued to a subscriber.
    pub delivered: u64,
    /// Envelopes for a key with no subscriber (dropped: the server stores nothing).
    pub dropped_no_subscriber: u64,
    /// Queued envelopes dropped (oldest first) because a subscriber read too slowly.
    pub dropped_queue_full: u64,
    /// Envelopes over the size limit.
    pub rejected_oversized: u64,
    /// Envelopes that are not protobuf or have wrong field lengths, malformed subscribe
    /// steps, and batches over the batch limit.
    pub rejected_malformed: u64,
    /// Subscriptions whose key proof failed, was missing, or stalled.
    pub auth_failed: u64,
    /// Envelopes and subscription attempts refused by the per-connection rate limit.
    pub rate_limited: u64,
    /// Connections and subscriptions refused because the server was at its limits.
    pub refused_capacity: u64,
    /// Publish calls on a connection where no key was proven (refused whole).
    pub unauthenticated_publish: u64,
    /// Envelopes whose sender is not a key proven on their connection (refused).
    pub sender_not_proven: u64,
    /// Envelope copies refused because their sender key or source address had too many
    /// bytes queued.
    pub over_budget_source: u64,
    /// Envelope copies refused because the server had its memory budget queued.
    pub over_budget_global: u64,
    /// Connections closed for sending no request within the handshake timeout.
    pub closed_handshake_timeout: u64,
    /// Connections closed after the idle timeout without a call.
    pub closed_idle: u64,
    /// Subscriptions active now.
    pub subscriptions: u64,
    /// Connections open now.
    pub connections: u64,
    /// Bytes of envelopes queued now, over every subscriber.
    pub queued_bytes: u64,
    /// `--nats`: envelopes handed to the NATS bus for the other servers.
    pub bus_published: u64,
    /// `--nats`: envelopes from the bus delivered to subscribers here (or tried to).
    pub bus_received: u64,
    /// `--nats`: envelopes the bus would not take, and bus subscriptions that failed.
    pub bus_failed: u64,
}

impl ServerCounters {
    /// Adds `n` to one counter.
    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> CounterSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterSnapshot {
            accepted: get(&self.accepted),
            delivered: get(&self.delivered),
            dropped_no_subscriber: get(&self.dropped_no_subscriber),
            dropped_queue_full: get(&self.dropped_queue_full),
            rejected_oversized: get(&self.rejected_oversized),
            rejected_malformed: get(&self.rejected_malformed),
            auth_failed: get(&self.auth_failed),
            rate_limited: get(&self.rate_limited),
            refused_capacity: get(&self.refused_capacity),
            unauthenticated_publish: get(&self.unauthenticated_publish),
            sender_not_proven: get(&self.sender_not_proven),
            over_budget_source: get(&self.over_budget_source),
            over_budget_global: get(&self.over_budget_global),
            closed_handshake_timeout: get(&self.closed_handshake_timeout),
            closed_idle: get(&self.closed_idle),
            subscriptions: get(&self.subscriptions),
            connections: get(&self.connections),
            queued_bytes: 0,
            bus_published: get(&self.bus_published),
            bus_received: get(&self.bus_received),
            bus_failed: get(&self.bus_failed),
        }
    }
}

impl fmt::Display for CounterSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accepted={} delivered={} dropped_no_subscriber={} dropped_queue_full={} \
             rejected_oversized={} rejected_malformed={} auth_failed={} rate_limited={} \
             refused_capacity={} unauthenticated_publish={} sender_not_proven={} \
             over_budget_source={} over_budget_global={} closed_handshake_timeout={} \
             closed_idle={} subscriptions={} connections={} queued_bytes={} \
             bus_published={} bus_received={} bus_failed={}",
            self.accepted,
            self.delivered,
            self.dropped_no_subscriber,
            self.dropped_queue_full,
            self.rejected_oversized,
            self.rejected_malformed,
            self.auth_failed,
            self.rate_limited,
            self.refused_capacity,
            self.unauthenticated_publish,
            self.sender_not_proven,
            self.over_budget_source,
            self.over_budget_global,
            self.closed_handshake_timeout,
            self.closed_idle,
            self.subscriptions,
            self.connections,
            self.queued_bytes,
            self.bus_published,
            self.bus_received,
            self.bus_failed
        )
    }
}
