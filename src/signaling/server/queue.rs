//! A subscriber's queue: bounded, and when full it drops the *oldest* envelope, so a slow
//! subscriber loses stale signaling (which later descriptions supersede anyway) and never
//! grows the server's memory.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use prost::bytes::Bytes;
use tokio::sync::Notify;

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
    /// Queued, and the oldest envelope was dropped for it.
    DroppedOldest,
    /// The subscription has ended; nothing was queued.
    Closed,
}

struct State {
    items: DropOldest<Bytes>,
    closed: bool,
}

/// One subscriber's queue, shared by publishers (push) and its stream task (pop).
pub struct SubscriberQueue {
    state: Mutex<State>,
    /// One waiter (the stream task); `notify_one` keeps a permit, so no wakeup is lost.
    ready: Notify,
}

impl SubscriberQueue {
    /// A queue of at most `capacity` envelopes.
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                items: DropOldest::new(capacity),
                closed: false,
            }),
            ready: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues an envelope for the subscriber.
    pub fn push(&self, envelope: Bytes) -> Pushed {
        let outcome = {
            let mut state = self.state();
            if state.closed {
                return Pushed::Closed;
            }
            if state.items.push(envelope) {
                Pushed::DroppedOldest
            } else {
                Pushed::Queued
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
                if let Some(item) = state.items.pop() {
                    return Some(item);
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
            state.items = DropOldest::new(1);
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
        assert_eq!(queue.push(Bytes::from_static(b"c")), Pushed::DroppedOldest);
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
}
