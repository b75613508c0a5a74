//! The runner task: one run at a time, each bounded by its hook's timeout.

use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;
use tokio::sync::mpsc;
use wice_core::log_limit::LogLimit;

use super::{HookConfig, HookCounters, HookEvent, LOG_LINES_PER_SECOND};

/// The only environment variable a hook gets.
const HOOK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How a run ended.
#[derive(Debug)]
pub(super) enum RunOutcome {
    /// Exit status zero.
    Succeeded,
    /// Exited non-zero or by a signal.
    Failed(ExitStatus),
    /// Could not be started, or waiting for it failed.
    NotRun(std::io::Error),
    /// Killed (with its process group) at the timeout.
    TimedOut,
}

/// Runs every event's hooks in order until the queue closes and is empty.
pub(super) async fn run(
    hooks: Vec<HookConfig>,
    mut events: mpsc::Receiver<HookEvent>,
    counters: Arc<HookCounters>,
) {
    let mut failure_log = LogLimit::per_second(LOG_LINES_PER_SECOND);
    while let Some(event) = events.recv().await {
        for hook in hooks
            .iter()
            .filter(|hook| hook.events.contains(&event.event))
        {
            let outcome = run_one(hook, &event).await;
            let counter = match &outcome {
                RunOutcome::Succeeded => &counters.succeeded,
                RunOutcome::TimedOut => &counters.timed_out,
                RunOutcome::Failed(_) | RunOutcome::NotRun(_) => &counters.failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            if matches!(outcome, RunOutcome::Succeeded) {
                tracing::debug!(hook = %hook.run.display(), event = event.event.as_str(), "hook ran");
                continue;
            }
            let Some(suppressed) = failure_log.allow(Instant::now()) else {
                continue;
            };
            let (hook_path, event_name) = (hook.run.display(), event.event.as_str());
            match outcome {
                RunOutcome::Failed(status) => tracing::warn!(
                    hook = %hook_path, event = event_name, %status, suppressed, "hook failed"
                ),
                RunOutcome::NotRun(error) => tracing::warn!(
                    hook = %hook_path, event = event_name, %error, suppressed, "hook not run"
                ),
                RunOutcome::TimedOut => tracing::warn!(
                    hook = %hook_path, event = event_name, timeout_ms = hook.timeout.as_millis(),
                    suppressed, "hook killed at its timeout"
                ),
                RunOutcome::Succeeded => {}
            }
        }
    }
}

/// Kills a process group when dropped: a run abandoned mid-way (the runner aborted at exit)
/// leaves nothing behind, including what the hook started in the background.
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(group) = self.0.take() {
            // SAFETY: kill(2) on a process group we created; no memory is involved.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `hook` for `event`: JSON on stdin, arguments, its own process group, killed at the
/// timeout.
pub(super) async fn run_one(hook: &HookConfig, event: &HookEvent) -> RunOutcome {
    let mut command = Command::new(&hook.run);
    command
        .args(event.args())
        .env_clear()
        .env("PATH", HOOK_PATH)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => return RunOutcome::NotRun(error),
    };
    let mut group = GroupGuard(child.id().and_then(|pid| i32::try_from(pid).ok()));
    let stdin = child.stdin.take();
    let line = event.to_json_line();
    let finished = tokio::time::timeout(hook.timeout, async {
        if let Some(mut stdin) = stdin {
            // A hook that does not read its stdin closes the pipe: that is its business.
            let _ = stdin.write_all(line.as_bytes()).await;
            drop(stdin);
        }
        child.wait().await
    })
    .await;
    match finished {
        Ok(Ok(status)) => {
            // The hook is done; what it left running in the background is its own.
            group.0 = None;
            if status.success() {
                RunOutcome::Succeeded
            } else {
                RunOutcome::Failed(status)
            }
        }
        Ok(Err(error)) => RunOutcome::NotRun(error),
        Err(_elapsed) => {
            group.kill();
            let _ = child.wait().await;
            RunOutcome::TimedOut
        }
    }
}
