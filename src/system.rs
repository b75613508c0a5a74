//! The edge that changes the host: interface addresses, link state, routes,
//! and the files that mark an interface as ours.
//!
//! Address and route changes go through iproute2's `ip`, as wg-quick does:
//! one well-known tool, whose error messages we pass on verbatim.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use ipnet::IpNet;

/// Why the system could not be configured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SystemError {
    /// `ip` could not be run at all.
    #[error("cannot run `ip` (is iproute2 installed?): {0}")]
    IpMissing(io::Error),
    /// `ip` ran and refused.
    #[error("`ip {args}` failed: {stderr}")]
    IpFailed {
        /// The arguments given.
        args: String,
        /// What `ip` printed.
        stderr: String,
    },
    /// Another wice process owns the interface.
    #[error("interface {name} is already run by wice (pid {pid}); stop it first")]
    AlreadyRunning {
        /// Interface name.
        name: String,
        /// The live owner.
        pid: u32,
    },
    /// Something other than wice owns the interface name.
    #[error(
        "interface {name} already exists and is not a leftover of wice ({what}); choose another [interface] name or remove it"
    )]
    NameTaken {
        /// Interface name.
        name: String,
        /// Why we think it is not ours.
        what: String,
    },
    /// The directory for the control socket and pid file is not private to us.
    #[error("{path} {why}")]
    UnsafeDirectory {
        /// The directory.
        path: PathBuf,
        /// What is wrong and the command that fixes it.
        why: String,
    },
    /// A runtime file could not be written or removed.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// Runs `ip` with `args`.
