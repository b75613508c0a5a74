use super::*;

fn entry(name: &str, addresses: &[&str]) -> HostEntry {
    HostEntry {
        name: name.to_owned(),
        addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
    }
}

const SYSTEM_LINES: &str = "127.0.0.1\tlocalhost\n::1 localhost ip6-localhost\n\
                            # a comment the admin wrote\n192.168.1.5 printer  # office\n";

fn temp_hosts(text: &str) -> (wice_lab::netns::TempDir, PathBuf) {
    let dir = wice_lab::netns::TempDir::new();
    let path = dir.path("hosts");
    fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn a_block_names_each_peer_and_its_domain_alias_for_every_tunnel_address() {
    let (block, omitted) = render_block(
        "wg0",
        Some("mesh"),
        &[
            entry("bob", &["10.77.0.3"]),
            entry("Alice", &["10.77.0.2", "fd77::2"]),
        ],
        &HashSet::new(),
    );
    assert_eq!(
        block,
        "# BEGIN wice wg0\n10.77.0.2 alice alice.mesh\nfd77::2 alice alice.mesh\n\
         10.77.0.3 bob bob.mesh\n# END wice wg0\n"
    );
    assert!(omitted.is_empty());
}

#[test]
fn hostile_names_are_left_out_and_counted_never_written() {
    let outside = names_outside_blocks(SYSTEM_LINES);
    let long = "a".repeat(64);
    let (block, omitted) = render_block(
        "wg0",
        None,
        &[
            entry("evil\n10.0.0.1 bank", &["10.77.0.9"]),
            entry("x#y", &["10.77.0.9"]),
            entry("-dash", &["10.77.0.9"]),
            entry("1234", &["10.77.0.9"]),
            entry(&long, &["10.77.0.9"]),
            entry("", &["10.77.0.9"]),
            entry("localhost", &["10.77.0.9"]),
            entry("PRINTER", &["10.77.0.9"]),
            entry("twin", &["10.77.0.7"]),
            entry("twin", &["10.77.0.8"]),
            entry("ok", &["10.77.0.2"]),
        ],
        &outside,
    );
    assert_eq!(block, "# BEGIN wice wg0\n10.77.0.2 ok\n# END wice wg0\n");
    assert_eq!(
        omitted,
        Omitted {
            invalid: 6,
            duplicate: 2,
            taken: 2,
            over_limit: 0,
            addresses_over_limit: 0,
        }
    );
}

#[test]
fn names_and_addresses_are_capped() {
    let many: Vec<HostEntry> = (0..MAX_NAMES + 5)
        .map(|i| entry(&format!("n{i}"), &["10.77.0.2"]))
        .collect();
    let (block, omitted) = render_block("wg0", None, &many, &HashSet::new());
    assert_eq!(block.lines().count(), MAX_NAMES + 2);
    assert_eq!(omitted.over_limit, 5);

    let addresses: Vec<String> = (0..20).map(|i| format!("10.77.1.{i}")).collect();
    let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let (block, omitted) = render_block("wg0", None, &[entry("a", &addresses)], &HashSet::new());
    assert_eq!(block.lines().count(), MAX_ADDRESSES_PER_NAME + 2);
    assert_eq!(omitted.addresses_over_limit, 20 - MAX_ADDRESSES_PER_NAME);
}

#[test]
fn a_name_too_long_with_its_domain_is_refused() {
    let label = "a".repeat(63);
    let domain = format!("{label}.{label}.{label}");
    validate_domain(&domain).unwrap();
    let (block, omitted) = render_block(
        "wg0",
        Some(&domain),
        &[entry(&label, &["10.77.0.2"])],
        &HashSet::new(),
    );
    assert!(block.is_empty());
    assert_eq!(omitted.invalid, 1);
}

#[test]
fn domains_are_checked_label_by_label() {
    validate_domain("mesh").unwrap();
    validate_domain("vpn.example.com").unwrap();
    assert_eq!(validate_domain("a..b"), Err(NameError::Empty));
    assert_eq!(validate_domain("mesh."), Err(NameError::Empty));
    assert_eq!(validate_domain("a_b"), Err(NameError::BadCharacter('_')));
}

#[test]
fn tunnel_addresses_are_the_host_routes_among_allowed_ips() {
    let nets: Vec<IpNet> = [
        "10.77.0.2/32",
        "10.99.0.0/24",
        "fd77::2/128",
        "10.77.0.2/32",
    ]
    .iter()
    .map(|n| n.parse().unwrap())
    .collect();
    let expected: Vec<IpAddr> = vec!["10.77.0.2".parse().unwrap(), "fd77::2".parse().unwrap()];
    assert_eq!(tunnel_addresses(&nets), expected);
}

#[test]
fn replacing_the_block_keeps_every_other_line_and_its_position() {
    let other = "# BEGIN wice wg1\n10.88.0.2 carol\n# END wice wg1\n";
    let old = format!("{SYSTEM_LINES}# BEGIN wice wg0\n10.77.0.2 old\n# END wice wg0\n{other}");
    let new_block = "# BEGIN wice wg0\n10.77.0.3 new\n# END wice wg0\n";
    let replaced = replace_block(&old, "wg0", new_block);
    assert_eq!(replaced, format!("{SYSTEM_LINES}{new_block}{other}"));
    assert_eq!(
        replace_block(&replaced, "wg0", ""),
        format!("{SYSTEM_LINES}{other}")
    );
}

#[test]
fn a_first_block_is_appended_after_a_last_line_without_newline() {
    let replaced = replace_block(
        "127.0.0.1 localhost",
        "wg0",
        "# BEGIN wice wg0\n# END wice wg0\n",
    );
    assert_eq!(
        replaced,
        "127.0.0.1 localhost\n# BEGIN wice wg0\n# END wice wg0\n"
    );
}

#[test]
fn an_unterminated_begin_marker_is_dropped_alone() {
    let text = "# BEGIN wice wg0\n192.168.1.5 printer\n";
    assert_eq!(replace_block(text, "wg0", ""), "192.168.1.5 printer\n");
}

#[test]
fn a_block_of_an_interface_with_a_longer_name_is_not_ours() {
    let text = "# BEGIN wice wg01\n10.1.1.1 x\n# END wice wg01\n";
    assert_eq!(replace_block(text, "wg0", ""), text);
}

#[test]
fn writing_then_removing_leaves_the_file_as_it_was_with_its_mode() {
    let (_dir, path) = temp_hosts(SYSTEM_LINES);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let hosts = HostsFile::new(&path, "wg0", Some("mesh"));
    let (method, omitted) = hosts.write(&[entry("alice", &["10.77.0.2"])]).unwrap();
    assert_eq!(method, WriteMethod::Renamed);
    assert!(omitted.is_empty());
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        format!("{SYSTEM_LINES}# BEGIN wice wg0\n10.77.0.2 alice alice.mesh\n# END wice wg0\n")
    );
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o644);
    let (again, _) = hosts.write(&[entry("alice", &["10.77.0.2"])]).unwrap();
    assert_eq!(again, WriteMethod::Unchanged, "same names: no write");

    assert_eq!(hosts.remove().unwrap(), WriteMethod::Renamed);
    assert_eq!(fs::read_to_string(&path).unwrap(), SYSTEM_LINES);
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o644);
    let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        vec![std::ffi::OsString::from("hosts")],
        "no staging file left"
    );
}

