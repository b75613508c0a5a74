//! The ICE controller on tokio: the one place the sans-IO [`Controller`] meets the clock, the
//! signaling backends and the datapath.
//!
//! One task owns the controller. It wakes for a verified session description, a STUN/TURN
//! datagram from the shared socket (bridged from the datapath's bounded queue by a thread,
//! because the datapath does not use tokio), or the controller's next deadline; after each
//! input it sends what the controller produced and refreshes the status snapshot.
//! Publishing goes through a second task so a slow backend never delays a connectivity check.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use wice_datapath::ControlDatagram;

use crate::signaling::{Received, Signaling};
use wice_core::ice::{
    Controller, ControllerCounters, ControllerEvent, PeerIceStatus, Routed, TurnServer,
};
use wice_core::keys::PublicKey;
use wice_core::signaling::{SessionDescription, SignalingMessage};
use wice_core::wire::Endpoint;

/// How often the node's addresses are listed again, to notice a network change (a new
/// address, a lost one, a new route to a TURN server). Listing is a few syscalls.
const ADDRESS_SCAN_INTERVAL: Duration = Duration::from_secs(5);

/// Lists the host candidates and our address toward each TURN server, as the OS says now.
pub(crate) type AddressScan = Box<dyn Fn() -> (Vec<SocketAddr>, Vec<TurnServer>) + Send>;

/// How often the status snapshot is rebuilt when nothing else asked for it (drop counters).
const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(1);

/// Offers waiting for the publisher; the controller produces a handful per peer per session.
const PUBLISH_QUEUE: usize = 1024;
/// STUN/TURN datagrams between the bridge thread and the task.
const CONTROL_QUEUE: usize = 1024;

/// What the driver needs from the datapath.
pub(crate) trait Datapath: Send + Sync + 'static {
    /// Sends a raw datagram from the shared socket.
    fn send(&self, to: SocketAddr, datagram: &[u8]);
    /// Points the peer's WireGuard traffic at `target` and starts a handshake if none is
    /// current.
    fn set_path(&self, peer: &PublicKey, target: Endpoint);
    /// Plaintext bytes sent plus received, per peer (keepalives carry none).
    fn traffic(&self) -> Vec<(PublicKey, u64)>;
}

/// The latest ICE view of every peer, for `wice status`.
#[derive(Debug, Default)]
pub(crate) struct IceSnapshot {
    pub(crate) peers: BTreeMap<PublicKey, PeerIceStatus>,
    pub(crate) counters: ControllerCounters,
}

/// Shared between the driver (writer) and the status handler (reader).
pub(crate) type SharedSnapshot = Arc<Mutex<IceSnapshot>>;

/// Bridges a blocking receiver into tokio: a thread that ends when either side closes.
pub(crate) fn bridge<T: Send + 'static>(
    receiver: std::sync::mpsc::Receiver<T>,
) -> std::io::Result<mpsc::Receiver<T>> {
    let (tx, rx) = mpsc::channel(CONTROL_QUEUE);
    std::thread::Builder::new()
        .name("wice-control".to_owned())
        .spawn(move || {
            while let Ok(item) = receiver.recv() {
                if tx.blocking_send(item).is_err() {
                    break;
                }
            }
        })?;
    Ok(rx)
}

