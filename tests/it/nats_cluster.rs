//! A NATS cluster for the tests: `nats-server` processes (Debian's `nats-server`) on
//! 127.0.0.1 or on an address inside a namespace, routed to each other, killed by their own
//! PID when dropped.
// Without the `nats` feature only the conformance suite's fixture code refers to it.
#![cfg_attr(not(feature = "nats"), allow(dead_code))]

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wice::signaling::{BackendUrl, NatsUrl};

const NATS_SERVER: &str = "nats-server";

/// One server's ports and process.
struct Node {
    client_port: u16,
    cluster_port: u16,
    monitor_port: u16,
    child: Option<Child>,
}

/// `n` routed `nats-server`s on one address.
pub(crate) struct NatsCluster {
    name: String,
    /// The address every server listens on.
    host: Ipv4Addr,
    /// The namespace they run in (`ip netns` name); `None`: this one.
    netns: Option<String>,
    nodes: Vec<Node>,
}

/// A port free now on 127.0.0.1 (the server binds it moments later).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// True when `nats-server` can be run; otherwise says why `test` is skipped.
pub(crate) fn nats_server_or_skip(test: &str) -> bool {
    let found = Command::new(NATS_SERVER)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        crate::harness::skip(test, "nats-server is not installed (Debian: nats-server)");
    }
    found
}

impl NatsCluster {
    /// Starts `n` servers on 127.0.0.1, routed to each other, and waits until every route
    /// is up.
    pub(crate) fn start(n: usize) -> Self {
        let nodes = (0..n)
            .map(|_| Node {
                client_port: free_port(),
                cluster_port: free_port(),
                monitor_port: free_port(),
                child: None,
            })
            .collect();
        Self::start_nodes(Ipv4Addr::LOCALHOST, None, nodes)
    }

    /// Starts `n` servers on `host` inside namespace `netns` (a fresh namespace: fixed
    /// ports 14222+i, 16222+i, 18222+i).
    pub(crate) fn start_in(netns: &str, host: Ipv4Addr, n: u16) -> Self {
        let nodes = (0..n)
            .map(|i| Node {
                client_port: 14222 + i,
                cluster_port: 16222 + i,
                monitor_port: 18222 + i,
                child: None,
            })
            .collect();
        Self::start_nodes(host, Some(netns.to_owned()), nodes)
    }

    fn start_nodes(host: Ipv4Addr, netns: Option<String>, nodes: Vec<Node>) -> Self {
        let n = nodes.len();
        let mut cluster = Self {
            name: format!("wice-test-{}", std::process::id()),
            host,
            netns,
            nodes,
        };
        for index in 0..n {
            cluster.spawn(index);
        }
        cluster.wait_ready();
        cluster
    }

    fn spawn(&mut self, index: usize) {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(other, _)| *other != index)
            .map(|(_, node)| format!("nats://{}:{}", self.host, node.cluster_port))
            .collect();
        let node = &self.nodes[index];
        let host = self.host.to_string();
        let mut command = match &self.netns {
            None => Command::new(NATS_SERVER),
            // `ip netns exec` execs the server: the child's PID is the server's.
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns, NATS_SERVER]);
                command
            }
        };
        command
            .args(["-a", &host, "-p", &node.client_port.to_string()])
            .args(["-m", &node.monitor_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if !routes.is_empty() {
            command
                .args(["--cluster", &format!("nats://{host}:{}", node.cluster_port)])
                .args(["--cluster_name", &self.name])
                .args(["--routes", &routes.join(",")]);
        }
        let child = command.spawn().expect("start nats-server");
        self.nodes[index].child = Some(child);
    }

    /// Waits until each running server answers and has a route to each other running one.
    pub(crate) fn wait_ready(&self) {
        let running: Vec<&Node> = self.nodes.iter().filter(|n| n.child.is_some()).collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &running {
            loop {
                let routes = self.monitor_number(node, "/routez", "num_routes");
                if routes.is_some_and(|r| r + 1 >= running.len()) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "nats-server on port {} never got its routes ({routes:?})",
                    node.client_port
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// A number from server `index`'s monitoring endpoint `path` (like `/connz`,
    /// `num_connections`), if it answers.
    pub(crate) fn monitor(&self, index: usize, path: &str, field: &str) -> Option<usize> {
        self.monitor_number(&self.nodes[index], path, field)
    }

    fn monitor_number(&self, node: &Node, path: &str, field: &str) -> Option<usize> {
        let body = match &self.netns {
            None => monitor(node.monitor_port, path)?,
            Some(netns) => monitor_in(netns, self.host, node.monitor_port, path)?,
        };
        let at = body.find(&format!("\"{field}\":"))?;
        let digits: String = body[at + field.len() + 3..]
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse::<usize>().ok()
    }

    /// The URL of server `index` alone.
    pub(crate) fn url(&self, index: usize) -> BackendUrl {
        self.url_of(&[index])
    }

    /// A URL listing servers `indexes`, the first tried first.
    pub(crate) fn url_of(&self, indexes: &[usize]) -> BackendUrl {
        BackendUrl::Nats(NatsUrl {
            servers: indexes
                .iter()
                .map(|&i| (self.host.to_string(), self.nodes[i].client_port))
                .collect(),
            tls: false,
            auth: None,
            ca_file: None,
        })
    }

    /// Kills server `index` (SIGKILL: no goodbye to its clients).
    pub(crate) fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts server `index` again on its old ports and waits for the cluster.
    pub(crate) fn restart(&mut self, index: usize) {
        self.kill(index);
        self.spawn(index);
        self.wait_ready();
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.kill(index);
        }
    }
}

/// [`monitor`] from inside namespace `netns` (bash's `/dev/tcp`).
fn monitor_in(netns: &str, host: Ipv4Addr, port: u16, path: &str) -> Option<String> {
    let script = format!(
        "exec 3<>/dev/tcp/{host}/{port} && printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' >&3 && timeout 2 cat <&3"
    );
    let output = Command::new("ip")
        .args(["netns", "exec", netns, "bash", "-c", &script])
        .output()
        .ok()?;
    let response = String::from_utf8_lossy(&output.stdout).into_owned();
    response.contains(" 200 ").then_some(response)
}

/// The body of an HTTP GET on the monitoring port, if the server answers.
fn monitor(port: u16, path: &str) -> Option<String> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.contains(" 200 ").then_some(response)
}