#[test]
fn a_crashed_runs_block_is_removed_on_the_next_start_and_other_interfaces_blocks_stay() {
    let crashed = format!(
        "{SYSTEM_LINES}# BEGIN wice wg0\n10.77.0.2 stale\n# END wice wg0\n\
         # BEGIN wice wg1\n10.88.0.2 carol\n# END wice wg1\n"
    );
    let (_dir, path) = temp_hosts(&crashed);
    HostsFile::new(&path, "wg0", None).remove().unwrap();
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        format!("{SYSTEM_LINES}# BEGIN wice wg1\n10.88.0.2 carol\n# END wice wg1\n")
    );
}

#[test]
fn a_symlinked_hosts_file_stays_a_symlink() {
    let (dir, path) = temp_hosts(SYSTEM_LINES);
    let link = dir.path("link");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    HostsFile::new(&link, "wg0", None)
        .write(&[entry("alice", &["10.77.0.2"])])
        .unwrap();
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        fs::read_to_string(&path)
            .unwrap()
            .contains("10.77.0.2 alice\n")
    );
}

#[test]
fn removing_from_a_missing_file_is_not_an_error() {
    let dir = wice_lab::netns::TempDir::new();
    let hosts = HostsFile::new(dir.path("none"), "wg0", None);
    assert_eq!(hosts.remove().unwrap(), WriteMethod::Unchanged);
}

#[test]
fn no_names_means_no_block() {
    let (_dir, path) = temp_hosts(SYSTEM_LINES);
    let hosts = HostsFile::new(&path, "wg0", None);
    assert_eq!(hosts.write(&[]).unwrap().0, WriteMethod::Unchanged);
    assert_eq!(fs::read_to_string(&path).unwrap(), SYSTEM_LINES);
}
