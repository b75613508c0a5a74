//! `wice wireguard [-f] IFNAME`: a plain userspace WireGuard interface, like
//! `wireguard-go IFNAME`, configured only through `wg` and `ip`.
//!
//! The interface starts empty (no key, no peers, down, a random port) and is
//! served on `/var/run/wireguard/IFNAME.sock`. Without `-f` the command
//! starts itself again in the foreground as a new session, waits until that
//! child serves the socket (or fails, passing on its error), and returns: so
//! `wg-quick` can run `wg setconf` right after it, as with wireguard-go.
//! The interface lives until SIGINT/SIGTERM or until it is deleted
//! (`ip link del`), which stops the TUN reader and with it the process.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};
use wice_datapath::{Device, DeviceConfig};

use crate::uapi::{Handler, Policy, UapiServer, socket_path};

/// wireguard-go's default MTU; `wg-quick` sets its own.
const DEFAULT_MTU: u16 = 1420;

/// Set for the background child: once it serves the socket, its stderr (the
/// parent's pipe, for start-up errors) goes to /dev/null, since the parent
/// is gone and a write to the dead pipe fails.
const DETACHED_ENV: &str = "WICE_WIREGUARD_DETACHED";

/// How long the parent waits for the child to serve the socket.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Starts the interface in the background and returns once it is served.
pub fn spawn_background(interface: &str, log_level: &str) -> Result<(), String> {
    check_name(interface)?;
    let path = socket_path(interface);
    if served_by(&path).is_some() {
        return Err(format!(
            "{interface}: {} is served by another process",
            path.display()
        ));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let mut command = Command::new(exe);
    command
        .args(["wireguard", "-f", "--log-level", log_level, interface])
        .env(DETACHED_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // A session of its own: the shell or wg-quick that started it may exit.
        .process_group(0);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start the background process: {e}"))?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.by_ref().take(64 * 1024).read_to_string(&mut stderr);
            }
            return Err(format!(
                "{interface} did not start ({status}): {}",
                stderr.trim()
            ));
        }
        // Served by our child, not by some other process that took the name meanwhile.
        if served_by(&path) == Some(child.id()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{interface}: the background process did not serve {} in time",
                path.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn check_name(interface: &str) -> Result<(), String> {
    if crate::uapi::valid_interface_name(interface) {
        Ok(())
    } else {
        Err(format!("{interface:?} is not a valid interface name"))
    }
}

/// The process answering on the socket at `path`, if any (its peer credentials).
pub fn served_by(path: &Path) -> Option<u32> {
    use std::os::fd::AsRawFd;
    let stream = std::os::unix::net::UnixStream::connect(path).ok()?;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into a live ucred.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            std::ptr::from_mut(&mut cred).cast(),
            &mut len,
        )
    };
    (rc == 0).then(|| u32::try_from(cred.pid).ok()).flatten()
}

/// Runs the interface in the foreground until a signal or its deletion.
pub fn run_foreground(interface: &str) -> Result<(), String> {
    check_name(interface)?;
    if !crate::system::has_net_admin() {
        return Err(format!("creating {interface} needs root (CAP_NET_ADMIN)"));
    }
    let path = socket_path(interface);
    if served_by(&path).is_some() {
        // Checked before the TUN device is opened: opening it again would attach to the
        // running interface.
        return Err(format!(
            "{interface}: {} is served by another process",
            path.display()
        ));
    }
    // A placeholder until `wg set private-key`; never shown.
    let mut placeholder = [0u8; 32];
    OsRng.fill_bytes(&mut placeholder);
    let device = Device::create(&DeviceConfig {
        name: interface.to_owned(),
        mtu: DEFAULT_MTU,
        listen_port: 0,
        private_key: placeholder,
    })
    .map_err(|e| e.to_string())?;
    // Nobody consumes STUN here: drop the queue's receiver so such datagrams
    // are counted and dropped at once instead of filling it.
    drop(device.take_control_receiver());
    let device = Arc::new(device);
    let (exit_tx, exit_rx) = std::sync::mpsc::channel();
    let on_exit = exit_tx.clone();
    device.on_thread_exit(move |exit| {
        let _ = on_exit.send(Some(exit.to_string()));
    });
    let handler = Handler::new(Arc::clone(&device), Policy::default(), false);
    let server =
        UapiServer::serve(&path, move |text| handler.handle(text)).map_err(|e| e.to_string())?;
    tracing::info!(interface, socket = %server.path().display(), "serving UAPI");
    if std::env::var_os(DETACHED_ENV).is_some() {
        detach_stderr();
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))?;
    runtime.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut sigint), Ok(mut sigterm)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
        let _ = exit_tx.send(None);
    });
    let reason = runtime.block_on(async {
        tokio::task::spawn_blocking(move || exit_rx.recv().ok().flatten())
            .await
            .ok()
            .flatten()
    });
    drop(server);
    drop(runtime);
    if let Ok(device) = Arc::try_unwrap(device) {
        device.shutdown();
    }
    match reason {
        // The usual end: `ip link del` took the TUN device away.
        Some(reason) if !crate::system::interface_exists(interface) => {
            tracing::info!(interface, %reason, "interface deleted; exiting");
            Ok(())
        }
        Some(reason) => Err(format!("{interface}: {reason}")),
        None => Ok(()),
    }
}

/// Points stderr at /dev/null: the parent that read it has returned.
fn detach_stderr() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 of an open descriptor onto stderr; `null` is closed after.
        unsafe { libc::dup2(null.as_raw_fd(), libc::STDERR_FILENO) };
    }
}
