//! [`Signaling`]: one node's signaling over every configured backend at once.
//!
//! Publishing seals the message once per recipient and hands the batch to every backend;
//! it succeeds when at least one backend took it. Receiving subscribes the node's key on
//! every backend into one inbox, drops copies of an envelope already accepted through
//! another backend, opens the rest with the node's [`Opener`], and hands on
//! `(sender, message)` pairs that are authentic, addressed to us, fresh and not replayed.
//!
//! This is the I/O shell around the pure pieces ([`Sealer`], [`Opener`], [`RecentEnvelopes`]):
//! it reads the clock and the OS random source, and runs on tokio.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use rand_core::OsRng;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::backend::{Backend, BackendError, Delivery, Inbox};
use wice_core::keys::{PrivateKey, PublicKey};
use wice_core::signaling::envelope::{
    Envelope, NONCE_LEN, OpenCounters, Opener, SealError, Sealer, SenderPolicy,
};
use wice_core::signaling::message::SignalingMessage;

/// Envelopes buffered between the backends and the opener; beyond this, backends drop.
pub const INBOX_CAPACITY: usize = 1024;
/// Opened messages buffered for the consumer before the opener waits for it.
pub const RECEIVED_CAPACITY: usize = 256;
/// Envelopes remembered for de-duplication across backends.
pub const DEDUP_CAPACITY: usize = 4096;

/// A message that opened: authentic, for us, fresh and not seen before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The key that sealed it.
    pub sender: PublicKey,
    /// What it said.
    pub message: SignalingMessage,
}

/// Why a publish reached nobody.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The message could not be sealed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// No backend is configured.
    #[error("no signaling backend is configured")]
    NoBackend,
    /// Every backend failed; one error per backend, in configuration order.
    #[error("every signaling backend failed: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    AllBackendsFailed(Vec<BackendError>),
}

/// What a [`Signaling`] has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignalingCounters {
    /// The opener's outcomes, one per envelope that reached it.
    pub open: OpenCounters,
    /// Copies of an accepted envelope that arrived again through another backend.
    pub duplicates: u64,
    /// Envelopes sealed and handed to at least one backend.
    pub published: u64,
    /// Backend publish calls that failed.
    pub publish_failures: u64,
}

/// The `(sender, nonce)` pairs of recently accepted envelopes and the backend each came
/// through, so a copy from another backend is recognised. Pure and bounded.
#[derive(Debug, Default)]
pub struct RecentEnvelopes {
    order: VecDeque<(PublicKey, [u8; NONCE_LEN])>,
    backend_of: HashMap<(PublicKey, [u8; NONCE_LEN]), usize>,
}

impl RecentEnvelopes {
    /// True when this envelope was already accepted through a different backend. A copy
    /// through the *same* backend is not a multi-backend duplicate: it goes on to the opener,
    /// whose replay window refuses and counts it.
    pub fn is_duplicate(&self, envelope: &Envelope, backend: usize) -> bool {
        self.backend_of
            .get(&(envelope.sender, envelope.nonce))
            .is_some_and(|&first| first != backend)
    }

    /// Remembers an accepted envelope, forgetting the oldest beyond [`DEDUP_CAPACITY`].
    pub fn remember(&mut self, envelope: &Envelope, backend: usize) {
        let key = (envelope.sender, envelope.nonce);
        if self.backend_of.insert(key, backend).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > DEDUP_CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.backend_of.remove(&old);
            }
        }
    }
}

struct Shared {
    opener: Mutex<Opener>,
    counters: Mutex<SignalingCounters>,
}

