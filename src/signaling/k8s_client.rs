//! The Kubernetes backend (`k8s://`, `kubernetes:`): envelopes as `Envelope` custom resources
//! in one namespace of a Kubernetes API server (objects: [`super::k8s_object`]).
//!
//! Built for clusters of hundreds of nodes:
//!
//! - each node watches only its own mailbox: a watch with a label selector on the hash of its
//!   key, so the API server filters and a node's traffic does not grow with the cluster;
//! - a group key (a community key) is one more label value: every member watches it, and one
//!   object reaches them all;
//! - objects are state keyed by (sender, recipient), overwritten by the sender's next
//!   envelope, never a growing stream; the *sender* alone deletes its own objects once their
//!   `expires` has passed (one owner, so nodes never race to delete), and a pod's objects are
//!   owned by the pod (when `WICE_POD_NAME`/`WICE_POD_UID` are set), so Kubernetes collects
//!   them when the pod is gone;
//! - watches resume: after a dropped watch (API server restarted, connection lost, server
//!   timeout) the watch restarts from the last resourceVersion seen, so every overwrite made
//!   meanwhile arrives as an event; when that version is too old (`410 Gone`, e.g. a new API
//!   server's cache starts later), the mailbox is listed again and each object changed since
//!   that version and not yet expired is delivered. What is lost is only an object
//!   overwritten twice while away: its older envelope, which the protocol resends anyway.
//!
//! Semantics as the [`Backend`] trait asks: a subscription starts from the mailbox's state at
//! subscribe time (a list gives the starting resourceVersion), so nothing published before is
//! delivered; a backend publishes only as keys it subscribed.
//!
//! Trust: the API server and every other node that may write envelopes are untrusted. What is
//! read is bounded (a response's bytes without a newline, [`super::k8s_line_limit`]; the object
//! size before decoding; the objects per re-list), malformed or
//! misaddressed objects are dropped and counted, and the envelope's sealing authenticates its
//! sender end to end. RBAC cannot limit a node to its own mailbox (rules do not see labels):
//! a node may read, overwrite or delete others' envelopes, which is dropping or delaying,
//! no worse than any backend can do.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kube::Config;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions,
    WatchEvent, WatchParams,
};
use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::sync::{OnceCell, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt as _;

use super::backend::KubernetesUrl;
use super::backend::{
    Backend, BackendError, BackendFuture, BackendKind, BackendUrl, Inbox, from_subscribed_senders,
};
use super::k8s_line_limit::LimitLinesLayer;
use super::k8s_object::{
    GROUP, KIND, PLURAL, RECIPIENT_LABEL, Rejected, SENDER_LABEL, VERSION, envelope_in,
    envelope_object, expires_of, key_label, object_name,
};
use wice_core::keys::{PrivateKey, PublicKey};
use wice_core::signaling::envelope::Envelope;

/// How many envelopes of one batch are applied at once.
const PUBLISH_CONCURRENCY: usize = 16;

/// The field manager of wice's server-side applies.
const FIELD_MANAGER: &str = "wice";
/// Objects per page when listing.
const LIST_PAGE: u32 = 250;
/// Objects looked at per re-list of one mailbox; a mailbox holds one object per sender
/// talking to it, so this is far above any honest count.
pub const MAX_RELIST_OBJECTS: usize = 4096;

/// Settings of a [`K8sBackend`].
#[derive(Debug, Clone)]
pub struct K8sOptions {
    /// How long one request (publish, list, opening a watch) may take.
    pub request_timeout: Duration,
    /// How long an envelope object lives before its sender deletes it.
    pub ttl: Duration,
    /// How often the sender looks for its expired objects.
    pub sweep_interval: Duration,
    /// How long the API server holds one watch open before it ends it (and we start the
    /// next from where it ended).
    pub watch_timeout: Duration,
    /// First wait after a failed watch or list; doubles up to `backoff_max`.
    pub backoff_initial: Duration,
    /// Longest wait between attempts.
    pub backoff_max: Duration,
}

impl Default for K8sOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            ttl: Duration::from_secs(120),
            sweep_interval: Duration::from_secs(30),
            watch_timeout: Duration::from_secs(300),
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// What a [`K8sBackend`] has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct K8sCounters {
    /// Objects that held no well-formed envelope (dropped).
    pub malformed_objects: u64,
    /// Envelopes in a mailbox addressed to another key (dropped).
    pub misaddressed: u64,
    /// Envelopes dropped because the inbox was full.
    pub inbox_full: u64,
    /// Envelopes not published because their sender is not subscribed here.
    pub refused_sender_not_subscribed: u64,
    /// Watches restarted from the last resourceVersion seen.
    pub watches_resumed: u64,
    /// Mailboxes listed again because the last resourceVersion was gone (`410`).
    pub relists: u64,
    /// Envelopes delivered by a re-list (published while no watch ran).
    pub delivered_by_relist: u64,
    /// Expired objects this node deleted as their sender.
    pub expired_deleted: u64,
}

