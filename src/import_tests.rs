//! `wice import` against wg-quick files written the way people write them
//! (tests/data/wg-quick/).

use std::path::Path;

use super::*;
use crate::config::Config;

const CLIENT: &str = include_str!("../tests/data/wg-quick/client.conf");
const SERVER: &str = include_str!("../tests/data/wg-quick/server.conf");

fn load(name: &str, text: &str) -> (Config, Vec<String>) {
    let imported = import_wg_quick(name, text).expect("imports");
    let config = Config::parse(Path::new("imported.toml"), &imported.toml)
        .unwrap_or_else(|e| panic!("wice refuses its own import: {e}\n{}", imported.toml));
    (config, imported.unmapped)
}

#[test]
fn a_client_config_keeps_keys_addresses_and_its_peer() {
    let (config, _) = load("wg0", CLIENT);
    let iface = &config.interface;
    assert_eq!(iface.name, "wg0");
    assert_eq!(
        iface.private_key.public_key().to_base64(),
        "n7gRTuJzFy2gBXFzeF9ZWBcFJLt2AvCH4KzIvZ4ozQQ="
    );
    assert_eq!(
        iface.listen_port, 0,
        "wg-quick without ListenPort picks a port"
    );
    let addresses: Vec<String> = iface.addresses.iter().map(ToString::to_string).collect();
    assert_eq!(addresses, ["10.200.100.8/24", "fd42:42:42::8/64"]);
    let [peer] = config.peers.as_slice() else {
        panic!("one peer: {:?}", config.peers);
    };
    assert_eq!(
        peer.public_key.to_base64(),
        "4czwfXBhqngdCEr7pkizTqspQ5Mqw2tbfYpvt701lzQ="
    );
    let allowed: Vec<String> = peer.allowed_ips.iter().map(ToString::to_string).collect();
    assert_eq!(allowed, ["0.0.0.0/0", "::/0"]);
    assert_eq!(peer.endpoint, Some("192.0.2.1:51820".parse().unwrap()));
    assert_eq!(peer.persistent_keepalive, Some(25));
    assert!(peer.preshared_key.is_some());
}

#[test]
fn dns_and_hooks_are_reported_not_dropped() {
    let (_, unmapped) = load("wg0", CLIENT);
    assert_eq!(unmapped.len(), 3, "{unmapped:#?}");
    assert!(
        unmapped[0].starts_with("line 5: DNS = 10.200.100.1: "),
        "{unmapped:#?}"
    );
    assert!(
        unmapped[1].starts_with("line 6: PostUp = iptables"),
        "{unmapped:#?}"
    );
    assert!(
        unmapped[2].starts_with("line 7: PreDown = "),
        "{unmapped:#?}"
    );
}

#[test]
fn a_hub_config_keeps_every_peer_and_reports_table_fwmark_and_saveconfig() {
    let (config, unmapped) = load("hub", SERVER);
    assert_eq!(config.interface.listen_port, 51820);
    assert_eq!(config.interface.mtu, 1380);
    assert_eq!(config.peers.len(), 2);
    let branch = &config.peers[1];
    let allowed: Vec<String> = branch.allowed_ips.iter().map(ToString::to_string).collect();
    assert_eq!(
        allowed,
        ["10.0.0.3/32", "192.168.50.0/24", "192.168.51.0/24"],
        "bare addresses are host routes; repeated AllowedIPs lines add up"
    );
    assert_eq!(
        branch.endpoint,
        Some("[2001:db8::3]:51821".parse().unwrap())
    );
    assert_eq!(branch.persistent_keepalive, None, "`off` is no keepalive");
    let keys: Vec<&str> = unmapped
        .iter()
        .map(|n| n.split(' ').nth(2).unwrap_or_default())
        .collect();
    assert_eq!(keys, ["Table", "FwMark", "SaveConfig"], "{unmapped:#?}");
}

#[test]
fn broken_files_name_the_line() {
    let err = import_wg_quick("wg0", "[Interface]\nPrivateKey\n").expect_err("no =");
    assert_eq!(err.line, 2);
    let err = import_wg_quick("wg0", "[Interface]\n[Peer]\nAllowedIPs = 10.0.0.2/32\n")
        .expect_err("peer without key");
    assert_eq!(err.to_string(), "line 2: [Peer] without PublicKey");
    let err = import_wg_quick("wg0", "[Interface]\nListenPort = eighty\n").expect_err("port");
    assert_eq!(err.line, 2);
    assert!(
        import_wg_quick("wg0", "[Peer]\n").is_err(),
        "no [Interface]"
    );
}