/// Runs the controller until the inputs close.
pub(crate) async fn run(
    mut controller: Controller,
    signaling: Arc<Signaling>,
    mut received: mpsc::Receiver<Received>,
    mut datagrams: mpsc::Receiver<ControlDatagram>,
    datapath: Arc<dyn Datapath>,
    snapshot: SharedSnapshot,
    addresses: AddressScan,
) {
    let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
    let mut scan = tokio::time::interval(ADDRESS_SCAN_INTERVAL);
    scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut snapshot_timer = tokio::time::interval(SNAPSHOT_INTERVAL);
    snapshot_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let publisher = tokio::spawn(publish(Arc::clone(&signaling), publish_rx));
    // Whether the last input may have changed the controller: only then are its status and
    // deadline asked again (both walk every session).
    let mut changed = true;
    let mut deadline = None;
    // Each peer's traffic counter at the last scan: a change means its path is in use.
    let mut traffic: BTreeMap<PublicKey, u64> = BTreeMap::new();
    loop {
        flush(&mut controller, &publish_tx, datapath.as_ref());
        if std::mem::take(&mut changed) {
            publish_snapshot(&controller, &snapshot);
            let now = Instant::now();
            deadline = controller.poll_timeout(now).map(|(at, reason)| {
                tracing::debug!(
                    in_ms = at.saturating_duration_since(now).as_millis() as u64,
                    ?reason,
                    "next ICE timeout"
                );
                at
            });
        }
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            message = received.recv() => {
                let Some(Received { sender, message }) = message else { break };
                match message {
                    SignalingMessage::SessionDescription(offer) => {
                        controller.handle_signal(Instant::now(), sender, offer);
                    }
                }
                changed = true;
            }
            datagram = datagrams.recv() => {
                let Some(ControlDatagram { from, to, data, .. }) = datagram else { break };
                let routed = controller.handle_datagram(Instant::now(), from, to, &data);
                changed = !matches!(routed, Routed::Dropped(_));
            }
            () = sleep => {
                controller.handle_timeout(Instant::now());
                changed = true;
            }
            // For the drop counters.
            _ = snapshot_timer.tick() => changed = true,
            _ = scan.tick() => {
                changed = true;
                let now = Instant::now();
                for (peer, bytes) in datapath.traffic() {
                    if traffic.insert(peer, bytes).is_some_and(|before| before != bytes) {
                        controller.handle_traffic(now, &peer);
                    }
                }
                let (host, turn) = addresses();
                if controller.handle_addresses(Instant::now(), host, &turn) {
                    // The signaling connection may be bound to an address we lost; waiting
                    // for its keepalive to notice would delay the new offers by ~30 s. Done
                    // before the new offers are flushed, so they take the new connection.
                    signaling.reconnect().await;
                }
            }
        }
    }
    publisher.abort();
}

fn flush(
    controller: &mut Controller,
    publish: &mpsc::Sender<(PublicKey, SessionDescription)>,
    datapath: &dyn Datapath,
) {
    while let Some(datagram) = controller.poll_transmit() {
        datapath.send(datagram.destination, &datagram.contents);
    }
    while let Some(event) = controller.poll_event() {
        match event {
            ControllerEvent::PathChanged { peer, target, kind } => {
                log_path(&peer, &target, crate::status::path_word(kind));
                datapath.set_path(&peer, target);
            }
        }
    }
    while let Some(offer) = controller.poll_offer() {
        if publish.try_send(offer).is_err() {
            // A stuck backend: the session resends its offer with back-off.
            tracing::debug!("signaling publish queue full; offer dropped");
        }
    }
}

fn publish_snapshot(controller: &Controller, snapshot: &SharedSnapshot) {
    let status = controller.status();
    let mut shared = snapshot.lock().unwrap_or_else(PoisonError::into_inner);
    shared.peers = status;
    shared.counters = controller.counters();
}

async fn publish(
    signaling: Arc<Signaling>,
    mut offers: mpsc::Receiver<(PublicKey, SessionDescription)>,
) {
    while let Some((peer, offer)) = offers.recv().await {
        let (id, version) = (offer.session_id, offer.version);
        let message = SignalingMessage::SessionDescription(offer);
        match signaling.publish(&[peer], &message).await {
            Ok(()) => peer_span(&peer).in_scope(|| tracing::debug!(id, version, "offer published")),
            Err(error) => {
                peer_span(&peer).in_scope(|| tracing::warn!(%error, "offer not published"));
            }
        }
    }
}

/// The span per-peer log lines carry, so filters and `--log-format json` see which peer a
/// line is about (`"span":{"name":"peer","peer":"<key>"}`).
fn peer_span(peer: &PublicKey) -> tracing::Span {
    tracing::info_span!("peer", peer = %peer)
}

fn log_path(peer: &PublicKey, target: &Endpoint, kind: &str) {
    peer_span(peer).in_scope(|| tracing::info!(?target, kind, "WireGuard path"));
}

#[cfg(test)]
#[path = "ice_driver_log_tests.rs"]
mod log_tests;
