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

use super::community::Community;
use super::peer_set::{PeerSet, PeerSetEvent};
use crate::config::PeerConfig;
use crate::hooks::{Hooks, IcePeerWatch};
use crate::signaling::{Received, Signaling};
use wice_core::ice::{
    Controller, ControllerCounters, ControllerEvent, PeerIceStatus, Routed, TurnServer,
};
use wice_core::keys::PublicKey;
use wice_core::signaling::{SenderPolicy, SessionDescription, SignalingMessage};
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
    /// The peer table, for peers added and removed while running.
    fn engine(&self) -> &wice_datapath::Engine;
}

/// A change the rest of the daemon asks of the running driver.
pub(crate) enum DriverCommand {
    /// A reloaded config (or a new set of members): apply the difference.
    Reconfigure(Box<Reconfigure>),
    /// A clean shutdown: tell the community we leave; answered once published (or failed).
    Leave(tokio::sync::oneshot::Sender<()>),
}

/// What a reload hands the driver: the whole wanted state, not a diff.
pub(crate) struct Reconfigure {
    /// Every peer the node should have.
    pub(crate) peers: Vec<PeerConfig>,
    /// The STUN servers to probe.
    pub(crate) stun: Vec<SocketAddr>,
    /// The TURN servers to allocate on.
    pub(crate) turn: Vec<TurnServer>,
    /// A new signaling over changed backends, replacing the current one; `None` keeps it.
    pub(crate) signaling: Option<(Signaling, mpsc::Receiver<Received>)>,
    /// The reloaded config, for its `[community]` (applied when the node is in one).
    pub(crate) config: Box<crate::config::Config>,
    /// Told what changed once it is applied.
    pub(crate) done: tokio::sync::oneshot::Sender<Reconfigured>,
}

/// What a [`Reconfigure`] changed.
#[derive(Debug, Default)]
pub(crate) struct Reconfigured {
    /// Per peer.
    pub(crate) peers: Vec<PeerSetEvent>,
    /// Whether the STUN/TURN servers changed.
    pub(crate) servers: bool,
}

