//! A subscriber's queue: bounded in envelopes and bytes, and when full it drops the *oldest*
//! envelope, so a slow
//! subscriber loses stale signaling (which later descriptions supersede anyway) and never
//! grows the server's memory.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use prost::bytes::Bytes;
use tokio::sync::Notify;

use super::budget::Charge;

/// A bounded FIFO that makes room by dropping from the front. Pure.
#[derive(Debug)]
pub struct DropOldest<T> {
    items: VecDeque<T>,
    capacity: usize,
}

impl<T> DropOldest<T> {
    /// An empty queue holding at most `capacity` items (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            items: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Appends `item`; returns true when the oldest item had to go to make room.
    pub fn push(&mut self, item: T) -> bool {
        let dropped = self.items.len() >= self.capacity;
        if dropped {
            self.items.pop_front();
        }
        self.items.push_back(item);
        dropped
    }

    /// Takes the oldest item.
    pub fn pop(&mut self) -> Option<T> {
        self.items.pop_front()
    }

    /// Number of items held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// What happened to a pushed envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued.
    Queued,
    /// Queued, and this many of the oldest envelopes were dropped for it.
    DroppedOldest(usize),
    /// The subscription has ended; nothing was queued.
    Closed,
}

/// One queued envelope copy and the budget it is charged to.
struct Queued {
    envelope: Bytes,
    _charge: Option<Charge>,
}

struct State {
    items: VecDeque<Queued>,
    bytes: usize,
    closed: bool,
}

/// One subscriber's queue, shared by publishers (push) and its stream task (pop): at most
/// `capacity` envelopes and `max_bytes` bytes (the per-recipient budget), the oldest dropped
/// first.
pub struct SubscriberQueue {
    state: Mutex<State>,
    capacity: usize,
    max_bytes: usize,
    /// One waiter (the stream task); `notify_one` keeps a permit, so no wakeup is lost.
    ready: Notify,
}

impl SubscriberQueue {
    /// A queue of at most `capacity` envelopes, without a byte limit.
    pub fn new(capacity: usize) -> Self {
        Self::with_byte_limit(capacity, usize::MAX)
    }

    /// A queue of at most `capacity` envelopes and `max_bytes` bytes.
    pub fn with_byte_limit(capacity: usize, max_bytes: usize) -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::new(),
                bytes: 0,
                closed: false,
            }),
            capacity: capacity.max(1),
            max_bytes,
            ready: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues an envelope for the subscriber, without a budget charge.
    pub fn push(&self, envelope: Bytes) -> Pushed {
        self.push_charged(envelope, None)
    }

    /// Queues an envelope holding `charge` until it leaves the queue.
    pub(super) fn push_charged(&self, envelope: Bytes, charge: Option<Charge>) -> Pushed {
        let outcome = {
            let mut state = self.state();
            if state.closed {
                return Pushed::Closed;
            }
            let mut dropped = 0;
            while !state.items.is_empty()
                && (state.items.len() >= self.capacity
                    || state.bytes + envelope.len() > self.max_bytes)
            {
                if let Some(old) = state.items.pop_front() {
                    state.bytes -= old.envelope.len();
                    dropped += 1;
                }
            }
            state.bytes += envelope.len();
            state.items.push_back(Queued {
                envelope,
                _charge: charge,
            });
            if dropped == 0 {
                Pushed::Queued
            } else {
                Pushed::DroppedOldest(dropped)
            }
        };
        self.ready.notify_one();
        outcome
    }

    /// The next envelope; `None` once the queue is closed. Cancel-safe.
    pub async fn pop(&self) -> Option<Bytes> {
        loop {
            {
                let mut state = self.state();
                if state.closed {
                    return None;
                }
                if let Some(item) = state.items.pop_front() {
                    state.bytes -= item.envelope.len();
                    return Some(item.envelope);
                }
            }
            self.ready.notified().await;
        }
    }

    /// Ends the subscription: queued envelopes are discarded and `pop` returns `None`.
    pub fn close(&self) {
        {
            let mut state = self.state();
            state.closed = true;
            state.items = VecDeque::new();
            state.bytes = 0;
        }
        self.ready.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_the_oldest_item() {
        let mut queue = DropOldest::new(3);
        assert!(!queue.push(1));
        assert!(!queue.push(2));
        assert!(!queue.push(3));
        assert!(queue.push(4));
        assert!(queue.push(5));
        assert_eq!(queue.len(), 3);
        assert_eq!(
            std::iter::from_fn(|| queue.pop()).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        assert!(queue.is_empty());
    }

    #[tokio::test]
    async fn a_subscriber_queue_hands_out_in_order_and_ends_when_closed() {
        let queue = SubscriberQueue::new(2);
        assert_eq!(queue.push(Bytes::from_static(b"a")), Pushed::Queued);
        assert_eq!(queue.push(Bytes::from_static(b"b")), Pushed::Queued);
        assert_eq!(
            queue.push(Bytes::from_static(b"c")),
            Pushed::DroppedOldest(1)
        );
        assert_eq!(queue.pop().await.unwrap(), "b");
        assert_eq!(queue.pop().await.unwrap(), "c");
        queue.close();
        assert_eq!(queue.pop().await, None);
        assert_eq!(queue.push(Bytes::from_static(b"d")), Pushed::Closed);
    }

    #[tokio::test]
    async fn a_waiting_pop_wakes_for_a_push() {
        let queue = std::sync::Arc::new(SubscriberQueue::new(4));
        let waiter = tokio::spawn({
            let queue = queue.clone();
            async move { queue.pop().await }
        });
        tokio::task::yield_now().await;
        queue.push(Bytes::from_static(b"x"));
        assert_eq!(waiter.await.unwrap().unwrap(), "x");
    }

    #[test]
    fn the_byte_limit_drops_the_oldest_until_the_new_envelope_fits() {
        let queue = SubscriberQueue::with_byte_limit(100, 10);
        assert_eq!(queue.push(Bytes::from_static(b"aaaa")), Pushed::Queued);
        assert_eq!(queue.push(Bytes::from_static(b"bbbb")), Pushed::Queued);
        assert_eq!(
            queue.push(Bytes::from_static(b"cccccccc")),
            Pushed::DroppedOldest(2)
        );
        assert_eq!(queue.state().bytes, 8);
    }
}
