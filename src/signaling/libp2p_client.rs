//! The libp2p backend (`libp2p:`): no server; envelopes find their recipient through a
//! Kademlia DHT and travel on a direct stream to it.
//!
//! - **Finding a mailbox.** Each subscribed key (a node's own, or a group key many members
//!   hold) is announced as a Kademlia *provider record* under [`mailbox_key`], a hash of the
//!   key: the DHT maps the hash to the libp2p peers that receive for it. A publish looks the
//!   recipient's hash up (`GET_PROVIDERS`, O(log N) hops) and sends the envelope to every
//!   provider found on a request-response stream (`/wice/envelope/1`). Nobody else sees the
//!   envelope, and a group key reaches each member that provides it.
//! - **Why not gossipsub.** Gossipsub forwards a topic's messages only among the peers
//!   subscribed to that topic: with a topic per recipient, the one subscriber would have to
//!   be a direct neighbour anyway, and a shared topic would make every node receive every
//!   envelope (the "every node watches everything" mistake, O(N) per node). Envelopes are
//!   sealed and authenticated end to end, so the network only has to find the recipient.
//! - **Identity.** The libp2p key is an ed25519 key derived from the node's WireGuard
//!   private key with a domain-separated hash ([`libp2p_keypair`]): stable across restarts,
//!   so a `/p2p/PEER-ID` in other nodes' bootstrap lists stays valid, and one-way, so it
//!   reveals nothing of the WireGuard key. It is not the wice identity: the envelope
//!   authenticates its sender.
//! - **Joining.** The node dials its bootstrap peers, learns others' listen addresses
//!   through identify, and announces its mailboxes once its routing table has a peer (again
//!   whenever it grows, and every few minutes). With no connection at all it dials the
//!   bootstraps again, with backoff: a restarted bootstrap is rejoined.
//! - **A hostile network.** Envelopes over [`MAX_ENVELOPE_LEN`] are cut off at the stream;
//!   what does not decode, or is for a key not subscribed here, is counted and dropped;
//!   provider records from peers are checked (our key length, few addresses) and bounded
//!   (keys, providers per key); connections, pending lookups and streams are capped; logs
//!   about peers' input are rate-limited. Like NATS and Kubernetes there is no key proof at
//!   the network: the backend publishes only envelopes from keys it subscribed, and the
//!   receiver opens only what the claimed sender sealed.
//!
//! The swarm runs on its own task ([`super::libp2p_node`]); this handle sends it commands.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use blake2::{Blake2s256, Digest as _};
use libp2p::{Multiaddr, PeerId, identity::Keypair};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::backend::{
    Backend, BackendError, BackendFuture, BackendKind, BackendUrl, Inbox, from_subscribed_senders,
};
use super::libp2p_node::{Command, Node};
use wice_core::keys::{PrivateKey, PublicKey};
use wice_core::signaling::envelope::Envelope;
pub use wice_core::signaling::envelope::MAX_ENVELOPE_LEN;

/// The DHT key of `key`'s mailbox: BLAKE2s-256 of a domain tag and the key, so the DHT does
/// not spell out public keys.
pub fn mailbox_key(key: &PublicKey) -> [u8; 32] {
    let mut hash = Blake2s256::new();
    hash.update(b"wice libp2p mailbox v1");
    hash.update(key.as_bytes());
    hash.finalize().into()
}

/// The libp2p keypair of the node whose WireGuard private key is `node_key`: an ed25519
/// secret that is BLAKE2s-256 of a domain tag and the private key.
pub fn libp2p_keypair(node_key: &PrivateKey) -> Keypair {
    let mut hash = Blake2s256::new();
    hash.update(b"wice libp2p identity v1");
    hash.update(node_key.to_bytes());
    let mut secret: [u8; 32] = hash.finalize().into();
    // 32 bytes are always a valid ed25519 secret key.
    match Keypair::ed25519_from_bytes(&mut secret) {
        Ok(keypair) => keypair,
        Err(_) => unreachable!("any 32 bytes are an ed25519 secret key"),
    }
}

/// The peer id a node with WireGuard private key `node_key` has on libp2p, as the node logs
/// it at start and as `/p2p/…` in other nodes' bootstrap multiaddrs takes it.
pub fn peer_id_of(node_key: &PrivateKey) -> String {
    libp2p_keypair(node_key).public().to_peer_id().to_base58()
}

