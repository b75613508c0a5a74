//! Network-namespace lab for the end-to-end tests.
//!
//! Every name carries the test process's PID (`wt<pid>x<n>`), so a later run
//! can find and remove what a killed run left behind, and parallel tests never
//! collide. Children are killed by PID before their namespace is deleted:
//! processes outlive `ip netns del`. [`Netns`], [`veth`] and [`TempDir`] come from
//! `wice_lab`, which also builds the NAT lab (`natlab` tests).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const WICE: &str = env!("CARGO_BIN_EXE_wice");

// The namespace plumbing lives in the lab crate (`wice_lab`), shared with `wice demo`.
pub use wice_lab::netns::{Netns, TempDir, unique, veth, write_private};

/// True when the test may run; otherwise says why it is skipped (see [`skip`]).
pub fn root_or_skip(test: &str) -> bool {
    if wice_lab::netns::is_root() {
        wice_lab::netns::sweep_dead_runs();
        true
    } else {
        skip(
            test,
            "needs root to create network namespaces and TUN devices",
        );
        false
    }
}

/// Whether this run is CI's (`CI=true`, as CI sets it).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value.eq_ignore_ascii_case("true") || value == "1")
}

/// Reports that `test` cannot run and why. Outside CI it prints that and the test returns
/// (it passes without having checked anything); under CI it panics, because CI runs as root
/// with every tool installed and a test that did not run must not count as passed.
pub fn skip(test: &str, why: &str) {
    assert!(
        !in_ci(),
        "{test} cannot run: {why}; under CI (CI=true) a skipped test is a failure"
    );
    eprintln!("skipping {test}: {why}");
}

/// Runs a command and returns its output, panicking with the output if it fails.
pub fn run(program: &str, args: &[&str]) -> Output {
    wice_lab::netns::run(program, args).unwrap_or_else(|e| panic!("{e}"))
}

/// A WireGuard key pair.
#[derive(Clone)]
pub struct Keys {
    pub private: String,
    pub public: String,
}

impl Keys {
    pub fn generate() -> Self {
        let private = String::from_utf8(run(WICE, &["genkey"]).stdout)
            .expect("utf8")
            .trim()
            .to_owned();
        let mut child = Command::new(WICE)
            .arg("pubkey")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("wice pubkey");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(private.as_bytes())
            .expect("write key");
        let out = child.wait_with_output().expect("pubkey output");
        let public = String::from_utf8(out.stdout)
            .expect("utf8")
            .trim()
            .to_owned();
        Self { private, public }
    }
}

/// A `wice up` process in a namespace.
pub struct WiceNode {
    pub interface: String,
    pub socket: PathBuf,
    pub log: PathBuf,
    pub pid: u32,
}

/// Peer section for a node config.
pub struct PeerSpec<'a> {
    pub public_key: &'a str,
    pub allowed_ips: &'a [&'a str],
    pub endpoint: Option<&'a str>,
}

