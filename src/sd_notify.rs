//! systemd's readiness protocol (`sd_notify(3)`), written directly: one datagram per message
//! to the Unix socket named by `NOTIFY_SOCKET`, and the watchdog interval from `WATCHDOG_USEC`.
//!
//! Outside systemd (no `NOTIFY_SOCKET`) every call is a no-op, so the daemons call it
//! unconditionally. A failed send is logged once at debug level and otherwise ignored:
//! systemd going away must not take the node down.
//!
//! The watchdog is the point: [`watchdog`] pets systemd only while `alive()` says every part
//! the daemon cannot run without is running, so a dead packet thread or a stuck runtime makes
//! systemd restart the unit (`Restart=on-failure`) even if the process lingers.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Where systemd listens, from `NOTIFY_SOCKET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyAddress {
    /// A path in the file system.
    Path(PathBuf),
    /// An abstract socket (`@name` in the variable).
    Abstract(Vec<u8>),
}

/// A handle that sends `sd_notify` messages; does nothing when not under systemd.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, NotifyAddress)>,
    /// Whether a send already failed (logged once).
    failed: AtomicBool,
}

impl Notifier {
    /// From the environment: `NOTIFY_SOCKET`, if set and usable.
    pub fn from_env() -> Self {
        let address = std::env::var_os("NOTIFY_SOCKET").and_then(|raw| parse_address(&raw));
        Self::to(address)
    }

    /// A notifier for `address` (`None`: a no-op notifier).
    pub fn to(address: Option<NotifyAddress>) -> Self {
        let target = address.and_then(|address| match UnixDatagram::unbound() {
            Ok(socket) => Some((socket, address)),
            Err(error) => {
                tracing::warn!(%error, "cannot create the systemd notify socket");
                None
            }
        });
        Self {
            target,
            failed: AtomicBool::new(false),
        }
    }

