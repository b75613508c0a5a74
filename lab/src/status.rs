//! Reading a lab node's status from its control socket, as `wice status --json` does.
//!
//! The lab speaks the control socket's one-line JSON protocol itself rather than linking the
//! `wice` library: the lab is a test and demo tool, and it reads status as untyped JSON so it
//! works across daemon versions.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long a daemon has to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// The daemon's status as JSON, or `None` when it does not answer (not started yet, stopped)
/// or answers with an error.
pub(crate) fn request_status(socket: &Path) -> Option<serde_json::Value> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).ok()?;
    stream.write_all(b"{\"command\":\"status\"}\n").ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    let answer: serde_json::Value = serde_json::from_str(&line).ok()?;
    answer.get("error").is_none().then_some(answer)
}
