//! Issue 11's acceptance run: seven nodes joined by the community alone — each config holds
//! its key, the passphrase, the signaling URL and the ICE servers, and no `[[peer]]` — across
//! every NAT kind the lab has (public, endpoint-independent, symmetric; the lab's nftables
//! routers have no address-dependent mapping, only the simulator does), with coturn so pairs
//! with a symmetric side relay. Every pair connects and pings through the derived addresses,
//! each node's hosts file names the others, an eighth node joins without touching the
//! others, and a killed node expires from everyone after `expire_after`. The membership
//! counters in `wice status` and the metrics endpoint follow each step.
//!
//! Prints `FIGURE` lines: time to the full mesh, for the late node, and the expiry time.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use wice_core::addresses::derive_addresses;
use wice_core::keys::PublicKey;
use wice_lab::{Lab, LabOptions, NatKind, PairReport, is_direct};

use crate::harness::*;

/// Generous: eight debug daemons, signaling and coturn on two cores shared with other builds.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(150);
const DERIVE: &str = "\"10.77.0.0/16\", \"fd77::/64\"";
const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(2);
const EXPIRE_AFTER: Duration = Duration::from_secs(8);
const DOMAIN: &str = "mesh";
/// Node `a`'s metrics listen address, on its own namespace's loopback.
const METRICS: &str = "127.0.0.1:9477";
const SYSTEM_LINES: &str = "127.0.0.1 localhost\n";

struct Seven {
    lab: Lab,
    hosts: Vec<PathBuf>,
    v4: Vec<IpAddr>,
}

impl Seven {
    fn label(&self, i: usize) -> &str {
        &self.lab.node(i).label
    }

    /// Node `i`'s config: the community and derived addresses, a hosts file, no `[[peer]]`.
    fn config(&self, i: usize) -> String {
        let community = format!(
            "passphrase = \"seven nodes, one passphrase\"\nname = \"{}\"\nannounce_interval = {}\nexpire_after = {}\n",
            self.label(i),
            ANNOUNCE_INTERVAL.as_secs(),
            EXPIRE_AFTER.as_secs()
        );
        let config = self.lab.community_config(i, DERIVE, &community);
        let derive = format!("derive_addresses = [{DERIVE}]\n");
        let mut interface = format!(
            "{derive}hosts_file = true\nhosts_file_path = \"{}\"\ndomain = \"{DOMAIN}\"\n",
            self.hosts[i].display()
        );
        if i == 0 {
            interface.push_str(&format!("metrics_listen = \"{METRICS}\"\n"));
        }
        let config = config.replacen(&derive, &interface, 1);
        assert!(config.contains("hosts_file = true"), "{config}");
        assert!(!config.contains("[[peer]]"), "community only:\n{config}");
        assert!(config.contains("[community]") && config.contains("[signaling]"));
        config
    }

    /// The lines node `i`'s hosts file block should hold for `members`.
    fn expected_names(&self, members: &[usize]) -> Vec<String> {
        let mut lines = Vec::new();
        for &j in members {
            let key = PublicKey::from_base64(&self.lab.node(j).public_key).expect("key");
            let prefixes = [
                "10.77.0.0/16".parse().expect("valid"),
                "fd77::/64".parse().expect("valid"),
            ];
            for address in derive_addresses(&key, &prefixes).expect("derive") {
                let name = self.label(j);
                lines.push(format!("{address} {name} {name}.{DOMAIN}"));
            }
        }
        lines.sort();
        lines
    }

    /// The lines of node `i`'s managed block, sorted.
    fn names(&self, i: usize) -> Vec<String> {
        let text = std::fs::read_to_string(&self.hosts[i]).unwrap_or_default();
        let mut lines: Vec<String> = text
            .lines()
            .skip_while(|l| !l.starts_with("# BEGIN wice "))
            .skip(1)
            .take_while(|l| !l.starts_with("# END wice "))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        lines.sort();
        lines
    }

    /// Waits until each of `nodes` names exactly the others of `members` in its hosts file.
    fn wait_names(&self, nodes: &[usize], members: &[usize], test: &str) {
        for &i in nodes {
            let others: Vec<usize> = members.iter().copied().filter(|&j| j != i).collect();
            let expected = self.expected_names(&others);
            let named = wait_until(Duration::from_secs(20), || self.names(i) == expected);
            assert!(
                named.is_some(),
                "{test}: {}'s hosts file names {:?}, expected {expected:?}",
                self.label(i),
                self.names(i)
            );
        }
    }

    /// Pings every pair once through the tunnel, at the derived IPv4 address.
    fn ping_pairs(&self, pairs: &[(usize, usize)], test: &str) {
        for &(a, b) in pairs {
            let target = self.v4[b].to_string();
            assert!(
                self.lab.node(a).ns.ping(&target, 2, 10),
                "{test}: {} → {} ({target}) ping through the tunnel\n{}",
                self.label(a),
                self.label(b),
                self.lab.logs(20)
            );
        }
    }

    /// Node `i`'s `community` status object.
    fn community(&self, i: usize) -> serde_json::Value {
        self.lab
            .status(i)
            .map(|s| s["community"].clone())
            .unwrap_or_default()
    }