pub fn ip(args: &[&str]) -> Result<(), SystemError> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(SystemError::IpMissing)?;
    if output.status.success() {
        Ok(())
    } else {
        Err(SystemError::IpFailed {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Whether a network interface with this name exists.
pub fn interface_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn is_tun(name: &str) -> bool {
    Path::new("/sys/class/net")
        .join(name)
        .join("tun_flags")
        .exists()
}

/// The kernel's index of the interface `name`: unique within its network namespace and
/// never reused for a new device until the counter wraps, so it tells "the device we made"
/// from "a device made later under the same name".
pub fn interface_index(name: &str) -> Option<u32> {
    fs::read_to_string(Path::new("/sys/class/net").join(name).join("ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The pid file that marks `control_socket`'s interface as owned by a wice process.
pub fn pid_file(control_socket: &Path) -> PathBuf {
    control_socket.with_extension("pid")
}

/// What a pid file says. The first line is the bare pid, as every pid file has it; the
/// lines after it say which process exactly (its start time, so a reused pid is not taken
/// for us) and which device it made (its interface index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidRecord {
    /// The owner's process id.
    pub pid: u32,
    /// The owner's start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_time: Option<u64>,
    /// The interface index of the TUN device the owner made, once it exists.
    pub ifindex: Option<u32>,
}

impl PidRecord {
    /// This process, before its device exists.
    pub fn current() -> Self {
        let pid = std::process::id();
        Self {
            pid,
            start_time: process_start_time(pid),
            ifindex: None,
        }
    }

    /// Parses a pid file; `None` when the first line is not a pid. Unknown lines are ignored.
    pub fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        let pid = lines.next()?.trim().parse().ok()?;
        let mut record = Self {
            pid,
            start_time: None,
            ifindex: None,
        };
        for line in lines {
            match line.split_once('=') {
                Some(("start_time", value)) => record.start_time = value.trim().parse().ok(),
                Some(("ifindex", value)) => record.ifindex = value.trim().parse().ok(),
                _ => {}
            }
        }
        Some(record)
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut text = format!("{}\n", self.pid);
        if let Some(start_time) = self.start_time {
            text.push_str(&format!("start_time={start_time}\n"));
        }
        if let Some(ifindex) = self.ifindex {
            text.push_str(&format!("ifindex={ifindex}\n"));
        }
        text
    }

    /// Whether the process that wrote the record still runs: same pid and, when recorded,
    /// the same start time (a pid reused by another program is not the owner). A record
    /// without a start time (an older wice) falls back to the process name.
    fn owner_is_alive(&self) -> bool {
        match self.start_time {
            Some(recorded) => process_start_time(self.pid) == Some(recorded),
            None => fs::read_to_string(format!("/proc/{}/comm", self.pid))
                .is_ok_and(|comm| comm.trim() == "wice"),
        }
    }
}

/// A process's start time in clock ticks since boot, from `/proc/PID/stat`.
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Field 22 of a `/proc/PID/stat` line. The command name (field 2) is in parentheses and
/// may itself hold spaces and parentheses, so fields are counted after the last `)`.
fn parse_start_time(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    // After the name come fields 3 (state) onwards; field 22 is the 20th of them.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Reads a pid file without following a symbolic link; anything but a regular file holding
/// a pid counts as no record.
fn read_pid_file(path: &Path) -> Option<PidRecord> {
    let file = open_nofollow(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    io::Read::read_to_string(&mut io::Read::take(&file, 4096), &mut text).ok()?;
    PidRecord::parse(&text)
}

fn open_nofollow(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// Writes a pid file: a new file (never through a symbolic link or over a file someone
/// slipped in: `O_EXCL` + `O_NOFOLLOW`, mode 0600) renamed over the old one in one step.
fn write_pid_file(path: &Path, record: &PidRecord) -> Result<(), SystemError> {
    let file_error = |path: &Path| {
        let path = path.to_owned();
        move |source| SystemError::File { path, source }
    };
    let staging = path.with_extension("pid.new");
    remove_if_present(&staging)?;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&staging)
        .map_err(file_error(&staging))?;
    io::Write::write_all(&mut file, record.render().as_bytes()).map_err(file_error(&staging))?;
    fs::rename(&staging, path).map_err(file_error(path))
}

/// Makes sure `dir` is a directory only we can enter and write: created with mode 0700 when
/// missing; refused when it is a symbolic link, not a directory, owned by another user, or
/// open to group or others. The control socket and pid file live there, so nobody else can
/// replace them with links or race our writes.
pub fn ensure_private_dir(dir: &Path) -> Result<(), SystemError> {
    let unsafe_dir = |why: String| SystemError::UnsafeDirectory {
        path: dir.to_owned(),
        why,
    };
    let metadata = match fs::symlink_metadata(dir) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| SystemError::File {
                    path: dir.to_owned(),
                    source,
                })?;
            fs::symlink_metadata(dir).map_err(|source| SystemError::File {
                path: dir.to_owned(),
                source,
            })?
        }
        Err(source) => {
            return Err(SystemError::File {
                path: dir.to_owned(),
                source,
            });
        }
    };
    if metadata.file_type().is_symlink() {
        return Err(unsafe_dir(
            "is a symbolic link; give a path to a real directory".to_owned(),
        ));
    }
    if !metadata.is_dir() {
        return Err(unsafe_dir("is not a directory".to_owned()));
    }
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if metadata.uid() != euid {
        return Err(unsafe_dir(format!(
            "is owned by uid {}, not by us (uid {euid}); run: chown {euid} {}",
            metadata.uid(),
            dir.display()
        )));
    }
    let mode = metadata.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(unsafe_dir(format!(
            "is open to group or others (mode {mode:04o}); run: chmod 700 {}",
            dir.display()
        )));
    }
    Ok(())
}

/// Makes sure the interface name is free for us, removing what a crashed run of ours left
/// behind, and records our pid. Refuses if a live wice owns it or if it belongs to
/// something else. A leftover device is removed only when the pid file's owner is gone and
/// the device is a TUN device with the interface index that owner recorded: a device of the
/// same name made by another program after the crash has a new index and is left alone.
pub fn claim_interface(name: &str, control_socket: &Path) -> Result<(), SystemError> {
    let pid_path = pid_file(control_socket);
    if let Some(dir) = pid_path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        ensure_private_dir(dir)?;
    }
    let record = read_pid_file(&pid_path);
    if let Some(record) =
        record.filter(|record| record.pid != std::process::id() && record.owner_is_alive())
    {
        return Err(SystemError::AlreadyRunning {
            name: name.to_owned(),
            pid: record.pid,
        });
    }
    if interface_exists(name) {
        let taken = |what: String| SystemError::NameTaken {
            name: name.to_owned(),
            what,
        };
        let Some(record) = record else {
            return Err(taken("no wice pid file records it".to_owned()));
        };
        if !is_tun(name) {
            return Err(taken("it is not a TUN device".to_owned()));
        }
        let index = interface_index(name);
        if record.ifindex.is_none() || record.ifindex != index {
            return Err(taken(format!(
                "its interface index {} is not the one the pid file records ({})",
                index.map_or("?".to_owned(), |i| i.to_string()),
                record.ifindex.map_or("none".to_owned(), |i| i.to_string()),
            )));
        }
        tracing::warn!(
            interface = name,
            pid = record.pid,
            "removing the interface a crashed wice left behind"
        );
        ip(&["link", "del", "dev", name])?;
    }
    // A dead owner's socket would make our bind fail.
    remove_if_present(control_socket)?;
    write_pid_file(&pid_path, &PidRecord::current())
}

/// Adds the index of the device we just made to our pid file, so a later start can tell it
/// from a device someone else makes under the same name.
pub fn record_interface(name: &str, control_socket: &Path) -> Result<(), SystemError> {
    let record = PidRecord {
        ifindex: interface_index(name),
        ..PidRecord::current()
    };
    write_pid_file(&pid_file(control_socket), &record)
}

/// Removes the pid file and control socket, the pid file only while it still names us.
pub fn release_interface(control_socket: &Path) {
    let pid_path = pid_file(control_socket);
    let ours = read_pid_file(&pid_path).is_none_or(|record| record.pid == std::process::id());
    let mut paths = vec![control_socket.to_owned()];
    if ours {
        paths.push(pid_path);
    }
    for path in paths {
        if let Err(err) = remove_if_present(&path) {
            tracing::warn!(%err, "cleanup");
        }
    }
}

fn remove_if_present(path: &Path) -> Result<(), SystemError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(SystemError::File {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Linux capability number of `CAP_NET_ADMIN`.
const CAP_NET_ADMIN: u32 = 12;

/// Whether this process may create TUN devices and change addresses and routes: root, or
/// any user holding `CAP_NET_ADMIN` in its effective set (systemd's `AmbientCapabilities`,
/// `setcap`).
pub fn has_net_admin() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|status| status_has_net_admin(&status))
}

/// Whether a `/proc/PID/status` text shows `CAP_NET_ADMIN` in the effective set (`CapEff`).
fn status_has_net_admin(status: &str) -> bool {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

/// Gives the interface its addresses and brings it up.
pub fn configure_interface(name: &str, addresses: &[IpNet]) -> Result<(), SystemError> {
    for address in addresses {
        let address = address.to_string();
        let mut args = vec!["address", "add", address.as_str(), "dev", name];
        if address.contains(':') {
            // Skip duplicate address detection: the tunnel is point-to-point and
            // a tentative address would be unusable for the first seconds.
            args.push("nodad");
        }
        ip(&args)?;
    }
    ip(&["link", "set", "dev", name, "up"])
}

/// The peers' allowed IPs that need a route: those outside the interface's own prefixes,
/// which the kernel already routes to the interface.
pub fn routes_needed<'a>(
    addresses: &[IpNet],
    allowed_ips: impl IntoIterator<Item = &'a IpNet>,
) -> Vec<IpNet> {
    let mut routes: Vec<IpNet> = allowed_ips
        .into_iter()
        .map(IpNet::trunc)
        .filter(|net| !addresses.iter().any(|own| own.trunc().contains(net)))
        .collect();
    routes.sort();
    routes.dedup();
    routes
}

/// Installs routes to the interface. A route that cannot be added (it exists
/// elsewhere, say) is reported and skipped: the rest of the mesh still works.
pub fn add_routes(name: &str, routes: &[IpNet]) -> Vec<IpNet> {
    let mut added = Vec::new();
    for route in routes {
        let route_text = route.to_string();
        match ip(&["route", "add", &route_text, "dev", name]) {
            Ok(()) => added.push(*route),
            Err(err) => tracing::warn!(%route, %err, "route not installed"),
        }
    }
    added
}

/// Removes routes to the interface; one already gone is no error.
pub fn remove_routes(name: &str, routes: &[IpNet]) {
    for route in routes {
        let route_text = route.to_string();
        let _ = ip(&["route", "del", &route_text, "dev", name]);
    }
}

/// Removes routes and the interface. The interface would vanish with our TUN
/// descriptor anyway; removing it explicitly makes the exit order certain.
pub fn teardown(name: &str, routes: &[IpNet]) {
    remove_routes(name, routes);
    if interface_exists(name) {
        let _ = ip(&["link", "del", "dev", name]);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter()
            .map(|s| s.parse().expect("test network"))
            .collect()
    }

    #[test]
    fn allowed_ips_inside_the_interface_prefix_need_no_route() {
        let own = nets(&["10.77.0.1/24", "fd77::1/64"]);
        let allowed = nets(&[
            "10.77.0.2/32",
            "10.78.0.0/16",
            "fd77::2/128",
            "fd78::/64",
            "10.78.0.0/16",
        ]);
        assert_eq!(
            routes_needed(&own, &allowed),
            nets(&["10.78.0.0/16", "fd78::/64"])
        );
    }

    /// A directory of our own (mode 0700) under the temp dir, removed on drop.
    struct TestDir(PathBuf);

    impl TestDir {
        fn new(name: &str) -> Self {
            static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!(
                "wice-system-test-{}-{n}-{name}",
                std::process::id()
            ));
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .expect("test dir");
            Self(dir)
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn mode_of(path: &Path) -> u32 {
        fs::symlink_metadata(path).expect("metadata").mode() & 0o7777
    }

    /// An interface name no test machine has.
    const NO_SUCH_INTERFACE: &str = "wicetestnone0";

    #[test]
    fn the_start_time_is_field_22_even_when_the_command_name_has_spaces_and_parens() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987_654));
        assert_eq!(parse_start_time("4242 (short) S 1"), None);
        let own = process_start_time(std::process::id());
        assert!(own.is_some(), "this process has a start time");
    }

    #[test]
    fn a_pid_record_round_trips_and_a_bare_pid_file_still_parses() {
        let record = PidRecord {
            pid: 77,
            start_time: Some(123),
            ifindex: Some(9),
        };
        assert_eq!(record.render(), "77\nstart_time=123\nifindex=9\n");
        assert_eq!(PidRecord::parse(&record.render()), Some(record));
        assert_eq!(
            PidRecord::parse("77\n"),
            Some(PidRecord {
                pid: 77,
                start_time: None,
                ifindex: None
            })
        );
        assert_eq!(PidRecord::parse("garbage"), None);
    }

    #[test]
    fn a_pid_record_with_a_live_pid_but_another_start_time_is_not_the_owner() {
        let own = PidRecord::current();
        assert!(own.owner_is_alive());
        let reused = PidRecord {
            start_time: own.start_time.map(|t| t + 1),
            ..own
        };
        assert!(!reused.owner_is_alive(), "a reused pid is not the owner");
    }

    #[test]
    fn cap_net_admin_in_the_effective_set_is_enough_root_or_not() {
        let status = |cap_eff: &str| {
            format!(
                "Name:\twice\nCapInh:\t0000000000000000\nCapEff:\t{cap_eff}\nCapBnd:\t000001ffffffffff\n"
            )
        };
        assert!(status_has_net_admin(&status("000001ffffffffff")), "root");
        assert!(
            status_has_net_admin(&status("0000000000001000")),
            "CAP_NET_ADMIN alone"
        );
        assert!(
            !status_has_net_admin(&status("0000000000000000")),
            "no capabilities"
        );
        assert!(
            !status_has_net_admin(&status("0000000000002000")),
            "CAP_NET_RAW only"
        );
        assert!(!status_has_net_admin("Name:\twice\n"), "no CapEff line");
    }

    #[test]
    fn a_missing_runtime_directory_is_created_private() {
        let base = TestDir::new("create");
        let dir = base.0.join("run").join("wice");
        ensure_private_dir(&dir).expect("created");
        assert!(dir.is_dir());
        assert_eq!(mode_of(&dir), 0o700);
        ensure_private_dir(&dir).expect("an existing private directory is fine");
    }

    #[test]
    fn a_runtime_directory_open_to_others_is_refused_with_the_fix() {
        let base = TestDir::new("open");
        let dir = base.0.join("run");
        fs::DirBuilder::new().mode(0o755).create(&dir).expect("dir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        let err = ensure_private_dir(&dir).expect_err("0755 is refused");
        assert_eq!(
            err.to_string(),
            format!(
                "{} is open to group or others (mode 0755); run: chmod 700 {}",
                dir.display(),
                dir.display()
            )
        );
    }

    #[test]
    fn a_symlinked_or_non_directory_runtime_path_is_refused() {
        let base = TestDir::new("link");
        let real = base.0.join("real");
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&real)
            .expect("dir");
        let link = base.0.join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        let err = ensure_private_dir(&link).expect_err("a link is refused");
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
        let file = base.0.join("file");
        fs::write(&file, "").expect("file");
        let err = ensure_private_dir(&file).expect_err("a file is refused");
        assert!(err.to_string().contains("is not a directory"), "{err}");
    }

    #[test]
    fn claiming_never_writes_through_a_symlinked_pid_file() {
        let base = TestDir::new("pidlink");
        let victim = base.0.join("victim");
        fs::write(&victim, "precious\n").expect("victim");
        let socket = base.0.join("n.sock");
        std::os::unix::fs::symlink(&victim, pid_file(&socket)).expect("symlink");

        claim_interface(NO_SUCH_INTERFACE, &socket).expect("claim");

        assert_eq!(fs::read_to_string(&victim).expect("victim"), "precious\n");
        let pid_path = pid_file(&socket);
        let metadata = fs::symlink_metadata(&pid_path).expect("pid file");
        assert!(metadata.is_file(), "the link was replaced by a file");
        assert_eq!(mode_of(&pid_path), 0o600);
        assert_eq!(read_pid_file(&pid_path), Some(PidRecord::current()));
        release_interface(&socket);
        assert!(!pid_path.exists());
    }

    #[test]
    fn claiming_refuses_while_the_recorded_owner_runs_and_takes_over_a_reused_pid() {
        let base = TestDir::new("owner");
        let socket = base.0.join("n.sock");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let live = PidRecord {
            pid: child.id(),
            start_time: process_start_time(child.id()),
            ifindex: None,
        };
        write_pid_file(&pid_file(&socket), &live).expect("pid file");
        let refused = claim_interface(NO_SUCH_INTERFACE, &socket);
        assert!(
            matches!(refused, Err(SystemError::AlreadyRunning { pid, .. }) if pid == child.id()),
            "{refused:?}"
        );

        let reused = PidRecord {
            start_time: live.start_time.map(|t| t + 1),
            ..live
        };
        write_pid_file(&pid_file(&socket), &reused).expect("pid file");
        let claimed = claim_interface(NO_SUCH_INTERFACE, &socket);
        let _ = child.kill();
        let _ = child.wait();
        claimed.expect("a pid now held by another process does not block us");
        assert_eq!(
            read_pid_file(&pid_file(&socket)).map(|r| r.pid),
            Some(std::process::id())
        );
    }

    #[test]
    fn the_pid_file_sits_beside_the_control_socket() {
        assert_eq!(
            pid_file(Path::new("/run/wice/wice0.sock")),
            PathBuf::from("/run/wice/wice0.pid")
        );
    }
}
