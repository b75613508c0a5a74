//! The WebSocket transport where only HTTPS through a proxy passes (root, namespace lab).
//!
//! On the lab's internet: `wice signal` serving gRPCS on 203.0.113.1:7000 and `wss://` on
//! 203.0.113.2:443, and a squid forward proxy on 203.0.113.1:3128 that allows nothing but
//! `CONNECT` to port 443. nftables drops everything the sites send to 203.0.113.2, TCP and
//! UDP, so its only way in is the proxy. Nodes a and b signal over `wss://` through the
//! proxy (`https_proxy`); node c over gRPCS directly. Every pair connects: a and b through
//! the proxy, and a WebSocket node with a gRPC node.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wice_lab::{Lab, LabOptions, NatKind, PUBLIC_ADDR};

use crate::harness::{WICE, root_or_skip};

const WS_ADDR: &str = "203.0.113.2";
const PROXY_PORT: u16 = 3128;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(45);

/// A process in the lab's internet namespace, killed (by its PID) when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_in(ns: &str, program: &str, args: &[&str], log: &Path) -> Running {
    let log = std::fs::File::create(log).expect("log file");
    let child = Command::new("ip")
        .args(["netns", "exec", ns, program])
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    Running(child)
}

/// A scratch directory, removed when dropped.
struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn squid_config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "http_port {PUBLIC_ADDR}:{PROXY_PORT}\n\
         acl SSL_ports port 443\n\
         acl CONNECT method CONNECT\n\
         http_access deny !CONNECT\n\
         http_access deny CONNECT !SSL_ports\n\
         http_access allow all\n\
         cache deny all\n\
         dns_nameservers 127.0.0.1\n\
         pid_filename {d}/squid.pid\n\
         access_log stdio:{d}/squid-access.log\n\
         cache_log {d}/squid-cache.log\n\
         coredump_dir {d}\n\
         shutdown_lifetime 0 seconds\n"
    )
}