/// The latest ICE view of every peer, for `wice status`.
#[derive(Debug, Default)]
pub(crate) struct IceSnapshot {
    pub(crate) peers: BTreeMap<PublicKey, PeerIceStatus>,
    pub(crate) counters: ControllerCounters,
    /// The community's counters, when the node is in one.
    pub(crate) community: Option<crate::status::CommunityStatus>,
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

/// What the driver is given to run: the controller and everything around it.
pub(crate) struct Driver {
    pub(crate) controller: Controller,
    pub(crate) peer_set: PeerSet,
    pub(crate) signaling: Arc<Signaling>,
    pub(crate) received: mpsc::Receiver<Received>,
    pub(crate) datagrams: mpsc::Receiver<ControlDatagram>,
    pub(crate) commands: mpsc::Receiver<DriverCommand>,
    pub(crate) datapath: Arc<dyn Datapath>,
    pub(crate) snapshot: SharedSnapshot,
    pub(crate) addresses: AddressScan,
    /// The community, when the node is in one, and its group mailbox.
    pub(crate) community: Option<(Community, mpsc::Receiver<Received>)>,
    /// Told about connectivity and path changes.
    pub(crate) hooks: Hooks,
    /// The hosts file and the added/removed hooks, told of every reconcile here.
    pub(crate) peer_events: super::peer_events::SharedPeerEvents,
}

/// Runs the controller until the inputs close.
pub(crate) async fn run(driver: Driver) {
    let Driver {
        mut controller,
        mut peer_set,
        mut signaling,
        mut received,
        mut datagrams,
        mut commands,
        datapath,
        snapshot,
        addresses,
        community,
        hooks,
        peer_events,
    } = driver;
    let (mut community, mut group_received) = community.unzip();
    let mut watch = IcePeerWatch::default();
    let (mut publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
    let mut scan = tokio::time::interval(ADDRESS_SCAN_INTERVAL);
    scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut snapshot_timer = tokio::time::interval(SNAPSHOT_INTERVAL);
    snapshot_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut publisher = tokio::spawn(publish(Arc::clone(&signaling), publish_rx));
    // Whether the last input may have changed the controller: only then are its status and
    // deadline asked again (both walk every session).
    let mut changed = true;
    let mut deadline = None;
    // Each peer's traffic counter at the last scan: a change means its path is in use.
    let mut traffic: BTreeMap<PublicKey, u64> = BTreeMap::new();
    loop {
        if let Some(community) = community.as_mut() {
            let now = Instant::now();
            community.publish_status(&snapshot);
            if community.poll_changes() {
                let desired = community.desired();
                let events =
                    peer_set.reconcile(now, &desired, datapath.engine(), Some(&mut controller));
                super::peer_events::lock(&peer_events).handle_peer_set(&events, &desired);
                signaling.set_sender_policy(SenderPolicy::Only(peer_set.keys()));
                changed = true;
            }
            while let Some(announcement) = community.poll_announcement(now) {
                let signaling = Arc::clone(&signaling);
                let recipient = community.recipient();
                tokio::spawn(async move {
                    if let Err(error) = signaling.publish(&[recipient], &announcement).await {
                        tracing::warn!(%error, "community announcement not published");
                    }
                });
            }
        }
        let community_deadline = community.as_ref().and_then(Community::poll_timeout);
        let community_sleep = async {
            match community_deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let group = async {
            match group_received.as_mut() {
                Some(received) => received.recv().await,
                None => std::future::pending().await,
            }
        };
        flush(
            &mut controller,
            &publish_tx,
            datapath.as_ref(),
            &mut watch,
            &hooks,
        );
        if std::mem::take(&mut changed) {
            publish_snapshot(&controller, &snapshot, &mut watch, &hooks);
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
                    // Announcements travel to the community key, not to ours.
                    SignalingMessage::Announcement(_) => {}
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
            received = group => {
                // A closed group mailbox (signaling replaced) is re-subscribed below.
                if let (Some(received), Some(community)) = (received, community.as_mut()) {
                    community.handle_received(Instant::now(), received);
                }
            }
            () = community_sleep => {
                if let Some(community) = community.as_mut() {
                    community.handle_timeout(Instant::now());
                }
            }
            command = commands.recv() => {
                let change = match command {
                    Some(DriverCommand::Reconfigure(change)) => change,
                    Some(DriverCommand::Leave(done)) => {
                        if let Some(message) = community.as_mut().and_then(Community::leave) {
                            let recipient = community.as_ref().map(Community::recipient);
                            if let Some(recipient) = recipient
                                && let Err(error) = signaling.publish(&[recipient], &message).await
                            {
                                tracing::warn!(%error, "community leave not published");
                            }
                        }
                        let _ = done.send(());
                        continue;
                    }
                    None => break,
                };
                let Reconfigure { peers, stun, turn, signaling: replacement, config, done } = *change;
                let now = Instant::now();
                // With a community, the wanted peers are the static ones and the members.
                let mut moved = false;
                let peers = match community.as_mut() {
                    Some(community) => {
                        if let Some(settings) = &config.community
                            && let Some((old_group, leave)) =
                                community.handle_config(now, &config, settings)
                        {
                            moved = true;
                            if let Err(error) = signaling.publish(&[old_group], &leave).await {
                                tracing::warn!(%error, "leave of the old community not published");
                            }
                            signaling.unsubscribe_group(old_group).await;
                        }
                        community.set_statics(peers);
                        community.desired()
                    }
                    None => peers,
                };
                let events = peer_set.reconcile(now, &peers, datapath.engine(), Some(&mut controller));
                super::peer_events::lock(&peer_events).handle_peer_set(&events, &peers);
                let servers = controller.handle_servers(now, stun, turn);
                if servers {
                    datapath.engine().set_relay_servers(controller.relay_servers());
                }
                if let Some((new_signaling, new_received)) = replacement {
                    // The publisher holds the old signaling: stop it first so the old one
                    // can be closed (its connections ended) rather than leaked.
                    publisher.abort();
                    let _ = (&mut publisher).await;
                    let (publish_tx_new, publish_rx_new) = mpsc::channel(PUBLISH_QUEUE);
                    let old = std::mem::replace(&mut signaling, Arc::new(new_signaling));
                    received = new_received;
                    publish_tx = publish_tx_new;
                    publisher = tokio::spawn(publish(Arc::clone(&signaling), publish_rx_new));
                    if let Ok(old) = Arc::try_unwrap(old) {
                        old.close().await;
                    }
                    if let Some(community) = community.as_ref() {
                        group_received = Some(community.resubscribe(&signaling).await);
                        moved = false;
                    }
                    // Sessions keep going: established paths need no signaling, and a
                    // session still offering resends through the new backends.
                }
                if moved && let Some(community) = community.as_ref() {
                    group_received = Some(community.resubscribe(&signaling).await);
                }
                signaling.set_sender_policy(SenderPolicy::Only(peer_set.keys()));
                let _ = done.send(Reconfigured { peers: events, servers });
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
    watch: &mut IcePeerWatch,
    hooks: &Hooks,
) {
    while let Some(datagram) = controller.poll_transmit() {
        datapath.send(datagram.destination, &datagram.contents);
    }
    while let Some(event) = controller.poll_event() {
        match event {
            ControllerEvent::PathChanged { peer, target, kind } => {
                log_path(&peer, &target, crate::status::path_word(kind));
                datapath.set_path(&peer, target);
                watch.handle_path_changed(peer, target, crate::status::path_word(kind), hooks);
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

fn publish_snapshot(
    controller: &Controller,
    snapshot: &SharedSnapshot,
    watch: &mut IcePeerWatch,
    hooks: &Hooks,
) {
    let status = controller.status();
    watch.handle_status(&status, hooks);
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
