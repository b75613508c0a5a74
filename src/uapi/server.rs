//! The UAPI socket: `/var/run/wireguard/<interface>.sock`, where `wg` finds
//! userspace WireGuard implementations.
//!
//! The directory is made 0700 and the socket 0600 (root only: the socket can
//! read the private key and change peers). A symlink in place of either is
//! refused, and so is a socket another live process answers on. One thread
//! serves connections one at a time; a connection may send several requests.
//! A request is read line by line with bounded lines and total size and a
//! deadline, so a stuck or hostile client holds the socket for seconds, not
//! forever.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::protocol::{MAX_LINE_BYTES, MAX_REQUEST_BYTES, UapiError, write_status};

/// Where `wg` looks for UAPI sockets on Linux.
pub const SOCKET_DIR: &str = "/var/run/wireguard";

/// How long one request may take to arrive, and how long an idle connection
/// stays open between requests.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// After a bad request: how much more of it is read (and dropped) before
/// closing, and for how long, so the client sees the error instead of a reset.
const DRAIN_BYTES: u64 = 1 << 20;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Why the socket could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The socket directory is missing and cannot be made, or is not a plain directory.
    #[error("{path}: {reason}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Something other than a stale socket is at the socket's path.
    #[error("{path}: {reason}")]
    Occupied {
        /// The socket path.
        path: PathBuf,
        /// What is there.
        reason: &'static str,
    },
    /// Binding failed.
    #[error("cannot bind {path}: {source}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// The socket path for `interface`.
pub fn socket_path(interface: &str) -> PathBuf {
    Path::new(SOCKET_DIR).join(format!("{interface}.sock"))
}

/// A served UAPI socket. Dropping it stops the thread and removes the socket.
pub struct UapiServer {
    path: PathBuf,
    listener: Arc<UnixListener>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UapiServer {
    /// Binds `path` and answers each request with `handle(text)` on a thread
    /// of its own.
    pub fn serve(
        path: &Path,
        handle: impl Fn(&str) -> String + Send + 'static,
    ) -> Result<Self, ServeError> {
        let listener = Arc::new(bind(path)?);
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = {
            let (listener, stopping) = (Arc::clone(&listener), Arc::clone(&stopping));
            std::thread::Builder::new()
                .name("wice-uapi".into())
                .spawn(move || accept_loop(&listener, &stopping, &handle))
                .map_err(|source| ServeError::Bind {
                    path: path.to_owned(),
                    source,
                })?
        };
        Ok(Self {
            path: path.to_owned(),
            listener,
            stopping,
            thread: Some(thread),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for UapiServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        // SAFETY: shutdown on our own listening socket; it wakes the blocked accept.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Makes the directory, clears a stale socket, binds, and restricts the mode.
fn bind(path: &Path) -> Result<UnixListener, ServeError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    prepare_directory(dir)?;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(ServeError::Occupied {
                path: path.to_owned(),
                reason: "is a symlink; refusing to follow it",
            });
        }
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(ServeError::Occupied {
                    path: path.to_owned(),
                    reason: "another process serves this interface",
                });
            }
            let _ = std::fs::remove_file(path);
        }
        Ok(_) => {
            return Err(ServeError::Occupied {
                path: path.to_owned(),
                reason: "exists and is not a socket",
            });
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path).map_err(|source| ServeError::Bind {
        path: path.to_owned(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        ServeError::Bind {
            path: path.to_owned(),
            source,
        }
    })?;
    Ok(listener)
}

fn prepare_directory(dir: &Path) -> Result<(), ServeError> {
    let error = |reason: String| ServeError::Directory {
        path: dir.to_owned(),
        reason,
    };
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() => {
            Err(error("is a symlink; refusing to follow it".into()))
        }
        Ok(meta) if !meta.is_dir() => Err(error("is not a directory".into())),
        Ok(_) => Ok(()),
        Err(_) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| error(e.to_string())),
    }
}

fn accept_loop(listener: &UnixListener, stopping: &AtomicBool, handle: &dyn Fn(&str) -> String) {
    let mut failures = 0u32;
    while !stopping.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                failures = 0;
                if let Err(error) = serve_connection(stream, handle) {
                    tracing::debug!(%error, "UAPI connection ended");
                }
            }
            Err(error) => {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                // EMFILE and friends: back off instead of spinning.
                failures = failures.saturating_add(1);
                if failures == 1 {
                    tracing::warn!(%error, "UAPI accept failed");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Reads requests until the client closes, errs or idles past the deadline.
fn serve_connection(stream: UnixStream, handle: &dyn Fn(&str) -> String) -> io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let text = match read_request(&mut reader) {
            Ok(Some(text)) => text,
            Ok(None) => return Ok(()),
            Err(RequestError::Uapi(error)) => {
                writer.write_all(write_status(&Err(error)).as_bytes())?;
                // Closing with unread input resets the connection before the
                // client reads the answer: read on a little (bounded) first.
                writer.shutdown(std::net::Shutdown::Write)?;
                reader.get_ref().set_read_timeout(Some(DRAIN_TIMEOUT))?;
                let _ = io::copy(&mut reader.by_ref().take(DRAIN_BYTES), &mut io::sink());
                return Ok(());
            }
            Err(RequestError::Io(error)) => return Err(error),
        };
        writer.write_all(handle(&text).as_bytes())?;
    }
}

enum RequestError {
    Uapi(UapiError),
    Io(io::Error),
}

/// One request's lines, without the empty line that ends it; `None` at a
/// clean end of stream before any byte.
fn read_request(reader: &mut BufReader<UnixStream>) -> Result<Option<String>, RequestError> {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut text = String::new();
    let mut line = Vec::with_capacity(128);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(RequestError::Io(io::ErrorKind::TimedOut.into()));
        }
        reader
            .get_ref()
            .set_read_timeout(Some(left))
            .map_err(RequestError::Io)?;
        line.clear();
        let read = reader
            .by_ref()
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(RequestError::Io)?;
        if read == 0 {
            return if text.is_empty() {
                Ok(None)
            } else {
                Err(RequestError::Io(io::ErrorKind::UnexpectedEof.into()))
            };
        }
        if line.last() != Some(&b'\n') {
            return Err(RequestError::Uapi(if read > MAX_LINE_BYTES {
                UapiError::TooLarge
            } else {
                UapiError::Protocol("request ended mid-line".into())
            }));
        }
        if line == b"\n" {
            return Ok(Some(text));
        }
        if text.len() + line.len() > MAX_REQUEST_BYTES {
            return Err(RequestError::Uapi(UapiError::TooLarge));
        }
        let line = std::str::from_utf8(&line)
            .map_err(|_| RequestError::Uapi(UapiError::Protocol("not UTF-8".into())))?;
        text.push_str(line);
    }
}
