//! The systemd units and the daemons' side of systemd's notify protocol: a test listener
//! plays systemd (`NOTIFY_SOCKET`, `WATCHDOG_USEC`), and `systemd-analyze verify` checks
//! the shipped units.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// What systemd would be told, with the time each message came.
struct FakeSystemd {
    socket: UnixDatagram,
    start: Instant,
}

impl FakeSystemd {
    fn bind(dir: &TempDir) -> (Self, std::path::PathBuf) {
        let path = dir.path("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind notify socket");
        (
            Self {
                socket,
                start: Instant::now(),
            },
            path,
        )
    }

    /// Messages until `until` has passed (each with its arrival time since bind).
    fn collect(&self, until: Duration) -> Vec<(Duration, String)> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while self.start.elapsed() < until {
            let left = until
                .saturating_sub(self.start.elapsed())
                .max(Duration::from_millis(1));
            self.socket.set_read_timeout(Some(left)).expect("timeout");
            if let Ok(len) = self.socket.recv(&mut buf) {
                out.push((
                    self.start.elapsed(),
                    String::from_utf8_lossy(&buf[..len]).into_owned(),
                ));
            }
        }
        out
    }

    /// Waits for a message containing `needle`.
    fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = self.start.elapsed() + timeout;
        let mut buf = [0u8; 4096];
        while self.start.elapsed() < deadline {
            self.socket
                .set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            if let Ok(len) = self.socket.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..len]).into_owned();
                if message.contains(needle) {
                    return Some(message);
                }
            }
        }
        None
    }
}

fn pets(messages: &[(Duration, String)]) -> Vec<Duration> {
    messages
        .iter()
        .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect()
}

#[test]
fn systemd_analyze_finds_nothing_wrong_in_the_units() {
    if !wice_lab::netns::have("systemd-analyze") {
        skip(
            "systemd_analyze_finds_nothing_wrong_in_the_units",
            "systemd-analyze is not installed (Debian package systemd)",
        );
        return;
    }
    let dir = TempDir::new();
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd");
    let mut names = Vec::new();
    for unit in ["wice@.service", "wice-signal.service"] {
        // The units name /usr/bin/wice, as the package installs it; verify checks that the
        // binary exists, so point them at this build's.
        let text = std::fs::read_to_string(units.join(unit)).expect("unit");
        std::fs::write(dir.path(unit), text.replace("/usr/bin/wice", WICE)).expect("copy");
        names.push(dir.path(unit));
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg("--man=no")
        .args(&names)
        .output()
        .expect("systemd-analyze");
    // verify exits 0 even for settings it ignores as invalid: any output is a finding.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.is_empty(), "{said}");
}

#[test]
fn wice_up_is_ready_reports_peers_and_pets_the_watchdog_only_while_its_threads_live() {
    let test = "wice_up_is_ready_reports_peers_and_pets_the_watchdog_only_while_its_threads_live";
    if !root_or_skip(test) {
        return;
    }
    let mut ns = Netns::new();
    let dir = TempDir::new();
    let (systemd, notify) = FakeSystemd::bind(&dir);
    let name = format!("wn{}", unique());
    let peer = Keys::generate();
    let config = node_config(
        &name,
        &Keys::generate(),
        0,
        &["10.77.0.1/24"],
        &dir.path("n.sock"),
        &[PeerSpec {
            public_key: &peer.public,
            allowed_ips: &["10.77.0.2/32"],
            endpoint: Some("10.9.9.9:51820"),
        }],
    );
    let config_path = dir.path("n.toml");
    write_private(&config_path, &config).expect("config");
    let log = dir.path("n.log");
    let mut command = ns.command(WICE);
    command
        .args(["up", "-c"])
        .arg(&config_path)
        .env("NOTIFY_SOCKET", &notify)
        // systemd's WatchdogSec=1s: the daemon must pet at least once a second.
        .env("WATCHDOG_USEC", "1000000")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"));
    let pid = ns.spawn(command);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    let ready = systemd
        .wait_for("READY=1", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no READY=1; log:\n{}", log_text()));
    assert!(
        ready.contains(&format!("STATUS=0 of 1 peers connected on {name}")),
        "{ready}"
    );

    // Three seconds alive: pets at about half the timeout, never a gap near the timeout.
    let alive_until = systemd.start.elapsed() + Duration::from_secs(3);
    let alive = systemd.collect(alive_until);
    let pet_times = pets(&alive);
    assert!(pet_times.len() >= 4, "too few pets: {alive:?}");
    let worst_gap = pet_times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    assert!(
        worst_gap < Duration::from_millis(900),
        "gap {worst_gap:?}: {alive:?}"
    );

    // SIGHUP (systemctl reload) reloads: RELOADING=1 with the monotonic time systemd wants,
    // then READY=1 again; the node keeps running.
    // SAFETY: plain kill(2) on the daemon we started.
    unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    let reloading = systemd
        .wait_for("RELOADING=1", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no RELOADING=1 on SIGHUP; log:\n{}", log_text()));
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    let ready_again = systemd
        .wait_for("READY=1", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no READY=1 after the reload; log:\n{}", log_text()));
    assert!(ready_again.contains("peers connected"), "{ready_again}");
    assert!(log_text().contains("config reloaded"), "{}", log_text());
    assert_eq!(ns.try_wait(pid), None, "SIGHUP stopped the node");

    // Kill a packet thread (its TUN device goes away): no pet after that.
    let died = systemd.start.elapsed();
    ns.ip(&["link", "del", &name]);
    let after = systemd.collect(died + Duration::from_secs(3));
    let late: Vec<_> = pets(&after)
        .into_iter()
        .filter(|t| *t > died + Duration::from_millis(300))
        .collect();
    assert!(late.is_empty(), "petted after the thread died: {after:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(code) = ns.try_wait(pid) {
            break code;
        }
        assert!(
            Instant::now() < deadline,
            "still running; log:\n{}",
            log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_ne!(code, Some(0), "log:\n{}", log_text());
}

#[test]
fn wice_signal_is_ready_with_its_connection_count_and_survives_sighup() {
    let dir = TempDir::new();
    let (systemd, notify) = FakeSystemd::bind(&dir);
    let mut child = Command::new(WICE)
        .args(["signal", "--listen", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "1000000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn wice signal");
    let ready = systemd.wait_for("READY=1", Duration::from_secs(10));
    // SAFETY: plain kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    let hup = systemd.wait_for("reload is not supported yet", Duration::from_secs(5));
    let pets_seen = pets(&systemd.collect(systemd.start.elapsed() + Duration::from_secs(2)));
    let still_running = child.try_wait().expect("try_wait").is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        ready.as_deref(),
        Some("READY=1\nSTATUS=0 connections, 0 subscriptions")
    );
    assert!(hup.is_some(), "no answer to SIGHUP");
    assert!(still_running, "SIGHUP stopped the server");
    assert!(pets_seen.len() >= 2, "watchdog not petted: {pets_seen:?}");
}
