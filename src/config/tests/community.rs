//! `[community]` and `derive_addresses`.

use super::*;

fn community_config(community_lines: &str) -> String {
    format!(
        "[interface]\nprivate_key = \"{NODE_PRIVATE}\"\nderive_addresses = [\"10.77.0.0/16\", \"fd77::/64\"]\n\
         [signaling]\nbackends = [\"inprocess\"]\n[community]\n{community_lines}"
    )
}

#[test]
fn a_community_config_without_any_peer_is_valid_and_our_derived_addresses_are_ours() {
    let dir = TempDir::new("community");
    dir.write("community", "a long shared passphrase\n", 0o600);
    let path = dir.write(
        "node.toml",
        &community_config("passphrase_file = \"community\"\nname = \"alpha\"\nexpire_after = 10\nannounce_interval = 2\n"),
        0o600,
    );
    let config = Config::load(&path).unwrap();
    assert!(config.peers.is_empty());
    let community = config.community.expect("a community");
    assert_eq!(community.name, "alpha");
    assert_eq!(community.expire_after, std::time::Duration::from_secs(10));
    // The trailing newline is not part of the passphrase.
    assert_eq!(
        community.key.public_key(),
        wice_core::community::CommunityKey::derive("a long shared passphrase")
            .unwrap()
            .public_key()
    );
    let own = PublicKey::from_base64(NODE_PUBLIC).unwrap();
    let prefixes: Vec<IpNet> = vec![
        "10.77.0.0/16".parse().unwrap(),
        "fd77::/64".parse().unwrap(),
    ];
    assert_eq!(config.interface.derive_prefixes, prefixes);
    let derived = wice_core::addresses::derive_addresses(&own, &prefixes).unwrap();
    assert_eq!(
        config.interface.addresses,
        vec![
            IpNet::new(derived[0], 16).unwrap(),
            IpNet::new(derived[1], 64).unwrap()
        ]
    );
}

#[test]
fn a_passphrase_file_readable_by_others_is_refused_at_its_line() {
    let dir = TempDir::new("community-open");
    let secret = dir.write("community", "a long shared passphrase", 0o644);
    let err = parse(&community_config(&format!(
        "passphrase_file = \"{}\"\n",
        secret.display()
    )))
    .unwrap_err();
    assert_eq!(
        (err.line, err.key.as_str()),
        (Some(7), "community.passphrase_file")
    );
    assert!(err.reason.to_string().contains("chmod 600"), "{err}");
}

#[test]
fn an_inline_passphrase_in_a_file_others_can_read_is_refused() {
    let dir = TempDir::new("community-inline");
    dir.write("private.key", NODE_PRIVATE, 0o600);
    let text = community_config("passphrase = \"a long shared passphrase\"\n").replace(
        &format!("private_key = \"{NODE_PRIVATE}\""),
        "private_key_file = \"private.key\"",
    );
    let path = dir.write("node.toml", &text, 0o644);
    let err = Config::load(&path).unwrap_err();
    assert_eq!(
        (err.line, err.key.as_str()),
        (Some(7), "community.passphrase")
    );
}

#[test]
fn a_community_needs_derived_addresses_signaling_and_one_passphrase() {
    let no_derive = format!(
        "[interface]\nprivate_key = \"{NODE_PRIVATE}\"\n[signaling]\nbackends = [\"inprocess\"]\n[community]\npassphrase = \"x\"\n"
    );
    assert_error(&no_derive, Some(5), "community", "derive_addresses");
    let no_signaling = format!(
        "[interface]\nprivate_key = \"{NODE_PRIVATE}\"\nderive_addresses = [\"10.77.0.0/16\"]\n[community]\npassphrase = \"x\"\n"
    );
    assert_error(&no_signaling, Some(4), "community", "[signaling]");
    assert_error(
        &community_config(""),
        Some(6),
        "community.passphrase",
        "missing",
    );
    assert_error(
        &community_config("passphrase = \"x\"\nexpire_after = 5\nannounce_interval = 3\n"),
        Some(8),
        "community.expire_after",
        "at least twice",
    );
    assert_error(
        &community_config("passphrase = \"x\"\nallow = [\"no!\"]\n"),
        Some(8),
        "community.allow[0]",
        "base64",
    );
    assert_error(
        &community_config("passphrase = \"x\"\nname = \"not a label\"\n"),
        Some(8),
        "community.name",
        "DNS label",
    );
}

#[test]
fn a_derive_prefix_without_room_for_a_host_is_refused() {
    assert_error(
        &with_interface("derive_addresses = [\"10.0.0.0/8\", \"192.0.2.0/31\"]\n"),
        Some(3),
        "interface.derive_addresses[1]",
        "too small",
    );
}