/// Settings of a [`Libp2pBackend`].
#[derive(Debug, Clone)]
pub struct Libp2pOptions {
    /// First wait before dialling the bootstraps again when no peer is connected; doubles
    /// up to `redial_max`.
    pub redial_initial: Duration,
    /// Longest wait between bootstrap dials.
    pub redial_max: Duration,
    /// How long a DHT query or an envelope stream may take.
    pub request_timeout: Duration,
    /// How long `subscribe` waits for the mailbox's first announcement before it answers
    /// "unavailable" (the announcement goes on, and is repeated as peers appear).
    pub subscribe_wait: Duration,
    /// Established connections, all peers together.
    pub max_connections: u32,
    /// Lookups (publishes waiting for the DHT) at once; more are dropped and counted.
    pub max_pending_lookups: usize,
    /// Providers kept per mailbox key: the largest group a key reaches.
    pub max_providers_per_key: usize,
    /// Mailbox keys with provider records kept (ours and other peers').
    pub max_provider_keys: usize,
}

impl Default for Libp2pOptions {
    fn default() -> Self {
        Self {
            redial_initial: Duration::from_millis(500),
            redial_max: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            subscribe_wait: Duration::from_secs(3),
            max_connections: 256,
            max_pending_lookups: 256,
            max_providers_per_key: 128,
            max_provider_keys: 1024,
        }
    }
}

/// What a [`Libp2pBackend`] has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Libp2pCounters {
    /// Envelopes sent to a provider of their recipient's mailbox.
    pub sent: u64,
    /// Envelopes handed to a local subscriber (received or published here).
    pub delivered: u64,
    /// Envelopes whose recipient no peer provides (dropped).
    pub dropped_no_recipient: u64,
    /// Envelopes dropped because too many lookups were pending.
    pub dropped_busy: u64,
    /// Streams that failed (dial, timeout, reset).
    pub send_failed: u64,
    /// Inbound messages that were not an envelope (dropped).
    pub malformed: u64,
    /// Inbound envelopes for a key not subscribed here (dropped).
    pub not_subscribed: u64,
    /// Envelopes dropped because the inbox was full.
    pub inbox_full: u64,
    /// Provider records refused (bad key, store full).
    pub provider_records_refused: u64,
    /// Envelopes not published because their sender is not subscribed here.
    pub refused_sender_not_subscribed: u64,
}

/// The counters the node task and the handle share.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) sent: AtomicU64,
    pub(super) delivered: AtomicU64,
    pub(super) dropped_no_recipient: AtomicU64,
    pub(super) dropped_busy: AtomicU64,
    pub(super) send_failed: AtomicU64,
    pub(super) malformed: AtomicU64,
    pub(super) not_subscribed: AtomicU64,
    pub(super) inbox_full: AtomicU64,
    pub(super) provider_records_refused: AtomicU64,
    pub(super) refused_sender: AtomicU64,
}

impl Counters {
    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A node on a libp2p network.
pub struct Libp2pBackend {
    commands: mpsc::Sender<Command>,
    /// Keys subscribed here, with how many subscriptions each: the senders we publish as.
    subscribed: Mutex<HashMap<PublicKey, usize>>,
    counters: Arc<Counters>,
    peer_id: PeerId,
    listening: watch::Receiver<Vec<Multiaddr>>,
    closed: AtomicBool,
    task: JoinHandle<()>,
}

impl Libp2pBackend {
    /// A node for a `libp2p:` URL with the identity derived from `node_key`: listens at once
    /// (an error when the address cannot be bound) and dials the bootstraps in the
    /// background. Must be called inside a tokio runtime.
    pub fn new(
        url: &BackendUrl,
        node_key: &PrivateKey,
        options: Libp2pOptions,
    ) -> Result<Self, BackendError> {
        let BackendUrl::Libp2p(url) = url else {
            return Err(BackendError::Setup(format!(
                "{url} is not a libp2p backend URL"
            )));
        };
        let counters = Arc::new(Counters::default());
        let (commands, command_rx) = mpsc::channel(1024);
        let (listening_tx, listening) = watch::channel(Vec::new());
        let node = Node::new(
            url,
            libp2p_keypair(node_key),
            options,
            Arc::clone(&counters),
            listening_tx,
        )?;
        let peer_id = node.peer_id();
        tracing::info!(%peer_id, url = %url, "libp2p signaling node started");
        let task = tokio::spawn(node.run(command_rx));
        Ok(Self {
            commands,
            subscribed: Mutex::new(HashMap::new()),
            counters,
            peer_id,
            listening,
            closed: AtomicBool::new(false),
            task,
        })
    }

