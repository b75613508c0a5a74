use super::*;

// ---- loading ----

#[test]
fn loading_a_missing_file_gives_an_error_without_line_or_key() {
    let dir = TempDir::new("missing-config");
    let path = dir.0.join("absent.toml");
    let err = Config::load(&path).unwrap_err();
    assert_eq!((err.line, err.key.as_str()), (None, ""));
    assert!(matches!(err.reason, ConfigErrorKind::FileUnreadable(_)));
    assert!(
        err.to_string()
            .starts_with(&format!("{}: cannot read the file: ", path.display())),
        "{err}"
    );
}

// ---- files that hold secrets, offline parsing, Debug ----

#[test]
fn a_config_with_an_inline_private_key_readable_by_others_is_refused_with_the_fix() {
    let dir = TempDir::new("open-secret");
    let path = dir.write("node.toml", &with_interface(""), 0o644);
    let err = Config::load(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{p}:2: interface.private_key: is a secret, and {p} is readable by group or others (mode 0644); run: chmod 600 {p} (or move the secret to a file of its own, like private_key_file)",
            p = path.display()
        )
    );
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    Config::load(&path).expect("the same file at 0600 loads");
}

#[test]
fn a_preshared_key_or_turn_credential_in_an_open_file_is_refused_by_its_key() {
    let dir = TempDir::new("open-psk");
    dir.write("private.key", NODE_PRIVATE, 0o600);
    let psk = format!(
        "[interface]\nprivate_key_file = \"private.key\"\n\n[[peer]]\npublic_key = \"{BOB}\"\npreshared_key = \"{PSK}\"\n"
    );
    let path = dir.write("psk.toml", &psk, 0o640);
    let err = Config::load(&path).unwrap_err();
    assert_eq!(
        (err.line, err.key.as_str()),
        (Some(6), "peer[0].preshared_key")
    );
    assert!(matches!(
        err.reason,
        ConfigErrorKind::SecretsInOpenFile { mode: 0o640, .. }
    ));

    let turn = "[interface]\nprivate_key_file = \"private.key\"\n\n[signaling]\nbackends = [\"grpc://127.0.0.1:8443\"]\n\n[[ice.servers]]\nurls = [\"turn:127.0.0.1:3478\"]\nusername = \"lab\"\ncredential = \"labpass\"\n";
    let path = dir.write("turn.toml", turn, 0o604);
    let err = Config::load(&path).unwrap_err();
    assert_eq!(err.key, "ice.servers[0].credential");
    assert!(err.to_string().contains("run: chmod 600"), "{err}");
}

#[test]
fn a_config_without_inline_secrets_may_be_world_readable() {
    let dir = TempDir::new("open-nosecret");
    dir.write("private.key", NODE_PRIVATE, 0o600);
    let path = dir.write(
        "node.toml",
        "[interface]\nprivate_key_file = \"private.key\"\n",
        0o644,
    );
    Config::load(&path).expect("no secret inside, so 0644 is fine");
}

#[test]
fn a_config_path_that_is_not_a_regular_file_is_refused_without_reading_it() {
    for path in ["/dev/zero", "/proc/self"] {
        let err = Config::load(Path::new(path)).unwrap_err();
        assert!(
            err.to_string().contains("not a regular file")
                || err.to_string().contains("Is a directory"),
            "{err}"
        );
    }
}

#[test]
fn an_offline_parse_resolves_no_names_and_reads_no_files() {
    let text = format!(
        "[interface]\nprivate_key = \"{NODE_PRIVATE}\"\n\n[[peer]]\npublic_key = \"{BOB}\"\nendpoint = \"localhost:51820\"\n"
    );
    assert!(
        Config::parse(Path::new("node.toml"), &text).is_ok(),
        "online it resolves"
    );
    let err = Config::parse_offline(Path::new("node.toml"), &text).unwrap_err();
    assert_eq!(err.key, "peer[0].endpoint");
    assert!(err.to_string().contains("parsing offline"), "{err}");

    let dir = TempDir::new("offline");
    dir.write("private.key", NODE_PRIVATE, 0o600);
    let err = Config::parse_offline(
        &dir.0.join("node.toml"),
        "[interface]\nprivate_key_file = \"private.key\"\n",
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("not read: parsing offline"),
        "{err}"
    );
}

#[test]
fn debug_of_a_config_shows_no_secret() {
    let text = format!(
        "[interface]\nprivate_key = \"{NODE_PRIVATE}\"\n\n[[peer]]\npublic_key = \"{BOB}\"\npreshared_key = \"{PSK}\"\n\n[signaling]\nbackends = [\"grpc://127.0.0.1:8443\"]\n\n[[ice.servers]]\nurls = [\"turn:127.0.0.1:3478\"]\nusername = \"lab\"\ncredential = \"s3cret-turn-pass\"\n"
    );
    let shown = format!("{:?}", parse_ok(&text));
    for secret in [NODE_PRIVATE, PSK, "s3cret-turn-pass"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(
        shown.contains("lab"),
        "the user name is not secret: {shown}"
    );
}

#[test]
fn loading_reads_the_file_and_reports_its_path_in_errors() {
    let dir = TempDir::new("load");
    let path = dir.write("node.toml", &with_interface("mtu = 1\n"), 0o644);
    let err = Config::load(&path).unwrap_err();
    assert_eq!(err.file, path);
    assert_eq!(
        err.to_string(),
        format!(
            "{}:3: interface.mtu: 1 is out of range; must be 576..=65535",
            path.display()
        )
    );
}

#[test]
fn line_numbers_are_one_based_and_count_newlines_before_the_value() {
    assert_eq!(line_of("a\nb\nc", 0), 1);
    assert_eq!(line_of("a\nb\nc", 2), 2);
    assert_eq!(line_of("a\nb\nc", 4), 3);
    assert_eq!(line_of("a\nb\nc", 99), 3);
}