impl Shared {
    fn counters(&self) -> std::sync::MutexGuard<'_, SignalingCounters> {
        self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One node's signaling over all its backends. See the module docs.
pub struct Signaling {
    public: PublicKey,
    backends: Vec<Arc<dyn Backend>>,
    sealer: Mutex<Sealer>,
    shared: Arc<Shared>,
    receiver: JoinHandle<()>,
    /// Group keys subscribed with [`Signaling::subscribe_group`], and their openers' tasks.
    groups: Mutex<Vec<(PublicKey, JoinHandle<()>)>>,
}

impl Signaling {
    /// Subscribes `identity`'s key on every backend and starts opening what arrives.
    ///
    /// A backend whose first subscription attempt fails is logged and kept: reconnecting
    /// backends keep trying. Returns the handle and the stream of opened messages.
    pub async fn start(
        identity: PrivateKey,
        policy: SenderPolicy,
        backends: Vec<Arc<dyn Backend>>,
    ) -> (Self, mpsc::Receiver<Received>) {
        let public = identity.public_key();
        let (inbox, raw) = Inbox::channel(INBOX_CAPACITY);
        for (index, backend) in backends.iter().enumerate() {
            if let Err(error) = backend
                .subscribe(identity.clone(), inbox.for_backend(index))
                .await
            {
                tracing::warn!(backend = %backend.kind(), %error, "signaling subscription not active yet");
            }
        }
        let shared = Arc::new(Shared {
            opener: Mutex::new(Opener::new(&identity, policy)),
            counters: Mutex::new(SignalingCounters::default()),
        });
        let (out, received) = mpsc::channel(RECEIVED_CAPACITY);
        let receiver = tokio::spawn(receive(raw, Arc::clone(&shared), out));
        let signaling = Self {
            public,
            backends,
            sealer: Mutex::new(Sealer::new(&identity)),
            shared,
            receiver,
            groups: Mutex::new(Vec::new()),
        };
        (signaling, received)
    }

    /// This node's key.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// Seals `message` to each recipient and publishes the batch on every backend. Succeeds
    /// when at least one backend took it; delivery itself is not confirmed.
    pub async fn publish(
        &self,
        recipients: &[PublicKey],
        message: &SignalingMessage,
    ) -> Result<(), PublishError> {
        if self.backends.is_empty() {
            return Err(PublishError::NoBackend);
        }
        let envelopes = {
            let mut sealer = self.sealer.lock().unwrap_or_else(PoisonError::into_inner);
            let now = SystemTime::now();
            recipients
                .iter()
                .map(|recipient| sealer.seal(recipient, message, now, &mut OsRng))
                .collect::<Result<Vec<_>, _>>()?
        };
        let calls: Vec<_> = self
            .backends
            .iter()
            .map(|backend| {
                let backend = Arc::clone(backend);
                let envelopes = envelopes.clone();
                let kind = backend.kind();
                (
                    kind,
                    tokio::spawn(async move { backend.publish(envelopes).await }),
                )
            })
            .collect();
        let mut errors = Vec::new();
        for (kind, call) in calls {
            match call.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => errors.push(error),
                Err(join) => errors.push(BackendError::Unavailable {
                    kind,
                    reason: format!("publish task failed: {join}"),
                }),
            }
        }
        let mut counters = self.shared.counters();
        counters.publish_failures += errors.len() as u64;
        if errors.len() == self.backends.len() {
            return Err(PublishError::AllBackendsFailed(errors));
        }
        counters.published += envelopes.len() as u64;
        Ok(())
    }

    /// Subscribes a group key (a community key every member holds) on every backend and
    /// opens what arrives with it, accepting senders by `policy`. Publish to the group with
    /// [`Signaling::publish`] and the group's public key as recipient: envelopes are sealed
    /// from our own key, over the same connections. Ends with [`Signaling::close`].
    pub async fn subscribe_group(
        &self,
        group: PrivateKey,
        policy: SenderPolicy,
    ) -> mpsc::Receiver<Received> {
        let (inbox, raw) = Inbox::channel(INBOX_CAPACITY);
        for (index, backend) in self.backends.iter().enumerate() {
            if let Err(error) = backend
                .subscribe_group(group.clone(), inbox.for_backend(index))
                .await
            {
                tracing::warn!(backend = %backend.kind(), %error, "group subscription not active yet");
            }
        }
        let shared = Arc::new(Shared {
            opener: Mutex::new(Opener::new(&group, policy)),
            counters: Mutex::new(SignalingCounters::default()),
        });
        let (out, received) = mpsc::channel(RECEIVED_CAPACITY);
        let task = tokio::spawn(receive(raw, shared, out));
        self.groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((group.public_key(), task));
        received
    }

