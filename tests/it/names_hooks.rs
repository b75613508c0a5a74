//! Peer names in a hosts file and hooks on peer events, on running daemons (root).
//!
//! The hosts files are temporary files: never the machine's /etc/hosts. One node writes
//! through a bind mount (as /etc/hosts is in a container), made in a private mount
//! namespace of its own.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

const SYSTEM_LINES: &str = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n# kept\n";

fn quoted(list: &[&str]) -> String {
    list.iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A node config with one peer, plus `interface_extra` lines in `[interface]` and `tail`
/// after the peer.
#[allow(clippy::too_many_arguments)]
fn config(
    name: &str,
    keys: &Keys,
    address: &str,
    socket: &Path,
    peer: &Keys,
    peer_allowed: &[&str],
    peer_extra: &str,
    interface_extra: &str,
    tail: &str,
) -> String {
    format!(
        "[interface]\nname = \"{name}\"\nprivate_key = \"{}\"\nlisten_port = 51820\n\
         addresses = [\"{address}\"]\ncontrol_socket = \"{}\"\n{interface_extra}\n\
         [[peer]]\npublic_key = \"{}\"\nallowed_ips = [{}]\n{peer_extra}\n{tail}",
        keys.private,
        socket.display(),
        peer.public,
        quoted(peer_allowed),
    )
}

/// Starts `wice up` in `ns`, inside a private mount namespace where `bind` (source, target)
/// is bind-mounted first when given; returns once the control socket answers.
fn start(
    ns: &mut Netns,
    dir: &TempDir,
    label: &str,
    config: &str,
    bind: Option<(&Path, &Path)>,
) -> WiceNode {
    WiceNode::start_via(ns, dir, label, config, |ns, config_path| {
        let up = format!(
            "exec {WICE} up -c {} --log-level debug",
            config_path.display()
        );
        let script = match bind {
            Some((source, target)) => format!(
                "mount --bind {} {} && {up}",
                source.display(),
                target.display()
            ),
            None => up,
        };
        let mut command = ns.command("unshare");
        command.args(["-m", "sh", "-c", &script]);
        command
    })
}

/// Waits until `done` holds, up to `limit`.
fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

fn block(interface: &str, lines: &str) -> String {
    format!("# BEGIN wice {interface}\n{lines}# END wice {interface}\n")
}

#[test]
fn a_running_node_names_its_peers_in_its_hosts_file_and_takes_them_out_on_sigterm_and_after_a_crash()
 {
    let test = "a_running_node_names_its_peers_in_its_hosts_file_and_takes_them_out_on_sigterm_and_after_a_crash";
    if !root_or_skip(test) {
        return;
    }
    let mut a = Netns::new();
    let mut b = Netns::new();
    veth(&a, "10.0.0.1/24", &b, "10.0.0.2/24");
    let dir = TempDir::new();
    let (keys_a, keys_b) = (Keys::generate(), Keys::generate());
    let id = unique();
    let (name_a, name_b) = (format!("wa{id}"), format!("wb{id}"));

    // a writes through a bind mount: rename cannot replace a mount point, so it rewrites in
    // place. b writes a plain file.
    let hosts_a = dir.path("hosts-a");
    fs::write(&hosts_a, SYSTEM_LINES).expect("hosts a");
    fs::create_dir(dir.path("mnt-a")).expect("mount dir");
    let mount_point = dir.path("mnt-a/hosts");
    fs::write(&mount_point, "").expect("mount point");
    let hosts_b = dir.path("hosts-b");
    fs::write(&hosts_b, SYSTEM_LINES).expect("hosts b");
    fs::set_permissions(&hosts_b, fs::Permissions::from_mode(0o644)).expect("chmod");

    let names = |path: &Path| {
        format!(
            "hosts_file = true\nhosts_file_path = \"{}\"\ndomain = \"mesh\"\n",
            path.display()
        )
    };
    let config_a = |peer_name: &str| {
        config(
            &name_a,
            &keys_a,
            "10.77.0.1/24",
            &dir.path("a.sock"),
            &keys_b,
            &["10.77.0.2/32", "fd77::2/128", "10.99.0.0/24"],
            &format!("endpoint = \"10.0.0.2:51820\"\nname = \"{peer_name}\"\n"),
            &names(&mount_point),
            "",
        )
    };
    let config_b = |peer_name: &str| {
        config(
            &name_b,
            &keys_b,
            "10.77.0.2/24",
            &dir.path("b.sock"),
            &keys_a,
            &["10.77.0.1/32"],
            &format!("endpoint = \"10.0.0.1:51820\"\nname = \"{peer_name}\"\n"),
            &names(&hosts_b),
            "",
        )
    };

    let node_a = start(
        &mut a,
        &dir,
        "a",
        &config_a("bob"),
        Some((&hosts_a, &mount_point)),
    );
    let node_b = start(&mut b, &dir, "b", &config_b("alice"), None);
    let expected_a = format!(
        "{SYSTEM_LINES}{}",
        block(&name_a, "10.77.0.2 bob bob.mesh\nfd77::2 bob bob.mesh\n")
    );
    assert_eq!(fs::read_to_string(&hosts_a).expect("read"), expected_a);
    assert!(
        node_a.log_text().contains("rewritten in place"),
        "{}",
        node_a.log_text()
    );
    assert_eq!(
        fs::read_to_string(&hosts_b).expect("read"),
        format!(
            "{SYSTEM_LINES}{}",
            block(&name_b, "10.77.0.1 alice alice.mesh\n")
        )
    );
    assert_eq!(
        fs::metadata(&hosts_b).expect("stat").permissions().mode() & 0o777,
        0o644,
        "the replaced file keeps its mode"
    );

    // The name works for a program that reads the file as /etc/hosts.
    let ping = a.exec(
        "unshare",
        &[
            "-m",
            "sh",
            "-c",
            &format!(
                "mount --bind {} /etc/hosts && ping -c 1 -W 5 bob.mesh",
                hosts_a.display()
            ),
        ],
    );
    assert!(
        ping.status.success(),
        "ping bob.mesh through the tunnel: {}",
        String::from_utf8_lossy(&ping.stdout)
    );

    // A reload that renames the peer renames it in the file, without a restart.
    write_private(&dir.path("b.toml"), &config_b("alicia")).expect("config");
    let reload = Command::new(WICE)
        .args(["reload", "--socket"])
        .arg(&node_b.socket)
        .output()
        .expect("wice reload");
    assert!(reload.status.success(), "{reload:?}");
    assert_eq!(
        fs::read_to_string(&hosts_b).expect("read"),
        format!(
            "{SYSTEM_LINES}{}",
            block(&name_b, "10.77.0.1 alicia alicia.mesh\n")
        )
    );

    node_b.signal(libc::SIGTERM);
    assert_eq!(node_b.wait_exit(&mut b, Duration::from_secs(10)), Some(0));
    assert_eq!(
        fs::read_to_string(&hosts_b).expect("read"),
        SYSTEM_LINES,
        "SIGTERM takes the block out"
    );

    node_a.signal(libc::SIGKILL);
    node_a.wait_exit(&mut a, Duration::from_secs(10));
    assert_eq!(
        fs::read_to_string(&hosts_a).expect("read"),
        expected_a,
        "a crash leaves the block"
    );
    // The next start replaces the crashed run's block: the old name is gone.
    let again = start(
        &mut a,
        &dir,
        "a",
        &config_a("robert"),
        Some((&hosts_a, &mount_point)),
    );
    assert_eq!(
        fs::read_to_string(&hosts_a).expect("read"),
        format!(
            "{SYSTEM_LINES}{}",
            block(
                &name_a,
                "10.77.0.2 robert robert.mesh\nfd77::2 robert robert.mesh\n"
            )
        )
    );
    again.signal(libc::SIGTERM);
    assert_eq!(again.wait_exit(&mut a, Duration::from_secs(10)), Some(0));
    assert_eq!(fs::read_to_string(&hosts_a).expect("read"), SYSTEM_LINES);
}

/// Lines the recording hook wrote: one `ARGS: ...` line and one JSON line per run.
fn recorded(path: &Path) -> Vec<(String, serde_json::Value)> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines
        .chunks(2)
        .filter(|pair| pair.len() == 2)
        .map(|pair| {
            let args = pair[0].strip_prefix("ARGS: ").unwrap_or(pair[0]).to_owned();
            let json = serde_json::from_str(pair[1])
                .unwrap_or_else(|e| panic!("hook stdin is JSON ({e}): {}", pair[1]));
            (args, json)
        })
        .collect()
}