    /// Every node in `nodes` has `members` members and no refused announcement other than
    /// its own come back and stale ones (both harmless); received adds up.
    fn assert_counters(&self, nodes: &[usize], members: u64, test: &str) {
        for &i in nodes {
            let c = self.community(i);
            assert_eq!(c["members"], members, "{test}: {}: {c}", self.label(i));
            let rejected = c["announcements_rejected"].as_object().expect("reasons");
            let refused: u64 = rejected.values().filter_map(|v| v.as_u64()).sum();
            assert_eq!(
                c["announcements_received"].as_u64(),
                Some(c["announcements_accepted"].as_u64().unwrap_or(0) + refused),
                "{test}: {}: {c}",
                self.label(i)
            );
            for reason in [
                "not_allowed",
                "bad_signature",
                "sender_mismatch",
                "collision",
            ] {
                assert_eq!(rejected[reason], 0, "{test}: {}: {c}", self.label(i));
            }
        }
    }
}

/// The body of `GET /metrics` on node `i`'s [`METRICS`].
fn metrics(lab: &Lab, i: usize) -> String {
    let address: SocketAddr = METRICS.parse().expect("valid");
    let get = move || -> Option<String> {
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let request =
            format!("GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
    };
    lab.node(i)
        .ns
        .within(get)
        .join()
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// The value of the sample `series` (name and labels, exactly) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn symmetric(lab: &Lab, i: usize) -> bool {
    lab.site(lab.node(i).site).nat == NatKind::Symmetric
}

fn public(lab: &Lab, i: usize) -> bool {
    lab.site(lab.node(i).site).nat == NatKind::Public
}

/// Pairs with a symmetric side and a NATed other side can only relay, and must.
fn assert_path_classes(lab: &Lab, reports: &[PairReport], test: &str) {
    for r in reports {
        let (a, b) = (r.a, r.b);
        let same_site = lab.node(a).site == lab.node(b).site;
        let must_relay = !same_site
            && ((symmetric(lab, a) && !public(lab, b)) || (symmetric(lab, b) && !public(lab, a)));
        let what = format!(
            "{test}: {} ↔ {} over {}",
            lab.node(a).label,
            lab.node(b).label,
            r.path()
        );
        eprintln!("{what} after {} ms", r.setup.as_millis());
        // Direct pairs may also settle on the relay when the checks lose a race on a loaded
        // machine (seen once with the whole suite running); `natlab` asserts path classes.
        if must_relay {
            assert!(r.relayed(), "{what}: a symmetric pair must relay");
        } else if !(is_direct(&r.path_a) && is_direct(&r.path_b)) {
            eprintln!("{what}: NOTE relayed although a direct path exists");
        }
    }
}

#[test]
fn seven_nodes_joined_by_community_only_mesh_across_every_nat_kind_name_each_other_admit_a_late_node_and_expire_a_killed_one()
 {
    let test = "seven_nodes_joined_by_community_only_mesh_across_every_nat_kind_name_each_other_admit_a_late_node_and_expire_a_killed_one";
    if !root_or_skip(test) {
        return;
    }
    let mut lab = Lab::new(LabOptions::new(WICE)).expect("lab");
    lab.start_signal().expect("wice signal");
    lab.start_turn().expect("coturn (apt-get install coturn)");
    let public_site = lab.add_site(NatKind::Public).expect("site");
    let eim_1 = lab.add_site(NatKind::EndpointIndependent).expect("site");
    let eim_2 = lab.add_site(NatKind::EndpointIndependent).expect("site");
    let sym_1 = lab.add_site(NatKind::Symmetric).expect("site");
    let sym_2 = lab.add_site(NatKind::Symmetric).expect("site");
    // Two hosts on the public site and on the first EIM LAN (host paths, no hairpin), one on
    // each other site; the late node shares the first symmetric NAT.
    let layout = [
        (public_site, "a"),
        (public_site, "b"),
        (eim_1, "c"),
        (eim_1, "d"),
        (eim_2, "e"),
        (sym_1, "f"),
        (sym_2, "g"),
        (sym_1, "h"),
    ];
    let mut hosts = Vec::new();
    let mut v4 = Vec::new();
    for (site, label) in layout {
        let i = lab.add_node(site, label).expect("node");
        let path = lab.dir.path(&format!("hosts-{label}"));
        std::fs::write(&path, SYSTEM_LINES).expect("hosts file");
        hosts.push(path);
        let key = PublicKey::from_base64(&lab.node(i).public_key).expect("key");
        v4.push(
            derive_addresses(&key, &["10.77.0.0/16".parse().expect("valid")]).expect("derive")[0],
        );
    }
    let seven = Seven { lab, hosts, v4 };
    let configs: Vec<String> = (0..layout.len()).map(|i| seven.config(i)).collect();
    let Seven { mut lab, hosts, v4 } = seven;
    let first: Vec<usize> = (0..7).collect();
    let late = 7;
    let all: Vec<usize> = (0..8).collect();

    // The seven start together; every one of the 21 pairs connects.
    let since = Instant::now();
    for &i in &first {
        lab.spawn_node_with(i, &configs[i]).expect("spawn");
    }
    let pairs = Lab::pairs(&first);
    assert_eq!(pairs.len(), 21);
    let reports = lab
        .wait_connected(&pairs, since, CONNECT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{test}: seven nodes: {e}\n{}", lab.logs(30)));
    let full_mesh = reports.iter().map(|r| r.setup).max().unwrap_or_default();
    eprintln!("{test}: FIGURE seven nodes, 21 pairs: full mesh {full_mesh:?} after start");
    assert_path_classes(&lab, &reports, test);
    let seven = Seven { lab, hosts, v4 };
    seven.ping_pairs(&pairs, test);
    seven.wait_names(&first, &first, test);
    seven.assert_counters(&first, 6, test);
    for &i in &first {
        let joined = seven.community(i)["joined"].as_u64().unwrap_or(0);
        assert!(joined >= 6, "{test}: {}: joined {joined}", seven.label(i));
    }
    let text = metrics(&seven.lab, 0);
    let iface = seven.lab.node(0).interface.clone();
    assert_eq!(
        sample(
            &text,
            &format!("wice_community_members{{interface=\"{iface}\"}}")
        ),
        Some(6.0),
        "{test}: metrics:\n{text}"
    );

    // A name resolves through the file wice wrote, read as /etc/hosts.
    let resolve = seven.lab.node(0).ns.exec(
        "unshare",
        &[
            "-m",
            "sh",
            "-c",
            &format!(
                "mount --bind {} /etc/hosts && ping -c 1 -W 5 g.{DOMAIN}",
                seven.hosts[0].display()
            ),
        ],
    );
    assert!(
        resolve.status.success(),
        "{test}: a pings g.{DOMAIN} by name: {}",
        String::from_utf8_lossy(&resolve.stdout)
    );

    // The eighth node starts; nobody else is touched (same processes, same configs).
    let pids: Vec<Option<u32>> = first.iter().map(|&i| seven.lab.node(i).pid).collect();
    let joined_at = Instant::now();
    let mut seven = seven;
    seven
        .lab
        .spawn_node_with(late, &configs[late])
        .expect("spawn h");
    let late_pairs: Vec<(usize, usize)> = first.iter().map(|&i| (i, late)).collect();
    let reports = seven
        .lab
        .wait_connected(&late_pairs, joined_at, CONNECT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{test}: h joining: {e}\n{}", seven.lab.logs(30)));
    let reach = reports.iter().map(|r| r.setup).max().unwrap_or_default();
    eprintln!("{test}: FIGURE the late node reached all 7 members in {reach:?}");
    assert_path_classes(&seven.lab, &reports, test);
    seven.ping_pairs(&late_pairs, test);
    let again: Vec<Option<u32>> = first.iter().map(|&i| seven.lab.node(i).pid).collect();
    assert_eq!(pids, again, "no node restarted");
    for &i in &first {
        let pid = pids[i].expect("runs") as i32;
        // SAFETY: kill with signal 0 only checks that the process exists.
        assert_eq!(
            unsafe { libc::kill(pid, 0) },
            0,
            "{} still runs",
            seven.label(i)
        );
    }
    seven.wait_names(&all, &all, test);
    seven.assert_counters(&all, 7, test);

    // e is killed: everyone else drops it after expire_after, and not much before.
    let killed = 4;
    let expired_before: Vec<u64> = all
        .iter()
        .map(|&i| seven.community(i)["expired"].as_u64().unwrap_or(0))
        .collect();
    seven.lab.stop_node(killed, libc::SIGKILL);
    let killed_at = Instant::now();
    let rest: Vec<usize> = all.iter().copied().filter(|&i| i != killed).collect();
    let expired = wait_until(EXPIRE_AFTER + Duration::from_secs(15), || {
        rest.iter()
            .all(|&i| seven.lab.peer_status(i, killed).is_none())
    })
    .unwrap_or_else(|| panic!("{test}: e did not expire\n{}", seven.lab.logs(30)));
    assert!(
        killed_at.elapsed() >= EXPIRE_AFTER - ANNOUNCE_INTERVAL,
        "{test}: expired before expire_after: {:?}",
        killed_at.elapsed()
    );
    eprintln!(
        "{test}: FIGURE a killed node expired from all 7 others after {expired:?} (expire_after {EXPIRE_AFTER:?}, announce_interval {ANNOUNCE_INTERVAL:?})"
    );
    seven.wait_names(&rest, &rest, test);
    seven.assert_counters(&rest, 6, test);
    for &i in &rest {
        assert_eq!(
            seven.community(i)["expired"].as_u64(),
            Some(expired_before[i] + 1),
            "{test}: {} counts one expiry",
            seven.label(i)
        );
    }
    let text = metrics(&seven.lab, 0);
    assert_eq!(
        sample(
            &text,
            &format!("wice_community_members_expired_total{{interface=\"{iface}\"}}")
        ),
        Some(expired_before[0] as f64 + 1.0),
        "{test}: metrics:\n{text}"
    );
    // The others still reach each other.
    seven.ping_pairs(&[(0, late), (late, 6), (2, 5)], test);
}
