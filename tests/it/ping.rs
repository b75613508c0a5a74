//! `wice ping` and `wice status --watch` on a lab mesh: a public node, one behind an
//! endpoint-independent NAT and one behind a symmetric NAT, so one node has a direct peer and
//! a relayed one.

use std::time::{Duration, Instant};

use wice_lab::{Lab, LabOptions, NatKind, netns};

use crate::harness::*;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(45);

fn ping(lab: &Lab, from: usize, to: usize, json: bool) -> (std::process::Output, String) {
    let node = lab.node(from);
    // A prefix of the key, as a person would type it.
    let prefix = &lab.node(to).public_key[..8];
    let mut command = node.ns.command(WICE);
    command
        .args(["ping", prefix, "-c", "2", "--socket"])
        .arg(&node.socket);
    if json {
        command.arg("--json");
    }
    let out = command.output().expect("wice ping");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, text)
}

#[test]
fn wice_ping_names_the_path_that_answered_and_status_watch_redraws() {
    let test = "wice_ping_names_the_path_that_answered_and_status_watch_redraws";
    if !root_or_skip(test) {
        return;
    }
    if !netns::have("turnserver") || !netns::have("nft") || !netns::have("timeout") {
        return skip(
            test,
            "needs coturn's turnserver, nftables and coreutils' timeout",
        );
    }
    let mut lab = Lab::new(LabOptions::new(WICE)).expect("lab");
    lab.start_signal().expect("wice signal");
    lab.start_turn().expect("coturn");
    let mut nodes = Vec::new();
    for (label, kind) in [
        ("a", NatKind::Public),
        ("b", NatKind::EndpointIndependent),
        ("c", NatKind::Symmetric),
    ] {
        let site = lab.add_site(kind).expect("site");
        nodes.push(lab.add_node(site, label).expect("node"));
    }
    let (a, b, c) = (nodes[0], nodes[1], nodes[2]);
    let since = Instant::now();
    lab.start_nodes(&nodes).expect("daemons");
    lab.wait_connected(&[(a, b), (b, c)], since, CONNECT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs(25)));

    for (to, relayed) in [(a, false), (c, true)] {
        let (out, text) = ping(&lab, b, to, true);
        assert!(
            out.status.success(),
            "wice ping: {}{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_str(&text).expect("ping JSON");
        let status = lab.peer_status(b, to).expect("status");
        assert_eq!(report["peer"], status["public_key"], "{text}");
        assert_eq!(report["address"], lab.node(to).overlay.to_string());
        assert_eq!(report["path"], status["path"], "{text}");
        assert_eq!(
            report["remote_candidate"], status["remote_candidate"],
            "{text}"
        );
        assert_eq!(report["path"] == "relay", relayed, "{text}");
        assert_ne!(report["path"], "none", "{text}");
        assert!(
            report["received"].as_u64().is_some_and(|n| n >= 1),
            "{text}"
        );
        assert!(
            report["rtt_ms"][0].as_f64().is_some_and(|ms| ms > 0.0),
            "{text}"
        );
        // The relayed peer's status says why it is relayed; the direct one has no reason.
        let reason = status["reason"].as_str();
        if relayed {
            assert!(reason.is_some_and(|r| r.starts_with("relayed")), "{status}");
        } else {
            assert_eq!(reason, None, "{status}");
        }
        let (_, text) = ping(&lab, b, to, false);
        eprintln!("$ wice ping {}\n{text}", &lab.node(to).public_key[..8]);
    }

    // Watch for 2.6 s at 0.5 s, then Ctrl-C (SIGINT): a clean exit after several frames.
    let node = lab.node(b);
    let out = node
        .ns
        .command("timeout")
        .args(["--preserve-status", "-s", "INT", "2.6"])
        .arg(WICE)
        .args(["status", "--watch", "--interval", "0.5", "--socket"])
        .arg(&node.socket)
        .output()
        .expect("timeout wice status --watch");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "status --watch exits cleanly on SIGINT: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frames = text.matches("Every 0.5s: wice status").count();
    assert!(frames >= 2, "{frames} frames:\n{text}");
    assert!(
        text.matches(&format!("peer {}", lab.node(c).public_key))
            .count()
            >= 2,
        "every frame shows the peers:\n{text}"
    );
    assert!(text.contains("why relayed: relayed"), "{text}");
}
