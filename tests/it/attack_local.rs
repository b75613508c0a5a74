//! Local attacks (issue 9, finding 8): what another program or user on the same host can do
//! with wice's files and devices, and what `Debug` output could leak.

use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::*;

fn lone_config(name: &str, dir: &TempDir) -> String {
    node_config(
        name,
        &Keys::generate(),
        0,
        &["10.77.0.1/24"],
        &dir.path("n.sock"),
        &[PeerSpec {
            public_key: &Keys::generate().public,
            allowed_ips: &["10.77.0.2/32"],
            endpoint: None,
        }],
    )
}

#[test]
fn a_tun_device_made_by_another_program_after_a_crash_is_left_alone() {
    let test = "a_tun_device_made_by_another_program_after_a_crash_is_left_alone";
    if !root_or_skip(test) {
        return;
    }
    let ns = Netns::new();
    let dir = TempDir::new();
    let name = format!("wo{}", unique());
    // wice crashed: its pid file names a dead process and the device it had made...
    ns.ip(&["tuntap", "add", "mode", "tun", "name", &name]);
    let old_index = interface_index(&ns, &name);
    write_private(&dir.path("n.pid"), &dead_pid_record(old_index)).expect("pid file");
    // ...which went away; then another program made its own TUN device with the same name.
    ns.ip(&["link", "del", "dev", &name]);
    ns.ip(&["tuntap", "add", "mode", "tun", "name", &name]);
    let new_index = interface_index(&ns, &name);
    assert_ne!(old_index, new_index);

    let config_path = dir.path("n.toml");
    write_private(&config_path, &lone_config(&name, &dir)).expect("config");
    let out = ns
        .command(WICE)
        .args(["up", "-c"])
        .arg(&config_path)
        .stdin(Stdio::null())
        .output()
        .expect("run wice");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "wice must not take the device over");
    assert!(
        stderr.contains("is not a leftover of wice")
            && stderr.contains(&format!("interface index {new_index}")),
        "{stderr}"
    );
    assert!(
        link_exists(&ns, &name),
        "the other program's device survives"
    );
    assert_eq!(
        interface_index(&ns, &name),
        new_index,
        "the very same device"
    );
}

/// A directory that user 65534 (nobody) owns, mode 0700, removed on drop.
struct NobodyDir(std::path::PathBuf);

impl Drop for NobodyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_user_with_cap_net_admin_but_not_root_can_run_wice_up_and_one_without_cannot() {
    let test = "a_user_with_cap_net_admin_but_not_root_can_run_wice_up_and_one_without_cannot";
    if !root_or_skip(test) {
        return;
    }
    let mut ns = Netns::new();
    let dir = NobodyDir(std::env::temp_dir().join(format!("wice-nobody-{}", unique())));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir.0)
        .expect("dir");
    let name = format!("wn{}", unique());
    let socket = dir.0.join("n.sock");
    let keys = Keys::generate();
    let peer = Keys::generate();
    let config = node_config(
        &name,
        &keys,
        0,
        &["10.77.0.1/24"],
        &socket,
        &[PeerSpec {
            public_key: &peer.public,
            allowed_ips: &["10.77.0.2/32"],
            endpoint: None,
        }],
    );
    let config_path = dir.0.join("n.toml");
    write_private(&config_path, &config).expect("config");
    // The binary under target/ must be reachable for nobody; the test dir is handed over.
    run(
        "chown",
        &["-R", "65534:65534", &dir.0.display().to_string()],
    );
    // The binary's own directories are root's; make sure nobody may execute it.
    assert!(
        std::fs::metadata(WICE)
            .expect("wice binary")
            .permissions()
            .mode()
            & 0o001
            != 0,
        "the wice binary is executable by others"
    );

    let as_nobody = |caps: bool| {
        let mut command = ns.command("setpriv");
        command.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
        if caps {
            command.args(["--inh-caps=+net_admin", "--ambient-caps=+net_admin"]);
        }
        command.arg(WICE).args(["up", "-c"]).arg(&config_path);
        command
    };

    let out = as_nobody(false)
        .stdin(Stdio::null())
        .output()
        .expect("run wice as nobody");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("needs root (CAP_NET_ADMIN)"), "{stderr}");
    assert!(!link_exists(&ns, &name));

    let log = dir.0.join("up.log");
    let mut command = as_nobody(true);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"));
    let pid = ns.spawn(command);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(link_exists(&ns, &name) && socket.exists()) {
        if Instant::now() > deadline || ns.try_wait(pid).is_some() {
            panic!(
                "wice with CAP_NET_ADMIN did not come up:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = std::process::Command::new(WICE)
        .args(["status", "--json", "--socket"])
        .arg(&socket)
        .output()
        .expect("status");
    assert!(status.status.success(), "the daemon answers status");
    ns.stop(pid, libc::SIGTERM, Duration::from_secs(10));
    assert!(!link_exists(&ns, &name), "it cleaned up after itself");
}

#[test]
fn a_config_holding_a_private_key_that_others_can_read_is_refused_by_wice_up() {
    let dir = TempDir::new();
    let name = format!("wr{}", unique());
    let path = dir.path("n.toml");
    write_private(&path, &lone_config(&name, &dir)).expect("config");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = std::process::Command::new(WICE)
        .args(["up", "--check", "-c"])
        .arg(&path)
        .output()
        .expect("wice");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("interface.private_key: is a secret")
            && stderr.contains(&format!("run: chmod 600 {}", path.display())),
        "{stderr}"
    );
}

#[test]
fn debug_output_of_ice_and_datapath_settings_never_shows_a_secret() {
    let password = "turn-password-that-must-not-leak";
    let server: std::net::SocketAddr = "192.0.2.2:3478".parse().expect("addr");
    let local: std::net::SocketAddr = "10.0.0.1:51820".parse().expect("addr");
    let turn = wice_core::ice::TurnServer {
        address: server,
        local,
        username: "lab".to_owned(),
        credential: wice_core::secret::SecretString::new(password),
    };
    let relay = wice_core::ice::Relay::new(local, server, "lab", password, Instant::now());
    let private = [7u8; 32];
    let psk = [9u8; 32];
    let device = wice_datapath::DeviceConfig {
        name: "wice0".to_owned(),
        mtu: 1420,
        listen_port: 51820,
        private_key: private,
    };
    let peer = wice_datapath::PeerConfig {
        public_key: [1u8; 32],
        preshared_key: Some(psk),
        persistent_keepalive: None,
        endpoint: None,
        allowed_ips: Vec::new(),
    };
    for (what, shown) in [
        ("TurnServer", format!("{turn:?}")),
        ("Relay", format!("{relay:?}")),
        ("DeviceConfig", format!("{device:?}")),
        ("datapath PeerConfig", format!("{peer:?}")),
    ] {
        assert!(!shown.contains(password), "{what}: {shown}");
        assert!(!shown.contains(&format!("{private:?}")), "{what}: {shown}");
        assert!(!shown.contains(&format!("{psk:?}")), "{what}: {shown}");
        assert!(
            !shown.contains("7, 7, 7") && !shown.contains("9, 9, 9"),
            "{what}: {shown}"
        );
    }
}
