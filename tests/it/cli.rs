//! The binary as a user meets it: keys, config checking, status without a daemon.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::harness::*;

fn pipe(program: &str, args: &[&str], input: &str) -> (bool, String, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn wg_installed() -> bool {
    let found = Command::new("wg")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        skip(
            "keys_are_byte_for_byte_compatible_with_wg",
            "wg is not installed (.ci/run installs wireguard-tools)",
        );
    }
    found
}

#[test]
fn keys_are_byte_for_byte_compatible_with_wg() {
    if !wg_installed() {
        return;
    }
    for _ in 0..4 {
        let ours = String::from_utf8(run(WICE, &["genkey"]).stdout).expect("utf8");
        let (ok, wg_pub, _) = pipe("wg", &["pubkey"], &ours);
        assert!(ok, "wg accepts wice genkey output");
        let (ok, our_pub, _) = pipe(WICE, &["pubkey"], &ours);
        assert!(ok);
        assert_eq!(our_pub, wg_pub);

        let theirs = String::from_utf8(run("wg", &["genkey"]).stdout).expect("utf8");
        let (_, wg_pub, _) = pipe("wg", &["pubkey"], &theirs);
        let (ok, our_pub, _) = pipe(WICE, &["pubkey"], &theirs);
        assert!(ok);
        assert_eq!(our_pub, wg_pub);
    }
}

#[test]
fn pubkey_rejects_garbage_with_a_reason() {
    let (ok, out, err) = pipe(WICE, &["pubkey"], "not a key\n");
    assert!(!ok);
    assert!(out.is_empty());
    assert!(err.contains("not valid base64"), "{err}");
}

#[test]
fn check_accepts_a_good_config_and_creates_nothing() {
    let dir = TempDir::new();
    let name = format!("wc{}", unique());
    let config = node_config(
        &name,
        &Keys::generate(),
        51820,
        &["10.77.0.1/24"],
        &dir.path("n.sock"),
        &[PeerSpec {
            public_key: &Keys::generate().public,
            allowed_ips: &["10.77.0.2/32"],
            endpoint: Some("192.0.2.1:51820"),
        }],
    );
    let path = dir.path("n.toml");
    write_private(&path, &config).expect("config");
    let out = Command::new(WICE)
        .args(["up", "--check", "-c"])
        .arg(&path)
        .output()
        .expect("wice");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok"));
    assert!(!std::path::Path::new("/sys/class/net").join(&name).exists());
    assert!(!dir.path("n.sock").exists() && !dir.path("n.pid").exists());
}

#[test]
fn a_bad_config_fails_with_file_line_key_and_reason_and_touches_nothing() {
    let dir = TempDir::new();
    let name = format!("wc{}", unique());
    let own = Keys::generate();
    let text = format!(
        "[interface]\nname = \"{name}\"\nprivate_key = \"{}\"\naddresses = [\"10.77.0.1/24\"]\n\n[[peer]]\npublic_key = \"AAAA\"\nallowed_ips = [\"10.77.0.2/32\"]\n",
        own.private
    );
    let path = dir.path("bad.toml");
    write_private(&path, &text).expect("config");
    for extra in [&["--check"][..], &[][..]] {
        let out = Command::new(WICE)
            .arg("up")
            .args(extra)
            .arg("-c")
            .arg(&path)
            .output()
            .expect("wice");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains(&format!("{}:7: peer[0].public_key:", path.display())),
            "{stderr}"
        );
        assert!(
            !std::path::Path::new("/sys/class/net").join(&name).exists(),
            "no interface was created"
        );
    }
}

#[test]
fn status_without_a_daemon_says_what_to_check() {
    let dir = TempDir::new();
    let out = Command::new(WICE)
        .args(["status", "--socket"])
        .arg(dir.path("none.sock"))
        .output()
        .expect("wice");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is `wice up` running"));
}

#[test]
fn addresses_prints_the_key_derived_address_in_each_prefix_and_refuses_a_bad_key() {
    // The core's test vector: key bytes [7; 32] in 10.77.0.0/16 and fd77::/64.
    let key = wice_core::keys::PublicKey::from_bytes([7; 32]).to_base64();
    let (ok, stdout, stderr) = pipe(WICE, &["addresses", &key, "10.77.0.0/16", "fd77::/64"], "");
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "10.77.72.123/32\nfd77::944:bf3d:b2ae:b188/128\n");
    let (ok, _, stderr) = pipe(WICE, &["addresses", "garbage", "10.77.0.0/16"], "");
    assert!(!ok);
    assert!(stderr.contains("KEY"), "{stderr}");
    let (ok, _, stderr) = pipe(WICE, &["addresses", &key, "10.77.0.0/31"], "");
    assert!(!ok);
    assert!(stderr.contains("too small"), "{stderr}");
}
