use super::*;

// ---- errors: keys ----

#[test]
fn a_private_key_that_is_not_base64_is_refused() {
    let text = "[interface]\nprivate_key = \"not base64!\"\n";
    assert_error(text, Some(2), "interface.private_key", "not valid base64");
}

#[test]
fn a_peer_public_key_that_is_not_base64_is_refused() {
    let text = format!(
        "{}[[peer]]\npublic_key = \"{BOB}\"\n[[peer]]\npublic_key = \"%%%%\"\n",
        with_interface("")
    );
    let err = assert_error(&text, Some(6), "peer[1].public_key", "not valid base64");
    assert_eq!(
        err.to_string(),
        "node.toml:6: peer[1].public_key: not valid base64"
    );
}

#[test]
fn a_key_of_the_wrong_length_is_refused_with_its_length() {
    let text = format!("{}[[peer]]\npublic_key = \"AAAA\"\n", with_interface(""));
    assert_error(
        &text,
        Some(4),
        "peer[0].public_key",
        "decodes to 3 bytes; a WireGuard key is 32 bytes",
    );
}

#[test]
fn a_bad_preshared_key_is_refused() {
    let text = format!(
        "{}[[peer]]\npublic_key = \"{BOB}\"\npreshared_key = \"AAAA\"\n",
        with_interface("")
    );
    assert_error(
        &text,
        Some(5),
        "peer[0].preshared_key",
        "decodes to 3 bytes",
    );
}

#[test]
fn a_peer_without_a_public_key_is_refused_at_its_header() {
    let text = format!(
        "{}\n[[peer]]\nallowed_ips = [\"10.77.0.2/32\"]\n",
        with_interface("")
    );
    assert_error(&text, Some(4), "peer[0].public_key", "missing");
}

#[test]
fn giving_both_private_key_and_private_key_file_is_refused() {
    let text = with_interface("private_key_file = \"/etc/wice/private.key\"\n");
    assert_error(
        &text,
        Some(3),
        "interface.private_key_file",
        "given together with interface.private_key (line 2); give only one",
    );
}

#[test]
fn giving_neither_private_key_nor_private_key_file_is_refused() {
    let text = "# node\n[interface]\nname = \"wice0\"\n";
    assert_error(
        text,
        Some(2),
        "interface.private_key",
        "missing; give private_key or private_key_file",
    );
}

#[test]
fn the_same_peer_listed_twice_is_refused() {
    let text = format!(
        "{}[[peer]]\npublic_key = \"{BOB}\"\n[[peer]]\npublic_key = \"{BOB}\"\n",
        with_interface("")
    );
    assert_error(
        &text,
        Some(6),
        "peer[1].public_key",
        "same public key as peer[0] (line 4)",
    );
}

#[test]
fn the_nodes_own_public_key_as_a_peer_is_refused() {
    let text = format!(
        "{}[[peer]]\npublic_key = \"{NODE_PUBLIC}\"\n",
        with_interface("")
    );
    assert_error(&text, Some(4), "peer[0].public_key", "own public key");
}

// ---- errors: private key file ----

#[test]
fn a_private_key_file_with_mode_0600_is_read_and_trimmed() {
    let dir = TempDir::new("key-ok");
    let key = dir.write("private.key", &format!("{NODE_PRIVATE}\n"), 0o600);
    let text = format!("[interface]\nprivate_key_file = \"{}\"\n", key.display());
    let config = parse_ok(&text);
    assert_eq!(
        config.interface.private_key.public_key().to_base64(),
        NODE_PUBLIC
    );
}

#[test]
fn a_relative_private_key_file_is_found_beside_the_config_file() {
    let dir = TempDir::new("key-relative");
    dir.write("private.key", NODE_PRIVATE, 0o400);
    let config_path = dir.write(
        "node.toml",
        "[interface]\nprivate_key_file = \"private.key\"\ncontrol_socket = \"run/wice.sock\"\n",
        0o644,
    );
    let config = Config::load(&config_path).unwrap();
    assert_eq!(config.path, config_path);
    assert_eq!(
        config.interface.private_key.public_key().to_base64(),
        NODE_PUBLIC
    );
    assert_eq!(config.interface.control_socket, dir.0.join("run/wice.sock"));
}

#[test]
fn a_missing_private_key_file_is_refused() {
    let dir = TempDir::new("key-missing");
    let key = dir.0.join("absent.key");
    let text = format!("[interface]\nprivate_key_file = \"{}\"\n", key.display());
    let err = assert_error(
        &text,
        Some(2),
        "interface.private_key_file",
        &format!("cannot read {}", key.display()),
    );
    assert!(
        matches!(&err.reason, ConfigErrorKind::KeyFileUnreadable { error, .. } if error.kind() == io::ErrorKind::NotFound),
        "{err:?}"
    );
}

#[test]
fn a_directory_as_private_key_file_is_refused() {
    let dir = TempDir::new("key-dir");
    let text = format!("[interface]\nprivate_key_file = \"{}\"\n", dir.0.display());
    assert_error(
        &text,
        Some(2),
        "interface.private_key_file",
        "not a regular file",
    );
}

#[test]
fn a_private_key_file_readable_by_others_is_refused_with_the_fix() {
    let dir = TempDir::new("key-open");
    let key = dir.write("private.key", NODE_PRIVATE, 0o644);
    let text = format!("[interface]\nprivate_key_file = \"{}\"\n", key.display());
    let err = assert_error(
        &text,
        Some(2),
        "interface.private_key_file",
        &format!(
            "{} is readable by group or others (mode 0644); run: chmod 600 {}",
            key.display(),
            key.display()
        ),
    );
    assert!(matches!(
        err.reason,
        ConfigErrorKind::KeyFileTooOpen { mode: 0o644, .. }
    ));
}

#[test]
fn a_private_key_file_writable_by_group_is_refused() {
    let dir = TempDir::new("key-group-write");
    let key = dir.write("private.key", NODE_PRIVATE, 0o620);
    let text = format!("[interface]\nprivate_key_file = \"{}\"\n", key.display());
    assert_error(
        &text,
        Some(2),
        "interface.private_key_file",
        "is accessible by group or others (mode 0620); run: chmod 600",
    );
}

#[test]
fn a_private_key_file_without_a_key_is_refused() {
    let dir = TempDir::new("key-garbage");
    let key = dir.write("private.key", "hello\n", 0o600);
    let text = format!("[interface]\nprivate_key_file = \"{}\"\n", key.display());
    assert_error(
        &text,
        Some(2),
        "interface.private_key_file",
        &format!("{}: not valid base64", key.display()),
    );
}

#[test]
fn an_empty_private_key_file_path_is_refused() {
    assert_error(
        "[interface]\nprivate_key_file = \"\"\n",
        Some(2),
        "interface.private_key_file",
        "must not be empty",
    );
}