    /// Whether there is a systemd to talk to.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one message, e.g. `READY=1\nSTATUS=...`.
    pub fn notify(&self, message: &str) {
        let Some((socket, address)) = &self.target else {
            return;
        };
        let sent = match address {
            NotifyAddress::Path(path) => socket.send_to(message.as_bytes(), path),
            NotifyAddress::Abstract(name) => send_abstract(socket, name, message.as_bytes()),
        };
        if let Err(error) = sent
            && !self.failed.swap(true, Ordering::Relaxed)
        {
            tracing::debug!(%error, "systemd notify failed (logged once)");
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// A status line (`systemctl status` shows it).
    pub fn status(&self, status: &str) {
        self.notify(&format!("STATUS={}", one_line(status)));
    }

    /// `RELOADING=1` with the monotonic time systemd wants beside it (`sd_notify(3)`).
    pub fn reloading(&self) {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec through a valid pointer.
        let usec = if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } == 0 {
            (now.tv_sec as u64) * 1_000_000 + (now.tv_nsec as u64) / 1_000
        } else {
            0
        };
        self.notify(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.notify("STOPPING=1");
    }
}

fn one_line(status: &str) -> String {
    status.replace('\n', " ")
}

#[cfg(target_os = "linux")]
fn send_abstract(socket: &UnixDatagram, name: &[u8], message: &[u8]) -> std::io::Result<usize> {
    use std::os::linux::net::SocketAddrExt as _;
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(message, &address)
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(_: &UnixDatagram, _: &[u8], _: &[u8]) -> std::io::Result<usize> {
    Err(std::io::Error::other("abstract sockets are Linux-only"))
}

/// Parses `NOTIFY_SOCKET`: an absolute path or `@abstract`; anything else is ignored.
pub fn parse_address(raw: &std::ffi::OsStr) -> Option<NotifyAddress> {
    use std::os::unix::ffi::OsStrExt as _;
    let bytes = raw.as_bytes();
    match bytes.first()? {
        b'/' => Some(NotifyAddress::Path(PathBuf::from(raw))),
        b'@' => Some(NotifyAddress::Abstract(bytes[1..].to_vec())),
        _ => None,
    }
}

/// How often to pet the watchdog: half of `WATCHDOG_USEC` (as `sd_watchdog_enabled(3)`
/// advises), if it is set and, when `WATCHDOG_PID` is set, meant for this process.
pub fn watchdog_interval() -> Option<Duration> {
    interval_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn interval_from(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid
        && pid.parse::<u32>().ok() != Some(own_pid)
    {
        return None;
    }
    let usec: u64 = usec?.parse().ok().filter(|&usec| usec > 0)?;
    Some(Duration::from_micros(usec) / 2)
}

/// How often [`watchdog`] refreshes the status line when there is no watchdog to pet.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(5);

/// Pets the watchdog every `interval` while `alive()` is true, and refreshes `STATUS=` from
/// `status()` whenever it changes. Stops petting for good once `alive()` is false (and says
/// why in the status line), so systemd's watchdog fires. Runs until dropped.
pub async fn watchdog(
    notifier: std::sync::Arc<Notifier>,
    interval: Option<Duration>,
    alive: impl Fn() -> Result<(), String>,
    status: impl Fn() -> String,
) {
    let mut ticks = tokio::time::interval(interval.unwrap_or(STATUS_INTERVAL));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_status = String::new();
    loop {
        ticks.tick().await;
        if let Err(dead) = alive() {
            notifier.status(&format!("not petting the watchdog: {dead}"));
            std::future::pending::<()>().await;
        }
        let now = status();
        let mut message = String::new();
        if interval.is_some() {
            message.push_str("WATCHDOG=1");
        }
        if now != last_status {
            if !message.is_empty() {
                message.push('\n');
            }
            message.push_str("STATUS=");
            message.push_str(&one_line(&now));
            last_status = now;
        }
        if !message.is_empty() {
            notifier.notify(&message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn notify_socket_is_a_path_or_an_abstract_name() {
        assert_eq!(
            parse_address("/run/systemd/notify".as_ref()),
            Some(NotifyAddress::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            parse_address("@sd-notify".as_ref()),
            Some(NotifyAddress::Abstract(b"sd-notify".to_vec()))
        );
        assert_eq!(parse_address("relative".as_ref()), None);
        assert_eq!(parse_address("".as_ref()), None);
    }

    #[test]
    fn the_watchdog_is_petted_at_half_its_timeout_and_only_for_its_own_pid() {
        assert_eq!(
            interval_from(Some("2000000"), None, 7),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            interval_from(Some("2000000"), Some("7"), 7),
            Some(Duration::from_secs(1))
        );
        assert_eq!(interval_from(Some("2000000"), Some("8"), 7), None);
        assert_eq!(interval_from(Some("0"), None, 7), None);
        assert_eq!(interval_from(Some("soon"), None, 7), None);
        assert_eq!(interval_from(None, None, 7), None);
    }

    fn listener() -> (tempdir::Dir, UnixDatagram, Arc<Notifier>) {
        let dir = tempdir::Dir::new();
        let path = dir.0.join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let notifier = Arc::new(Notifier::to(Some(NotifyAddress::Path(path))));
        (dir, socket, notifier)
    }

    fn recv(socket: &UnixDatagram) -> Option<String> {
        let mut buf = [0u8; 512];
        let len = socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..len]).into_owned())
    }

    #[test]
    fn ready_carries_the_status_on_one_line() {
        let (_dir, socket, notifier) = listener();
        notifier.ready("2 of 3 peers\nconnected");
        assert_eq!(
            recv(&socket).as_deref(),
            Some("READY=1\nSTATUS=2 of 3 peers connected")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_stops_petting_when_a_part_dies() {
        let (_dir, socket, notifier) = listener();
        let checks = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&checks);
        let task = tokio::spawn(watchdog(
            notifier,
            Some(Duration::from_millis(100)),
            move || match counted.fetch_add(1, Ordering::Relaxed) {
                0..3 => Ok(()),
                _ => Err("datapath thread wice-tun-rx exited".to_owned()),
            },
            || "1 of 1 peers connected".to_owned(),
        ));
        tokio::time::sleep(Duration::from_secs(2)).await;
        task.abort();
        let mut messages = Vec::new();
        socket.set_nonblocking(true).expect("nonblocking");
        while let Some(message) = recv(&socket) {
            messages.push(message);
        }
        assert_eq!(
            messages,
            [
                "WATCHDOG=1\nSTATUS=1 of 1 peers connected",
                "WATCHDOG=1",
                "WATCHDOG=1",
                "STATUS=not petting the watchdog: datapath thread wice-tun-rx exited",
            ]
        );
    }

    #[test]
    fn without_notify_socket_nothing_is_sent() {
        let notifier = Notifier::to(None);
        assert!(!notifier.enabled());
        notifier.ready("up"); // must not panic or block
    }

    /// A scratch directory removed on drop (no tempfile dependency in the library).
    mod tempdir {
        pub(super) struct Dir(pub(super) std::path::PathBuf);
        impl Dir {
            pub(super) fn new() -> Self {
                static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let path =
                    std::env::temp_dir().join(format!("wice-sd-notify-{}-{n}", std::process::id()));
                std::fs::create_dir_all(&path).expect("mkdir");
                Self(path)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }
}
