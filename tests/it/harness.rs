//! Network-namespace lab for the end-to-end tests.
//!
//! Every name carries the test process's PID (`wt<pid>x<n>`), so a later run
//! can find and remove what a killed run left behind, and parallel tests never
//! collide. Children are killed by PID before their namespace is deleted:
//! processes outlive `ip netns del`.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const WICE: &str = env!("CARGO_BIN_EXE_wice");

static NEXT_ID: AtomicU32 = AtomicU32::new(0);
static SWEPT: Mutex<bool> = Mutex::new(false);

/// True when the test may run; otherwise prints why it is skipped.
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        sweep_dead_runs();
        true
    } else {
        eprintln!("skipping {test}: needs root to create network namespaces and TUN devices");
        false
    }
}

/// A short unique token for names: interface names have 15 bytes.
pub fn unique() -> String {
    format!(
        "{}x{}",
        std::process::id() % 100_000,
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes namespaces left by earlier test processes that are gone.
fn sweep_dead_runs() {
    let mut swept = SWEPT.lock().unwrap_or_else(|p| p.into_inner());
    if *swept {
        return;
    }
    *swept = true;
    let Ok(list) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("wt") else {
            continue;
        };
        let Some(pid) = rest.split('x').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() % 100_000 && !Path::new(&format!("/proc/{pid}")).exists() {
            kill_namespace_processes(name);
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

fn kill_namespace_processes(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: plain kill(2).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// Runs a command and returns its output, panicking with the output if it fails.
pub fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A network namespace, deleted (with everything running in it) on drop.
pub struct Netns {
    pub name: String,
    children: Vec<Child>,
}

impl Netns {
    pub fn new() -> Self {
        let name = format!("wt{}", unique());
        run("ip", &["netns", "add", &name]);
        let ns = Self {
            name,
            children: Vec::new(),
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NS ARGS`.
    pub fn ip(&self, args: &[&str]) -> Output {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// A command inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs a command inside the namespace and returns its output (success not required).
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"))
    }

    /// Starts a long-running process inside the namespace; it is killed on drop.
    pub fn spawn(&mut self, mut command: Command) -> u32 {
        let child = command.spawn().expect("spawn in namespace");
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Pings `addr` (IPv4 or IPv6) from this namespace: true if any reply came within `deadline_s`.
    pub fn ping(&self, addr: &str, count: u32, deadline_s: u32) -> bool {
        let (count, deadline) = (count.to_string(), deadline_s.to_string());
        let out = self.exec("ping", &["-c", &count, "-i", "0.2", "-w", &deadline, addr]);
        out.status.success()
    }

    /// Runs `f` on a thread that has entered this namespace: sockets it opens live here.
    pub fn within<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let ns = File::open(&path).expect("open netns");
            // SAFETY: setns on a valid namespace descriptor, for this thread only.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        kill_namespace_processes(&self.name);
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Connects `a` and `b` with a veth pair, addresses given as CIDR.
pub fn veth(a: &Netns, a_addr: &str, b: &Netns, b_addr: &str) -> (String, String) {
    let id = unique();
    let (ia, ib) = (format!("va{id}"), format!("vb{id}"));
    run(
        "ip",
        &[
            "link", "add", &ia, "netns", &a.name, "type", "veth", "peer", "name", &ib, "netns",
            &b.name,
        ],
    );
    for (ns, iface, addr) in [(a, &ia, a_addr), (b, &ib, b_addr)] {
        ns.ip(&["addr", "add", addr, "dev", iface]);
        ns.ip(&["link", "set", iface, "up"]);
    }
    (ia, ib)
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

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("wice-it-{}", unique()));
        std::fs::create_dir_all(&path).expect("temp dir");
        Self(path)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
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

impl WiceNode {
    /// Writes the config and starts `wice up` in `ns`; returns once its control socket answers.
    pub fn start(ns: &mut Netns, dir: &TempDir, label: &str, config: &str) -> Self {
        let config_path = dir.path(&format!("{label}.toml"));
        std::fs::write(&config_path, config).expect("write config");
        let interface = config
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|l| l.strip_suffix('"'))
            .expect("config names the interface")
            .to_owned();
        let socket = dir.path(&format!("{label}.sock"));
        let log = dir.path(&format!("{label}.log"));
        let mut command = ns.command(WICE);
        command
            .args(["up", "-c"])
            .arg(&config_path)
            .args(["--log-level", "debug"])
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
            if let Some(child) = ns.children.iter_mut().find(|c| c.id() == self.pid)
                && let Ok(Some(status)) = child.try_wait()
            {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
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