    /// This node's libp2p peer id (base58).
    pub fn peer_id(&self) -> String {
        self.peer_id.to_base58()
    }

    /// The addresses this node listens on, once the listener is up (waits up to `wait`).
    pub async fn listen_addrs(&self, wait: Duration) -> Vec<Multiaddr> {
        let mut listening = self.listening.clone();
        let _ = tokio::time::timeout(wait, listening.wait_for(|addrs| !addrs.is_empty())).await;
        listening.borrow().clone()
    }

    /// What this backend has seen so far.
    pub fn counters(&self) -> Libp2pCounters {
        let c = &self.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Libp2pCounters {
            sent: load(&c.sent),
            delivered: load(&c.delivered),
            dropped_no_recipient: load(&c.dropped_no_recipient),
            dropped_busy: load(&c.dropped_busy),
            send_failed: load(&c.send_failed),
            malformed: load(&c.malformed),
            not_subscribed: load(&c.not_subscribed),
            inbox_full: load(&c.inbox_full),
            provider_records_refused: load(&c.provider_records_refused),
            refused_sender_not_subscribed: load(&c.refused_sender),
        }
    }

    fn subscribed(&self) -> std::sync::MutexGuard<'_, HashMap<PublicKey, usize>> {
        self.subscribed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    async fn send(&self, command: Command) -> Result<(), BackendError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(BackendError::Closed);
        }
        self.commands
            .send(command)
            .await
            .map_err(|_| BackendError::Closed)
    }
}

fn unavailable(reason: &str) -> BackendError {
    BackendError::Unavailable {
        kind: BackendKind::Libp2p,
        reason: reason.to_owned(),
    }
}

impl Backend for Libp2pBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Libp2p
    }

    fn publish(&self, envelopes: Vec<Envelope>) -> BackendFuture<'_, ()> {
        Box::pin(async move {
            if self.closed.load(Ordering::Relaxed) {
                return Err(BackendError::Closed);
            }
            let allowed = from_subscribed_senders(
                envelopes,
                &self.subscribed(),
                BackendKind::Libp2p,
                &self.counters.refused_sender,
            )?;
            if allowed.is_empty() {
                return Ok(());
            }
            self.send(Command::Publish(allowed)).await
        })
    }

    fn subscribe(&self, identity: PrivateKey, inbox: Inbox) -> BackendFuture<'_, ()> {
        Box::pin(async move {
            let key = identity.public_key();
            let (done, announced) = oneshot::channel();
            self.send(Command::Subscribe { key, inbox, done }).await?;
            *self.subscribed().entry(key).or_default() += 1;
            match announced.await {
                Ok(true) => Ok(()),
                // Kept, and announced once a peer is reachable.
                Ok(false) => Err(unavailable(
                    "no libp2p peer reachable yet; the mailbox is announced when one is",
                )),
                Err(_) => Err(BackendError::Closed),
            }
        })
    }

    fn unsubscribe(&self, key: PublicKey) -> BackendFuture<'_, ()> {
        Box::pin(async move {
            self.subscribed().remove(&key);
            self.send(Command::Unsubscribe(key)).await
        })
    }

    fn close(&self) -> BackendFuture<'_, ()> {
        Box::pin(async move {
            self.closed.store(true, Ordering::Relaxed);
            self.subscribed().clear();
            self.task.abort();
            Ok(())
        })
    }

    fn reconnect(&self) -> BackendFuture<'_, ()> {
        Box::pin(async move { self.send(Command::Redial).await })
    }
}

impl Drop for Libp2pBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_libp2p_identity_is_stable_per_key_and_not_the_wireguard_key() {
        let key = PrivateKey::from_bytes([7; 32]);
        assert_eq!(
            peer_id_of(&key),
            peer_id_of(&PrivateKey::from_bytes([7; 32]))
        );
        assert_ne!(
            peer_id_of(&key),
            peer_id_of(&PrivateKey::from_bytes([8; 32]))
        );
        let Some(ed25519) = libp2p_keypair(&key).public().try_into_ed25519().ok() else {
            panic!("an ed25519 key");
        };
        assert_ne!(ed25519.to_bytes(), *key.public_key().as_bytes());
        assert!(peer_id_of(&key).starts_with("12D3KooW"));
    }

    #[test]
    fn each_key_has_its_own_mailbox_hash() {
        let a = PublicKey::from_bytes([1; 32]);
        let b = PublicKey::from_bytes([2; 32]);
        assert_ne!(mailbox_key(&a), mailbox_key(&b));
        assert_ne!(mailbox_key(&a), *a.as_bytes());
    }
}
