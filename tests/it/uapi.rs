//! `wg` and `wg-quick` on wice interfaces, through the cross-platform UAPI socket, against
//! wireguard-go (the current build from benches/tunnel-throughput.sh's cache when present,
//! else Debian's).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::*;

/// wireguard-go to test against: the current module build if benches/tunnel-throughput.sh
/// made one, else the distribution's.
fn wireguard_go() -> String {
    let current = std::env::var("HOME")
        .map(|home| format!("{home}/.cache/wice-bench/bin/wireguard"))
        .unwrap_or_default();
    if Path::new(&current).is_file() {
        current
    } else {
        "wireguard-go".to_owned()
    }
}

fn tools_or_skip(test: &str) -> bool {
    if !root_or_skip(test) {
        return false;
    }
    for tool in ["wireguard-go", "wg", "wg-quick"] {
        // CI installs them; a missing tool is a broken environment, not a reason to pass.
        assert!(
            wice_lab::netns::have(tool),
            "{tool} is not installed: apt-get install wireguard-go wireguard-tools"
        );
    }
    true
}

fn socket_of(interface: &str) -> String {
    format!("/var/run/wireguard/{interface}.sock")
}

fn wait_for_socket(path: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while UnixStream::connect(path).is_err() {
        assert!(Instant::now() < deadline, "{what} did not serve {path}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The process serving a UAPI socket (its peer credentials), killed on drop: `wice
/// wireguard` without `-f` runs in the background, outside the namespace's child list.
struct Served {
    path: String,
    pid: Option<i32>,
}

impl Served {
    fn find(path: &str) -> Self {
        let pid = wice::userspace::served_by(Path::new(path))
            .and_then(|pid| i32::try_from(pid).ok())
            .filter(|pid| *pid > 0);
        Self {
            path: path.to_owned(),
            pid,
        }
    }

    /// Whether the process runs (a zombie nobody reaped yet counts as gone).
    fn alive(&self) -> bool {
        self.pid.is_some_and(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(") ")
                    .is_some_and(|(_, rest)| !rest.starts_with('Z'))
            })
        })
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            wice_lab::netns::kill(pid, libc::SIGKILL);
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `wg ARGS` in `ns`, asserting success; its stdout.
fn wg(ns: &Netns, args: &[&str]) -> String {
    let out = ns.exec("wg", args);
    assert!(
        out.status.success(),
        "wg {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// wireguard-go on `interface` in `ns` with `keys`, listening on 51820, its tunnel address
/// `address`, and `peer` allowed `peer_ips` (no endpoint: wice comes to it).
fn start_wireguard_go(
    ns: &mut Netns,
    dir: &TempDir,
    interface: &str,
    keys: &Keys,
    address: &str,
    peer: &str,
    peer_ips: &str,
) -> Served {
    let mut command = ns.command(wireguard_go());
    command
        .args(["-f", interface])
        .env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    ns.spawn(command);
    let socket = socket_of(interface);
    wait_for_socket(&socket, "wireguard-go");
    let key_file = dir.path(&format!("{interface}.key"));
    write_private(&key_file, &keys.private).expect("key file");
    let key_file = key_file.display().to_string();
    wg(
        ns,
        &[
            "set",
            interface,
            "private-key",
            &key_file,
            "listen-port",
            "51820",
            "peer",
            peer,
            "allowed-ips",
            peer_ips,
        ],
    );
    ns.ip(&["addr", "add", address, "dev", interface]);
    ns.ip(&["link", "set", interface, "mtu", "1420", "up"]);
    Served {
        path: socket,
        pid: None,
    }
}

/// Configures the wice interface `interface` in `ns` with `wg set` and `ip`: its key, the
/// wireguard-go peer at 10.0.0.2:51820, and the tunnel address 10.78.0.1/24.
fn set_up_wice_side(ns: &Netns, dir: &TempDir, interface: &str, keys: &Keys, peer: &Keys) {
    let key_file = dir.path(&format!("{interface}.key"));
    write_private(&key_file, &keys.private).expect("key");
    wg(
        ns,
        &[
            "set",
            interface,
            "private-key",
            &key_file.display().to_string(),
            "peer",
            &peer.public,
            "allowed-ips",
            "10.78.0.2/32",
            "endpoint",
            "10.0.0.2:51820",
        ],
    );
    ns.ip(&["addr", "add", "10.78.0.1/24", "dev", interface]);
    ns.ip(&["link", "set", interface, "up"]);
}

/// `wg show IF transfer` for the one peer: (received, sent).
fn transfer(ns: &Netns, interface: &str) -> (u64, u64) {
    let text = wg(ns, &["show", interface, "transfer"]);
    let fields: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "one peer: {text}");
    (
        fields[1].parse().expect("rx"),
        fields[2].parse().expect("tx"),
    )
}

#[test]
fn a_wg_quick_config_on_wice_talks_to_wireguard_go_and_wg_show_counts_the_traffic() {
    if !tools_or_skip("a_wg_quick_config_on_wice_talks_to_wireguard_go") {
        return;
    }
    let (wice_ns, mut go_ns) = (Netns::new(), Netns::new());
    veth(&wice_ns, "10.0.0.1/24", &go_ns, "10.0.0.2/24");
    let dir = TempDir::new();
    let (wice_keys, go_keys) = (Keys::generate(), Keys::generate());
    let id = unique();
    let go_if = format!("wg{id}");
    let _go = start_wireguard_go(
        &mut go_ns,
        &dir,
        &go_if,
        &go_keys,
        "10.78.0.2/24",
        &wice_keys.public,
        "10.78.0.1/32",
    );

    // The one-line wrapper the README documents, and a plain wg-quick file.
    let wrapper = dir.path("wice-wireguard");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec {WICE} wireguard \"$@\"\n"),
    )
    .expect("wrapper");
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let wice_if = format!("wq{id}");
    let conf = dir.path(&format!("{wice_if}.conf"));
    write_private(
        &conf,
        &format!(
            "[Interface]\nPrivateKey = {}\nListenPort = 51821\nAddress = 10.78.0.1/24\n\n\
             [Peer]\nPublicKey = {}\nEndpoint = 10.0.0.2:51820\nAllowedIPs = 10.78.0.2/32\n\
             PersistentKeepalive = 25\n",
            wice_keys.private, go_keys.public
        ),
    )
    .expect("conf");
    let conf = conf.display().to_string();
    let up = wice_ns
        .command("wg-quick")
        .args(["up", &conf])
        .env("WG_QUICK_USERSPACE_IMPLEMENTATION", &wrapper)
        .output()
        .expect("wg-quick");
    let served = Served::find(&socket_of(&wice_if));
    assert!(
        up.status.success(),
        "wg-quick up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(served.alive(), "wice wireguard runs in the background");

    assert!(wice_ns.ping("10.78.0.2", 3, 10), "wice → wireguard-go");
    assert!(go_ns.ping("10.78.0.1", 3, 10), "wireguard-go → wice");
    let show = wg(&wice_ns, &["show", &wice_if]);
    assert!(show.contains("listening port: 51821"), "{show}");
    assert!(show.contains("endpoint: 10.0.0.2:51820"), "{show}");
    assert!(show.contains("latest handshake:"), "{show}");
    assert!(
        show.contains("persistent keepalive: every 25 seconds"),
        "{show}"
    );

    // Counters: 20 echo requests of 1000 bytes of payload are 20 × 1028 bytes of IP
    // packets each way (wice counts what went through the tunnel, as plaintext).
    let (rx_before, tx_before) = transfer(&wice_ns, &wice_if);
    let out = wice_ns.exec(
        "ping",
        &[
            "-c",
            "20",
            "-i",
            "0.05",
            "-s",
            "1000",
            "-W",
            "2",
            "10.78.0.2",
        ],
    );
    assert!(out.status.success(), "20 pings through the tunnel");
    let (rx_after, tx_after) = transfer(&wice_ns, &wice_if);
    let expected = 20 * 1028;
    assert_eq!(tx_after - tx_before, expected, "sent");
    assert_eq!(rx_after - rx_before, expected, "received");

    // `wg-quick down` deletes the interface; the process sees that and exits.
    let down = wice_ns
        .command("wg-quick")
        .args(["down", &conf])
        .output()
        .expect("wg-quick");
    assert!(
        down.status.success(),
        "wg-quick down: {}",
        String::from_utf8_lossy(&down.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while served.alive() || Path::new(&served.path).exists() {
        assert!(
            Instant::now() < deadline,
            "wice wireguard outlived its interface"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `wice wireguard -f IF` in `ns`, served.
fn start_wice(ns: &mut Netns, interface: &str) -> Served {
    let mut command = ns.command(WICE);
    command
        .args(["wireguard", "-f", interface])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let pid = ns.spawn(command);
    let path = socket_of(interface);
    wait_for_socket(&path, "wice wireguard");
    Served {
        path,
        pid: Some(pid as i32),
    }
}

/// One peer's `key=value` lines (other than AllowedIPs), and its allowed IPs.
type PeerLines = (BTreeSet<String>, BTreeSet<String>);

/// A wg config as `wg showconf` prints it, as a comparable value: interface lines, and per
/// peer its lines with AllowedIPs as a set.
fn normalize(conf: &str) -> (BTreeSet<String>, BTreeMap<String, PeerLines>) {
    let mut interface = BTreeSet::new();
    let mut peers = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in conf
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('['))
    {
        let (key, value) = line
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .expect("key = value");
        if key == "PublicKey" {
            current = Some(value.to_owned());
            peers.insert(value.to_owned(), (BTreeSet::new(), BTreeSet::new()));
            continue;
        }
        match &current {
            None => {
                interface.insert(format!("{key}={value}"));
            }
            Some(peer) => {
                let entry = peers.get_mut(peer).expect("peer");
                if key == "AllowedIPs" {
                    // Canonical form: `fd00:0::1` is printed back as `fd00::1`.
                    entry.1.extend(value.split(',').map(|n| {
                        n.trim()
                            .parse::<ipnet::IpNet>()
                            .expect("network")
                            .trunc()
                            .to_string()
                    }));
                } else {
                    entry.0.insert(format!("{key}={value}"));
                }
            }
        }
    }
    (interface, peers)
}

#[test]
fn a_large_setconf_round_trips_through_showconf() {
    if !tools_or_skip("a_large_setconf_round_trips_through_showconf") {
        return;
    }
    let mut ns = Netns::new();
    let dir = TempDir::new();
    let interface = format!("wl{}", unique());
    let _wice = start_wice(&mut ns, &interface);
    let second = ns.exec(WICE, &["wireguard", &interface]);
    assert!(
        !second.status.success(),
        "a second process for a served interface is refused"
    );
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("served by another process"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );

    // 48 peers, 36 864 allowed IPs: /32s, /128s and a few wider prefixes each.
    let own = Keys::generate();
    let mut conf = format!(
        "[Interface]\nPrivateKey = {}\nListenPort = 41000\n",
        own.private
    );
    for peer in 0..48u32 {
        let keys = Keys::generate();
        conf.push_str(&format!("\n[Peer]\nPublicKey = {}\n", keys.public));
        if peer % 3 == 0 {
            conf.push_str(&format!("PresharedKey = {}\n", Keys::generate().private));
        }
        if peer % 2 == 0 {
            conf.push_str(&format!(
                "Endpoint = 192.0.2.{}:{}\n",
                peer + 1,
                50000 + peer
            ));
        } else {
            conf.push_str(&format!("Endpoint = [2001:db8::{:x}]:51820\n", peer + 1));
        }
        if peer % 4 == 1 {
            conf.push_str("PersistentKeepalive = 25\n");
        }
        let mut nets = Vec::new();
        for i in 0..256u32 {
            nets.push(format!("10.{}.{}.{}/32", peer, i, (i * 7) % 256));
            nets.push(format!("fd00:{peer:x}::{i:x}:1/128"));
        }
        nets.push(format!("172.16.{peer}.0/24"));
        nets.push(format!("fd01:{peer:x}::/64"));
        for i in 0..254u32 {
            nets.push(format!("10.{}.{}.0/24", 100 + peer, i));
        }
        conf.push_str(&format!("AllowedIPs = {}\n", nets.join(", ")));
    }
    let file = dir.path("large.conf");
    write_private(&file, &conf).expect("conf");
    let started = Instant::now();
    wg(&ns, &["setconf", &interface, &file.display().to_string()]);
    let setconf_time = started.elapsed();
    let started = Instant::now();
    let shown = wg(&ns, &["showconf", &interface]);
    eprintln!(
        "wg setconf of 48 peers / 36864 allowed IPs: {setconf_time:?}; wg showconf: {:?}",
        started.elapsed()
    );
    let (want_if, want_peers) = normalize(&conf);
    let (got_if, got_peers) = normalize(&shown);
    assert_eq!(got_if, want_if);
    assert_eq!(got_peers.len(), 48);
    assert_eq!(
        got_peers.values().map(|p| p.1.len()).sum::<usize>(),
        48 * 768,
        "every allowed IP"
    );
    assert_eq!(got_peers, want_peers);

    // wg addconf adds to it; setconf with one peer leaves exactly that peer.
    let extra = Keys::generate();
    let add = dir.path("add.conf");
    write_private(
        &add,
        &format!(
            "[Peer]\nPublicKey = {}\nAllowedIPs = 192.168.9.0/24\n",
            extra.public
        ),
    )
    .expect("conf");
    wg(&ns, &["addconf", &interface, &add.display().to_string()]);
    assert_eq!(normalize(&wg(&ns, &["showconf", &interface])).1.len(), 49);
    wg(&ns, &["setconf", &interface, &add.display().to_string()]);
    let (_, only) = normalize(&wg(&ns, &["showconf", &interface]));
    assert_eq!(
        only.keys().cloned().collect::<Vec<_>>(),
        vec![extra.public.clone()]
    );
    let dump = wg(&ns, &["show", &interface, "dump"]);
    assert_eq!(
        dump.lines().count(),
        2,
        "interface line and one peer: {dump}"
    );
    assert!(
        dump.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with(&extra.public)),
        "{dump}"
    );
}

#[test]
fn wg_set_endpoint_moves_a_peer_and_a_roaming_peer_is_followed() {
    if !tools_or_skip("wg_set_endpoint_moves_a_peer_and_a_roaming_peer_is_followed") {
        return;
    }
    let (mut wice_ns, mut go_ns) = (Netns::new(), Netns::new());
    let (_, go_link) = veth(&wice_ns, "10.0.0.1/24", &go_ns, "10.0.0.2/24");
    // Host addresses, not secondaries of 10.0.0.2/24, which would go with it.
    go_ns.ip(&["addr", "add", "10.0.0.3/32", "dev", &go_link]);
    go_ns.ip(&["addr", "add", "10.0.0.4/32", "dev", &go_link]);
    let dir = TempDir::new();
    let (wice_keys, go_keys) = (Keys::generate(), Keys::generate());
    let id = unique();
    let go_if = format!("wg{id}");
    let _go = start_wireguard_go(
        &mut go_ns,
        &dir,
        &go_if,
        &go_keys,
        "10.78.0.2/24",
        &wice_keys.public,
        "10.78.0.1/32",
    );
    let wice_if = format!("we{id}");
    let _wice = start_wice(&mut wice_ns, &wice_if);
    set_up_wice_side(&wice_ns, &dir, &wice_if, &wice_keys, &go_keys);
    assert!(wice_ns.ping("10.78.0.2", 3, 10), "through 10.0.0.2");
    let endpoints = |ns: &Netns| wg(ns, &["show", &wice_if, "endpoints"]);
    assert!(endpoints(&wice_ns).contains("10.0.0.2:51820"));

    // `wg set … endpoint` moves the peer: with its old address gone, traffic still flows.
    wg(
        &wice_ns,
        &[
            "set",
            &wice_if,
            "peer",
            &go_keys.public,
            "endpoint",
            "10.0.0.3:51820",
        ],
    );
    assert!(
        endpoints(&wice_ns).contains("10.0.0.3:51820"),
        "{}",
        endpoints(&wice_ns)
    );
    go_ns.ip(&[
        "route",
        "replace",
        "10.0.0.1/32",
        "dev",
        &go_link,
        "src",
        "10.0.0.3",
    ]);
    go_ns.ip(&["addr", "del", "10.0.0.2/24", "dev", &go_link]);
    assert!(
        wice_ns.ping("10.78.0.2", 3, 10),
        "through 10.0.0.3 after wg set"
    );

    // The peer roams: it now sends from 10.0.0.4 only (setting its endpoint for wice again
    // clears wireguard-go's remembered source); wice follows once it hears from it.
    go_ns.ip(&["addr", "del", "10.0.0.3/32", "dev", &go_link]);
    go_ns.ip(&[
        "route",
        "replace",
        "10.0.0.1/32",
        "dev",
        &go_link,
        "src",
        "10.0.0.4",
    ]);
    let port = wg(&wice_ns, &["show", &wice_if, "listen-port"]);
    wg(
        &go_ns,
        &[
            "set",
            &go_if,
            "peer",
            &wice_keys.public,
            "endpoint",
            &format!("10.0.0.1:{}", port.trim()),
        ],
    );
    assert!(
        go_ns.ping("10.78.0.1", 3, 10),
        "wireguard-go → wice from its new address"
    );
    assert!(
        endpoints(&wice_ns).contains("10.0.0.4:51820"),
        "{}",
        endpoints(&wice_ns)
    );
    assert!(
        wice_ns.ping("10.78.0.2", 3, 10),
        "wice answers the roamed peer"
    );
}

#[test]
fn an_interface_moved_to_another_namespace_keeps_its_socket_where_it_was_made() {
    if !tools_or_skip("an_interface_moved_to_another_namespace_keeps_its_socket") {
        return;
    }
    // wice's UDP socket lives in `outer` (which has the link to wireguard-go); its interface
    // moves to `inner`, which has no other link: traffic from `inner` can only leave through
    // the tunnel, whose datagrams leave from `outer`.
    let (mut outer, inner, mut go_ns) = (Netns::new(), Netns::new(), Netns::new());
    veth(&outer, "10.0.0.1/24", &go_ns, "10.0.0.2/24");
    let dir = TempDir::new();
    let (wice_keys, go_keys) = (Keys::generate(), Keys::generate());
    let id = unique();
    let go_if = format!("wg{id}");
    let _go = start_wireguard_go(
        &mut go_ns,
        &dir,
        &go_if,
        &go_keys,
        "10.78.0.2/24",
        &wice_keys.public,
        "10.78.0.1/32",
    );
    let wice_if = format!("wm{id}");
    let wice = start_wice(&mut outer, &wice_if);
    outer.ip(&["link", "set", &wice_if, "netns", &inner.name]);
    set_up_wice_side(&inner, &dir, &wice_if, &wice_keys, &go_keys);
    assert!(
        inner.ping("10.78.0.2", 3, 10),
        "inner → wireguard-go through the moved interface"
    );
    assert!(go_ns.ping("10.78.0.1", 3, 10), "wireguard-go → inner");
    assert!(
        !link_exists(&outer, &wice_if),
        "the interface left the namespace it was made in"
    );
    // Deleting it in its new namespace still ends the process.
    inner.ip(&["link", "del", &wice_if]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while wice.alive() {
        assert!(
            Instant::now() < deadline,
            "wice wireguard outlived its moved interface"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn wg_shows_a_wice_up_node_and_changes_only_its_static_peers() {
    if !tools_or_skip("wg_shows_a_wice_up_node_and_changes_only_its_static_peers") {
        return;
    }
    let mut ns = Netns::new();
    let dir = TempDir::new();
    let (own, fixed, found) = (Keys::generate(), Keys::generate(), Keys::generate());
    let name = format!("wu{}", unique());
    let config = node_config(
        &name,
        &own,
        51830,
        &["10.79.0.1/24"],
        &dir.path("node.sock"),
        &[
            PeerSpec {
                public_key: &fixed.public,
                allowed_ips: &["10.79.0.2/32"],
                endpoint: Some("192.0.2.7:51820"),
            },
            // No endpoint: an ICE peer (no signaling here, so it stays unconnected).
            PeerSpec {
                public_key: &found.public,
                allowed_ips: &["10.79.0.3/32"],
                endpoint: None,
            },
        ],
    );
    let _node = WiceNode::start(&mut ns, &dir, "node", &config);
    let _socket = Served {
        path: socket_of(&name),
        pid: None,
    };
    let dump = wg(&ns, &["show", &name, "dump"]);
    let lines: Vec<&str> = dump.lines().collect();
    assert_eq!(lines.len(), 3, "{dump}");
    assert!(lines[0].starts_with(&own.private), "{dump}");
    assert!(lines[0].contains("\t51830\t"), "{dump}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&fixed.public) && l.contains("192.0.2.7:51820")),
        "{dump}"
    );

    wg(
        &ns,
        &[
            "set",
            &name,
            "peer",
            &fixed.public,
            "persistent-keepalive",
            "7",
        ],
    );
    let keepalives = wg(&ns, &["show", &name, "persistent-keepalive"]);
    assert!(
        keepalives.contains(&format!("{}\t7", fixed.public)),
        "{keepalives}"
    );

    let refused = ns.exec(
        "wg",
        &[
            "set",
            &name,
            "peer",
            &found.public,
            "endpoint",
            "192.0.2.9:1",
        ],
    );
    assert!(
        !refused.status.success(),
        "an ICE peer is not changed by wg"
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Operation not permitted"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let refused = ns.exec("wg", &["set", &name, "listen-port", "1234"]);
    assert!(!refused.status.success(), "the listen port is wice's");
    assert!(wg(&ns, &["show", &name, "endpoints"]).contains(&format!("{}\t(none)", found.public)));
}
