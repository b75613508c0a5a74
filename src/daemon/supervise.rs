//! The node under systemd: readiness, a status line with the connected peer count, a
//! watchdog petted only while the packet threads and the ICE task run, and SIGHUP, which
//! asks for a reload (`ExecReload` sends it; the reloader says RELOADING=1, then READY=1).

use std::sync::{Arc, Weak};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle};
use wice_datapath::Device;

use crate::control::ReloadRequest;
use crate::sd_notify::{self, Notifier};
use crate::status::Status;

/// What the supervision tasks watch.
pub(super) struct Watched {
    /// The datapath; a packet thread that exited, or the device gone, is death.
    pub(super) device: Weak<Device>,
    /// The ICE task, if the node runs one.
    pub(super) ice_task: Option<AbortHandle>,
    /// The node's status, for the peer count.
    pub(super) status: Arc<dyn Fn() -> Status + Send + Sync>,
}

/// Says READY=1 and starts the watchdog/status task and the SIGHUP listener, which hands
/// each SIGHUP to `reload`. Both tasks end when the returned handles are aborted.
pub(super) fn start(
    notifier: Arc<Notifier>,
    watched: Watched,
    reload: mpsc::Sender<ReloadRequest>,
) -> Vec<JoinHandle<()>> {
    let status = Arc::clone(&watched.status);
    let mut tasks = Vec::new();
    // The SIGHUP handler first: a reload right after READY=1 must not kill the node.
    if let Ok(mut hangups) = signal(SignalKind::hangup()) {
        tasks.push(tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the config");
                // A full queue means reloads are pending already: this one is covered.
                let _ = reload.try_send(ReloadRequest { reply: None });
            }
        }));
    } else {
        tracing::warn!("cannot install a SIGHUP handler: SIGHUP will stop the node");
    }
    notifier.ready(&status_line(&status()));
    let interval = sd_notify::watchdog_interval();
    if notifier.enabled() {
        let Watched {
            device, ice_task, ..
        } = watched;
        tasks.push(tokio::spawn(sd_notify::watchdog(
            notifier,
            interval,
            move || alive(&device, ice_task.as_ref()),
            move || status_line(&status()),
        )));
    }
    tasks
}

/// Serves the node's Prometheus metrics on `address` (from the same status as the control
/// socket).
pub(super) async fn start_metrics(
    address: std::net::SocketAddr,
    status: Arc<dyn Fn() -> Status + Send + Sync>,
) -> Result<JoinHandle<()>, super::UpError> {
    let server = crate::metrics::MetricsServer::bind(address)
        .await
        .map_err(|source| super::UpError::Metrics { address, source })?;
    tracing::info!(%address, "serving Prometheus metrics on /metrics");
    Ok(tokio::spawn(crate::metrics::serve(
        server,
        Arc::new(move || crate::metrics::render_node(&status())),
    )))
}

/// Whether every part the node cannot run without is running.
fn alive(device: &Weak<Device>, ice_task: Option<&AbortHandle>) -> Result<(), String> {
    let device = device.upgrade().ok_or("the datapath is gone")?;
    if let Some(exit) = device.thread_exit() {
        return Err(exit.to_string());
    }
    if ice_task.is_some_and(AbortHandle::is_finished) {
        return Err("the ICE task ended".to_owned());
    }
    Ok(())
}

/// `2 of 3 peers connected`, as `systemctl status` shows it.
pub(super) fn status_line(status: &Status) -> String {
    let connected = status
        .peers
        .iter()
        .filter(|peer| peer.state == "connected")
        .count();
    format!(
        "{connected} of {} peers connected on {}",
        status.peers.len(),
        status.interface
    )
}
