//! Hooks: executables the node runs on peer events.
//!
//! ```toml
//! [[hook]]
//! run = "/etc/wice/on-peer"        # absolute path of an executable
//! events = ["connected", "disconnected"]   # default: all five
//! timeout = "10s"                  # default 10 s; the run is killed after it
//! ```
//!
//! Each event runs each hook that asked for it as `run EVENT PEER INTERFACE [ENDPOINT]`, with
//! the event as one line of JSON on stdin ([`HookEvent`] documents the fields), stdout
//! discarded, stderr the node's, an environment holding only `PATH`, and its own process
//! group, which is killed (SIGKILL) when the run outlives its timeout.
//!
//! The node never waits for a hook: events go into one bounded queue ([`QUEUE_LEN`]) that a
//! single runner task empties, one run at a time, in the order the events happened. When the
//! queue is full the event is dropped and counted (`hook_events_dropped` in `wice status`'s
//! drops) with a rate-limited warning; a failed start, a non-zero exit and a timeout are
//! counted and logged the same way.

mod connectivity;
mod ice_peers;
mod runner;
mod static_peers;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use wice_core::keys::PublicKey;
use wice_core::log_limit::LogLimit;

pub use connectivity::Connectivity;
pub use ice_peers::IcePeerWatch;
pub use static_peers::{POLL_INTERVAL as STATIC_PEER_POLL, StaticPeerWatch};

/// Events waiting for the runner at most; more are dropped and counted.
pub const QUEUE_LEN: usize = 256;
/// A run's default time limit.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping node lets queued hooks (its `removed` events) finish.
pub const DRAIN_AT_EXIT: Duration = Duration::from_secs(5);
/// Warnings per second about dropped events and failed runs.
const LOG_LINES_PER_SECOND: u32 = 2;

/// What happened to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The peer became part of the interface (start, reload, community).
    Added,
    /// The peer left the interface (shutdown, reload, community).
    Removed,
    /// A working path: the ICE session is connected, or (static endpoint) a WireGuard
    /// handshake in the last 180 s.
    Connected,
    /// The working path was lost.
    Disconnected,
    /// WireGuard traffic to the peer now goes another way.
    PathChanged,
}

impl EventKind {
    /// Every kind, in the order the docs list them.
    pub const ALL: [Self; 5] = [
        Self::Added,
        Self::Removed,
        Self::Connected,
        Self::Disconnected,
        Self::PathChanged,
    ];

    /// The name in configs, JSON and the first argument.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Removed => "removed",
            Self::Connected => "connected",
            Self::Disconnected => "disconnected",
            Self::PathChanged => "path_changed",
        }
    }

    /// The kind a config names, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// One `[[hook]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookConfig {
    /// The executable (an absolute path).
    pub run: PathBuf,
    /// The events it runs for.
    pub events: Vec<EventKind>,
    /// Its time limit per run.
    pub timeout: Duration,
}

/// The JSON a hook reads on stdin: one object on one line. Fields not known for an event are
/// `null`; new fields may be added, none renamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookEvent {
    /// Schema version, 1.
    pub version: u32,
    /// `added`, `removed`, `connected`, `disconnected` or `path_changed`.
    pub event: EventKind,
    /// The wice interface.
    pub interface: String,
    /// The peer's public key, base64.
    pub peer: String,
    /// When it happened, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// `connected`, `path_changed`: where WireGuard datagrams go now, `ip:port` (a TURN
    /// server when relayed).
    pub endpoint: Option<String>,
    /// `connected`, `path_changed`: `static` (configured or roamed endpoint), or the ICE
    /// path's kind: `host`, `srflx`, `prflx`, `relay`.
    pub path: Option<String>,
    /// `added`, `removed`: the peer's allowed IPs.
    pub allowed_ips: Option<Vec<String>>,
}

impl HookEvent {
    /// An event about `peer` now, with the optional fields empty.
    pub fn new(event: EventKind, interface: &str, peer: &PublicKey) -> Self {
        Self {
            version: 1,
            event,
            interface: interface.to_owned(),
            peer: peer.to_base64(),
            time_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| {
                    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
                }),
            endpoint: None,
            path: None,
            allowed_ips: None,
        }
    }

    /// The stdin line.
    pub fn to_json_line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_default();
        line.push('\n');
        line
    }

    /// The arguments after the program: event, peer, interface, and the endpoint when known.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            self.event.as_str().to_owned(),
            self.peer.clone(),
            self.interface.clone(),
        ];
        args.extend(self.endpoint.clone());
        args
    }
}

