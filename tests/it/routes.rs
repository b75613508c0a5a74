//! Subnet routers and exit nodes with real daemons (root).
//!
//! ```text
//!            LAN host l 192.168.50.2            "internet" host i 203.0.113.2
//!                 | 192.168.50.0/24                   | 203.0.113.0/24
//!   router r (10.77.0.2, routes 192.168.50.0/24)   exit e (10.77.0.4)
//!                 | 10.0.2.0/24                       | 10.0.3.0/24
//!                 +------------ w (underlay router, -----+
//!                               wice signal on 198.51.100.1)
//!                                     | 10.0.1.0/24
//!                               client c (10.77.0.3): peers r (its /32 and the LAN)
//!                               and e (its /32, 0.0.0.0/0, ::/0), both found by ICE
//! ```
//!
//! The signaling server sits behind c's default route, so once c routes its default into
//! the tunnel, only the mark on its own sockets keeps signaling, STUN and WireGuard on the
//! underlay. Forwarding on r and e is the operator's part, set here with sysctl.

use std::time::{Duration, Instant};

use crate::harness::{
    Keys, Netns, PeerSpec, TempDir, WICE, WiceNode, node_config, root_or_skip, unique, veth,
};

const SIGNAL_PORT: u16 = 8443;

/// What `ip rule` and `ip route show table all` print for both families: the state a run
/// must leave as it found it. IPv6 link-local routes are left out: the kernel adds them
/// on its own schedule (after duplicate address detection) and with a random address per
/// new device, so they differ between two snapshots of the same state.
fn routing_state(ns: &Netns) -> String {
    let mut state = String::new();
    for args in [
        ["-4", "rule", "show", "", ""],
        ["-6", "rule", "show", "", ""],
        ["-4", "route", "show", "table", "all"],
        ["-6", "route", "show", "table", "all"],
    ] {
        let args: Vec<&str> = args.into_iter().filter(|a| !a.is_empty()).collect();
        let out = ns.ip(&args);
        state.push_str(&format!("# ip {}\n", args.join(" ")));
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if !line.contains("fe80:") {
                state.push_str(line);
                state.push('\n');
            }
        }
    }
    state
}

