//! The control socket: a Unix stream socket, root-only, one JSON request line
//! in and one JSON document out. `wice status` is its client.
//!
//! Request: `{"command":"status"}` (a bare `status` line is accepted too).
//! Response: a [`Status`] document, or `{"error": "..."}`.
//!
//! Request: `{"command":"reload"}`: the daemon re-reads its config file and applies the
//! difference; the response is `{"reloaded": "<what changed>"}` or `{"error": "..."}` (a
//! config with errors is refused and the running one stays).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use crate::status::Status;
use crate::system;

/// Longest request line accepted; anything longer is a confused client.
const MAX_REQUEST: usize = 4096;

/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Deserialize)]
struct Request {
    command: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct ErrorReply {
    error: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct ReloadReply {
    reloaded: String,
}

/// A reload asked of the daemon (by SIGHUP or the control socket), with where to say how
/// it went: a summary of what changed, or why the new config was refused.
#[derive(Debug)]
pub struct ReloadRequest {
    /// `None` for SIGHUP: the outcome is only logged.
    pub reply: Option<tokio::sync::oneshot::Sender<Result<String, String>>>,
}

/// Where reload requests go; `None` where the node cannot reload.
pub type ReloadSender = Option<tokio::sync::mpsc::Sender<ReloadRequest>>;

/// Binds the control socket with mode 0600 in a directory private to us (created 0700
/// when missing, refused when others could replace what is in it: see
/// [`system::ensure_private_dir`]). `bind` never follows a symbolic link at `path`: an
/// existing link makes it fail.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        system::ensure_private_dir(dir).map_err(std::io::Error::other)?;
    }
    let listener = UnixListener::bind(path)?;
    // Inside a private directory nobody else can swap the socket for a link before this.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Answers requests until the listener fails. `status` builds a fresh snapshot per request.
pub async fn serve(
    listener: UnixListener,
    status: Arc<dyn Fn() -> Status + Send + Sync>,
    reload: ReloadSender,
) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                tracing::warn!(%err, "control socket accept failed; status is unavailable");
                return;
            }
        };
        let status = Arc::clone(&status);
        let reload = reload.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let mut reader =
                tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_REQUEST as u64));
            let read = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await;
            let reply = match read {
                Ok(Ok(_)) if is_reload(line.trim()) => answer_reload(reload).await,
                Ok(Ok(_)) => answer(line.trim(), &*status),
                Ok(Err(err)) => error_json(&format!("read failed: {err}")),
                Err(_) => error_json("request timed out"),
            };
            let _ = write.write_all(reply.as_bytes()).await;
            let _ = write.write_all(b"\n").await;
        });
    }
}

fn answer(line: &str, status: &dyn Fn() -> Status) -> String {
    let command = if line.starts_with('{') {
        match serde_json::from_str::<Request>(line) {
            Ok(request) => request.command,
            Err(err) => return error_json(&format!("bad request: {err}")),
        }
    } else {
        line.to_owned()
    };
    match command.as_str() {
        "status" => {
            serde_json::to_string(&status()).unwrap_or_else(|err| error_json(&err.to_string()))
        }
        other => error_json(&format!("unknown command {other:?}")),
    }
}

fn is_reload(line: &str) -> bool {
    line == "reload"
        || serde_json::from_str::<Request>(line).is_ok_and(|request| request.command == "reload")
}

async fn answer_reload(reload: ReloadSender) -> String {
    let Some(reload) = reload else {
        return error_json("this node cannot reload");
    };
    let (reply, outcome) = tokio::sync::oneshot::channel();
    if reload
        .send(ReloadRequest { reply: Some(reply) })
        .await
        .is_err()
    {
        return error_json("the node is shutting down");
    }
    match outcome.await {
        Ok(Ok(summary)) => {
            serde_json::to_string(&ReloadReply { reloaded: summary }).unwrap_or_default()
        }
        Ok(Err(error)) => error_json(&error),
        Err(_) => error_json("the node stopped before the reload finished"),
    }
}