/// Counts for `wice status` (drops) and tests.
#[derive(Debug, Default)]
pub struct HookCounters {
    /// Events dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Runs that could not start or exited non-zero.
    pub failed: AtomicU64,
    /// Runs killed at their timeout.
    pub timed_out: AtomicU64,
    /// Runs that exited zero.
    pub succeeded: AtomicU64,
}

impl HookCounters {
    /// Adds the counts to `wice status`'s drops: `hook_events_dropped`, `hook_runs_failed`,
    /// `hook_runs_timed_out`.
    pub fn add_to(&self, drops: &mut std::collections::BTreeMap<String, u64>) {
        for (name, counter) in [
            ("hook_events_dropped", &self.dropped),
            ("hook_runs_failed", &self.failed),
            ("hook_runs_timed_out", &self.timed_out),
        ] {
            drops.insert(name.to_owned(), counter.load(Ordering::Relaxed));
        }
    }
}

/// The node's side of the hooks: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Hooks {
    interface: Arc<str>,
    queue: Option<mpsc::Sender<HookEvent>>,
    counters: Arc<HookCounters>,
    drop_log: Arc<Mutex<LogLimit>>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("interface", &self.interface)
            .field("enabled", &self.queue.is_some())
            .finish_non_exhaustive()
    }
}

/// The runner task; [`HookRunner::finish`] lets it empty its queue at exit.
#[derive(Debug)]
pub struct HookRunner {
    task: Option<JoinHandle<()>>,
}

impl Hooks {
    /// Starts the runner for `hooks` (none: events are discarded at no cost).
    pub fn start(interface: &str, hooks: Vec<HookConfig>) -> (Self, HookRunner) {
        let counters = Arc::new(HookCounters::default());
        let (queue, task) = if hooks.is_empty() {
            (None, None)
        } else {
            let (tx, rx) = mpsc::channel(QUEUE_LEN);
            let task = tokio::spawn(runner::run(hooks, rx, Arc::clone(&counters)));
            (Some(tx), Some(task))
        };
        let hooks = Self {
            interface: interface.into(),
            queue,
            counters,
            drop_log: Arc::new(Mutex::new(LogLimit::per_second(LOG_LINES_PER_SECOND))),
        };
        (hooks, HookRunner { task })
    }

    /// No hooks: every event is discarded.
    pub fn disabled(interface: &str) -> Self {
        Self {
            interface: interface.into(),
            queue: None,
            counters: Arc::default(),
            drop_log: Arc::new(Mutex::new(LogLimit::per_second(LOG_LINES_PER_SECOND))),
        }
    }

    /// Whether any hook is configured (otherwise nothing needs watching).
    pub fn enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// The interface events are about.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// An event about `peer`, to fill in and [`Hooks::fire`].
    pub fn event(&self, kind: EventKind, peer: &PublicKey) -> HookEvent {
        HookEvent::new(kind, &self.interface, peer)
    }

    /// Queues `event` for the runner, or drops and counts it when the queue is full.
    pub fn fire(&self, event: HookEvent) {
        let Some(queue) = &self.queue else { return };
        if let Err(mpsc::error::TrySendError::Full(event)) = queue.try_send(event) {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            let allowed = self
                .drop_log
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .allow(Instant::now());
            if let Some(suppressed) = allowed {
                tracing::warn!(
                    event = event.event.as_str(),
                    peer = %event.peer,
                    suppressed,
                    "hook queue full ({QUEUE_LEN} events): event dropped; a hook is too slow"
                );
            }
        }
    }

    /// The counters (they outlive the runner).
    pub fn counters(&self) -> Arc<HookCounters> {
        Arc::clone(&self.counters)
    }
}

impl HookRunner {
    /// Waits up to `limit` for the queued events to run (after every [`Hooks`] clone is
    /// dropped, the runner ends once the queue is empty), then stops it, killing a run still
    /// going.
    pub async fn finish(mut self, limit: Duration) {
        let Some(mut task) = self.task.take() else {
            return;
        };
        if tokio::time::timeout(limit, &mut task).await.is_err() {
            tracing::warn!(
                seconds = limit.as_secs(),
                "hooks still running at exit; stopped"
            );
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for HookRunner {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests;
