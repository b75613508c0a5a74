//! The NATS backend: envelopes travel over a NATS server or cluster (`nats://`, `tls://`).
//!
//! Each recipient key has its own subject, [`subject_for`]: a hash of the key, so subjects are
//! fixed-length tokens that a NATS account's permissions can match, and the bus's subject
//! list does not spell out keys. A subscription is a NATS subscription of that subject; a
//! group key (a community key many members hold) is subscribed the same way, and NATS hands
//! every subscriber a copy. Core NATS keeps nothing: a message with no subscriber is dropped,
//! as the [`Backend`] semantics ask.
//!
//! One connection per backend. async-nats reconnects by itself (to any server of the
//! cluster, the seeds in the URL and the ones the cluster advertises) and restores every
//! subscription on the new connection; [`Backend::reconnect`] forces that at once.
//!
//! Trust: NATS does not ask for the key proof `wice signal` does. Anyone the cluster lets
//! subscribe could read any mailbox subject, and publish to it: the envelopes stay sealed
//! and authenticated end to end (the receiver refuses what the sender's key did not seal),
//! but mailbox privacy and flood protection are the cluster's (NATS accounts, per-user
//! subject permissions, `?creds=`/`?nkey=` authentication). The backend itself publishes
//! only envelopes from keys it subscribed, like the other backends, so a node's mistakes do
//! not look like forgeries; and it drops what arrives on a subject for another recipient.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::{Client, ConnectOptions};
use blake2::{Blake2s256, Digest as _};
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt as _;

use super::backend::{
    Backend, BackendError, BackendFuture, BackendKind, BackendUrl, Inbox, NatsAuth, NatsUrl,
    from_subscribed_senders,
};
use wice_core::keys::{PrivateKey, PublicKey};
use wice_core::signaling::envelope::{Envelope, MAX_ENVELOPE_LEN};

/// What every mailbox subject starts with.
pub const SUBJECT_PREFIX: &str = "wice.v1.box.";

/// The NATS subject of `key`'s mailbox: [`SUBJECT_PREFIX`] and 32 hex digits of a keyed
/// BLAKE2s hash of the key.
pub fn subject_for(key: &PublicKey) -> String {
    let mut hash = Blake2s256::new();
    hash.update(b"wice signaling subject v1");
    hash.update(key.as_bytes());
    let digest = hash.finalize();
    let mut subject = String::with_capacity(SUBJECT_PREFIX.len() + 32);
    subject.push_str(SUBJECT_PREFIX);
    for byte in &digest[..16] {
        subject.push_str(&format!("{byte:02x}"));
    }
    subject
}

/// Settings of a [`NatsBackend`].
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// How long a connection attempt may take.
    pub connect_timeout: Duration,
    /// How long `subscribe` and `publish` wait for the server to confirm (a flush).
    pub request_timeout: Duration,
    /// NATS ping interval: a server silent for two of them is taken as gone.
    pub ping_interval: Duration,
    /// Longest wait between reconnect attempts.
    pub max_reconnect_delay: Duration,
}

impl Default for NatsOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(20),
            max_reconnect_delay: Duration::from_secs(30),
        }
    }
}

/// What a [`NatsBackend`] has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NatsCounters {
    /// Messages that were not an envelope, or were over the size limit (dropped).
    pub malformed_envelopes: u64,
    /// Envelopes on a key's subject addressed to another key (dropped).
    pub misaddressed: u64,
    /// Envelopes dropped because the inbox was full.
    pub inbox_full: u64,
    /// Envelopes not published because their sender is not subscribed here.
    pub refused_sender_not_subscribed: u64,
}

#[derive(Default)]
struct Counters {
    malformed: AtomicU64,
    misaddressed: AtomicU64,
    inbox_full: AtomicU64,
    refused_sender: AtomicU64,
}

/// A client of a NATS server or cluster.
pub struct NatsBackend {
    url: NatsUrl,
    options: NatsOptions,
    client: OnceCell<Client>,
    /// Subscription tasks by key; aborting one drops its NATS subscription.
    subscriptions: Mutex<HashMap<PublicKey, Vec<JoinHandle<()>>>>,
    closed: AtomicBool,
    counters: Arc<Counters>,
}