#[derive(Default)]
struct Counters {
    malformed: AtomicU64,
    misaddressed: AtomicU64,
    inbox_full: AtomicU64,
    refused_sender: AtomicU64,
    watches_resumed: AtomicU64,
    relists: AtomicU64,
    delivered_by_relist: AtomicU64,
    expired_deleted: AtomicU64,
}

type Subscriptions = Arc<Mutex<HashMap<PublicKey, Vec<JoinHandle<()>>>>>;

/// A client of a Kubernetes API server.
pub struct K8sBackend {
    url: KubernetesUrl,
    options: K8sOptions,
    api: OnceCell<Api<DynamicObject>>,
    /// Watch tasks by key; aborting one ends its watch.
    subscriptions: Subscriptions,
    /// The task deleting this node's expired objects.
    sweeper: Mutex<Option<JoinHandle<()>>>,
    /// The pod owning the objects this node writes, from `WICE_POD_NAME`/`WICE_POD_UID`.
    owner: Option<(String, String)>,
    closed: AtomicBool,
    counters: Arc<Counters>,
}

impl K8sBackend {
    /// A backend for a `k8s://` URL. Connects on first use, so this succeeds while the API
    /// server is down.
    pub fn new(url: &BackendUrl, options: K8sOptions) -> Result<Self, BackendError> {
        let BackendUrl::Kubernetes(url) = url else {
            return Err(BackendError::Setup(format!(
                "{url} is not a Kubernetes backend URL"
            )));
        };
        let owner = match (
            std::env::var("WICE_POD_NAME"),
            std::env::var("WICE_POD_UID"),
        ) {
            (Ok(name), Ok(uid)) if !name.is_empty() && !uid.is_empty() => Some((name, uid)),
            _ => None,
        };
        Ok(Self {
            url: url.clone(),
            options,
            api: OnceCell::new(),
            subscriptions: Arc::default(),
            sweeper: Mutex::new(None),
            owner,
            closed: AtomicBool::new(false),
            counters: Arc::default(),
        })
    }

    /// What this backend has seen so far.
    pub fn counters(&self) -> K8sCounters {
        let c = &self.counters;
        K8sCounters {
            malformed_objects: c.malformed.load(Ordering::Relaxed),
            misaddressed: c.misaddressed.load(Ordering::Relaxed),
            inbox_full: c.inbox_full.load(Ordering::Relaxed),
            refused_sender_not_subscribed: c.refused_sender.load(Ordering::Relaxed),
            watches_resumed: c.watches_resumed.load(Ordering::Relaxed),
            relists: c.relists.load(Ordering::Relaxed),
            delivered_by_relist: c.delivered_by_relist.load(Ordering::Relaxed),
            expired_deleted: c.expired_deleted.load(Ordering::Relaxed),
        }
    }

    /// The envelope objects' API, made on first use.
    async fn api(&self) -> Result<&Api<DynamicObject>, BackendError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(BackendError::Closed);
        }
        self.api
            .get_or_try_init(|| connect(&self.url, &self.options))
            .await
    }

    fn subscriptions(&self) -> std::sync::MutexGuard<'_, HashMap<PublicKey, Vec<JoinHandle<()>>>> {
        self.subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the sweeper once.
    fn ensure_sweeper(&self, api: &Api<DynamicObject>) {
        let mut sweeper = self.sweeper.lock().unwrap_or_else(PoisonError::into_inner);
        if sweeper.is_none() {
            *sweeper = Some(tokio::spawn(sweep_expired(
                api.clone(),
                Arc::clone(&self.subscriptions),
                self.options.sweep_interval,
                Arc::clone(&self.counters),
            )));
        }
    }

    fn abort_all(&self) {
        for (_, tasks) in self.subscriptions().drain() {
            for task in tasks {
                task.abort();
            }
        }
        if let Some(sweeper) = self
            .sweeper
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            sweeper.abort();
        }
    }
}