    /// Stops the group subscription of `group` (we left that community).
    pub async fn unsubscribe_group(&self, group: PublicKey) {
        let tasks: Vec<JoinHandle<()>> = {
            let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
            let (gone, kept) = std::mem::take(&mut *groups)
                .into_iter()
                .partition(|(key, _)| *key == group);
            *groups = kept;
            gone.into_iter().map(|(_, task)| task).collect()
        };
        for task in tasks {
            task.abort();
        }
        for backend in &self.backends {
            let _ = backend.unsubscribe(group).await;
        }
    }

    /// Our addresses changed: every backend drops connections that may be stuck on an
    /// address we lost and subscribes again now.
    pub async fn reconnect(&self) {
        for backend in &self.backends {
            if let Err(error) = backend.reconnect().await {
                tracing::debug!(backend = %backend.kind(), %error, "signaling reconnect");
            }
        }
    }

    /// Replaces which senders are accepted (peers added or removed).
    pub fn set_sender_policy(&self, policy: SenderPolicy) {
        self.shared
            .opener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set_policy(policy);
    }

    /// What has happened so far.
    pub fn counters(&self) -> SignalingCounters {
        let mut counters = *self.shared.counters();
        counters.open = self
            .shared
            .opener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .counters();
        counters
    }

    /// Unsubscribes and closes every backend; the stream of received messages ends.
    pub async fn close(self) {
        let groups =
            std::mem::take(&mut *self.groups.lock().unwrap_or_else(PoisonError::into_inner));
        for (key, task) in groups {
            task.abort();
            for backend in &self.backends {
                let _ = backend.unsubscribe(key).await;
            }
        }
        for backend in &self.backends {
            let _ = backend.unsubscribe(self.public).await;
            let _ = backend.close().await;
        }
        self.receiver.abort();
    }
}

impl Drop for Signaling {
    fn drop(&mut self) {
        self.receiver.abort();
        for (_, task) in self
            .groups
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            task.abort();
        }
    }
}

/// Opens what the backends deliver and hands on what passes.
async fn receive(
    mut raw: mpsc::Receiver<Delivery>,
    shared: Arc<Shared>,
    out: mpsc::Sender<Received>,
) {
    let mut recent = RecentEnvelopes::default();
    while let Some(Delivery { backend, envelope }) = raw.recv().await {
        if recent.is_duplicate(&envelope, backend) {
            shared.counters().duplicates += 1;
            continue;
        }
        let opened = shared
            .opener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open(&envelope, SystemTime::now());
        match opened {
            Ok((sender, message)) => {
                recent.remember(&envelope, backend);
                if out.send(Received { sender, message }).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                tracing::debug!(sender = %envelope.sender, backend, %error, "signaling envelope refused");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::bytes::Bytes;

    fn envelope(nonce: u8) -> Envelope {
        Envelope {
            sender: PublicKey::from_bytes([1; 32]),
            recipient: PublicKey::from_bytes([2; 32]),
            nonce: [nonce; NONCE_LEN],
            ciphertext: Bytes::new(),
        }
    }

    #[test]
    fn a_copy_through_another_backend_is_a_duplicate_but_not_through_the_same_one() {
        let mut recent = RecentEnvelopes::default();
        assert!(!recent.is_duplicate(&envelope(1), 0));
        recent.remember(&envelope(1), 0);
        assert!(recent.is_duplicate(&envelope(1), 1));
        assert!(
            !recent.is_duplicate(&envelope(1), 0),
            "left to the replay window"
        );
        assert!(!recent.is_duplicate(&envelope(2), 1));
    }

    #[test]
    fn the_dedup_memory_is_bounded() {
        let mut recent = RecentEnvelopes::default();
        for i in 0..(DEDUP_CAPACITY + 100) {
            let mut e = envelope(0);
            e.nonce[..8].copy_from_slice(&(i as u64).to_le_bytes());
            recent.remember(&e, 0);
        }
        assert_eq!(recent.order.len(), DEDUP_CAPACITY);
        assert_eq!(recent.backend_of.len(), DEDUP_CAPACITY);
        assert!(
            !recent.is_duplicate(&envelope(0), 1),
            "the oldest was forgotten"
        );
    }
}