fn rules(ns: &Netns, family: &str) -> Vec<String> {
    String::from_utf8_lossy(&ns.ip(&[family, "rule", "show"]).stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn wait_connected(node: &WiceNode, peers: &[&str], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let status = node.status();
        let connected = |key: &&str| {
            status["peers"].as_array().is_some_and(|list| {
                list.iter()
                    .any(|p| p["public_key"] == *key && p["state"] == "connected")
            })
        };
        if peers.iter().all(connected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not every peer connected: {status}\nlog:\n{}",
            node.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_client_reaches_a_lan_through_a_subnet_router_and_the_internet_through_an_exit_node() {
    if !root_or_skip(
        "a_client_reaches_a_lan_through_a_subnet_router_and_the_internet_through_an_exit_node",
    ) {
        return;
    }
    let [mut w, mut c, mut r, mut e, l, i] = std::array::from_fn(|_| Netns::new());
    veth(&w, "10.0.1.1/24", &c, "10.0.1.2/24");
    veth(&w, "10.0.2.1/24", &r, "10.0.2.2/24");
    veth(&w, "10.0.3.1/24", &e, "10.0.3.2/24");
    veth(&r, "192.168.50.1/24", &l, "192.168.50.2/24");
    veth(&e, "203.0.113.1/24", &i, "203.0.113.2/24");
    w.ip(&["addr", "add", "198.51.100.1/32", "dev", "lo"]);
    for (ns, gateway) in [
        (&c, "10.0.1.1"),
        (&r, "10.0.2.1"),
        (&e, "10.0.3.1"),
        (&l, "192.168.50.1"),
        (&i, "203.0.113.1"),
    ] {
        ns.ip(&["route", "add", "default", "via", gateway]);
    }
    // Forwarding on routers is the operator's job (see the README); w is the underlay.
    for ns in [&w, &r, &e] {
        ns.sysctl("net.ipv4.ip_forward", "1").expect("sysctl");
        ns.sysctl("net.ipv4.conf.all.rp_filter", "0")
            .expect("sysctl");
    }
    let mut server = w.command(WICE);
    server
        .args(["signal", "--listen", &format!("198.51.100.1:{SIGNAL_PORT}")])
        .args(["--log-level", "warn"]);
    w.spawn(server);

    let dir = TempDir::new();
    let (keys_c, keys_r, keys_e) = (Keys::generate(), Keys::generate(), Keys::generate());
    let id = unique();
    let signaling = format!("\n[signaling]\nbackends = [\"grpc://198.51.100.1:{SIGNAL_PORT}\"]\n");
    let config_r = node_config(
        &format!("wr{id}"),
        &keys_r,
        51820,
        &["10.77.0.2/24"],
        &dir.path("r.sock"),
        &[PeerSpec {
            public_key: &keys_c.public,
            allowed_ips: &["10.77.0.3/32"],
            endpoint: None,
        }],
    )
    .replacen(
        "[interface]\n",
        "[interface]\nroutes = [\"192.168.50.0/24\"]\n",
        1,
    ) + &signaling;
    let config_e = node_config(
        &format!("we{id}"),
        &keys_e,
        51820,
        &["10.77.0.4/24", "fd77::4/64"],
        &dir.path("e.sock"),
        &[PeerSpec {
            public_key: &keys_c.public,
            allowed_ips: &["10.77.0.3/32", "fd77::3/128"],
            endpoint: None,
        }],
    ) + &signaling;
    let config_c = node_config(
        &format!("wc{id}"),
        &keys_c,
        51820,
        &["10.77.0.3/24", "fd77::3/64"],
        &dir.path("c.sock"),
        &[
            PeerSpec {
                public_key: &keys_r.public,
                allowed_ips: &["10.77.0.2/32", "192.168.50.0/24"],
                endpoint: None,
            },
            PeerSpec {
                public_key: &keys_e.public,
                allowed_ips: &["10.77.0.4/32", "fd77::4/128", "0.0.0.0/0", "::/0"],
                endpoint: None,
            },
        ],
    ) + &signaling;

    let before = routing_state(&c);
    let _router = WiceNode::start(&mut r, &dir, "r", &config_r);
    let _exit = WiceNode::start(&mut e, &dir, "e", &config_e);
    let client = WiceNode::start(&mut c, &dir, "c", &config_c);
    let peers = [keys_r.public.as_str(), keys_e.public.as_str()];
    wait_connected(&client, &peers, "first start");
    assert!(
        c.ping("192.168.50.2", 3, 10),
        "c → LAN host through the router"
    );
    assert!(
        c.ping("203.0.113.2", 3, 10),
        "c → internet host through the exit"
    );
    assert!(
        !w.ping("203.0.113.2", 1, 1),
        "the internet host is not on the underlay"
    );
    let exit_rules = [
        "not from all fwmark 0xca6c lookup main suppress_prefixlength 0 proto 119",
        "not from all fwmark 0xca6c lookup 51820 proto 119",
    ];
    for family in ["-4", "-6"] {
        let ours: Vec<String> = rules(&c, family)
            .into_iter()
            .filter(|rule| rule.contains("0xca6c"))
            .map(|rule| {
                rule.split_once(":\t")
                    .map(|(_, r)| r.trim().to_owned())
                    .unwrap_or(rule)
            })
            .collect();
        assert_eq!(ours, exit_rules, "ip {family} rule while up");
    }
    let running = routing_state(&c);

    // A crash leaves the rules behind; the next start of the interface removes them.
    client.signal(libc::SIGKILL);
    client.wait_exit(&mut c, Duration::from_secs(10));
    assert!(
        rules(&c, "-4").iter().any(|rule| rule.contains("0xca6c")),
        "a SIGKILL leaves the rules (nothing else could remove them)"
    );
    let client = WiceNode::start(&mut c, &dir, "c", &config_c);
    wait_connected(&client, &peers, "restart after SIGKILL");
    assert!(
        c.ping("192.168.50.2", 3, 10),
        "c → LAN host after the restart"
    );
    assert!(
        c.ping("203.0.113.2", 3, 10),
        "c → internet host after the restart"
    );
    assert_eq!(
        routing_state(&c),
        running,
        "after SIGKILL and restart: the same rules and routes as the first run, none twice"
    );

    client.signal(libc::SIGTERM);
    assert_eq!(client.wait_exit(&mut c, Duration::from_secs(10)), Some(0));
    assert_eq!(
        routing_state(&c),
        before,
        "a clean stop leaves rules and routes as they were before the first start"
    );
    drop((l, i));
}
