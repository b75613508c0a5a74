//! The config's tests, by concern; the helpers every file uses are here.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod ice_and_signaling;
mod keys_and_files;
mod loading;
mod values;

use super::span::line_of;
use super::*;
use std::fs;
use std::sync::atomic::{AtomicUsize, Ordering};

// RFC 7748 §6.1 keys: the node is Alice, Bob is a peer.
const NODE_PRIVATE: &str = "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=";
const NODE_PUBLIC: &str = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=";
const BOB: &str = "3p7bfXt9wbTTW2HC7OQ1Nz+DQ8hbeGdNrfx+FG+IK08=";
const PSK: &str = "XasIfmJKikt54X+Lg4AO5m87sSkmGLb9HC+LJ/+I4Os=";

/// A distinct, valid peer public key for each `n`.
fn peer_key(n: u8) -> String {
    PrivateKey::from_bytes([n; 32]).public_key().to_base64()
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("node.toml"), text)
}

fn parse_ok(text: &str) -> Config {
    parse(text).unwrap_or_else(|e| panic!("expected a valid config, got: {e}"))
}

/// Parses `text`, expecting an error at `line` on `key` whose message contains `phrase`.
fn assert_error(text: &str, line: Option<usize>, key: &str, phrase: &str) -> ConfigError {
    let err = parse(text).expect_err("expected an error");
    assert_eq!(
        (err.line, err.key.as_str()),
        (line, key),
        "wrong place for: {err}"
    );
    let reason = err.reason.to_string();
    assert!(
        reason.contains(phrase),
        "reason {reason:?} does not contain {phrase:?}"
    );
    err
}

/// A config whose interface holds `interface_lines` after the private key (line 2), so the
/// first of them is line 3.
fn with_interface(interface_lines: &str) -> String {
    format!("[interface]\nprivate_key = \"{NODE_PRIVATE}\"\n{interface_lines}")
}

/// A directory under the system temp dir, unique to this test and removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "wice-config-test-{}-{n}-{name}",
            std::process::id()
        ));
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, contents: &str, mode: u32) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, contents).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

// ---- valid configs ----

#[test]
fn a_minimal_config_gets_every_default() {
    let config = parse_ok(&with_interface(""));
    assert_eq!(config.path, Path::new("node.toml"));
    let interface = &config.interface;
    assert_eq!(interface.name, "wice0");
    assert_eq!(interface.private_key.public_key().to_base64(), NODE_PUBLIC);
    assert_eq!(interface.listen_port, 51820);
    assert!(interface.addresses.is_empty());
    assert_eq!(interface.mtu, 1420);
    assert_eq!(interface.control_socket, Path::new("/run/wice/wice0.sock"));
    assert!(config.peers.is_empty());
    assert_eq!(config.signaling, SignalingConfig::default());
}

#[test]
fn the_documented_example_parses_with_every_field() {
    let text = format!(
        r#"[interface]
name = "mesh1"
private_key = "{NODE_PRIVATE}"
listen_port = 51821
addresses = ["10.77.0.1/24", "fd77::1/64"]
mtu = 1400
control_socket = "/tmp/wice-mesh1.sock"

[[peer]]
public_key = "{BOB}"
allowed_ips = ["10.77.0.2/32", "fd77::2/128"]
endpoint = "198.51.100.7:51820"
persistent_keepalive = 25
preshared_key = "{PSK}"

[[peer]]
public_key = "{}"
allowed_ips = ["10.77.0.3/32"]
"#,
        peer_key(3)
    );
    let config = parse_ok(&text);
    let interface = &config.interface;
    assert_eq!(interface.name, "mesh1");
    assert_eq!(interface.listen_port, 51821);
    assert_eq!(
        interface.addresses,
        vec![
            "10.77.0.1/24".parse::<IpNet>().unwrap(),
            "fd77::1/64".parse().unwrap()
        ]
    );
    assert_eq!(interface.mtu, 1400);
    assert_eq!(interface.control_socket, Path::new("/tmp/wice-mesh1.sock"));

    assert_eq!(config.peers.len(), 2);
    let bob = &config.peers[0];
    assert_eq!(bob.public_key.to_base64(), BOB);
    assert_eq!(
        bob.allowed_ips,
        vec![
            "10.77.0.2/32".parse::<IpNet>().unwrap(),
            "fd77::2/128".parse().unwrap()
        ]
    );
    assert_eq!(bob.endpoint, Some("198.51.100.7:51820".parse().unwrap()));
    assert_eq!(bob.persistent_keepalive, Some(25));
    assert_eq!(bob.preshared_key.as_ref().unwrap().to_base64(), PSK);

    let third = &config.peers[1];
    assert_eq!(third.public_key.to_base64(), peer_key(3));
    assert_eq!(third.endpoint, None);
    assert_eq!(third.persistent_keepalive, None);
    assert!(third.preshared_key.is_none());
}

