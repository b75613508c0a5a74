//! wice ↔ wireguard-go (Debian's), configured with `wg`: the independent implementation.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

fn tools_or_skip(test: &str) -> bool {
    if !root_or_skip(test) {
        return false;
    }
    for tool in ["wireguard-go", "wg"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        // CI installs both; a missing tool is a broken environment, not a reason to pass.
        assert!(
            found,
            "{tool} is not installed: run .ci/run (or apt-get install wireguard-go wireguard-tools)"
        );
    }
    true
}

struct Lab {
    wice_ns: Netns,
    wg_ns: Netns,
    wice: WiceNode,
    wg_if: String,
    _dir: TempDir,
    _uapi: RemoveOnDrop,
}

/// wireguard-go leaves its UAPI socket behind when killed; remove it after the namespace is gone.
struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// wice in one namespace, wireguard-go in the other, each with the other's endpoint.
fn lab() -> Lab {
    let mut wice_ns = Netns::new();
    let mut wg_ns = Netns::new();
    veth(&wice_ns, "10.0.0.1/24", &wg_ns, "10.0.0.2/24");
    let dir = TempDir::new();
    let (keys_wice, keys_wg) = (Keys::generate(), Keys::generate());
    let id = unique();

    // wireguard-go's UAPI socket lives in /var/run/wireguard, shared by all namespaces: unique name.
    let wg_if = format!("wg{id}");
    let mut command = wg_ns.command("wireguard-go");
    command
        .args(["-f", &wg_if])
        .env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    wg_ns.spawn(command);
    let uapi = format!("/var/run/wireguard/{wg_if}.sock");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !Path::new(&uapi).exists() {
        assert!(Instant::now() < deadline, "wireguard-go did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let key_file = dir.path("wg.key");
    std::fs::write(&key_file, &keys_wg.private).expect("key file");
    let key_file = key_file.display().to_string();
    let out = wg_ns.exec(
        "wg",
        &[
            "set",
            &wg_if,
            "private-key",
            &key_file,
            "listen-port",
            "51820",
            "peer",
            &keys_wice.public,
            "allowed-ips",
            "10.77.0.1/32,fd77::1/128",
            "endpoint",
            "10.0.0.1:51820",
        ],
    );
    assert!(
        out.status.success(),
        "wg set: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wg_ns.ip(&["addr", "add", "10.77.0.2/24", "dev", &wg_if]);
    wg_ns.ip(&["addr", "add", "fd77::2/64", "dev", &wg_if, "nodad"]);
    wg_ns.ip(&["link", "set", &wg_if, "mtu", "1420", "up"]);

    let config = node_config(
        &format!("wi{id}"),
        &keys_wice,
        51820,
        &["10.77.0.1/24", "fd77::1/64"],
        &dir.path("wice.sock"),
        &[PeerSpec {
            public_key: &keys_wg.public,
            allowed_ips: &["10.77.0.2/32", "fd77::2/128"],
            endpoint: Some("10.0.0.2:51820"),
        }],
    );
    let wice = WiceNode::start(&mut wice_ns, &dir, "wice", &config);
    Lab {
        wice_ns,
        wg_ns,
        wice,
        wg_if,
        _dir: dir,
        _uapi: RemoveOnDrop(uapi),
    }
}

fn assert_full_exchange(lab: &Lab) {
    let logs = || lab.wice.log_text();
    assert!(
        lab.wice_ns.ping("10.77.0.2", 3, 10),
        "wice → wireguard-go IPv4; wice log:\n{}",
        logs()
    );
    assert!(
        lab.wg_ns.ping("10.77.0.1", 3, 10),
        "wireguard-go → wice IPv4"
    );
    assert!(
        lab.wice_ns.ping("fd77::2", 3, 10),
        "wice → wireguard-go IPv6"
    );
    assert!(lab.wg_ns.ping("fd77::1", 3, 10), "wireguard-go → wice IPv6");
    tcp_transfer(
        &lab.wice_ns,
        &lab.wg_ns,
        "10.77.0.2:5201".parse::<SocketAddr>().expect("addr"),
        100_000_000,
    );
    tcp_transfer(
        &lab.wg_ns,
        &lab.wice_ns,
        "10.77.0.1:5202".parse::<SocketAddr>().expect("addr"),
        100_000_000,
    );
    let wg_show = lab
        .wg_ns
        .exec("wg", &["show", &lab.wg_if, "latest-handshakes"]);
    let handshake: u64 = String::from_utf8_lossy(&wg_show.stdout)
        .split_whitespace()
        .nth(1)
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    assert!(handshake > 0, "wg show reports a handshake with wice");
}

#[test]
fn wice_initiates_to_wireguard_go_and_both_directions_carry_traffic() {
    if !tools_or_skip("wice_initiates_to_wireguard_go_and_both_directions_carry_traffic") {
        return;
    }
    let lab = lab();
    // wice sends first, so wice sends the handshake initiation.
    assert!(
        lab.wice_ns.ping("10.77.0.2", 1, 10),
        "first packet from wice; log:\n{}",
        lab.wice.log_text()
    );
    let log = lab.wice.log_text();
    assert!(
        log.contains("Sending handshake_initiation"),
        "wice initiated:\n{log}"
    );
    assert!(
        !log.contains("Sending handshake_response"),
        "wice did not respond to an initiation:\n{log}"
    );
    assert_full_exchange(&lab);
}

#[test]
fn wireguard_go_initiates_to_wice_and_both_directions_carry_traffic() {
    if !tools_or_skip("wireguard_go_initiates_to_wice_and_both_directions_carry_traffic") {
        return;
    }
    let lab = lab();
    // wireguard-go sends first, so wice answers as the responder.
    assert!(
        lab.wg_ns.ping("10.77.0.1", 1, 10),
        "first packet from wireguard-go; log:\n{}",
        lab.wice.log_text()
    );
    let log = lab.wice.log_text();
    assert!(
        log.contains("Sending handshake_response"),
        "wice responded:\n{log}"
    );
    assert!(
        !log.contains("Sending handshake_initiation"),
        "wice did not initiate:\n{log}"
    );
    assert_full_exchange(&lab);
}
