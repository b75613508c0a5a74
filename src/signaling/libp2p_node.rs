//! The libp2p backend's node: one swarm (TCP + noise + yamux; Kademlia, identify, a
//! request-response protocol for envelopes, connection limits) driven on its own task.
//!
//! Driving: [`Node::run`] loops over three inputs: commands from the
//! [`Libp2pBackend`](super::Libp2pBackend) handle (`handle_command`), swarm events
//! (`handle_swarm_event`), and its own deadlines (`handle_deadlines`: dial the bootstraps
//! again, announce the mailboxes again, give up waiting to announce). See
//! [`super::libp2p_client`] for the design.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use libp2p::core::ConnectedPoint;
use libp2p::identity::Keypair;
use libp2p::kad::store::{MemoryStore, MemoryStoreConfig, RecordStore as _};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, Swarm, connection_limits, identify, kad, noise, request_response, tcp, yamux,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use wice_core::keys::PublicKey;
use wice_core::log_limit::LogLimit;
use wice_core::signaling::envelope::Envelope;

use super::backend::{BackendError, Inbox};
use super::libp2p_client::{Counters, Libp2pOptions, mailbox_key};
use super::libp2p_records::ForeignRecords;
use super::libp2p_url::{Libp2pAddr, Libp2pUrl};
use super::libp2p_wire::{
    ENVELOPE_PROTOCOL, EnvelopeCodec, KAD_PROTOCOL, setup, tcp_part, to_multiaddr,
};

/// Addresses taken from one peer's identify message or provider record.
const MAX_ADDRS_PER_PEER: usize = 4;
/// Provider records expire this long after their last announcement...
const PROVIDER_TTL: Duration = Duration::from_secs(15 * 60);
/// ...and are announced again this often (and whenever the routing table grows).
const PROVIDER_REPUBLISH: Duration = Duration::from_secs(5 * 60);
/// New routing-table peers within this long cause one re-announcement.
const REANNOUNCE_DEBOUNCE: Duration = Duration::from_millis(300);
/// ...and new peers cause at most one re-announcement this often: peer ids cost nothing, so
/// a stranger connecting as ever new peers must not make us announce every mailbox each time.
const REANNOUNCE_MIN_INTERVAL: Duration = Duration::from_secs(10);
/// Keys of the provider store kept free of other peers' records, for our own mailboxes.
const OWN_RECORDS_RESERVED: usize = 64;
/// Provider records one other peer may keep at this node.
const RECORDS_PER_PROVIDER: usize = 8;
/// A connection with no stream open for this long is closed.
const IDLE_CONNECTION: Duration = Duration::from_secs(60);

/// What the handle asks of the node.
pub(super) enum Command {
    /// Deliver these envelopes (senders already checked).
    Publish(Vec<Envelope>),
    /// Receive for `key` into `inbox`; `done` says whether the mailbox was announced to a
    /// peer (false: kept, announced once one is reachable).
    Subscribe {
        key: PublicKey,
        inbox: Inbox,
        done: oneshot::Sender<bool>,
    },
    /// Stop receiving for the key.
    Unsubscribe(PublicKey),
    /// Dial the bootstraps now (our addresses changed).
    Redial,
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: connection_limits::Behaviour,
    kad: kad::Behaviour<MemoryStore>,
    identify: identify::Behaviour,
    envelopes: request_response::Behaviour<EnvelopeCodec>,
}

/// A publish waiting for the DHT to name its recipient's providers.
struct Lookup {
    key: kad::RecordKey,
    envelopes: Vec<Vec<u8>>,
    sent_to: HashSet<PeerId>,
    delivered_locally: bool,
}

/// A bootstrap peer: where to dial, and the peer id if the URL named it.
struct Bootstrap {
    addr: Multiaddr,
    peer: Option<PeerId>,
}

/// A subscription not yet announced: no peer in the routing table.
struct WaitingSubscribe {
    key: PublicKey,
    done: oneshot::Sender<bool>,
    give_up_at: Instant,
}

/// Rate limits of the log lines peers can trigger.
struct LogLimits {
    announce_failed: LogLimit,
    malformed: LogLimit,
    send_failed: LogLimit,
    inbound_failed: LogLimit,
}