/// The client for `url`: its kubeconfig, or the one kubectl would use, or the pod's service
/// account.
async fn connect(
    url: &KubernetesUrl,
    options: &K8sOptions,
) -> Result<Api<DynamicObject>, BackendError> {
    let setup = |what: &str, error: &dyn std::fmt::Display| {
        BackendError::Setup(format!("Kubernetes {what}: {error}"))
    };
    let mut config = match &url.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| setup(&format!("kubeconfig {}", path.display()), &e))?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| setup(&format!("kubeconfig {}", path.display()), &e))?
        }
        None => Config::infer()
            .await
            .map_err(|e| setup("configuration (no kubeconfig, not in a cluster)", &e))?,
    };
    config.connect_timeout = Some(options.request_timeout);
    // A watch is a long read: allow its whole length and some.
    config.read_timeout = Some(options.watch_timeout + options.request_timeout);
    let namespace = url
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = ClientBuilder::try_from(config)
        .map_err(|e| setup("client", &e))?
        .with_layer(&LimitLinesLayer)
        .build();
    let resource = ApiResource {
        group: GROUP.to_owned(),
        version: VERSION.to_owned(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: KIND.to_owned(),
        plural: PLURAL.to_owned(),
    };
    Ok(Api::namespaced_with(client, &namespace, &resource))
}

fn unavailable(reason: impl std::fmt::Display) -> BackendError {
    BackendError::Unavailable {
        kind: BackendKind::Kubernetes,
        reason: reason.to_string(),
    }
}

/// A failed request as a [`BackendError`]: the API server's 4xx answers (forbidden, invalid,
/// no such resource) are refusals; anything else is the server being unavailable.
fn request_error(error: kube::Error) -> BackendError {
    match error {
        kube::Error::Api(status) if (400..500).contains(&status.code) && status.code != 429 => {
            BackendError::Refused {
                kind: BackendKind::Kubernetes,
                reason: status.message.clone(),
            }
        }
        other => unavailable(other),
    }
}

/// `future` within `limit`, or unavailable.
async fn within<T>(
    limit: Duration,
    future: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, BackendError> {
    match tokio::time::timeout(limit, future).await {
        Ok(result) => result.map_err(request_error),
        Err(_) => Err(unavailable(
            "the Kubernetes API server did not answer in time",
        )),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Backend for K8sBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Kubernetes
    }

    fn publish(&self, envelopes: Vec<Envelope>) -> BackendFuture<'_, ()> {
        Box::pin(async move {
            let api = self.api().await?;
            let allowed = from_subscribed_senders(
                envelopes,
                &self.subscriptions(),
                BackendKind::Kubernetes,
                &self.counters.refused_sender,
            )?;
            let expires = unix_now() + self.options.ttl.as_secs();
            // A batch (one envelope per peer, e.g. a new candidate for every session) goes out
            // as up to PUBLISH_CONCURRENCY requests at once over the client's HTTP/2
            // connection, not one round trip after another.
            let mut pending = allowed.into_iter();
            let mut in_flight = tokio::task::JoinSet::new();
            loop {
                while in_flight.len() < PUBLISH_CONCURRENCY {
                    let Some(envelope) = pending.next() else {
                        break;
                    };
                    let (api, timeout) = (api.clone(), self.options.request_timeout);
                    let name = object_name(&envelope.sender, &envelope.recipient);
                    let object = envelope_object(&envelope, expires, self.owner.as_ref());
                    in_flight.spawn(async move {
                        let apply = PatchParams::apply(FIELD_MANAGER).force();
                        within(timeout, api.patch(&name, &apply, &Patch::Apply(&object))).await
                    });
                }
                let Some(done) = in_flight.join_next().await else {
                    break;
                };
                // The first failure fails the batch; dropping the set aborts the rest.
                done.map_err(unavailable)??;
            }
            Ok(())
        })
    }

    fn subscribe(&self, identity: PrivateKey, inbox: Inbox) -> BackendFuture<'_, ()> {
        Box::pin(async move {
            let api = self.api().await?;
            let key = identity.public_key();
            let (ready, is_ready) = oneshot::channel();
            let mailbox = Mailbox {
                api: api.clone(),
                key,
                selector: format!("{RECIPIENT_LABEL}={}", key_label(&key)),
                inbox,
                options: self.options.clone(),
                counters: Arc::clone(&self.counters),
            };
            let task = tokio::spawn(mailbox.watch(ready));
            self.subscriptions().entry(key).or_default().push(task);
            self.ensure_sweeper(api);
            // The watch keeps trying in the background when its first attempt fails.
            match tokio::time::timeout(self.options.request_timeout, is_ready).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(BackendError::Closed),
                Err(_) => Err(unavailable(
                    "the Kubernetes API server did not answer in time",
                )),
            }
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
            self.abort_all();
            Ok(())
        })
    }
}