fn events_of(records: &[(String, serde_json::Value)]) -> Vec<String> {
    records
        .iter()
        .map(|(_, json)| json["event"].as_str().unwrap_or("?").to_owned())
        .collect()
}

#[test]
fn hooks_fire_once_per_event_with_the_right_json_and_a_hung_hook_is_killed_without_stopping_traffic()
 {
    let test = "hooks_fire_once_per_event_with_the_right_json_and_a_hung_hook_is_killed_without_stopping_traffic";
    if !root_or_skip(test) {
        return;
    }
    let mut a = Netns::new();
    let mut b = Netns::new();
    veth(&a, "10.0.0.1/24", &b, "10.0.0.2/24");
    let dir = TempDir::new();
    let (keys_a, keys_b) = (Keys::generate(), Keys::generate());
    let id = unique();

    let signal_log = fs::File::create(dir.path("signal.log")).expect("log");
    let mut signal = a.command(WICE);
    signal
        .args(["signal", "--listen", "10.0.0.1:8443"])
        .stdout(Stdio::null())
        .stderr(signal_log);
    let _signal_pid = a.spawn(signal);
    assert!(
        eventually(Duration::from_secs(10), || a.tcp_reachable(
            "10.0.0.1:8443".parse().expect("addr"),
            Duration::from_millis(200)
        )),
        "wice signal listens"
    );

    let record = dir.path("events");
    let recorder = dir.path("record.sh");
    fs::write(
        &recorder,
        format!(
            "#!/bin/sh\n{{ echo \"ARGS: $*\"; cat; }} >> {}\n",
            record.display()
        ),
    )
    .expect("hook");
    let hung_pids = dir.path("hung.pids");
    let hung = dir.path("hung.sh");
    fs::write(
        &hung,
        format!(
            "#!/bin/sh\nsleep 300 &\necho $! >> {}\nsleep 300\n",
            hung_pids.display()
        ),
    )
    .expect("hook");
    for script in [&recorder, &hung] {
        fs::set_permissions(script, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let hooks = format!(
        "\n[signaling]\nbackends = [\"grpc://10.0.0.1:8443\"]\n\n\
         [[hook]]\nrun = \"{}\"\n\n\
         [[hook]]\nrun = \"{}\"\nevents = [\"connected\"]\ntimeout = \"1s\"\n",
        recorder.display(),
        hung.display()
    );
    let config_a = config(
        &format!("wa{id}"),
        &keys_a,
        "10.77.0.1/24",
        &dir.path("a.sock"),
        &keys_b,
        &["10.77.0.2/32"],
        "",
        "",
        &hooks,
    );
    let config_b = config(
        &format!("wb{id}"),
        &keys_b,
        "10.77.0.2/24",
        &dir.path("b.sock"),
        &keys_a,
        &["10.77.0.1/32"],
        "",
        "",
        "\n[signaling]\nbackends = [\"grpc://10.0.0.1:8443\"]\n",
    );
    let node_a = start(&mut a, &dir, "a", &config_a, None);
    let node_b = start(&mut b, &dir, "b", &config_b, None);

    let connected = eventually(Duration::from_secs(30), || {
        events_of(&recorded(&record)).contains(&"connected".to_owned())
    });
    assert!(connected, "connected hook ran; log:\n{}", node_a.log_text());
    // The hung hook runs for `connected` now; traffic flows meanwhile and after its kill.
    assert!(a.ping("10.77.0.2", 3, 10), "traffic while a hook hangs");
    assert!(
        eventually(Duration::from_secs(10), || {
            node_a.status()["drops"]["hook_runs_timed_out"].as_u64() == Some(1)
        }),
        "the hung hook is killed at its timeout: {}",
        node_a.status()
    );
    let background: i32 = fs::read_to_string(&hung_pids)
        .expect("hung hook ran")
        .trim()
        .parse()
        .expect("pid");
    assert!(
        eventually(Duration::from_secs(5), || {
            fs::read_to_string(format!("/proc/{background}/stat"))
                .map_or(true, |stat| stat.contains(") Z "))
        }),
        "what the hung hook started in the background is killed with it"
    );
    assert!(a.ping("10.77.0.2", 3, 10), "traffic after the kill");

    // b dies without a word: a's consent checks go unanswered and the peer is disconnected.
    let killed = Instant::now();
    node_b.signal(libc::SIGKILL);
    node_b.wait_exit(&mut b, Duration::from_secs(10));
    let disconnected = eventually(Duration::from_secs(120), || {
        // Traffic towards the dead peer keeps a's checks on their active schedule.
        let _ = a.ping("10.77.0.2", 1, 1);
        events_of(&recorded(&record)).contains(&"disconnected".to_owned())
    });
    assert!(
        disconnected,
        "disconnected hook ran; log:\n{}",
        node_a.log_text()
    );
    eprintln!(
        "{test}: disconnected {:.1} s after the peer was killed",
        killed.elapsed().as_secs_f64()
    );

    node_a.signal(libc::SIGTERM);
    assert_eq!(node_a.wait_exit(&mut a, Duration::from_secs(15)), Some(0));

    let records = recorded(&record);
    assert_eq!(
        events_of(&records),
        [
            "added",
            "path_changed",
            "connected",
            "disconnected",
            "removed"
        ],
        "each event once, in order: {records:?}"
    );
    let peer = keys_b.public.as_str();
    let interface = format!("wa{id}");
    for (args, json) in &records {
        assert_eq!(json["version"], 1);
        assert_eq!(json["peer"], peer);
        assert_eq!(json["interface"], interface.as_str());
        assert!(
            json["time_ms"]
                .as_u64()
                .is_some_and(|t| t > 1_600_000_000_000)
        );
        let event = json["event"].as_str().expect("event");
        let mut expected_args = format!("{event} {peer} {interface}");
        if let Some(endpoint) = json["endpoint"].as_str() {
            expected_args.push_str(&format!(" {endpoint}"));
        }
        assert_eq!(args, &expected_args);
    }
    let (added, removed) = (&records[0].1, &records[4].1);
    assert_eq!(added["allowed_ips"], serde_json::json!(["10.77.0.2/32"]));
    assert_eq!(removed["allowed_ips"], serde_json::json!(["10.77.0.2/32"]));
    let (path, connected) = (&records[1].1, &records[2].1);
    // The peer's host address either way; its kind is `prflx` when the peer's check arrived
    // before the offer that lists the address (the controller names a path by the candidate
    // signalled for it, and none was yet), `host` otherwise: a race of two packets.
    let direct = |kind: &serde_json::Value| kind == "host" || kind == "prflx";
    assert!(direct(&path["path"]), "{path}");
    assert_eq!(path["endpoint"], "10.0.0.2:51820");
    assert_eq!(connected["endpoint"], "10.0.0.2:51820");
    assert!(direct(&connected["path"]), "{connected}");
}