/// The swarm and what the backend keeps beside it.
pub(super) struct Node {
    swarm: Swarm<Behaviour>,
    options: Libp2pOptions,
    counters: Arc<Counters>,
    bootstraps: Vec<Bootstrap>,
    /// Loopback addresses of peers are usable only when we listen on loopback ourselves.
    loopback_ok: bool,
    mailboxes: HashMap<PublicKey, Vec<Inbox>>,
    lookups: HashMap<kad::QueryId, Lookup>,
    /// Subscribes waiting for their first announcement, with when to stop waiting.
    announcing: HashMap<kad::QueryId, (oneshot::Sender<bool>, Instant)>,
    waiting: Vec<WaitingSubscribe>,
    listening_tx: watch::Sender<Vec<Multiaddr>>,
    redial_at: Option<Instant>,
    redial_backoff: Duration,
    reannounce_at: Option<Instant>,
    /// When every mailbox was last announced again.
    reannounced_at: Option<Instant>,
    /// Provider records other peers keep here, bounded and swept.
    foreign_records: ForeignRecords,
    logs: LogLimits,
}

impl Node {
    /// Builds the swarm and starts listening.
    pub(super) fn new(
        url: &Libp2pUrl,
        keypair: Keypair,
        options: Libp2pOptions,
        counters: Arc<Counters>,
        listening_tx: watch::Sender<Vec<Multiaddr>>,
    ) -> Result<Self, BackendError> {
        let local_peer = keypair.public().to_peer_id();
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_established(Some(options.max_connections))
            // Strangers dialing in cannot take the connections our own dials need.
            .with_max_established_incoming(Some(options.max_connections * 3 / 4))
            .with_max_established_per_peer(Some(2))
            .with_max_pending_incoming(Some(64))
            .with_max_pending_outgoing(Some(64));
        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        kad_config
            .set_query_timeout(options.request_timeout)
            // Provider records from peers are checked before they are stored.
            .set_record_filtering(kad::StoreInserts::FilterBoth)
            .set_provider_record_ttl(Some(PROVIDER_TTL))
            .set_provider_publication_interval(Some(PROVIDER_REPUBLISH))
            .set_record_ttl(Some(Duration::from_secs(60)))
            .set_replication_interval(None)
            .set_publication_interval(None)
            .set_periodic_bootstrap_interval(Some(Duration::from_secs(60)));
        let store = MemoryStore::with_config(
            local_peer,
            MemoryStoreConfig {
                // wice stores no values in the DHT, only provider records.
                max_records: 0,
                max_value_bytes: 0,
                max_providers_per_key: options.max_providers_per_key,
                max_provided_keys: options.max_provider_keys,
            },
        );
        let request_timeout = options.request_timeout;
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| setup("transport", &e))?
            .with_behaviour(|key| Behaviour {
                limits: connection_limits::Behaviour::new(limits),
                kad: kad::Behaviour::with_config(local_peer, store, kad_config),
                identify: identify::Behaviour::new(
                    identify::Config::new("/wice/1.0.0".to_owned(), key.public())
                        .with_interval(Duration::from_secs(5 * 60)),
                ),
                envelopes: request_response::Behaviour::new(
                    [(ENVELOPE_PROTOCOL, request_response::ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(request_timeout)
                        .with_max_concurrent_streams(32),
                ),
            })
            .map_err(|e| setup("behaviour", &e))?
            .with_swarm_config(|config| config.with_idle_connection_timeout(IDLE_CONNECTION))
            .build();
        // Every node answers DHT queries: without this, Kademlia waits for a confirmed
        // external address (AutoNAT) before it serves.
        swarm.behaviour_mut().kad.set_mode(Some(kad::Mode::Server));

        let listen = url.listen.clone().unwrap_or(Libp2pAddr {
            ip: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            port: 0,
            peer: None,
        });
        let (listen_addr, _) = to_multiaddr(&listen)?;
        swarm
            .listen_on(listen_addr)
            .map_err(|e| setup(&format!("listen on {listen}"), &e))?;

        let mut bootstraps = Vec::with_capacity(url.bootstraps.len());
        for bootstrap in &url.bootstraps {
            let (addr, peer) = to_multiaddr(bootstrap)?;
            if let Some(peer) = peer {
                swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
            }
            bootstraps.push(Bootstrap { addr, peer });
        }
        let redial_backoff = options.redial_initial;
        Ok(Self {
            swarm,
            counters,
            bootstraps,
            loopback_ok: listen.ip.is_loopback(),
            mailboxes: HashMap::new(),
            lookups: HashMap::new(),
            announcing: HashMap::new(),
            waiting: Vec::new(),
            listening_tx,
            redial_at: Some(Instant::now()),
            redial_backoff,
            reannounce_at: None,
            reannounced_at: None,
            foreign_records: ForeignRecords::new(
                options.max_provider_keys,
                OWN_RECORDS_RESERVED,
                RECORDS_PER_PROVIDER,
                PROVIDER_TTL,
            ),
            logs: LogLimits {
                announce_failed: LogLimit::per_second(1),
                malformed: LogLimit::per_second(2),
                send_failed: LogLimit::per_second(2),
                inbound_failed: LogLimit::per_second(2),
            },
            options,
        })
    }

    /// This node's peer id.
    pub(super) fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Runs until the handle is dropped (or aborts the task).
    pub(super) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.handle_command(command),
                    None => return,
                },
                event = self.swarm.select_next_some() => self.handle_swarm_event(event),
                () = async {
                    match deadline {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => self.handle_deadlines(Instant::now()),
            }
        }
    }

    /// The earliest thing the node has to do by itself: idle means no wakeups.
    fn next_deadline(&self) -> Option<Instant> {
        [
            self.redial_at,
            self.reannounce_at,
            self.foreign_records.sweep_at(),
            self.waiting.iter().map(|w| w.give_up_at).min(),
            self.announcing.values().map(|(_, at)| *at).min(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn handle_deadlines(&mut self, now: Instant) {
        if self.redial_at.is_some_and(|at| at <= now) {
            if self.swarm.connected_peers().next().is_none() && !self.bootstraps.is_empty() {
                self.dial_bootstraps();
                self.redial_at = Some(now + self.redial_backoff);
                self.redial_backoff = (self.redial_backoff * 2).min(self.options.redial_max);
            } else {
                self.redial_at = None;
            }
        }
        if self.reannounce_at.is_some_and(|at| at <= now) {
            self.reannounce_at = None;
            self.reannounced_at = Some(now);
            self.announce_all();
        }
        for (key, provider) in self.foreign_records.take_expired(now) {
            let store = self.swarm.behaviour_mut().kad.store_mut();
            store.remove_provider(&key, &provider);
        }
        let (expired, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|w| w.give_up_at <= now);
        self.waiting = waiting;
        for subscribe in expired {
            // Kept in `mailboxes`: announced when the routing table gains a peer.
            tracing::debug!(key = %subscribe.key, "no libp2p peer yet to announce a mailbox to");
            let _ = subscribe.done.send(false);
        }
        // Announcements still under way: the caller hears "not yet", the query goes on.
        let late: Vec<kad::QueryId> = self
            .announcing
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(query, _)| *query)
            .collect();
        for query in late {
            if let Some((done, _)) = self.announcing.remove(&query) {
                let _ = done.send(false);
            }
        }
    }

    fn dial_bootstraps(&mut self) {
        for bootstrap in &self.bootstraps {
            let addr = match bootstrap.peer {
                Some(peer) => bootstrap.addr.clone().with(Protocol::P2p(peer)),
                None => bootstrap.addr.clone(),
            };
            if let Err(error) = self.swarm.dial(addr) {
                tracing::debug!(%error, addr = %bootstrap.addr, "cannot dial libp2p bootstrap");
            }
        }
    }

    fn routing_table_is_empty(&mut self) -> bool {
        self.swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .all(|bucket| bucket.num_entries() == 0)
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Publish(envelopes) => self.handle_publish(envelopes),
            Command::Subscribe { key, inbox, done } => {
                self.mailboxes.entry(key).or_default().push(inbox);
                if self.bootstraps.is_empty() || !self.routing_table_is_empty() {
                    self.announce(key, Some(done));
                } else {
                    self.waiting.push(WaitingSubscribe {
                        key,
                        done,
                        give_up_at: Instant::now() + self.options.subscribe_wait,
                    });
                }
            }
            Command::Unsubscribe(key) => {
                self.mailboxes.remove(&key);
                let record = kad::RecordKey::new(&mailbox_key(&key));
                self.swarm.behaviour_mut().kad.stop_providing(&record);
            }
            Command::Redial => {
                self.redial_backoff = self.options.redial_initial;
                self.redial_at = Some(Instant::now());
                self.dial_bootstraps();
            }
        }
    }

    /// Announces `key`'s mailbox (a provider record at the peers closest to its hash).
    fn announce(&mut self, key: PublicKey, done: Option<oneshot::Sender<bool>>) {
        let record = kad::RecordKey::new(&mailbox_key(&key));
        match self.swarm.behaviour_mut().kad.start_providing(record) {
            Ok(query) => {
                if let Some(done) = done {
                    let give_up_at = Instant::now() + self.options.subscribe_wait;
                    self.announcing.insert(query, (done, give_up_at));
                }
            }
            Err(error) => {
                let now = Instant::now().into_std();
                if let Some(suppressed) = self.logs.announce_failed.allow(now) {
                    tracing::warn!(%error, suppressed, "cannot announce a libp2p mailbox");
                }
                if let Some(done) = done {
                    let _ = done.send(false);
                }
            }
        }
    }

    /// Announces every mailbox again, and those still waiting for a peer.
    fn announce_all(&mut self) {
        let keys: Vec<PublicKey> = self.mailboxes.keys().copied().collect();
        let waiting = std::mem::take(&mut self.waiting);
        let mut done_by_key: HashMap<PublicKey, Vec<oneshot::Sender<bool>>> = HashMap::new();
        for subscribe in waiting {
            done_by_key
                .entry(subscribe.key)
                .or_default()
                .push(subscribe.done);
        }
        for key in keys {
            let mut dones = done_by_key.remove(&key).unwrap_or_default();
            let first = dones.pop();
            for done in dones {
                let _ = done.send(true);
            }
            self.announce(key, first);
        }
        // Unsubscribed while waiting.
        for done in done_by_key.into_values().flatten() {
            let _ = done.send(false);
        }
    }

    fn handle_publish(&mut self, envelopes: Vec<Envelope>) {
        let mut by_recipient: HashMap<PublicKey, Vec<Envelope>> = HashMap::new();
        for envelope in envelopes {
            by_recipient
                .entry(envelope.recipient)
                .or_default()
                .push(envelope);
        }
        for (recipient, envelopes) in by_recipient {
            // Every envelope, not only until the first that is delivered.
            let mut delivered_locally = false;
            for envelope in &envelopes {
                delivered_locally |= self.deliver_locally(envelope);
            }
            if self.lookups.len() >= self.options.max_pending_lookups {
                Counters::add(&self.counters.dropped_busy, envelopes.len() as u64);
                continue;
            }
            let key = kad::RecordKey::new(&mailbox_key(&recipient));
            let query = self.swarm.behaviour_mut().kad.get_providers(key.clone());
            self.lookups.insert(
                query,
                Lookup {
                    key,
                    envelopes: envelopes.iter().map(|e| e.encode().to_vec()).collect(),
                    sent_to: HashSet::new(),
                    delivered_locally,
                },
            );
        }
    }

    /// Hands `envelope` to this node's subscribers of its recipient; false when there are
    /// none.
    fn deliver_locally(&mut self, envelope: &Envelope) -> bool {
        let Some(inboxes) = self.mailboxes.get_mut(&envelope.recipient) else {
            return false;
        };
        inboxes.retain(|inbox| !inbox.is_closed());
        if inboxes.is_empty() {
            return false;
        }
        for inbox in inboxes.iter() {
            if inbox.deliver(envelope.clone()) {
                Counters::add(&self.counters.delivered, 1);
            } else {
                Counters::add(&self.counters.inbox_full, 1);
            }
        }
        true
    }

    fn handle_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.handle_kad_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => self.handle_identify(peer_id, &info),
            SwarmEvent::Behaviour(BehaviourEvent::Envelopes(event)) => {
                self.handle_envelope_event(event);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                self.redial_backoff = self.options.redial_initial;
                self.redial_at = None;
                if let ConnectedPoint::Dialer { address, .. } = &endpoint {
                    let dialled = tcp_part(address).map(|(_, addr)| addr);
                    let is_bootstrap = self
                        .bootstraps
                        .iter()
                        .any(|b| Some(&b.addr) == dialled.as_ref());
                    if let (true, Some(addr)) = (is_bootstrap, dialled) {
                        // (Re)joined through a bootstrap: fill the routing table, and tell
                        // the network (a restarted bootstrap remembers nothing) where our
                        // mailboxes are.
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                        let _ = self.swarm.behaviour_mut().kad.bootstrap();
                        self.reannounce_at
                            .get_or_insert(Instant::now() + REANNOUNCE_DEBOUNCE);
                    }
                }
            }
            SwarmEvent::ConnectionClosed { .. } | SwarmEvent::OutgoingConnectionError { .. } => {
                self.redial_if_alone();
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                if let Some((ip, _)) = tcp_part(&address)
                    && (self.loopback_ok || !ip.is_loopback())
                {
                    self.swarm.add_external_address(address.clone());
                }
                self.listening_tx.send_modify(|addrs| addrs.push(address));
            }
            _ => {}
        }
    }

    /// With no connection left, dials the bootstraps again after the current backoff.
    fn redial_if_alone(&mut self) {
        if self.swarm.connected_peers().next().is_none() && !self.bootstraps.is_empty() {
            let at = Instant::now() + self.redial_backoff;
            self.redial_at.get_or_insert(at);
        }
    }

    /// A peer told us its listen addresses: those we can use go into the routing table,
    /// if it speaks our DHT.
    fn handle_identify(&mut self, peer: PeerId, info: &identify::Info) {
        if !info.protocols.contains(&KAD_PROTOCOL) {
            return;
        }
        // kad keeps every address it is given for a peer in its table, and identify pushes
        // can come again and again: add only while the peer has fewer than the limit.
        let known = self
            .swarm
            .behaviour_mut()
            .kad
            .kbucket(peer)
            .and_then(|bucket| {
                bucket
                    .iter()
                    .find(|entry| *entry.node.key.preimage() == peer)
                    .map(|entry| entry.node.value.len())
            })
            .unwrap_or(0);
        let room = MAX_ADDRS_PER_PEER.saturating_sub(known);
        for addr in self
            .usable_addresses(&info.listen_addrs)
            .into_iter()
            .take(room)
        {
            self.swarm.behaviour_mut().kad.add_address(&peer, addr);
        }
    }

    /// The TCP addresses of `addrs` this node may dial, at most [`MAX_ADDRS_PER_PEER`]: never
    /// an unspecified address, and loopback only when we listen on loopback ourselves.
    fn usable_addresses(&self, addrs: &[Multiaddr]) -> Vec<Multiaddr> {
        addrs
            .iter()
            .filter_map(tcp_part)
            .filter(|(ip, _)| !ip.is_unspecified() && (self.loopback_ok || !ip.is_loopback()))
            .map(|(_, addr)| addr)
            .take(MAX_ADDRS_PER_PEER)
            .collect()
    }

    fn handle_kad_event(&mut self, event: kad::Event) {
        match event {
            kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetProviders(result),
                step,
                ..
            } => {
                if let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = result {
                    self.send_to_providers(id, providers);
                }
                if step.last {
                    self.finish_lookup(id);
                }
            }
            kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::StartProviding(_),
                stats,
                ..
            } => {
                if let Some((done, _)) = self.announcing.remove(&id) {
                    let announced = stats.num_successes() > 0 || self.bootstraps.is_empty();
                    let _ = done.send(announced);
                }
            }
            kad::Event::RoutingUpdated {
                is_new_peer: true, ..
            } => {
                let soonest = Instant::now() + REANNOUNCE_DEBOUNCE;
                let allowed = self.reannounced_at.map_or(soonest, |last| {
                    (last + REANNOUNCE_MIN_INTERVAL).max(soonest)
                });
                self.reannounce_at.get_or_insert(allowed);
            }
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::AddProvider {
                        record: Some(mut record),
                    },
            } => {
                record.addresses = self.usable_addresses(&record.addresses);
                let ours = record.key.as_ref().len() == 32;
                if !ours
                    || !self
                        .foreign_records
                        .admit(&record.key, record.provider, Instant::now())
                    || self
                        .swarm
                        .behaviour_mut()
                        .kad
                        .store_mut()
                        .add_provider(record)
                        .is_err()
                {
                    Counters::add(&self.counters.provider_records_refused, 1);
                }
            }
            _ => {}
        }
    }

    /// Sends the lookup's envelopes to the providers not yet sent to.
    fn send_to_providers(&mut self, query: kad::QueryId, providers: HashSet<PeerId>) {
        let local = *self.swarm.local_peer_id();
        let Some(lookup) = self.lookups.get_mut(&query) else {
            return;
        };
        let limit = self.options.max_providers_per_key;
        let new: Vec<PeerId> = providers
            .into_iter()
            .filter(|p| *p != local && lookup.sent_to.len() < limit && lookup.sent_to.insert(*p))
            .collect();
        if new.is_empty() {
            return;
        }
        let key = lookup.key.clone();
        let envelopes = lookup.envelopes.clone();
        // Addresses from provider records this node stores, for providers it has no route
        // to yet.
        let records = self.swarm.behaviour_mut().kad.store_mut().providers(&key);
        for peer in new {
            for record in records.iter().filter(|r| r.provider == peer) {
                for addr in record.addresses.iter().take(MAX_ADDRS_PER_PEER) {
                    self.swarm.add_peer_address(peer, addr.clone());
                }
            }
            // Dial now, while the lookup still holds the addresses the provider came with:
            // kad keeps them only on the running query, which ends with its last step, before
            // request-response would ask for them.
            let _ = self.swarm.dial(
                DialOpts::peer_id(peer)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build(),
            );
            for envelope in &envelopes {
                self.swarm
                    .behaviour_mut()
                    .envelopes
                    .send_request(&peer, envelope.clone());
                Counters::add(&self.counters.sent, 1);
            }
        }
    }

    fn finish_lookup(&mut self, query: kad::QueryId) {
        let Some(lookup) = self.lookups.remove(&query) else {
            return;
        };
        if lookup.sent_to.is_empty() && !lookup.delivered_locally {
            Counters::add(
                &self.counters.dropped_no_recipient,
                lookup.envelopes.len() as u64,
            );
        }
    }

    fn handle_envelope_event(&mut self, event: request_response::Event<Vec<u8>, ()>) {
        let now = Instant::now().into_std();
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .envelopes
                    .send_response(channel, ());
                self.handle_inbound(peer, &request, now);
            }
            request_response::Event::OutboundFailure { peer, error, .. } => {
                Counters::add(&self.counters.send_failed, 1);
                if let Some(suppressed) = self.logs.send_failed.allow(now) {
                    tracing::debug!(%peer, %error, suppressed, "libp2p envelope not sent");
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                if let Some(suppressed) = self.logs.inbound_failed.allow(now) {
                    tracing::debug!(%peer, %error, suppressed, "libp2p envelope stream failed");
                }
            }
            _ => {}
        }
    }

    /// An envelope a peer sent: to this node's subscribers of its recipient, or dropped.
    fn handle_inbound(&mut self, peer: PeerId, bytes: &[u8], now: std::time::Instant) {
        let envelope = match Envelope::decode(bytes) {
            Ok(envelope) => envelope,
            Err(error) => {
                Counters::add(&self.counters.malformed, 1);
                if let Some(suppressed) = self.logs.malformed.allow(now) {
                    tracing::debug!(%peer, %error, suppressed, "libp2p peer sent no envelope");
                }
                return;
            }
        };
        if !self.deliver_locally(&envelope) {
            Counters::add(&self.counters.not_subscribed, 1);
        }
    }
}
