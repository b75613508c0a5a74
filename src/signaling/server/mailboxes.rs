//! Who is subscribed to which key: the only state `wice signal` has, and it holds no
//! envelope beyond the subscribers' own bounded queues.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use prost::bytes::Bytes;

use super::State;
use super::budget::{Budgets, OverBudget};
use super::counters::ServerCounters;
use super::queue::{Pushed, SubscriberQueue};
use wice_core::keys::PublicKey;

/// Why a subscription was not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AddError {
    /// The server is at its subscription limit.
    Full,
    /// The server is shutting down.
    Closing,
}

/// A proven subscriber's mailbox, registered (with the NATS bus too) while it lives; closed
/// and removed when dropped, however the subscription ends. Both transports (gRPC and
/// WebSocket) hold one per subscription.
pub(super) struct OpenMailbox {
    state: Arc<State>,
    key: PublicKey,
    id: u64,
    /// Envelopes for the subscriber, in order.
    pub(super) queue: Arc<SubscriberQueue>,
}

impl OpenMailbox {
    /// Registers a mailbox for `key` (a group key when `group`) within the server's limits.
    pub(super) fn open(state: &Arc<State>, key: PublicKey, group: bool) -> Result<Self, AddError> {
        let queue = Arc::new(SubscriberQueue::with_byte_limit(
            state.config.queue_len,
            state.config.queue_bytes,
        ));
        let id = state
            .mailboxes
            .add(key, Arc::clone(&queue), group, &state.counters)?;
        #[cfg(feature = "nats")]
        if let Some(bus) = &state.bus {
            bus.watch(key, Arc::downgrade(state));
        }
        Ok(Self {
            state: Arc::clone(state),
            key,
            id,
            queue,
        })
    }
}

impl Drop for OpenMailbox {
    fn drop(&mut self) {
        self.queue.close();
        let state = &self.state;
        state.mailboxes.remove(&self.key, self.id, &state.counters);
        #[cfg(feature = "nats")]
        if let Some(bus) = &state.bus {
            bus.unwatch(&self.key);
        }
    }
}

/// One subscription of a key.
struct Subscription {
    id: u64,
    queue: Arc<SubscriberQueue>,
    /// Subscribed as a group (community) key: counted against `max_per_group`, never
    /// ended by a newer subscription.
    group: bool,
}

/// Subscriptions by key.
pub(super) struct Mailboxes {
    by_key: RwLock<HashMap<PublicKey, Vec<Subscription>>>,
    next_id: AtomicU64,
    closing: AtomicBool,
    max_total: u64,
    max_per_key: usize,
    max_per_group: usize,
}

impl Mailboxes {
    /// No subscriptions yet; at most `max_total` overall, `max_per_key` per key and
    /// `max_per_group` group subscriptions per group key.
    pub(super) fn new(max_total: u64, max_per_key: usize, max_per_group: usize) -> Self {
        Self {
            by_key: RwLock::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            max_total,
            max_per_key: max_per_key.max(1),
            max_per_group: max_per_group.max(1),
        }
    }

    /// Adds a subscription for `key` (whose ownership was proven). When `key` already has
    /// `max_per_key` subscriptions, the oldest is ended: it is most likely a connection of
    /// the same node that died without the server noticing yet. A `group` subscription (a
    /// community key every member holds) ends nobody: past `max_per_group` it is refused.
    pub(super) fn add(
        &self,
        key: PublicKey,
        queue: Arc<SubscriberQueue>,
        group: bool,
        counters: &ServerCounters,
    ) -> Result<u64, AddError> {
        if self.closing.load(Ordering::Relaxed) {
            return Err(AddError::Closing);
        }
        let mut by_key = self.by_key.write().unwrap_or_else(PoisonError::into_inner);
        if counters.subscriptions.load(Ordering::Relaxed) >= self.max_total {
            return Err(AddError::Full);
        }
        let entry = by_key.entry(key).or_default();
        let same_kind = entry.iter().filter(|s| s.group == group).count();
        if group && same_kind >= self.max_per_group {
            return Err(AddError::Full);
        }
        if !group
            && same_kind >= self.max_per_key
            && let Some(oldest) = entry.iter().position(|s| !s.group)
        {
            entry.remove(oldest).queue.close();
            counters.subscriptions.fetch_sub(1, Ordering::Relaxed);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        entry.push(Subscription { id, queue, group });
        counters.subscriptions.fetch_add(1, Ordering::Relaxed);
        Ok(id)
    }

    /// Removes subscription `id` of `key`, if it is still there.
    pub(super) fn remove(&self, key: &PublicKey, id: u64, counters: &ServerCounters) {
        let mut by_key = self.by_key.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = by_key.get_mut(key) {
            let before = entry.len();
            entry.retain(|subscription| subscription.id != id);
            if entry.len() < before {
                counters.subscriptions.fetch_sub(1, Ordering::Relaxed);
            }
            if entry.is_empty() {
                by_key.remove(key);
            }
        }
    }

    /// Queues `envelope` for every subscriber of `recipient`, charging each copy to its
    /// source's budgets, counting the outcome. Returns true when at least one copy was queued.
    pub(super) fn deliver(
        &self,
        recipient: &PublicKey,
        envelope: &Bytes,
        source: (PublicKey, Option<IpAddr>),
        budgets: &Arc<Budgets>,
        counters: &ServerCounters,
    ) -> bool {
        let by_key = self.by_key.read().unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = by_key.get(recipient) else {
            ServerCounters::add(&counters.dropped_no_subscriber, 1);
            return false;
        };
        let mut queued = false;
        for subscription in entry {
            let charge = match budgets.try_charge(source.0, source.1, envelope.len()) {
                Ok(charge) => charge,
                Err(over) => {
                    let counter = match over {
                        OverBudget::SenderKey | OverBudget::SourceIp => {
                            &counters.over_budget_source
                        }
                        OverBudget::Global => &counters.over_budget_global,
                    };
                    ServerCounters::add(counter, 1);
                    continue;
                }
            };
            match subscription
                .queue
                .push_charged(envelope.clone(), Some(charge))
            {
                Pushed::Queued => {
                    queued = true;
                    ServerCounters::add(&counters.delivered, 1);
                }
                Pushed::DroppedOldest(n) => {
                    queued = true;
                    ServerCounters::add(&counters.delivered, 1);
                    ServerCounters::add(&counters.dropped_queue_full, n as u64);
                }
                Pushed::Closed => {}
            }
        }
        queued
    }

    /// Refuses new subscriptions and ends every current one (graceful shutdown).
    pub(super) fn close_all(&self) {
        self.closing.store(true, Ordering::Relaxed);
        let by_key = self.by_key.read().unwrap_or_else(PoisonError::into_inner);
        for subscription in by_key.values().flatten() {
            subscription.queue.close();
        }
    }
}
