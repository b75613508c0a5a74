//! `wice netcheck` behind each of the lab's NAT kinds, against coturn listening on two
//! addresses (RFC 5780: OTHER-ADDRESS, CHANGE-REQUEST) beside the lab's plain coturn (STUN
//! and TURN, `--no-rfc5780`).

use std::net::{Ipv4Addr, UdpSocket};
use std::process::{Child, Command, Stdio};

use wice_lab::{Lab, LabOptions, NatKind, coturn, netns};

use crate::harness::*;

/// coturn's two listening addresses on the lab's internet.
const RFC5780_PRIMARY: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
const RFC5780_OTHER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 3);

/// A process killed by its PID on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        netns::kill(self.0.id() as i32, libc::SIGKILL);
        let _ = self.0.wait();
    }
}

/// coturn on both addresses, ports 3478 and 3479: RFC 5780 is on with two listening IPs.
fn start_rfc5780_server(lab: &Lab) -> Killed {
    for ip in [RFC5780_PRIMARY, RFC5780_OTHER] {
        lab.internet()
            .ip(&["addr", "add", &format!("{ip}/32"), "dev", "lo"]);
    }
    let dir = &lab.dir;
    let mut command: Command = lab.internet().command("turnserver");
    command
        .args(["-n", "--no-cli", "--no-tls", "--no-dtls"])
        .args(["--listening-ip", &RFC5780_PRIMARY.to_string()])
        .args(["--listening-ip", &RFC5780_OTHER.to_string()])
        .args(["--relay-ip", &RFC5780_PRIMARY.to_string()])
        .args(["--listening-port", "3478", "--alt-listening-port", "3479"])
        .args(["--min-port", "48000", "--max-port", "48100"])
        .args(["--no-software-attribute", "--simple-log", "--no-stdout-log"])
        .arg("--pidfile")
        .arg(dir.path("rfc5780.pid"))
        .arg("--userdb")
        .arg(dir.path("rfc5780.db"))
        .arg("--log-file")
        .arg(dir.path("rfc5780.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let server = Killed(command.spawn().expect("turnserver"));
    // Wait until it answers on the primary address.
    let primary = std::net::SocketAddr::new(RFC5780_PRIMARY.into(), 3478);
    let answered = lab
        .internet()
        .within(move || {
            let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
            coturn::binding(&socket, primary, std::time::Duration::from_secs(10))
        })
        .join()
        .ok()
        .flatten();
    assert!(answered.is_some(), "the RFC 5780 coturn did not answer");
    server
}

/// `wice netcheck -c CONFIG --json` in node `i`'s namespace, the node's config plus the
/// RFC 5780 server.
fn netcheck(lab: &Lab, i: usize, json: bool) -> (String, Option<serde_json::Value>) {
    let node = lab.node(i);
    let config = format!(
        "{}\n[[ice.servers]]\nurls = [\"stun:{RFC5780_PRIMARY}:3478\"]\n",
        lab.config(i)
    );
    let path = lab.dir.path(&format!("{}-netcheck.toml", node.label));
    netns::write_private(&path, &config).expect("config");
    let mut command = node.ns.command(WICE);
    command.arg("netcheck").arg("-c").arg(&path);
    if json {
        command.arg("--json");
    }
    let out = command.output().expect("wice netcheck");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wice netcheck failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value = json.then(|| serde_json::from_str(&stdout).expect("netcheck JSON"));
    (stdout, value)
}

#[test]
fn netcheck_reports_each_nat_kinds_mapping_filtering_and_verdict() {
    let test = "netcheck_reports_each_nat_kinds_mapping_filtering_and_verdict";
    if !root_or_skip(test) {
        return;
    }
    if !netns::have("turnserver") || !netns::have("nft") {
        return skip(test, "needs coturn's turnserver and nftables");
    }
    let mut lab = Lab::new(LabOptions::new(WICE)).expect("lab");
    lab.start_turn().expect("coturn");
    let _rfc5780 = start_rfc5780_server(&lab);
    let cases = [
        (NatKind::Public, "no-nat", "endpoint-independent", "open"),
        (
            NatKind::EndpointIndependent,
            "endpoint-independent",
            "address-and-port-dependent",
            "direct-likely",
        ),
        (
            NatKind::Symmetric,
            "address-and-port-dependent",
            "address-and-port-dependent",
            "relay-for-symmetric-peers",
        ),
    ];
    let mut nodes = Vec::new();
    for (n, (kind, ..)) in cases.iter().enumerate() {
        let site = lab.add_site(*kind).expect("site");
        let label = ((b'a' + n as u8) as char).to_string();
        nodes.push(lab.add_node(site, &label).expect("node"));
    }
    for ((kind, mapping, filtering, verdict), node) in cases.iter().zip(&nodes) {
        let (text, json) = netcheck(&lab, *node, true);
        let json = json.expect("json");
        let v4 = &json["ipv4"];
        eprintln!("{kind}: {text}");
        assert_eq!(v4["rfc5780"]["mapping"], *mapping, "behind {kind}: {text}");
        assert_eq!(
            v4["rfc5780"]["filtering"], *filtering,
            "behind {kind}: {text}"
        );
        assert_eq!(json["verdict"], *verdict, "behind {kind}: {text}");
        assert_eq!(
            v4["rfc5780"]["other_address"],
            format!("{RFC5780_OTHER}:3479")
        );
        // Both servers answered, with a latency; the site's public address was seen.
        let servers = v4["servers"].as_array().expect("servers");
        assert_eq!(servers.len(), 2, "{text}");
        assert!(
            servers
                .iter()
                .all(|s| s["answered"] == true && s["rtt_ms"].is_f64()),
            "{text}"
        );
        let wan = match kind {
            NatKind::Public => lab.node(*node).underlay.to_string(),
            _ => lab.site(lab.node(*node).site).wan.to_string(),
        };
        let seen = v4["public_addresses"].as_array().expect("addresses");
        assert!(
            seen.iter().all(|a| a
                .as_str()
                .is_some_and(|a| a.starts_with(&format!("{wan}:")))),
            "behind {kind} the servers saw {seen:?}, expected {wan}"
        );
        assert_eq!(json["ipv6"]["checked"], false, "the lab has no IPv6 server");
        // The node's own port (51820) was free: netcheck used it.
        assert_eq!(v4["node_port_taken"], serde_json::Value::Null);
        assert!(v4["socket"].as_str().is_some_and(|s| s.ends_with(":51820")));
    }
    // The text a person reads, behind the symmetric NAT.
    let (text, _) = netcheck(&lab, nodes[2], false);
    eprintln!("$ wice netcheck -c c.toml   # behind the symmetric NAT\n{text}");
    assert!(
        text.contains("verdict: needs a relay for peers behind symmetric"),
        "{text}"
    );
}

#[test]
fn netcheck_with_the_node_up_uses_a_fresh_socket_and_says_so() {
    let test = "netcheck_with_the_node_up_uses_a_fresh_socket_and_says_so";
    if !root_or_skip(test) {
        return;
    }
    if !netns::have("turnserver") || !netns::have("nft") {
        return skip(test, "needs coturn's turnserver and nftables");
    }
    let mut lab = Lab::new(LabOptions::new(WICE)).expect("lab");
    let _rfc5780 = start_rfc5780_server(&lab);
    let site = lab.add_site(NatKind::EndpointIndependent).expect("site");
    let node = lab.add_node(site, "a").expect("node");
    // Something (the node, here a stand-in) holds the node's port.
    let holder = lab
        .node(node)
        .ns
        .within(|| UdpSocket::bind(("0.0.0.0", wice_lab::NODE_PORT)))
        .join()
        .expect("thread")
        .expect("bind the node's port");
    let (text, json) = netcheck(&lab, node, true);
    let v4 = &json.expect("json")["ipv4"];
    assert_eq!(v4["node_port_taken"], wice_lab::NODE_PORT, "{text}");
    assert!(
        !v4["socket"].as_str().is_some_and(|s| s.ends_with(":51820")),
        "{text}"
    );
    assert_eq!(v4["rfc5780"]["mapping"], "endpoint-independent", "{text}");
    drop(holder);
}