fn error_json(message: &str) -> String {
    serde_json::to_string(&ErrorReply {
        error: message.to_owned(),
    })
    .unwrap_or_default()
}

/// Why `wice status` could not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens at the path.
    #[error("cannot reach {path}: {source} (is `wice up` running for this interface?)")]
    Connect {
        /// Socket path.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
    /// The daemon answered with something unexpected.
    #[error("bad answer from {path}: {reason}")]
    BadAnswer {
        /// Socket path.
        path: String,
        /// What was wrong.
        reason: String,
    },
}

/// Asks a running daemon to reload its config; returns its summary of what changed.
pub fn request_reload(path: &Path) -> Result<String, ClientError> {
    let line = exchange(path, b"{\"command\":\"reload\"}\n", RELOAD_TIMEOUT)?;
    let bad = |reason: String| ClientError::BadAnswer {
        path: path.display().to_string(),
        reason,
    };
    if let Ok(ErrorReply { error }) = serde_json::from_str::<ErrorReply>(&line) {
        return Err(bad(error));
    }
    serde_json::from_str::<ReloadReply>(&line)
        .map(|reply| reply.reloaded)
        .map_err(|err| bad(err.to_string()))
}

/// How long `wice reload` waits: a reload resolves endpoint names and may open new
/// signaling connections.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends one request line and reads the one-line answer.
fn exchange(path: &Path, request: &[u8], timeout: Duration) -> Result<String, ClientError> {
    let shown = path.display().to_string();
    let connect = |source| ClientError::Connect {
        path: shown.clone(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(connect)?;
    stream.set_read_timeout(Some(timeout)).map_err(connect)?;
    stream.write_all(request).map_err(connect)?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(connect)?;
    Ok(line)
}

/// Asks a running daemon for its status.
pub fn request_status(path: &Path) -> Result<Status, ClientError> {
    let shown = path.display().to_string();
    let connect = |source| ClientError::Connect {
        path: shown.clone(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(connect)?;
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .map_err(connect)?;
    stream
        .write_all(b"{\"command\":\"status\"}\n")
        .map_err(connect)?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(connect)?;
    let bad = |reason: String| ClientError::BadAnswer {
        path: shown.clone(),
        reason,
    };
    if let Ok(ErrorReply { error }) = serde_json::from_str::<ErrorReply>(&line) {
        return Err(bad(error));
    }
    serde_json::from_str(&line).map_err(|err| bad(err.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
    use std::path::PathBuf;

    /// A fresh path under the temp dir (not created), removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            Self(
                std::env::temp_dir()
                    .join(format!("wice-control-test-{}-{name}", std::process::id())),
            )
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[tokio::test]
    async fn the_socket_is_0600_in_a_directory_created_0700() {
        let scratch = Scratch::new("create");
        let socket = scratch.0.join("run").join("n.sock");
        let _listener = bind(&socket).unwrap();
        assert_eq!(mode(&socket), 0o600);
        assert_eq!(mode(socket.parent().unwrap()), 0o700);
    }

    #[tokio::test]
    async fn a_socket_directory_open_to_others_is_refused() {
        let scratch = Scratch::new("open");
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&scratch.0)
            .unwrap();
        std::fs::set_permissions(&scratch.0, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = bind(&scratch.0.join("n.sock")).unwrap_err();
        assert!(err.to_string().contains("run: chmod 700"), "{err}");
        assert!(!scratch.0.join("n.sock").exists());
    }

    #[tokio::test]
    async fn binding_over_a_symlink_fails_and_leaves_its_target_alone() {
        let scratch = Scratch::new("link");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&scratch.0)
            .unwrap();
        let victim = scratch.0.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
        let socket = scratch.0.join("n.sock");
        std::os::unix::fs::symlink(&victim, &socket).unwrap();
        assert!(bind(&socket).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(mode(&victim), 0o644, "no chmod through the link");
    }
}
