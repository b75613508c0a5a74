//! `wice signal --nats URL…`: several signal servers share one NATS cluster as their bus,
//! so the clients behind one name may land on any of them.
//!
//! Each server keeps its clients' key proofs, limits and queues as before. What changes is
//! where an envelope goes: a published envelope is queued to this server's subscribers of its
//! recipient and also published on the recipient's NATS subject ([`subject_for`], the same
//! subjects the NATS client backend uses, so nodes attached to the cluster directly and
//! nodes behind a `wice signal` front-end reach each other). A server holds one NATS
//! subscription per key that has a subscriber here, taken with the first and dropped with the
//! last, so each server receives only the traffic for its own clients. The connection is
//! made with `no_echo`: a server never hears its own publishes back, so a local subscriber
//! gets each envelope once.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError, Weak};

use async_nats::Client;
use prost::bytes::Bytes;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt as _;

use super::counters::ServerCounters;
use super::{State, check_published};
use crate::signaling::NatsUrl;
use crate::signaling::nats_client::{self, NatsOptions, subject_for};
use wice_core::keys::PublicKey;

/// The NATS connection and the subscriptions this server holds on it.
pub(super) struct Bus {
    client: Client,
    /// Per key with subscribers here: how many, and the task reading its subject.
    watches: Mutex<HashMap<PublicKey, (usize, JoinHandle<()>)>>,
}

impl Bus {
    /// Connects (in the background, retrying: the server starts while the cluster is down).
    pub(super) async fn connect(url: &NatsUrl) -> Result<Self, String> {
        let client = nats_client::connect_with(url, &NatsOptions::default(), true)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self {
            client,
            watches: Mutex::new(HashMap::new()),
        })
    }

    /// Hands an envelope (already checked) to the other servers; true when the bus took it.
    pub(super) async fn publish(
        &self,
        recipient: &PublicKey,
        envelope: Bytes,
        counters: &ServerCounters,
    ) -> bool {
        match self.client.publish(subject_for(recipient), envelope).await {
            Ok(()) => {
                ServerCounters::add(&counters.bus_published, 1);
                true
            }
            Err(error) => {
                ServerCounters::add(&counters.bus_failed, 1);
                tracing::debug!(target: "wice::signal", %error, "NATS bus refused a publish");
                false
            }
        }
    }

    /// A subscriber of `key` arrived here: with the first, start reading `key`'s subject.
    pub(super) fn watch(&self, key: PublicKey, state: Weak<State>) {
        let mut watches = self.watches.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((count, _)) = watches.get_mut(&key) {
            *count += 1;
            return;
        }
        let client = self.client.clone();
        let task = tokio::spawn(relay_subject(client, key, state));
        watches.insert(key, (1, task));
    }

    /// A subscriber of `key` left: with the last, stop reading its subject.
    pub(super) fn unwatch(&self, key: &PublicKey) {
        let mut watches = self.watches.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((count, task)) = watches.get_mut(key) {
            *count -= 1;
            if *count == 0 {
                task.abort();
                watches.remove(key);
            }
        }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let watches = self
            .watches
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for (_, (_, task)) in watches.drain() {
            task.abort();
        }
    }
}

/// Delivers what arrives on `key`'s subject to this server's subscribers of `key`, charged
/// to the envelope's sender like a local publish. Other servers checked their publishers'
/// key proofs; what a stranger put on the bus directly is checked again here for size and
/// form, and its recipient must be `key`.
async fn relay_subject(client: Client, key: PublicKey, state: Weak<State>) {
    let mut subscriber = match client.subscribe(subject_for(&key)).await {
        Ok(subscriber) => subscriber,
        Err(error) => {
            if let Some(state) = state.upgrade() {
                ServerCounters::add(&state.counters.bus_failed, 1);
            }
            tracing::warn!(target: "wice::signal", %key, %error, "cannot subscribe on the NATS bus");
            return;
        }
    };
    while let Some(message) = subscriber.next().await {
        let Some(state) = state.upgrade() else { return };
        let counters = &state.counters;
        let envelope = match check_published(&message.payload, state.config.max_envelope_len) {
            Ok(envelope) if envelope.recipient == key => envelope,
            Ok(_) | Err(_) => {
                ServerCounters::add(&counters.rejected_malformed, 1);
                continue;
            }
        };
        ServerCounters::add(&counters.bus_received, 1);
        // Copied out, as a local publish is: a slice would pin the client's read buffer.
        let owned = Bytes::copy_from_slice(&message.payload);
        state.mailboxes.deliver(
            &key,
            &owned,
            (envelope.sender, None),
            &state.budgets,
            counters,
        );
    }
}
