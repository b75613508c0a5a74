//! Start, stop, crash and restart: what the host looks like afterwards.

use std::process::Stdio;
use std::time::Duration;

use crate::harness::*;

fn lone_node_config(name: &str, dir: &TempDir, label: &str) -> String {
    let peer = Keys::generate();
    node_config(
        name,
        &Keys::generate(),
        0,
        &["10.77.0.1/24"],
        &dir.path(&format!("{label}.sock")),
        &[PeerSpec {
            public_key: &peer.public,
            allowed_ips: &["10.77.0.2/32", "10.99.0.0/24"],
            endpoint: None,
        }],
    )
}

fn route_exists(ns: &Netns, route: &str) -> bool {
    !ns.exec("ip", &["route", "show", route]).stdout.is_empty()
}

#[test]
fn sigterm_and_sigint_remove_the_interface_routes_and_files_and_exit_zero() {
    if !root_or_skip("sigterm_and_sigint_remove_the_interface_routes_and_files_and_exit_zero") {
        return;
    }
    let mut ns = Netns::new();
    let dir = TempDir::new();
    let name = format!("wl{}", unique());
    let config = lone_node_config(&name, &dir, "n");
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let node = WiceNode::start(&mut ns, &dir, "n", &config);
        assert!(link_exists(&ns, &name));
        assert!(
            route_exists(&ns, "10.99.0.0/24"),
            "a route for the allowed IP outside the interface prefix"
        );
        assert!(
            !route_exists(&ns, "10.77.0.2/32"),
            "no route for an allowed IP inside the interface prefix"
        );
        node.signal(signal);
        assert_eq!(
            node.wait_exit(&mut ns, Duration::from_secs(10)),
            Some(0),
            "exit 0 on signal {signal}"
        );
        assert!(!link_exists(&ns, &name), "interface removed");
        assert!(!route_exists(&ns, "10.99.0.0/24"), "route removed");
        assert!(!node.socket.exists(), "control socket removed");
        assert!(
            !node.socket.with_extension("pid").exists(),
            "pid file removed"
        );
    }
}

#[test]
fn a_killed_daemon_leaves_nothing_that_blocks_the_next_start() {
    if !root_or_skip("a_killed_daemon_leaves_nothing_that_blocks_the_next_start") {
        return;
    }
    let mut ns = Netns::new();
    let dir = TempDir::new();
    let name = format!("wk{}", unique());
    let config = lone_node_config(&name, &dir, "n");
    let node = WiceNode::start(&mut ns, &dir, "n", &config);
    node.signal(libc::SIGKILL);
    node.wait_exit(&mut ns, Duration::from_secs(10));
    assert!(
        node.socket.exists(),
        "a crash leaves the socket file behind"
    );

    let again = WiceNode::start(&mut ns, &dir, "n", &config);
    assert_eq!(again.status()["interface"], name.as_str());
    again.signal(libc::SIGTERM);
    assert_eq!(again.wait_exit(&mut ns, Duration::from_secs(10)), Some(0));
}

#[test]
fn a_leftover_persistent_interface_of_a_dead_wice_is_cleaned_up() {
    if !root_or_skip("a_leftover_persistent_interface_of_a_dead_wice_is_cleaned_up") {
        return;
    }
    let mut ns = Netns::new();
    let dir = TempDir::new();
    let name = format!("wp{}", unique());
    let config = lone_node_config(&name, &dir, "n");
    // What a crash can leave: a TUN device that outlived us, and our pid file naming a dead
    // process and that device's interface index.
    ns.ip(&["tuntap", "add", "mode", "tun", "name", &name]);
    let ifindex = interface_index(&ns, &name);
    write_private(&dir.path("n.pid"), &dead_pid_record(ifindex)).expect("pid file");

    let node = WiceNode::start(&mut ns, &dir, "n", &config);
    assert!(
        node.log_text()
            .contains("removing the interface a crashed wice left behind"),
        "{}",
        node.log_text()
    );
    assert!(link_exists(&ns, &name));
    node.signal(libc::SIGTERM);
    assert_eq!(node.wait_exit(&mut ns, Duration::from_secs(10)), Some(0));
    assert!(!link_exists(&ns, &name));
}

#[test]
fn an_interface_name_owned_by_something_else_is_refused_and_left_alone() {
    if !root_or_skip("an_interface_name_owned_by_something_else_is_refused_and_left_alone") {
        return;
    }
    let ns = Netns::new();
    let dir = TempDir::new();
    let name = format!("wd{}", unique());
    let other_end = format!("{name}p");
    ns.ip(&[
        "link", "add", &name, "type", "veth", "peer", "name", &other_end,
    ]);
    let config_path = dir.path("n.toml");
    write_private(&config_path, &lone_node_config(&name, &dir, "n")).expect("config");
    let out = ns
        .command(WICE)
        .args(["up", "-c"])
        .arg(&config_path)
        .stdin(Stdio::null())
        .output()
        .expect("run wice");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!(
            "interface {name} already exists and is not a leftover of wice"
        )),
        "{stderr}"
    );
    assert!(
        link_exists(&ns, &name),
        "the other owner's interface is untouched"
    );
    assert!(!dir.path("n.pid").exists(), "nothing claimed");
}

#[test]
fn a_second_daemon_for_the_same_interface_is_refused() {
    if !root_or_skip("a_second_daemon_for_the_same_interface_is_refused") {
        return;
    }
    let mut ns = Netns::new();
    let dir = TempDir::new();
    let name = format!("ws{}", unique());
    let config = lone_node_config(&name, &dir, "n");
    let node = WiceNode::start(&mut ns, &dir, "n", &config);
    let out = ns
        .command(WICE)
        .args(["up", "-c"])
        .arg(dir.path("n.toml"))
        .output()
        .expect("run wice");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("already run by wice (pid {})", node.pid)),
        "{stderr}"
    );
    assert_eq!(
        node.status()["interface"],
        name.as_str(),
        "the first daemon keeps running"
    );
}
