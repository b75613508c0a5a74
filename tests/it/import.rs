//! `wice import` on wg-quick files, checked against WireGuard's own tools: the same file,
//! stripped by `wg-quick strip` and loaded with `wg setconf` into a wireguard-go interface,
//! reads back (`wg showconf`) with the same keys, port, peers, allowed IPs, endpoints and
//! keepalives that wice loads from the imported TOML.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use wice::config::Config;

use crate::harness::*;

/// One peer as `wg showconf` prints it.
#[derive(Debug, Default, PartialEq, Eq)]
struct WgPeer {
    public_key: String,
    allowed_ips: BTreeSet<String>,
    endpoint: Option<String>,
    keepalive: Option<u16>,
}

fn parse_showconf(text: &str) -> (Option<u16>, Vec<WgPeer>) {
    let mut port = None;
    let mut peers: Vec<WgPeer> = Vec::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(" = ") else {
            if line == "[Peer]" {
                peers.push(WgPeer::default());
            }
            continue;
        };
        match (key, peers.last_mut()) {
            ("ListenPort", None) => port = value.parse().ok(),
            ("PublicKey", Some(p)) => p.public_key = value.to_owned(),
            ("AllowedIPs", Some(p)) => {
                p.allowed_ips.extend(value.split(", ").map(str::to_owned));
            }
            ("Endpoint", Some(p)) => p.endpoint = Some(value.to_owned()),
            ("PersistentKeepalive", Some(p)) => p.keepalive = value.parse().ok(),
            _ => {}
        }
    }
    (port, peers)
}

fn wice_peers(config: &Config) -> Vec<WgPeer> {
    config
        .peers
        .iter()
        .map(|peer| WgPeer {
            public_key: peer.public_key.to_base64(),
            // wg prints networks with the host bits cleared.
            allowed_ips: peer
                .allowed_ips
                .iter()
                .map(|net| net.trunc().to_string())
                .collect(),
            endpoint: peer.endpoint.map(|e| e.to_string()),
            keepalive: peer.persistent_keepalive.filter(|&k| k > 0),
        })
        .collect()
}

fn check_against_wireguard_go(fixture: &str) {
    let test = "wice_import_agrees_with_wg_setconf_on_real_wg_quick_files";
    if !root_or_skip(test) {
        return;
    }
    for tool in ["wg", "wg-quick", "wireguard-go"] {
        if !wice_lab::netns::have(tool) {
            skip(
                test,
                &format!("{tool} is not installed (wireguard-tools, wireguard-go)"),
            );
            return;
        }
    }
    let dir = TempDir::new();
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/wg-quick")
        .join(fixture);
    // wg-quick wants NAME.conf with a valid interface name, and warns about readable files.
    let name = format!("wq{}", unique());
    let conf = dir.path(&format!("{name}.conf"));
    write_private(&conf, &std::fs::read_to_string(&source).expect("fixture")).expect("copy");

    let out = Command::new(WICE)
        .arg("import")
        .arg(&conf)
        .output()
        .expect("wice import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let toml = String::from_utf8(out.stdout).expect("utf-8");
    let config =
        Config::parse(&dir.path("imported.toml"), &toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));

    let stripped = run("wg-quick", &["strip", conf.to_str().expect("path")]);
    let stripped_path = dir.path("stripped.conf");
    write_private(&stripped_path, &String::from_utf8_lossy(&stripped.stdout)).expect("write");
    let mut ns = Netns::new();
    let mut go = ns.command("wireguard-go");
    go.args(["-f", &name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    ns.spawn(go);
    let socket = format!("/var/run/wireguard/{name}.sock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !Path::new(&socket).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "wireguard-go did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let set = ns.exec(
        "wg",
        &["setconf", &name, stripped_path.to_str().expect("path")],
    );
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let shown = ns.exec("wg", &["showconf", &name]);
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    drop(ns);
    let _ = std::fs::remove_file(&socket);

    let (port, mut wg_peers) = parse_showconf(&shown);
    if config.interface.listen_port != 0 {
        assert_eq!(port, Some(config.interface.listen_port), "{shown}");
    }
    // wireguard-go lists peers in its map's order, which Go randomises: compare by key.
    let mut ours = wice_peers(&config);
    ours.sort_by(|a, b| a.public_key.cmp(&b.public_key));
    wg_peers.sort_by(|a, b| a.public_key.cmp(&b.public_key));
    assert_eq!(ours, wg_peers, "wg showconf:\n{shown}\nwice:\n{toml}");
}

#[test]
fn wice_import_agrees_with_wg_setconf_on_a_client_file() {
    check_against_wireguard_go("client.conf");
}

#[test]
fn wice_import_agrees_with_wg_setconf_on_a_hub_file() {
    check_against_wireguard_go("server.conf");
}