#[test]
fn interface_addresses_keep_their_host_bits() {
    let config = parse_ok(&with_interface("addresses = [\"10.77.0.9/24\"]\n"));
    assert_eq!(config.interface.addresses[0].to_string(), "10.77.0.9/24");
}

#[test]
fn allowed_ips_have_their_host_bits_cleared_like_wg() {
    let config = parse_ok(&format!(
        "{}[[peer]]\npublic_key = \"{BOB}\"\nallowed_ips = [\"10.77.0.9/24\", \"fd77::5/64\"]\n",
        with_interface("")
    ));
    let shown: Vec<String> = config.peers[0]
        .allowed_ips
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(shown, ["10.77.0.0/24", "fd77::/64"]);
}

#[test]
fn a_bare_allowed_ip_is_a_single_host_prefix() {
    let config = parse_ok(&format!(
        "{}[[peer]]\npublic_key = \"{BOB}\"\nallowed_ips = [\"10.77.0.2\", \"fd77::2\"]\n",
        with_interface("")
    ));
    let shown: Vec<String> = config.peers[0]
        .allowed_ips
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(shown, ["10.77.0.2/32", "fd77::2/128"]);
}

#[test]
fn a_peer_without_allowed_ips_has_none_like_wg() {
    let config = parse_ok(&format!(
        "{}[[peer]]\npublic_key = \"{BOB}\"\n",
        with_interface("")
    ));
    assert!(config.peers[0].allowed_ips.is_empty());
}

#[test]
fn the_default_control_socket_follows_the_interface_name() {
    let config = parse_ok(&with_interface("name = \"mesh7\"\n"));
    assert_eq!(
        config.interface.control_socket,
        Path::new("/run/wice/mesh7.sock")
    );
}

#[test]
fn listen_port_zero_is_kept_to_mean_any_free_port() {
    let config = parse_ok(&with_interface("listen_port = 0\n"));
    assert_eq!(config.interface.listen_port, 0);
}

#[test]
fn persistent_keepalive_zero_means_off() {
    let config = parse_ok(&format!(
        "{}[[peer]]\npublic_key = \"{BOB}\"\npersistent_keepalive = 0\n",
        with_interface("")
    ));
    assert_eq!(config.peers[0].persistent_keepalive, None);
}

#[test]
fn an_ipv6_endpoint_in_brackets_is_accepted() {
    let config = parse_ok(&format!(
        "{}[[peer]]\npublic_key = \"{BOB}\"\nendpoint = \"[2001:db8::7]:51820\"\n",
        with_interface("")
    ));
    assert_eq!(
        config.peers[0].endpoint,
        Some("[2001:db8::7]:51820".parse().unwrap())
    );
}

#[test]
fn an_endpoint_host_name_is_resolved_at_load() {
    let config = parse_ok(&format!(
        "{}[[peer]]\npublic_key = \"{BOB}\"\nendpoint = \"localhost:51820\"\n",
        with_interface("")
    ));
    let endpoint = config.peers[0].endpoint.unwrap();
    assert!(endpoint.ip().is_loopback(), "{endpoint}");
    assert_eq!(endpoint.port(), 51820);
}

#[test]
fn an_mtu_below_1280_is_fine_without_ipv6_addresses() {
    let config = parse_ok(&with_interface(
        "addresses = [\"10.77.0.1/24\"]\nmtu = 576\n",
    ));
    assert_eq!(config.interface.mtu, 576);
}

