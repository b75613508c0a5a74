//! `wice signal` under systemd and Prometheus: READY=1 once listening, a status line with
//! the open connections and subscriptions, a watchdog petted from the server's runtime,
//! SIGHUP answered (reload is not supported yet), and the optional metrics listener.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use wice::metrics::{self, MetricsServer};
use wice::sd_notify::{self, Notifier};
use wice::signaling::server::{CounterHandle, CounterSnapshot};

/// Starts the hooks for a bound server; the tasks end when aborted.
pub(crate) async fn start(
    counters: CounterHandle,
    metrics_listen: Option<SocketAddr>,
) -> Result<Vec<JoinHandle<()>>, String> {
    let mut tasks = Vec::new();
    if let Some(address) = metrics_listen {
        let server = MetricsServer::bind(address)
            .await
            .map_err(|e| format!("--metrics-listen {address}: {e}"))?;
        tracing::info!(target: "wice::signal", %address, "serving Prometheus metrics on /metrics");
        let counters = counters.clone();
        tasks.push(tokio::spawn(metrics::serve(
            server,
            Arc::new(move || metrics::render_signal(&counters.snapshot())),
        )));
    }
    let notifier = Arc::new(Notifier::from_env());
    // The SIGHUP handler first: a reload right after READY=1 must not kill the server.
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hangups) => {
            let notifier = Arc::clone(&notifier);
            tasks.push(tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    tracing::warn!(
                        target: "wice::signal",
                        "SIGHUP: reloading is not supported yet; restart to apply new options"
                    );
                    notifier.status("reload is not supported yet: restart to apply new options");
                }
            }));
        }
        Err(e) => tracing::warn!(target: "wice::signal", "no SIGHUP handler: {e}"),
    }
    notifier.ready(&status_line(&counters.snapshot()));
    if notifier.enabled() {
        // The server's only threads are this runtime's: a pet from it shows it still runs.
        tasks.push(tokio::spawn(sd_notify::watchdog(
            notifier,
            sd_notify::watchdog_interval(),
            || Ok(()),
            move || status_line(&counters.snapshot()),
        )));
    }
    Ok(tasks)
}

/// `3 connections, 2 subscriptions`, as `systemctl status` shows it.
fn status_line(c: &CounterSnapshot) -> String {
    format!(
        "{} connections, {} subscriptions",
        c.connections, c.subscriptions
    )
}
