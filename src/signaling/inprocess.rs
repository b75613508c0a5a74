//! The in-process backend: a hub that nodes in one process share, for tests and the demo.
//!
//! Delivery is immediate and in order; envelopes for keys nobody subscribed are dropped and
//! counted, never queued. Like `wice signal`, a backend publishes only envelopes whose sender
//! is a key it subscribed (the in-process stand-in for the key proof): with no subscription
//! a publish is refused, and an envelope from another key is dropped and counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use super::backend::{Backend, BackendError, BackendFuture, BackendKind, Inbox};
use wice_core::keys::{PrivateKey, PublicKey};
use wice_core::signaling::envelope::Envelope;

/// A mailbox hub inside one process. Cloning shares it.
#[derive(Clone, Default)]
pub struct InProcessHub {
    inner: Arc<HubInner>,
}

#[derive(Default)]
struct HubInner {
    /// Key → (subscription id, inbox) for every current subscriber of that key.
    subscribers: Mutex<HashMap<PublicKey, Vec<(u64, Inbox)>>>,
    next_id: AtomicU64,
    delivered: AtomicU64,
    dropped_no_subscriber: AtomicU64,
    dropped_inbox_full: AtomicU64,
    refused_sender_not_subscribed: AtomicU64,
}

/// What an [`InProcessHub`] has done with envelopes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubCounters {
    /// Envelope copies handed to a subscriber's inbox.
    pub delivered: u64,
    /// Envelopes addressed to a key nobody subscribed.
    pub dropped_no_subscriber: u64,
    /// Envelope copies dropped because the subscriber's inbox was full.
    pub dropped_inbox_full: u64,
    /// Envelopes whose sender the publishing backend had not subscribed.
    pub refused_sender_not_subscribed: u64,
}

impl InProcessHub {
    /// A new, empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// The hub `inprocess` in a config names: one per process.
    pub fn global() -> Self {
        static GLOBAL: OnceLock<InProcessHub> = OnceLock::new();
        GLOBAL.get_or_init(Self::new).clone()
    }

    /// A backend attached to this hub.
    pub fn backend(&self) -> InProcessBackend {
        InProcessBackend {
            hub: self.clone(),
            mine: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        }
    }

    /// What the hub has done so far.
    pub fn counters(&self) -> HubCounters {
        HubCounters {
            delivered: self.inner.delivered.load(Ordering::Relaxed),
            dropped_no_subscriber: self.inner.dropped_no_subscriber.load(Ordering::Relaxed),
            dropped_inbox_full: self.inner.dropped_inbox_full.load(Ordering::Relaxed),
            refused_sender_not_subscribed: self
                .inner
                .refused_sender_not_subscribed
                .load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PublicKey, Vec<(u64, Inbox)>>> {
        self.inner
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, envelopes: Vec<Envelope>) {
        let mut subscribers = self.lock();
        for envelope in envelopes {
            let Some(inboxes) = subscribers.get_mut(&envelope.recipient) else {
                self.inner
                    .dropped_no_subscriber
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            };
            inboxes.retain(|(_, inbox)| !inbox.is_closed());
            for (_, inbox) in inboxes.iter() {
                let counter = if inbox.deliver(envelope.clone()) {
                    &self.inner.delivered
                } else {
                    &self.inner.dropped_inbox_full
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            if inboxes.is_empty() {
                subscribers.remove(&envelope.recipient);
            }
        }
    }

    fn subscribe(&self, key: PublicKey, inbox: Inbox) -> u64 {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().entry(key).or_default().push((id, inbox));
        id
    }

    fn remove(&self, key: &PublicKey, id: u64) {
        let mut subscribers = self.lock();
        if let Some(inboxes) = subscribers.get_mut(key) {
            inboxes.retain(|(other, _)| *other != id);
            if inboxes.is_empty() {
                subscribers.remove(key);
            }
        }
    }
}

/// One node's attachment to an [`InProcessHub`].
pub struct InProcessBackend {
    hub: InProcessHub,
    /// This backend's subscriptions, to undo on unsubscribe and close.
    mine: Mutex<Vec<(PublicKey, u64)>>,
    closed: AtomicBool,
}

impl InProcessBackend {
    fn check_open(&self) -> Result<(), BackendError> {
        if self.closed.load(Ordering::Relaxed) {
            Err(BackendError::Closed)
        } else {
            Ok(())
        }
    }

    fn mine(&self) -> std::sync::MutexGuard<'_, Vec<(PublicKey, u64)>> {
        self.mine.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Backend for InProcessBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::InProcess
    }

    fn publish(&self, envelopes: Vec<Envelope>) -> BackendFuture<'_, ()> {
        Box::pin(async move {
            self.check_open()?;
            let (allowed, refused): (Vec<_>, Vec<_>) = {
                let mine = self.mine();
                if mine.is_empty() {
                    return Err(BackendError::Refused {
                        kind: BackendKind::InProcess,
                        reason: "subscribe a key before publishing".to_owned(),
                    });
                }
                envelopes
                    .into_iter()
                    .partition(|e| mine.iter().any(|(key, _)| *key == e.sender))
            };
            self.hub
                .inner
                .refused_sender_not_subscribed
                .fetch_add(refused.len() as u64, Ordering::Relaxed);
            self.hub.publish(allowed);
            Ok(())
        })
    }

    fn subscribe(&self, identity: PrivateKey, inbox: Inbox) -> BackendFuture<'_, ()> {
        Box::pin(async move {
            self.check_open()?;
            let key = identity.public_key();
            let id = self.hub.subscribe(key, inbox);
            self.mine().push((key, id));
            Ok(())
        })
    }

    fn unsubscribe(&self, key: PublicKey) -> BackendFuture<'_, ()> {
        Box::pin(async move {
            let mut mine = self.mine();
            for (_, id) in mine.iter().filter(|(k, _)| *k == key) {
                self.hub.remove(&key, *id);
            }
            mine.retain(|(k, _)| *k != key);
            Ok(())
        })
    }

    fn close(&self) -> BackendFuture<'_, ()> {
        Box::pin(async move {
            self.closed.store(true, Ordering::Relaxed);
            for (key, id) in self.mine().drain(..) {
                self.hub.remove(&key, id);
            }
            Ok(())
        })
    }
}

impl Drop for InProcessBackend {
    fn drop(&mut self) {
        for (key, id) in self.mine().drain(..) {
            self.hub.remove(&key, id);
        }
    }
}