/// Sends `request` to the proxy and returns the status code of its answer.
fn proxy_status(request: &str) -> String {
    use std::io::{Read as _, Write as _};
    let proxy = std::net::SocketAddr::from((PUBLIC_ADDR, PROXY_PORT));
    let mut tcp = std::net::TcpStream::connect_timeout(&proxy, Duration::from_secs(5))
        .expect("connect to the proxy");
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    tcp.write_all(request.as_bytes()).expect("write");
    let mut answer = [0u8; 64];
    let n = tcp.read(&mut answer).expect("an answer");
    String::from_utf8_lossy(&answer[..n])
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

fn wait_tcp(lab: &Lab, addr: std::net::SocketAddr, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !lab
        .internet()
        .tcp_reachable(addr, Duration::from_millis(200))
    {
        assert!(Instant::now() < deadline, "{what} did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn nodes_behind_a_connect_only_proxy_signal_over_wss_and_meet_a_grpc_node() {
    let test = "nodes_behind_a_connect_only_proxy_signal_over_wss_and_meet_a_grpc_node";
    if !root_or_skip(test) {
        return;
    }
    if !wice_lab::netns::have("squid") || !wice_lab::netns::have("nft") {
        eprintln!("{test}: skipped: needs squid and nft (scripts/install-deps ci)");
        return;
    }
    let mut lab = Lab::new(LabOptions::new(WICE)).expect("lab");
    let internet = lab.internet().name.clone();
    lab.internet()
        .ip(&["addr", "add", &format!("{WS_ADDR}/32"), "dev", "lo"]);
    // squid drops to the `proxy` user: its files go in a directory it can reach and write.
    let scratch = Scratch(std::env::temp_dir().join(format!("wice-ws-lab-{}", std::process::id())));
    let dir = scratch.0.clone();
    std::fs::create_dir_all(&dir).expect("dir");
    let _ = Command::new("chmod")
        .args(["0777", &dir.display().to_string()])
        .status();

    let certified =
        rcgen::generate_simple_self_signed(vec![PUBLIC_ADDR.to_string(), WS_ADDR.to_owned()])
            .expect("cert");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("key");

    let _signal = spawn_in(
        &internet,
        WICE,
        &[
            "signal",
            "--listen",
            &format!("{PUBLIC_ADDR}:7000"),
            "--ws-listen",
            &format!("{WS_ADDR}:443"),
            "--tls-cert",
            &cert.display().to_string(),
            "--tls-key",
            &key.display().to_string(),
        ],
        &dir.join("signal.log"),
    );
    let squid_conf = dir.join("squid.conf");
    std::fs::write(&squid_conf, squid_config(&dir)).expect("squid.conf");
    let _squid = spawn_in(
        &internet,
        "squid",
        &["-N", "-f", &squid_conf.display().to_string()],
        &dir.join("squid.out"),
    );
    // Only the proxy (on the internet namespace itself, over lo) reaches 203.0.113.2.
    let rules = dir.join("only-through-the-proxy.nft");
    std::fs::write(
        &rules,
        format!(
            "table inet wice_ws_lab {{\n  chain input {{\n    type filter hook input priority 0;\n    \
             ip daddr {WS_ADDR} iifname != \"lo\" counter drop\n  }}\n}}\n"
        ),
    )
    .expect("rules");
    let nft = lab
        .internet()
        .exec("nft", &["-f", &rules.display().to_string()]);
    assert!(nft.status.success(), "nft: {nft:?}");
    wait_tcp(
        &lab,
        format!("{WS_ADDR}:443").parse().expect("addr"),
        "wice signal (wss)",
    );
    wait_tcp(
        &lab,
        format!("{PUBLIC_ADDR}:{PROXY_PORT}").parse().expect("addr"),
        "squid",
    );

    let mut nodes = Vec::new();
    for label in ["a", "b", "c"] {
        let site = lab.add_site(NatKind::Public).expect("site");
        nodes.push(lab.add_node(site, label).expect("node"));
    }
    let ca = cert.display().to_string();
    let proxy = format!("http://{PUBLIC_ADDR}:{PROXY_PORT}");
    let wss = format!("[signaling]\nbackends = [\"wss://{WS_ADDR}:443\"]\ntls_ca_file = \"{ca}\"");
    for &node in &nodes[..2] {
        lab.set_node_signaling(node, &wss, &[("https_proxy", proxy.as_str())]);
    }
    lab.set_node_signaling(
        nodes[2],
        &format!(
            "[signaling]\nbackends = [\"grpcs://{PUBLIC_ADDR}:7000\"]\ntls_ca_file = \"{ca}\""
        ),
        &[],
    );

    // The direct way is closed: from a node, 203.0.113.2:443 does not answer.
    assert!(
        !lab.node(nodes[0]).ns.tcp_reachable(
            format!("{WS_ADDR}:443").parse().expect("addr"),
            Duration::from_secs(1)
        ),
        "the WebSocket listener must be reachable only through the proxy"
    );

    // The proxy lets nothing but CONNECT to 443 through.
    let proxy_answer = |request: String| {
        lab.node(nodes[0])
            .ns
            .within(move || proxy_status(&request))
            .join()
            .expect("proxy probe")
    };
    assert_eq!(
        proxy_answer(format!(
            "CONNECT {WS_ADDR}:443 HTTP/1.1\r\nHost: {WS_ADDR}:443\r\n\r\n"
        )),
        "200"
    );
    assert_eq!(
        proxy_answer(format!(
            "CONNECT {PUBLIC_ADDR}:7000 HTTP/1.1\r\nHost: {PUBLIC_ADDR}:7000\r\n\r\n"
        )),
        "403"
    );
    assert_eq!(
        proxy_answer(format!(
            "GET http://{WS_ADDR}:443/v1/ws HTTP/1.1\r\nHost: {WS_ADDR}:443\r\n\r\n"
        )),
        "403"
    );

    let since = Instant::now();
    lab.start_nodes(&nodes).expect("daemons start");
    lab.wait_connected(&Lab::pairs(&nodes), since, CONNECT_TIMEOUT)
        .unwrap_or_else(|e| {
            panic!(
                "{test}: {e}\n{}\nsignal: {}\nsquid: {}",
                lab.logs(25),
                wice_lab::tail(&dir.join("signal.log"), 20),
                wice_lab::tail(&dir.join("squid-access.log"), 20)
            )
        });
    for (x, y) in Lab::pairs(&nodes) {
        let (nx, ny) = (lab.node(x), lab.node(y));
        assert!(
            nx.ns.ping(&ny.overlay.to_string(), 3, 10),
            "{} → {} ping through the tunnel\n{}",
            nx.label,
            ny.label,
            lab.logs(25)
        );
    }
    // The WebSocket nodes' signaling went through the proxy, as CONNECT to 443: squid logs
    // a tunnel when it ends, so stop the nodes first.
    lab.stop_node(nodes[0], libc::SIGTERM);
    lab.stop_node(nodes[1], libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    let tunnels = loop {
        let access = std::fs::read_to_string(dir.join("squid-access.log")).unwrap_or_default();
        let tunnels = access
            .lines()
            .filter(|line| line.contains("CONNECT") && line.contains(&format!("{WS_ADDR}:443")))
            .count();
        if tunnels >= 2 || Instant::now() > deadline {
            break tunnels;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        tunnels >= 2,
        "{tunnels} CONNECT tunnels to {WS_ADDR}:443 in squid's log:\n{}",
        wice_lab::tail(&dir.join("squid-access.log"), 20)
    );
}
