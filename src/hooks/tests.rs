use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use super::static_peers::StaticPeerWatch;
use super::*;
use wice_datapath::{Endpoint, PeerStats};

fn key(byte: u8) -> PublicKey {
    PublicKey::from_bytes([byte; 32])
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
    path
}

fn hook(run: PathBuf, timeout: Duration) -> HookConfig {
    HookConfig {
        run,
        events: EventKind::ALL.to_vec(),
        timeout,
    }
}

/// Waits (real time) until `done` holds, up to 10 s.
async fn eventually(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "condition not reached in 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn the_json_line_has_every_documented_field() {
    let mut event = HookEvent::new(EventKind::PathChanged, "wg0", &key(1));
    event.time_ms = 1_700_000_000_000;
    event.endpoint = Some("192.0.2.1:51820".to_owned());
    event.path = Some("relay".to_owned());
    assert_eq!(
        event.to_json_line(),
        format!(
            "{{\"version\":1,\"event\":\"path_changed\",\"interface\":\"wg0\",\"peer\":\"{}\",\
             \"time_ms\":1700000000000,\"endpoint\":\"192.0.2.1:51820\",\"path\":\"relay\",\
             \"allowed_ips\":null}}\n",
            key(1).to_base64()
        )
    );
    assert_eq!(
        event.args(),
        vec![
            "path_changed".to_owned(),
            key(1).to_base64(),
            "wg0".to_owned(),
            "192.0.2.1:51820".to_owned()
        ]
    );
}

#[test]
fn event_names_round_trip() {
    for kind in EventKind::ALL {
        assert_eq!(EventKind::from_name(kind.as_str()), Some(kind));
    }
    assert_eq!(EventKind::from_name("exploded"), None);
}

#[tokio::test]
async fn a_hook_gets_the_event_on_stdin_and_in_arguments_once_per_event_in_order() {
    let dir = wice_lab::netns::TempDir::new();
    let out = dir.path("out");
    let run = script(
        &dir.0,
        "hook",
        &format!("{{ echo \"$1 $2 $3 $4\"; cat; }} >> {}", out.display()),
    );
    let (hooks, runner) = Hooks::start("wg0", vec![hook(run, Duration::from_secs(5))]);
    let mut connected = hooks.event(EventKind::Connected, &key(2));
    connected.endpoint = Some("10.0.0.2:51820".to_owned());
    hooks.fire(hooks.event(EventKind::Added, &key(2)));
    hooks.fire(connected.clone());
    drop(hooks);
    runner.finish(Duration::from_secs(10)).await;

    let text = fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[0], format!("added {} wg0 ", key(2).to_base64()));
    let added: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(added["event"], "added");
    assert_eq!(added["peer"], key(2).to_base64());
    assert_eq!(
        lines[2],
        format!("connected {} wg0 10.0.0.2:51820", key(2).to_base64())
    );
    assert_eq!(format!("{}\n", lines[3]), connected.to_json_line());
}

#[tokio::test]
async fn a_hook_only_runs_for_the_events_it_lists() {
    let dir = wice_lab::netns::TempDir::new();
    let out = dir.path("out");
    let run = script(&dir.0, "hook", &format!("echo \"$1\" >> {}", out.display()));
    let config = HookConfig {
        events: vec![EventKind::Removed],
        ..hook(run, Duration::from_secs(5))
    };
    let (hooks, runner) = Hooks::start("wg0", vec![config]);
    hooks.fire(hooks.event(EventKind::Added, &key(2)));
    hooks.fire(hooks.event(EventKind::Removed, &key(2)));
    drop(hooks);
    runner.finish(Duration::from_secs(10)).await;
    assert_eq!(fs::read_to_string(&out).unwrap(), "removed\n");
}

