//! Network namespaces, veth pairs and scratch directories with run-unique names.
//!
//! Every name carries the creating process's PID (`<prefix><pid>x<n>`, e.g. `wt4242x7`), so
//! parallel runs never collide and a later run can find and remove what a killed run left
//! behind ([`sweep_dead_runs`]). Processes outlive `ip netns del`, so a [`Netns`] kills the
//! processes it started, then every process still inside it, before it deletes itself.

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::LabError;

/// Name prefixes this module creates and sweeps: `wt` for tests and benches, `wd` for `wice demo`.
pub const PREFIXES: [&str; 2] = ["wt", "wd"];

static NEXT_ID: AtomicU32 = AtomicU32::new(0);
static SWEPT: Mutex<bool> = Mutex::new(false);

/// True when this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Writes a file only its owner can read (mode 0600), as configs holding secrets must be.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(contents.as_bytes())
}

/// Whether `program` is on the PATH.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// A short token unique within this machine while this process lives: `<pid>x<n>`.
/// Interface names have 15 bytes, so names built from it stay short.
pub fn unique() -> String {
    format!(
        "{}x{}",
        std::process::id() % 100_000,
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes namespaces (with their processes) left by earlier runs whose process is gone.
/// Runs once per process; later calls return at once.
pub fn sweep_dead_runs() {
    let mut swept = SWEPT.lock().unwrap_or_else(|p| p.into_inner());
    if *swept {
        return;
    }
    *swept = true;
    let Ok(list) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    let me = std::process::id() % 100_000;
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = PREFIXES.iter().find_map(|p| name.strip_prefix(p)) else {
            continue;
        };
        let Some(pid) = rest.split('x').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != me && !Path::new(&format!("/proc/{pid}")).exists() {
            kill_namespace_processes(name);
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
    // Scratch directories of dead runs.
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix("wice-lab-") else {
                continue;
            };
            let pid = rest.split('x').next().and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid
                && pid != me
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn kill_namespace_processes(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// kill(2), ignoring errors (the process may be gone).
pub fn kill(pid: i32, signal: i32) {
    // SAFETY: plain kill(2) on a positive PID.
    if pid > 0 {
        unsafe { libc::kill(pid, signal) };
    }
}

/// Runs a command to completion; an error carries its output when it fails.
pub fn run(program: &str, args: &[&str]) -> Result<Output, LabError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| LabError(format!("cannot run {program}: {e}")))?;
    if !out.status.success() {
        return Err(LabError(format!(
            "{program} {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr).trim_end()
        )));
    }
    Ok(out)
}

/// A network namespace, deleted (with everything running in it) on drop.
#[derive(Debug)]
pub struct Netns {
    /// The namespace's name (`ip netns` name).
    pub name: String,
    children: Vec<Child>,
}

impl Netns {
    /// A namespace named `wt<pid>x<n>` with `lo` up.
    ///
    /// # Panics
    /// If `ip` fails (tests want the panic; the lab uses [`Netns::create`]).
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self::create("wt").unwrap_or_else(|e| panic!("{e}"))
    }

    /// A namespace named `<prefix><pid>x<n>` (prefix one of [`PREFIXES`]) with `lo` up.
    pub fn create(prefix: &str) -> Result<Self, LabError> {
        let name = format!("{prefix}{}", unique());
        run("ip", &["netns", "add", &name])?;
        let ns = Self {
            name,
            children: Vec::new(),
        };
        ns.try_ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip -n NS ARGS`.
    pub fn try_ip(&self, args: &[&str]) -> Result<Output, LabError> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// `ip -n NS ARGS`, panicking on failure (for tests).
    pub fn ip(&self, args: &[&str]) -> Output {
        self.try_ip(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Writes a sysctl inside the namespace (`net.ipv4.ip_forward` style key).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), LabError> {
        let out = self.exec("sysctl", &["-qw", &format!("{key}={value}")]);
        if out.status.success() {
            Ok(())
        } else {
            Err(LabError(format!(
                "sysctl {key}={value} in {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim_end()
            )))
        }
    }

    /// A command that runs inside the namespace (`ip netns exec NS PROGRAM`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs a command inside the namespace and returns its output (success not required).
    ///
    /// # Panics
    /// If the command cannot be started at all.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"))
    }

    /// Starts a long-running process inside the namespace; it is killed on drop.
    /// `ip netns exec` execs the program, so the PID returned is the program's.
    pub fn try_spawn(&mut self, mut command: Command) -> Result<u32, LabError> {
        let child = command
            .spawn()
            .map_err(|e| LabError(format!("cannot start {command:?}: {e}")))?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// [`Netns::try_spawn`], panicking on failure (for tests).
    pub fn spawn(&mut self, command: Command) -> u32 {
        self.try_spawn(command).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The exit code of a child started here, if it has exited (`Some(None)`: killed by a signal).
    pub fn try_wait(&mut self, pid: u32) -> Option<Option<i32>> {
        let child = self.children.iter_mut().find(|c| c.id() == pid)?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.code()),
            _ => None,
        }
    }

    /// Sends `signal` to a child started here and waits up to `grace` for it to exit, then
    /// kills it. The child is reaped and forgotten.
    pub fn stop(&mut self, pid: u32, signal: i32, grace: Duration) {
        let Some(index) = self.children.iter().position(|c| c.id() == pid) else {
            return;
        };
        let mut child = self.children.swap_remove(index);
        kill(pid as i32, signal);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Pings `addr` from this namespace: true if any reply came within `deadline_s` seconds.
    pub fn ping(&self, addr: &str, count: u32, deadline_s: u32) -> bool {
        let (count, deadline) = (count.to_string(), deadline_s.to_string());
        let out = self.exec("ping", &["-c", &count, "-i", "0.2", "-w", &deadline, addr]);
        out.status.success()
    }

    /// The average round-trip time of `count` pings, if any was answered.
    pub fn ping_rtt(&self, addr: IpAddr, count: u32) -> Option<Duration> {
        let count = count.to_string();
        let out = self.exec(
            "ping",
            &[
                "-n",
                "-q",
                "-c",
                &count,
                "-i",
                "0.2",
                "-w",
                "10",
                &addr.to_string(),
            ],
        );
        // "rtt min/avg/max/mdev = 0.045/0.061/0.079/0.012 ms"
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find(|l| l.contains("min/avg/max"))?;
        let avg: f64 = line
            .split('=')
            .nth(1)?
            .trim()
            .split('/')
            .nth(1)?
            .parse()
            .ok()?;
        Some(Duration::from_secs_f64(avg / 1000.0))
    }

    /// Pings `addr` every 20 ms until one reply comes back; the time that took.
    pub fn first_reply(&self, addr: IpAddr, timeout: Duration) -> Option<Duration> {
        let start = Instant::now();
        let deadline = timeout.as_secs().max(1).to_string();
        let out = self.exec(
            "ping",
            &[
                "-n",
                "-q",
                "-c",
                "1",
                "-i",
                "0.02",
                "-w",
                &deadline,
                &addr.to_string(),
            ],
        );
        out.status.success().then(|| start.elapsed())
    }

    /// Whether a TCP connection to `addr` opens from this namespace within `timeout`.
    pub fn tcp_reachable(&self, addr: SocketAddr, timeout: Duration) -> bool {
        self.within(move || std::net::TcpStream::connect_timeout(&addr, timeout).is_ok())
            .join()
            .unwrap_or(false)
    }

    /// Runs `f` on a thread that has entered this namespace: sockets it opens live here.
    ///
    /// # Panics
    /// On the thread, if the namespace cannot be entered.
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

/// Connects `a` and `b` with a veth pair (addresses as CIDR), both ends up; returns the names.
pub fn try_veth(
    a: &Netns,
    a_addr: Option<&str>,
    b: &Netns,
    b_addr: Option<&str>,
) -> Result<(String, String), LabError> {
    let id = unique();
    let (ia, ib) = (format!("va{id}"), format!("vb{id}"));
    run(
        "ip",
        &[
            "link", "add", &ia, "netns", &a.name, "type", "veth", "peer", "name", &ib, "netns",
            &b.name,
        ],
    )?;
    for (ns, iface, addr) in [(a, &ia, a_addr), (b, &ib, b_addr)] {
        if let Some(addr) = addr {
            ns.try_ip(&["addr", "add", addr, "dev", iface])?;
        }
        ns.try_ip(&["link", "set", iface, "up"])?;
    }
    Ok((ia, ib))
}

/// [`try_veth`] with both addresses, panicking on failure (for tests).
pub fn veth(a: &Netns, a_addr: &str, b: &Netns, b_addr: &str) -> (String, String) {
    try_veth(a, Some(a_addr), b, Some(b_addr)).unwrap_or_else(|e| panic!("{e}"))
}

/// A scratch directory (`$TMPDIR/wice-lab-<pid>x<n>`) removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates the directory.
    pub fn create() -> Result<Self, LabError> {
        let path = std::env::temp_dir().join(format!("wice-lab-{}", unique()));
        // 0700: daemons keep their control sockets and pid files here, which wice accepts
        // only in a directory private to it.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)
            .map_err(|e| LabError(format!("cannot create {}: {e}", path.display())))?;
        Ok(Self(path))
    }

    /// [`TempDir::create`], panicking on failure (for tests).
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self::create().unwrap_or_else(|e| panic!("{e}"))
    }

    /// A path inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