impl NatsBackend {
    /// A backend for a `nats://` or `tls://` URL. Connects on first use, so this succeeds
    /// while the cluster is down.
    pub fn new(url: &BackendUrl, options: NatsOptions) -> Result<Self, BackendError> {
        let BackendUrl::Nats(url) = url else {
            return Err(BackendError::Setup(format!(
                "{url} is not a NATS backend URL"
            )));
        };
        Ok(Self {
            url: url.clone(),
            options,
            client: OnceCell::new(),
            subscriptions: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            counters: Arc::default(),
        })
    }

    /// What this backend has seen so far.
    pub fn counters(&self) -> NatsCounters {
        NatsCounters {
            malformed_envelopes: self.counters.malformed.load(Ordering::Relaxed),
            misaddressed: self.counters.misaddressed.load(Ordering::Relaxed),
            inbox_full: self.counters.inbox_full.load(Ordering::Relaxed),
            refused_sender_not_subscribed: self.counters.refused_sender.load(Ordering::Relaxed),
        }
    }

    /// The connection, made on first use. It keeps reconnecting in the background.
    async fn client(&self) -> Result<&Client, BackendError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(BackendError::Closed);
        }
        self.client
            .get_or_try_init(|| connect_with(&self.url, &self.options, false))
            .await
    }

    fn subscriptions(&self) -> std::sync::MutexGuard<'_, HashMap<PublicKey, Vec<JoinHandle<()>>>> {
        self.subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the server has seen everything sent so far.
    async fn flush(&self, client: &Client) -> Result<(), BackendError> {
        match tokio::time::timeout(self.options.request_timeout, client.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(unavailable(&error.to_string())),
            Err(_) => Err(unavailable("the NATS server did not answer in time")),
        }
    }
}

/// Opens the connection: seeds from the URL, credentials, TLS; retried in the background
/// from the start, so a cluster that is down now is used once it is up. `no_echo`: the
/// server does not send this connection's own publishes back to it (`wice signal`'s bus).
pub async fn connect_with(
    url: &NatsUrl,
    options: &NatsOptions,
    no_echo: bool,
) -> Result<Client, BackendError> {
    let setup = |what: &str, error: &dyn std::fmt::Display| {
        BackendError::Setup(format!("NATS {what}: {error}"))
    };
    let mut connect = match &url.auth {
        None => ConnectOptions::new(),
        Some(NatsAuth::CredsFile(path)) => ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|e| setup(&format!("credentials {}", path.display()), &e))?,
        Some(NatsAuth::NkeyFile(path)) => {
            let seed = std::fs::read_to_string(path)
                .map_err(|e| setup(&format!("NKey seed {}", path.display()), &e))?;
            ConnectOptions::with_nkey(seed.trim().to_owned())
        }
    };
    if url.tls {
        connect = connect.require_tls(true);
    }
    if no_echo {
        connect = connect.no_echo();
    }
    if let Some(ca) = &url.ca_file {
        connect = connect.add_root_certificates(ca.clone());
    }
    let max_delay = options.max_reconnect_delay;
    connect
        .name("wice")
        .connection_timeout(options.connect_timeout)
        .ping_interval(options.ping_interval)
        .retry_on_initial_connect()
        // The URL's first server first: an operator spreads nodes by ordering their lists.
        .retain_servers_order()
        .max_reconnects(None)
        .reconnect_delay_callback(move |attempts| {
            // 100 ms, doubling, capped: quick after a blip, gentle during an outage.
            let exponent = u32::try_from(attempts.min(16)).unwrap_or(16);
            Duration::from_millis(100)
                .saturating_mul(1 << exponent.min(10))
                .min(max_delay)
        })
        .connect(url.server_addresses().as_slice())
        .await
        .map_err(|e| setup("connect", &e))
}

fn unavailable(reason: &str) -> BackendError {
    BackendError::Unavailable {
        kind: BackendKind::Nats,
        reason: reason.to_owned(),
    }
}