#[tokio::test]
async fn a_hook_past_its_timeout_is_killed_with_what_it_started_and_counted() {
    let dir = wice_lab::netns::TempDir::new();
    let pid_file = dir.path("background.pid");
    // A background child in the hook's process group, then a long sleep.
    let run = script(
        &dir.0,
        "slow",
        &format!("sleep 300 & echo $! > {}; sleep 300", pid_file.display()),
    );
    let (hooks, runner) = Hooks::start("wg0", vec![hook(run, Duration::from_millis(300))]);
    let started = Instant::now();
    hooks.fire(hooks.event(EventKind::Added, &key(2)));
    let counters = hooks.counters();
    eventually(|| counters.timed_out.load(Ordering::Relaxed) == 1).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let background: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    eventually(|| {
        !Path::new(&format!("/proc/{background}")).exists()
            || fs::read_to_string(format!("/proc/{background}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    })
    .await;
    drop(hooks);
    runner.finish(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_waiting() {
    let dir = wice_lab::netns::TempDir::new();
    let run = script(&dir.0, "slow", "sleep 300");
    let (hooks, runner) = Hooks::start("wg0", vec![hook(run, Duration::from_secs(60))]);
    let started = Instant::now();
    for _ in 0..QUEUE_LEN + 10 {
        hooks.fire(hooks.event(EventKind::Added, &key(2)));
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "fire never waits"
    );
    // One event is being run, QUEUE_LEN wait: the rest were dropped.
    let dropped = hooks.counters().dropped.load(Ordering::Relaxed);
    assert!((9..=10).contains(&dropped), "dropped {dropped}");
    drop(hooks);
    // The runner is stopped at the limit, killing the run in progress.
    let finishing = Instant::now();
    runner.finish(Duration::from_millis(200)).await;
    assert!(finishing.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_failing_or_missing_hook_is_counted_and_the_next_one_still_runs() {
    let dir = wice_lab::netns::TempDir::new();
    let out = dir.path("out");
    let failing = script(&dir.0, "fail", "exit 3");
    let ok = script(&dir.0, "ok", &format!("echo ran >> {}", out.display()));
    let hooks_config = vec![
        hook(failing, Duration::from_secs(5)),
        hook(dir.path("missing"), Duration::from_secs(5)),
        hook(ok, Duration::from_secs(5)),
    ];
    let (hooks, runner) = Hooks::start("wg0", hooks_config);
    hooks.fire(hooks.event(EventKind::Connected, &key(2)));
    let counters = hooks.counters();
    drop(hooks);
    let finishing = Instant::now();
    runner.finish(Duration::from_secs(10)).await;
    assert!(
        finishing.elapsed() < Duration::from_secs(5),
        "the runner ends with the queue"
    );
    assert_eq!(counters.failed.load(Ordering::Relaxed), 2);
    assert_eq!(counters.succeeded.load(Ordering::Relaxed), 1);
    assert_eq!(fs::read_to_string(&out).unwrap(), "ran\n");
}

#[test]
fn connectivity_reports_edges_only() {
    let mut tracker = Connectivity::default();
    assert_eq!(
        tracker.observe(key(1), false),
        None,
        "never connected: silent"
    );
    assert_eq!(tracker.observe(key(1), true), Some(EventKind::Connected));
    assert_eq!(tracker.observe(key(1), true), None);
    assert_eq!(
        tracker.observe(key(1), false),
        Some(EventKind::Disconnected)
    );
    assert_eq!(tracker.observe(key(1), false), None);
    tracker.observe(key(1), true);
    tracker.forget(&key(1));
    assert_eq!(tracker.observe(key(1), true), Some(EventKind::Connected));
}

fn stats(byte: u8, handshake: Option<u64>, endpoint: &str) -> PeerStats {
    PeerStats {
        public_key: [byte; 32],
        endpoint: Some(Endpoint::Direct(endpoint.parse().unwrap())),
        allowed_ips: Vec::new(),
        last_handshake: handshake.map(Duration::from_secs),
        tx_bytes: 0,
        rx_bytes: 0,
        tx_packets: 0,
        rx_packets: 0,
        handshake_rtt_ms: None,
        dropped_source_not_allowed: 0,
    }
}

#[tokio::test]
async fn a_static_peer_connects_on_a_handshake_moves_on_a_new_endpoint_and_expires() {
    let dir = wice_lab::netns::TempDir::new();
    let out = dir.path("out");
    let run = script(
        &dir.0,
        "hook",
        &format!("echo \"$1 $4\" >> {}", out.display()),
    );
    let (hooks, runner) = Hooks::start("wg0", vec![hook(run, Duration::from_secs(5))]);
    let mut watch = StaticPeerWatch::default();
    watch.handle_stats(&[stats(1, None, "10.0.0.2:1")], &hooks);
    watch.handle_stats(&[stats(1, Some(2), "10.0.0.2:1")], &hooks);
    watch.handle_stats(&[stats(1, Some(3), "10.0.0.2:1")], &hooks);
    watch.handle_stats(&[stats(1, Some(4), "10.0.0.3:1")], &hooks);
    watch.handle_stats(&[stats(1, Some(181), "10.0.0.3:1")], &hooks);
    drop(hooks);
    runner.finish(Duration::from_secs(10)).await;
    assert_eq!(
        fs::read_to_string(&out).unwrap(),
        "connected 10.0.0.2:1\npath_changed 10.0.0.3:1\ndisconnected \n"
    );
}
