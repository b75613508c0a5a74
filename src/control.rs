//! The control socket: a Unix stream socket, root-only, one JSON request line
//! in and one JSON document out. `wice status` is its client.
//!
//! Request: `{"command":"status"}` (a bare `status` line is accepted too).
//! Response: a [`Status`] document, or `{"error": "..."}`.

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

/// Binds the control socket with mode 0600.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Answers requests until the listener fails. `status` builds a fresh snapshot per request.
pub async fn serve(listener: UnixListener, status: Arc<dyn Fn() -> Status + Send + Sync>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                tracing::warn!(%err, "control socket accept failed; status is unavailable");
                return;
            }
        };
        let status = Arc::clone(&status);
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let mut reader =
                tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_REQUEST as u64));
            let read = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await;
            let reply = match read {
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