impl Drop for K8sBackend {
    fn drop(&mut self) {
        self.abort_all();
    }
}

/// One subscribed key's mailbox: the objects labelled with its hash.
struct Mailbox {
    api: Api<DynamicObject>,
    key: PublicKey,
    selector: String,
    inbox: Inbox,
    options: K8sOptions,
    counters: Arc<Counters>,
}

/// How one watch ended.
enum WatchEnd {
    /// The server closed it (its timeout) or the connection broke: watch again from the
    /// last resourceVersion.
    Resume,
    /// The last resourceVersion is gone: list again.
    Gone,
    /// The inbox was dropped.
    Done,
}

impl Mailbox {
    /// Watches the mailbox until the inbox is dropped. `ready` hears whether the first
    /// watch could be opened.
    async fn watch(self, ready: oneshot::Sender<Result<(), BackendError>>) {
        let mut ready = Some(ready);
        let mut backoff = self.options.backoff_initial;
        // Everything up to this resourceVersion has been seen (or predates the subscription).
        let mut position: Option<String> = None;
        let mut gone = false;
        loop {
            if self.inbox.is_closed() {
                return;
            }
            let start = match (&position, gone) {
                (None, _) => self.current_version().await,
                (Some(since), true) => self.relist(since).await,
                (Some(since), false) => Ok(since.clone()),
            };
            let since = match start {
                Ok(since) => since,
                Err(error) => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(Err(error.clone()));
                    }
                    tracing::debug!(%error, "kubernetes mailbox: list failed; retrying");
                    backoff = self.pause(backoff).await;
                    continue;
                }
            };
            position = Some(since.clone());
            gone = false;
            let params = WatchParams {
                bookmarks: true,
                ..WatchParams::default()
                    .labels(&self.selector)
                    .timeout(u32::try_from(self.options.watch_timeout.as_secs()).unwrap_or(300))
            };
            let opened = tokio::time::timeout(
                self.options.request_timeout,
                self.api.watch(&params, &since),
            )
            .await;
            let events = match opened {
                Ok(Ok(events)) => events,
                Ok(Err(kube::Error::Api(status))) if status.code == 410 => {
                    gone = true;
                    continue;
                }
                Ok(Err(error)) => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(Err(request_error(error)));
                    }
                    backoff = self.pause(backoff).await;
                    continue;
                }
                Err(_) => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(Err(unavailable("opening the watch timed out")));
                    }
                    backoff = self.pause(backoff).await;
                    continue;
                }
            };
            if let Some(ready) = ready.take() {
                let _ = ready.send(Ok(()));
            }
            backoff = self.options.backoff_initial;
            match self.follow(events, &mut position).await {
                WatchEnd::Done => return,
                WatchEnd::Gone => gone = true,
                WatchEnd::Resume => {
                    self.counters
                        .watches_resumed
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            // A watch that ended at once (a server going down) must not spin.
            backoff = self.pause(backoff).await;
        }
    }

    /// Waits `backoff` (or until the inbox is dropped); the next wait.
    async fn pause(&self, backoff: Duration) -> Duration {
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = self.inbox.closed() => {}
        }
        (backoff * 2).min(self.options.backoff_max)
    }

    /// Delivers the events of one watch; moves `position` along.
    async fn follow(
        &self,
        events: impl tokio_stream::Stream<Item = Result<WatchEvent<DynamicObject>, kube::Error>>,
        position: &mut Option<String>,
    ) -> WatchEnd {
        tokio::pin!(events);
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                () = self.inbox.closed() => return WatchEnd::Done,
            };
            match event {
                Some(Ok(WatchEvent::Added(object) | WatchEvent::Modified(object))) => {
                    if let Some(version) = &object.metadata.resource_version {
                        *position = Some(version.clone());
                    }
                    self.deliver(&object.data);
                }
                Some(Ok(WatchEvent::Deleted(object))) => {
                    if let Some(version) = object.metadata.resource_version {
                        *position = Some(version);
                    }
                }
                Some(Ok(WatchEvent::Bookmark(bookmark))) => {
                    *position = Some(bookmark.metadata.resource_version);
                }
                Some(Ok(WatchEvent::Error(status))) if status.code == 410 => {
                    return WatchEnd::Gone;
                }
                Some(Ok(WatchEvent::Error(status))) => {
                    tracing::debug!(code = status.code, message = %status.message, "kubernetes watch error");
                    return WatchEnd::Resume;
                }
                Some(Err(error)) => {
                    tracing::debug!(%error, "kubernetes watch broke");
                    return WatchEnd::Resume;
                }
                None => return WatchEnd::Resume,
            }
        }
    }

    /// The mailbox's current resourceVersion: where a new subscription starts.
    async fn current_version(&self) -> Result<String, BackendError> {
        let list = within(
            self.options.request_timeout,
            self.api
                .list_metadata(&ListParams::default().labels(&self.selector).limit(1)),
        )
        .await?;
        Ok(list.metadata.resource_version.unwrap_or_default())
    }

    /// Lists the mailbox again after its watch position was lost, delivering every object
    /// changed after `since` and not yet expired; returns the list's resourceVersion.
    async fn relist(&self, since: &str) -> Result<String, BackendError> {
        self.counters.relists.fetch_add(1, Ordering::Relaxed);
        // resourceVersions are etcd revisions; should one not be a number, deliver
        // everything unexpired (a replay the receiver's window drops).
        let since: u64 = since.parse().unwrap_or(0);
        let now = unix_now();
        let mut params = ListParams::default()
            .labels(&self.selector)
            .limit(LIST_PAGE);
        let mut looked_at = 0;
        loop {
            let page = within(self.options.request_timeout, self.api.list(&params)).await?;
            let version = page.metadata.resource_version.clone().unwrap_or_default();
            for object in &page.items {
                looked_at += 1;
                let changed = object
                    .metadata
                    .resource_version
                    .as_deref()
                    .and_then(|v| v.parse::<u64>().ok())
                    .is_none_or(|v| v > since);
                if changed && expires_of(&object.data) >= now && self.deliver(&object.data) {
                    self.counters
                        .delivered_by_relist
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() && looked_at < MAX_RELIST_OBJECTS => {
                    params = params.continue_token(&token);
                }
                _ => return Ok(version),
            }
        }
    }

    /// Hands an object's envelope to the inbox; true when delivered.
    fn deliver(&self, data: &serde_json::Value) -> bool {
        let envelope = match envelope_in(data, &self.key) {
            Ok(envelope) => envelope,
            Err(Rejected::Malformed) => {
                self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            Err(Rejected::Misaddressed) => {
                self.counters.misaddressed.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        };
        let delivered = self.inbox.deliver(envelope);
        if !delivered {
            self.counters.inbox_full.fetch_add(1, Ordering::Relaxed);
        }
        delivered
    }
}

/// Every `interval`, deletes the expired objects this node sent (labelled with one of its
/// subscribed keys as sender). Each sender deletes only its own, so nodes never race; the
/// delete is conditional on the resourceVersion listed, so an envelope published meanwhile
/// stays.
async fn sweep_expired(
    api: Api<DynamicObject>,
    subscriptions: Subscriptions,
    interval: Duration,
    counters: Arc<Counters>,
) {
    loop {
        tokio::time::sleep(interval).await;
        let senders: Vec<String> = subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .map(key_label)
            .collect();
        if senders.is_empty() {
            continue;
        }
        let selector = format!("{SENDER_LABEL} in ({})", senders.join(","));
        let mut params = ListParams::default().labels(&selector).limit(LIST_PAGE);
        let mut expired = Vec::new();
        let now = unix_now();
        let mut looked_at = 0;
        while let Ok(page) = api.list(&params).await {
            looked_at += page.items.len();
            expired.extend(
                page.items
                    .into_iter()
                    .filter(|object| expires_of(&object.data) < now),
            );
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() && looked_at < MAX_RELIST_OBJECTS => {
                    params = params.continue_token(&token);
                }
                _ => break,
            }
        }
        for object in expired {
            let (Some(name), Some(version)) =
                (object.metadata.name, object.metadata.resource_version)
            else {
                continue;
            };
            let delete = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: Some(version),
                    uid: None,
                }),
                ..DeleteParams::default()
            };
            if api.delete(&name, &delete).await.is_ok() {
                counters.expired_deleted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