pub fn node_config(
    name: &str,
    keys: &Keys,
    port: u16,
    addresses: &[&str],
    socket: &Path,
    peers: &[PeerSpec<'_>],
) -> String {
    let quoted = |list: &[&str]| {
        list.iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = format!(
        "[interface]\nname = \"{name}\"\nprivate_key = \"{}\"\nlisten_port = {port}\naddresses = [{}]\ncontrol_socket = \"{}\"\n",
        keys.private,
        quoted(addresses),
        socket.display()
    );
    for peer in peers {
        text.push_str(&format!(
            "\n[[peer]]\npublic_key = \"{}\"\nallowed_ips = [{}]\n",
            peer.public_key,
            quoted(peer.allowed_ips)
        ));
        if let Some(endpoint) = peer.endpoint {
            text.push_str(&format!("endpoint = \"{endpoint}\"\n"));
        }
    }
    text
}

/// Configs for two nodes a (10.0.0.1) and b (10.0.0.2) on one veth, IPv4 tunnel addresses
/// 10.77.0.1 and 10.77.0.2, each the other's static peer on port 51820.
pub struct StaticPair {
    pub keys_a: Keys,
    pub keys_b: Keys,
    pub config_a: String,
    pub config_b: String,
}

pub fn static_pair(dir: &TempDir) -> StaticPair {
    let (keys_a, keys_b) = (Keys::generate(), Keys::generate());
    let id = unique();
    let config_a = node_config(
        &format!("wa{id}"),
        &keys_a,
        51820,
        &["10.77.0.1/24"],
        &dir.path("a.sock"),
        &[PeerSpec {
            public_key: &keys_b.public,
            allowed_ips: &["10.77.0.2/32"],
            endpoint: Some("10.0.0.2:51820"),
        }],
    );
    let config_b = node_config(
        &format!("wb{id}"),
        &keys_b,
        51820,
        &["10.77.0.2/24"],
        &dir.path("b.sock"),
        &[PeerSpec {
            public_key: &keys_a.public,
            allowed_ips: &["10.77.0.1/32"],
            endpoint: Some("10.0.0.1:51820"),
        }],
    );
    StaticPair {
        keys_a,
        keys_b,
        config_a,
        config_b,
    }
}

impl WiceNode {
    /// Writes the config and starts `wice up` in `ns`; returns once its control socket answers.
    pub fn start(ns: &mut Netns, dir: &TempDir, label: &str, config: &str) -> Self {
        Self::start_via(ns, dir, label, config, |ns, config_path| {
            let mut command = ns.command(WICE);
            command
                .args(["up", "-c"])
                .arg(config_path)
                .args(["--log-level", "debug"]);
            command
        })
    }

    /// Like [`WiceNode::start`], with the command `launch` builds from the config's path
    /// (a wrapper around `wice up`); its output goes to the node's log.
    pub fn start_via(
        ns: &mut Netns,
        dir: &TempDir,
        label: &str,
        config: &str,
        launch: impl FnOnce(&Netns, &Path) -> Command,
    ) -> Self {
        let config_path = dir.path(&format!("{label}.toml"));
        write_private(&config_path, config).expect("write config");
        let interface = config
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|l| l.strip_suffix('"'))
            .expect("config names the interface")
            .to_owned();
        let socket = dir.path(&format!("{label}.sock"));
        let log = dir.path(&format!("{label}.log"));
        let mut command = launch(ns, &config_path);
        command
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("log file"));
        let pid = ns.spawn(command);
        let node = Self {
            interface,
            socket,
            log,
            pid,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while node.try_status().is_none() {
            assert!(
                Instant::now() < deadline,
                "wice {label} did not come up:\n{}",
                node.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        node
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn try_status(&self) -> Option<serde_json::Value> {
        let out = Command::new(WICE)
            .args(["status", "--json", "--socket"])
            .arg(&self.socket)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    /// `wice status --json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        self.try_status()
            .unwrap_or_else(|| panic!("status failed; log:\n{}", self.log_text()))
    }

    /// Sends a signal to the daemon (the `ip netns exec` wrapper execs it, so the PID is wice's).
    pub fn signal(&self, signal: i32) {
        // SAFETY: plain kill(2).
        unsafe { libc::kill(self.pid as i32, signal) };
    }

    /// Waits for the daemon to exit; returns its exit code if it did within `timeout`.
    pub fn wait_exit(&self, ns: &mut Netns, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(code) = ns.try_wait(self.pid) {
                return code;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// The kernel's index of interface `name` in `ns`.
pub fn interface_index(ns: &Netns, name: &str) -> u32 {
    let out = ns.exec("cat", &[&format!("/sys/class/net/{name}/ifindex")]);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no ifindex for {name}"))
}

/// A wice pid file's text as a crashed run leaves it: a pid that is dead now, its start
/// time, and the interface index of the device it made.
pub fn dead_pid_record(ifindex: u32) -> String {
    let mut dead = Command::new("true").spawn().expect("spawn true");
    let pid = dead.id();
    dead.wait().expect("wait");
    format!("{pid}\nstart_time=1\nifindex={ifindex}\n")
}

/// Whether an interface exists in a namespace.
pub fn link_exists(ns: &Netns, name: &str) -> bool {
    ns.exec("ip", &["link", "show", "dev", name])
        .status
        .success()
}

/// Deterministic stream bytes and a chunking-independent checksum (FNV-1a 64).
pub struct Checksum(u64);

impl Checksum {
    pub fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
    pub fn update(&mut self, data: &[u8]) {
        for b in data {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Sends `total` pseudo-random bytes over TCP from `client_ns` to `server_addr` in
/// `server_ns`, and asserts the far end received exactly those bytes.
pub fn tcp_transfer(client_ns: &Netns, server_ns: &Netns, server_addr: SocketAddr, total: usize) {
    let bind_addr = server_addr;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = server_ns.within(move || {
        let listener = TcpListener::bind(bind_addr).expect("bind in namespace");
        ready_tx.send(()).expect("signal ready");
        let (mut stream, _) = listener.accept().expect("accept");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut sum = Checksum::new();
        let mut received = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = stream.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            sum.update(&buf[..n]);
            received += n;
        }
        (received, sum.0)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("server ready");
    let client = client_ns.within(move || {
        let mut stream = TcpStream::connect_timeout(&server_addr, Duration::from_secs(10))
            .expect("connect through the tunnel");
        stream
            .set_write_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut sum = Checksum::new();
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut buf = vec![0u8; 1 << 16];
        let mut sent = 0usize;
        while sent < total {
            let n = buf.len().min(total - sent);
            for chunk in buf[..n].chunks_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
            }
            stream.write_all(&buf[..n]).expect("write");
            sum.update(&buf[..n]);
            sent += n;
        }
        stream
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        (sent, sum.0)
    });
    let sent = client.join().expect("client thread");
    let received = server.join().expect("server thread");
    assert_eq!(
        received, sent,
        "bytes and checksum at the far end match what was sent"
    );
}

/// Waits until `check` holds, polling every 100 ms; the time it took, or `None` after
/// `timeout`.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}
