use super::*;
use crate::hooks::{EventKind, HookConfig};
use std::time::Duration;

fn peer_with_name(n: u8, name: &str) -> String {
    format!(
        "\n[[peer]]\npublic_key = \"{}\"\nallowed_ips = [\"10.77.0.{n}/32\"]\nname = \"{name}\"\n",
        peer_key(n)
    )
}

#[test]
fn the_hosts_file_is_off_unless_asked_and_defaults_to_etc_hosts() {
    assert_eq!(parse_ok(&with_interface("")).hosts, None);
    let config = parse_ok(&format!(
        "{}{}",
        with_interface("hosts_file = true\ndomain = \"Mesh.example\"\n"),
        peer_with_name(2, "Alice")
    ));
    let hosts = config.hosts.unwrap();
    assert_eq!(hosts.path, Path::new("/etc/hosts"));
    assert_eq!(hosts.domain.as_deref(), Some("mesh.example"));
    assert_eq!(config.peers[0].name.as_deref(), Some("alice"));
}

#[test]
fn a_relative_hosts_file_path_is_taken_from_the_config_directory() {
    let config = Config::parse(
        Path::new("/etc/wice/node.toml"),
        &with_interface("hosts_file = true\nhosts_file_path = \"hosts\"\n"),
    )
    .unwrap();
    assert_eq!(config.hosts.unwrap().path, Path::new("/etc/wice/hosts"));
}

#[test]
fn hosts_settings_without_hosts_file_are_refused() {
    assert_error(
        &with_interface("domain = \"mesh\"\n"),
        Some(3),
        "interface.domain",
        "hosts_file is not true",
    );
}

#[test]
fn bad_names_and_domains_are_refused_where_they_are() {
    assert_error(
        &format!("{}{}", with_interface(""), peer_with_name(2, "bad name")),
        Some(7),
        "peer[0].name",
        "is not a valid name: character ' ' is not allowed",
    );
    assert_error(
        &with_interface("hosts_file = true\ndomain = \"a..b\"\n"),
        Some(4),
        "interface.domain",
        "empty label",
    );
    assert_error(
        &format!(
            "{}{}{}",
            with_interface(""),
            peer_with_name(2, "alice"),
            peer_with_name(3, "ALICE")
        ),
        Some(12),
        "peer[1].name",
        "already the name of peer[0] (line 7)",
    );
}

#[test]
fn hooks_parse_with_defaults_and_listed_events() {
    let config = parse_ok(&format!(
        "{}\n[[hook]]\nrun = \"/usr/local/bin/a\"\n\n[[hook]]\nrun = \"/b\"\n\
         events = [\"connected\", \"path_changed\"]\ntimeout = \"500ms\"\n",
        with_interface("")
    ));
    assert_eq!(
        config.hooks,
        vec![
            HookConfig {
                run: "/usr/local/bin/a".into(),
                events: EventKind::ALL.to_vec(),
                timeout: Duration::from_secs(10),
            },
            HookConfig {
                run: "/b".into(),
                events: vec![EventKind::Connected, EventKind::PathChanged],
                timeout: Duration::from_millis(500),
            },
        ]
    );
}

#[test]
fn bad_hooks_are_refused_where_they_are() {
    let hook = |body: &str| format!("{}\n[[hook]]\n{body}", with_interface(""));
    assert_error(
        &hook("run = \"on-peer\"\n"),
        Some(5),
        "hook[0].run",
        "not an absolute path",
    );
    assert_error(&hook("events = []\n"), Some(4), "hook[0].run", "missing");
    assert_error(
        &hook("run = \"/a\"\nevents = [\"added\", \"exploded\"]\n"),
        Some(6),
        "hook[0].events[1]",
        "`exploded` is not an event",
    );
    assert_error(
        &hook("run = \"/a\"\nevents = []\n"),
        Some(6),
        "hook[0].events",
        "lists no events",
    );
    for timeout in ["10", "0s", "2h", "1.5s", "-1s", "99999999999999999999s"] {
        assert_error(
            &hook(&format!("run = \"/a\"\ntimeout = \"{timeout}\"\n")),
            Some(6),
            "hook[0].timeout",
            "is not a timeout",
        );
    }
    let many: String = (0..=MAX_HOOKS)
        .map(|_| "\n[[hook]]\nrun = \"/a\"\n")
        .collect();
    let err = parse(&format!("{}{many}", with_interface(""))).unwrap_err();
    assert_eq!(err.key, format!("hook[{MAX_HOOKS}]"));
}

#[test]
fn timeouts_read_in_milliseconds_seconds_and_minutes() {
    assert_eq!(parse_timeout("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_timeout("10s"), Some(Duration::from_secs(10)));
    assert_eq!(parse_timeout("2m"), Some(Duration::from_secs(120)));
    assert_eq!(parse_timeout("61m"), None);
    assert_eq!(parse_timeout("s"), None);
}