#[test]
fn the_same_prefix_on_two_address_families_does_not_overlap() {
    parse_ok(&format!(
        "{}[[peer]]\npublic_key = \"{BOB}\"\nallowed_ips = [\"0.0.0.0/0\"]\n\
         [[peer]]\npublic_key = \"{}\"\nallowed_ips = [\"::/0\"]\n",
        with_interface(""),
        peer_key(3)
    ));
}

#[test]
fn check_summary_names_interface_key_port_and_counts() {
    let config = parse_ok(&format!(
        "{}[[peer]]\npublic_key = \"{BOB}\"\n",
        with_interface("addresses = [\"10.77.0.1/24\", \"fd77::1/64\"]\n")
    ));
    assert_eq!(
        config.check_summary(),
        format!(
            "node.toml: interface wice0, public key {NODE_PUBLIC}, listen port 51820, \
             2 addresses, mtu 1420, 1 peer"
        )
    );
}

// ---- errors: TOML level ----

#[test]
fn an_unknown_key_in_interface_is_named_with_its_line() {
    let err = assert_error(
        &with_interface("listen_prot = 1\n"),
        Some(3),
        "interface.listen_prot",
        "unknown key",
    );
    assert!(err.reason.to_string().contains("`listen_port`"), "{err}");
}

#[test]
fn an_unknown_key_in_a_peer_is_named_with_the_peer_index() {
    let text = format!(
        "{}[[peer]]\npublic_key = \"{BOB}\"\n[[peer]]\npublic_key = \"{}\"\nendpiont = \"x\"\n",
        with_interface(""),
        peer_key(3)
    );
    assert_error(&text, Some(7), "peer[1].endpiont", "unknown key");
}

#[test]
fn an_unknown_top_level_key_is_an_error() {
    let text = format!("verbose = true\n{}", with_interface(""));
    assert_error(&text, Some(1), "verbose", "unknown key");
}

#[test]
fn an_unknown_section_is_an_error() {
    let text = format!("{}[peers]\npublic_key = \"{BOB}\"\n", with_interface(""));
    assert_error(&text, Some(3), "peers", "unknown key");
}

#[test]
fn an_unknown_key_in_an_inline_table_is_named() {
    let text = format!("interface = {{ private_key = \"{NODE_PRIVATE}\", nmae = \"x\" }}\n");
    assert_error(&text, Some(1), "interface.nmae", "unknown key");
}

#[test]
fn a_toml_syntax_error_gives_the_line() {
    let text = with_interface("name = \"wice0\n");
    assert_error(&text, Some(3), "", "string");
}

#[test]
fn a_value_of_the_wrong_type_names_its_key() {
    assert_error(
        &with_interface("mtu = \"1420\"\n"),
        Some(3),
        "interface.mtu",
        "invalid type",
    );
    let text = format!(
        "{}[[peer]]\npublic_key = \"{BOB}\"\nallowed_ips = [\"10.77.0.2/32\", 7]\n",
        with_interface("")
    );
    assert_error(&text, Some(5), "peer[0].allowed_ips[1]", "invalid type");
}

#[test]
fn a_wrong_type_is_described_in_toml_terms() {
    assert_error(
        &with_interface("mtu = \"1420\"\n"),
        Some(3),
        "interface.mtu",
        "invalid type: string \"1420\", expected an integer",
    );
    assert_error(
        &with_interface("addresses = \"10.77.0.1/24\"\n"),
        Some(3),
        "interface.addresses",
        "expected an array",
    );
}

#[test]
fn a_duplicate_key_is_named_with_the_line_of_the_repeat() {
    assert_error(
        &with_interface("mtu = 1400\nmtu = 1300\n"),
        Some(4),
        "mtu",
        "duplicate key",
    );
    assert_error(
        &format!("{}[interface]\n", with_interface("")),
        Some(3),
        "interface",
        "duplicate key",
    );
}

#[test]
fn a_file_without_an_interface_section_is_refused() {
    let text = format!("[[peer]]\npublic_key = \"{BOB}\"\n");
    assert_error(&text, None, "interface", "missing [interface] section");
    assert_error("", None, "interface", "missing [interface] section");
}
