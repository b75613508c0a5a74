//! The table of subscription tasks a connection-oriented backend keeps (gRPC, WebSocket):
//! one task per subscribed key, each with what it needs to be started again on a new
//! connection, and the backend's closed flag.
//!
//! The backends differ only in how a task is spawned and what handle it leaves behind
//! (`L`: for gRPC a "key proven" watch, for WebSocket that and the socket's publish
//! channel), so that is all they supply.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wice_core::keys::{PrivateKey, PublicKey};

use super::backend::{BackendError, Inbox};

/// What one subscription keeps subscribed, and where its envelopes go.
#[derive(Clone)]
pub(super) struct Subscriber {
    pub(super) identity: PrivateKey,
    pub(super) inbox: Inbox,
    /// Subscribed as a group key (the server's `Hello.group`).
    pub(super) group: bool,
}

/// Reports the first attempt's outcome to the caller of `subscribe`.
pub(super) type FirstOutcome = oneshot::Sender<Result<(), BackendError>>;

/// One key's subscription task.
pub(super) struct Subscription<L> {
    pub(super) task: JoinHandle<()>,
    pub(super) subscriber: Subscriber,
    /// The backend's handle on the running task.
    pub(super) link: L,
}

/// Every subscription of a backend, by key (a key may be subscribed more than once).
pub(super) struct Subscriptions<L> {
    table: Mutex<HashMap<PublicKey, Vec<Subscription<L>>>>,
    closed: AtomicBool,
}

impl<L> Default for Subscriptions<L> {
    fn default() -> Self {
        Self {
            table: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        }
    }
}

impl<L> Subscriptions<L> {
    /// True once the backend was closed: nothing more may be subscribed or published.
    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    fn table(&self) -> MutexGuard<'_, HashMap<PublicKey, Vec<Subscription<L>>>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a task for `subscriber` with `spawn` and resolves with its first attempt's
    /// outcome; the task keeps going (re-subscribing) whatever that outcome was.
    pub(super) async fn add(
        &self,
        subscriber: Subscriber,
        spawn: impl FnOnce(Subscriber, FirstOutcome) -> Subscription<L>,
    ) -> Result<(), BackendError> {
        if self.is_closed() {
            return Err(BackendError::Closed);
        }
        let key = subscriber.identity.public_key();
        let (first_tx, first_rx) = oneshot::channel();
        let subscription = spawn(subscriber, first_tx);
        self.table().entry(key).or_default().push(subscription);
        first_rx.await.unwrap_or(Err(BackendError::Closed))
    }

    /// What `look` makes of `key`'s subscriptions; `None` when the key has none.
    pub(super) fn inspect<R>(
        &self,
        key: &PublicKey,
        look: impl FnOnce(&[Subscription<L>]) -> R,
    ) -> Option<R> {
        self.table()
            .get(key)
            .filter(|list| !list.is_empty())
            .map(|list| look(list))
    }

    /// Stops every task of `key`.
    pub(super) fn remove(&self, key: &PublicKey) {
        for subscription in self.table().remove(key).unwrap_or_default() {
            subscription.task.abort();
        }
    }

    /// Replaces every task with a new one from `spawn` (after the backend's connection
    /// changed). Nobody waits for the new tasks' first outcomes: the callers of
    /// `subscribe` had theirs.
    pub(super) fn restart_all(
        &self,
        mut spawn: impl FnMut(Subscriber, FirstOutcome) -> Subscription<L>,
    ) -> Result<(), BackendError> {
        if self.is_closed() {
            return Err(BackendError::Closed);
        }
        for list in self.table().values_mut() {
            for subscription in list.iter_mut() {
                subscription.task.abort();
                let (first, _) = oneshot::channel();
                *subscription = spawn(subscription.subscriber.clone(), first);
            }
        }
        Ok(())
    }

    /// Marks the backend closed and stops every task.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.abort_all();
    }

    /// Stops every task (the backend is dropped).
    pub(super) fn abort_all(&self) {
        for (_, list) in self.table().drain() {
            for subscription in list {
                subscription.task.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn subscriber(seed: u8) -> Subscriber {
        let (inbox, _receiver) = Inbox::channel(4);
        Subscriber {
            identity: PrivateKey::from_bytes([seed; 32]),
            inbox,
            group: false,
        }
    }

    fn pending_task(subscriber: Subscriber, first: FirstOutcome) -> Subscription<()> {
        let _ = first.send(Ok(()));
        Subscription {
            task: tokio::spawn(std::future::pending()),
            subscriber,
            link: (),
        }
    }

    #[tokio::test]
    async fn remove_restart_and_close_stop_the_tasks_they_replace() {
        let table = Subscriptions::<()>::default();
        let first = subscriber(1);
        let key = first.identity.public_key();
        table.add(first, pending_task).await.expect("subscribed");
        table.add(subscriber(1), pending_task).await.expect("again");
        assert_eq!(table.inspect(&key, <[_]>::len), Some(2));

        let old: Vec<_> = table
            .inspect(&key, |list| {
                list.iter().map(|s| s.task.abort_handle()).collect()
            })
            .expect("listed");
        table.restart_all(pending_task).expect("restarted");
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(
            old.iter().all(|task| task.is_finished()),
            "old tasks stopped"
        );
        assert_eq!(table.inspect(&key, <[_]>::len), Some(2));

        table.remove(&key);
        assert_eq!(table.inspect(&key, <[_]>::len), None);

        table
            .add(subscriber(2), pending_task)
            .await
            .expect("subscribed");
        table.close();
        assert!(table.is_closed());
        assert!(matches!(
            table.add(subscriber(3), pending_task).await,
            Err(BackendError::Closed)
        ));
        assert!(matches!(
            table.restart_all(pending_task),
            Err(BackendError::Closed)
        ));
    }
}