impl Backend for NatsBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Nats
    }

    fn publish(&self, envelopes: Vec<Envelope>) -> BackendFuture<'_, ()> {
        Box::pin(async move {
            let client = self.client().await?;
            let allowed = from_subscribed_senders(
                envelopes,
                &self.subscriptions(),
                BackendKind::Nats,
                &self.counters.refused_sender,
            )?;
            if client.connection_state() != async_nats::connection::State::Connected {
                return Err(unavailable("not connected to any NATS server"));
            }
            for envelope in &allowed {
                client
                    .publish(subject_for(&envelope.recipient), envelope.encode())
                    .await
                    .map_err(|e| unavailable(&e.to_string()))?;
            }
            self.flush(client).await
        })
    }

    fn subscribe(&self, identity: PrivateKey, inbox: Inbox) -> BackendFuture<'_, ()> {
        Box::pin(async move {
            let client = self.client().await?;
            let key = identity.public_key();
            let mut subscriber = client
                .subscribe(subject_for(&key))
                .await
                .map_err(|e| unavailable(&e.to_string()))?;
            let counters = Arc::clone(&self.counters);
            let task = tokio::spawn(async move {
                loop {
                    let message = tokio::select! {
                        message = subscriber.next() => message,
                        () = inbox.closed() => return,
                    };
                    // The client ended (closed): nothing more comes.
                    let Some(message) = message else { return };
                    deliver(&message.payload, &key, &inbox, &counters);
                }
            });
            self.subscriptions().entry(key).or_default().push(task);
            // Subscribed once the server has the SUB; while the cluster is unreachable the
            // subscription stands and is sent when a connection is made.
            self.flush(client).await
        })
    }

    fn unsubscribe(&self, key: PublicKey) -> BackendFuture<'_, ()> {
        Box::pin(async move {
            for task in self.subscriptions().remove(&key).unwrap_or_default() {
                task.abort();
            }
            Ok(())
        })
    }

    fn close(&self) -> BackendFuture<'_, ()> {
        Box::pin(async move {
            self.closed.store(true, Ordering::Relaxed);
            for (_, tasks) in self.subscriptions().drain() {
                for task in tasks {
                    task.abort();
                }
            }
            Ok(())
        })
    }

    fn reconnect(&self) -> BackendFuture<'_, ()> {
        Box::pin(async move {
            let Some(client) = self.client.get() else {
                return Ok(());
            };
            client
                .force_reconnect()
                .await
                .map_err(|e| unavailable(&e.to_string()))
        })
    }
}

/// One message from `key`'s subject into its inbox, if it is an envelope for `key`.
fn deliver(payload: &[u8], key: &PublicKey, inbox: &Inbox, counters: &Counters) {
    let envelope = if payload.len() <= MAX_ENVELOPE_LEN {
        Envelope::decode(payload).ok()
    } else {
        None
    };
    let Some(envelope) = envelope else {
        counters.malformed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if envelope.recipient != *key {
        counters.misaddressed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if !inbox.deliver(envelope) {
        counters.inbox_full.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for NatsBackend {
    fn drop(&mut self) {
        for (_, tasks) in self.subscriptions().drain() {
            for task in tasks {
                task.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_has_its_own_fixed_length_subject() {
        let a = subject_for(&PublicKey::from_bytes([1; 32]));
        let b = subject_for(&PublicKey::from_bytes([2; 32]));
        assert_ne!(a, b);
        assert_eq!(a.len(), SUBJECT_PREFIX.len() + 32);
        assert!(a.starts_with(SUBJECT_PREFIX));
        assert_eq!(a, subject_for(&PublicKey::from_bytes([1; 32])));
    }

    #[test]
    fn what_arrives_for_another_key_or_is_no_envelope_is_dropped_and_counted() {
        let counters = Counters::default();
        let (inbox, mut rx) = Inbox::channel(4);
        let mine = PublicKey::from_bytes([2; 32]);
        let envelope = Envelope {
            sender: PublicKey::from_bytes([1; 32]),
            recipient: PublicKey::from_bytes([3; 32]),
            nonce: [0; 24],
            ciphertext: prost::bytes::Bytes::from_static(&[0; 16]),
        };
        deliver(&envelope.encode(), &mine, &inbox, &counters);
        deliver(b"not an envelope", &mine, &inbox, &counters);
        deliver(&vec![0; MAX_ENVELOPE_LEN + 1], &mine, &inbox, &counters);
        assert!(rx.try_recv().is_err());
        assert_eq!(counters.misaddressed.load(Ordering::Relaxed), 1);
        assert_eq!(counters.malformed.load(Ordering::Relaxed), 2);
        let for_me = Envelope {
            recipient: mine,
            ..envelope
        };
        deliver(&for_me.encode(), &mine, &inbox, &counters);
        assert_eq!(rx.try_recv().expect("delivered").envelope.recipient, mine);
    }
}
