//! A NAT lab on one machine: network namespaces joined by veth pairs, NAT routers, and the
//! servers a mesh needs, for `wice demo`, the end-to-end tests and the setup-time bench.
//!
//! ```text
//!                     internet (namespace): routes between sites; 203.0.113.1 on lo runs
//!                     `wice signal` (:7000) and coturn (STUN + TURN, :3478)
//!        198.18.1.1 /        | 198.18.2.1            \ 198.18.3.1
//!   router 1 (public)    router 2 (eim NAT)      router 3 (symmetric NAT)   one per site
//!   LAN 198.19.1.0/24    LAN 192.168.2.0/24      LAN 192.168.3.0/24         a bridge
//!     node a             node b   node c           node d                  one namespace each
//! ```
//!
//! - Site *k* (from 1) reaches the internet namespace over a veth pair, `198.18.k.1` ↔
//!   `198.18.k.2`. Its LAN is a bridge in the router namespace with the router at `.1` and the
//!   nodes from `.2`. A public site's LAN (`198.19.k.0/24`) is routed from the internet; a NAT
//!   site's LAN (`192.168.k.0/24`) is not, so nothing reaches it except through the NAT.
//! - NAT behaviour is in [`nat`]: endpoint-independent or symmetric mapping, address- and
//!   port-dependent filtering, no hairpinning. Every router and the internet namespace forward
//!   with `rp_filter` off. The internet's default route is a black hole (a veth pair inside
//!   the namespace), so sends to unroutable addresses succeed and vanish, as on the real
//!   internet, instead of failing (coturn drops an allocation whose send fails).
//! - Each node gets a WireGuard key, an overlay address `10.77.0.n`, and a config that lists
//!   every other lab node as a peer without an endpoint, so ICE finds the paths through the
//!   lab's signaling server and, when coturn runs, its STUN and TURN server.
//!
//! Everything is built with the `ip` command (iproute2), `sysctl` and, for NAT sites, `nft`
//! (nftables); coturn's `turnserver` is optional. It needs root. Names carry the PID
//! ([`netns::unique`]), so runs never collide; dropping the [`Lab`] kills its processes by PID
//! and then deletes its namespaces, also when a test fails, and [`netns::sweep_dead_runs`]
//! removes what a killed run left behind. Traffic never leaves the lab's namespaces: none of
//! them has a route out of the lab.

pub mod coturn;
pub mod nat;
pub mod netns;
mod status;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use nat::NatKind;
pub use netns::{Netns, TempDir};
use status::request_status;

use wice_core::keys::PrivateKey;

/// The internet namespace's server address (on its `lo`).
pub const PUBLIC_ADDR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// `wice signal` listens here, on [`PUBLIC_ADDR`].
pub const SIGNAL_PORT: u16 = 7000;
/// coturn listens here (STUN and TURN), on [`PUBLIC_ADDR`].
pub const TURN_PORT: u16 = 3478;
/// Every node's WireGuard/ICE UDP port.
pub const NODE_PORT: u16 = 51820;
/// How often status is polled while waiting.
pub const POLL: Duration = Duration::from_millis(100);
/// The name of the config's peer tables (`[[peer]]`).
const PEER_TABLE: &str = "peer";

/// What went wrong while building or driving the lab.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LabError(pub String);

/// How to build a lab.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Name prefix, one of [`netns::PREFIXES`]: `wt` for tests, `wd` for the demo.
    pub prefix: &'static str,
    /// The `wice` binary the nodes run (`wice up`) and the signaling server runs (`wice signal`).
    pub wice: PathBuf,
    /// `--log-level` for the nodes.
    pub log_level: String,
    /// `[ice] candidate_types`, if not the default (all).
    pub candidate_types: Option<Vec<String>>,
    /// Set from outside (a signal handler) to make waits return early with an error.
    pub interrupt: Option<Arc<AtomicBool>>,
    /// `[signaling] backends` of every node, if not the lab's `wice signal`.
    pub signaling_backends: Option<Vec<String>>,
}

impl LabOptions {
    /// Defaults for `wice` at `path`: prefix `wt`, log level `info`, all candidate types.
    pub fn new(wice: impl Into<PathBuf>) -> Self {
        Self {
            prefix: "wt",
            wice: wice.into(),
            log_level: "info".into(),
            candidate_types: None,
            interrupt: None,
            signaling_backends: None,
        }
    }
}

/// One site: a router namespace and its LAN.
#[derive(Debug)]
pub struct Site {
    /// The NAT kind of its router.
    pub nat: NatKind,
    /// The router's namespace.
    pub router: Netns,
    /// The router's WAN address (what peers see for a NAT site).
    pub wan: Ipv4Addr,
    /// The LAN's first three octets.
    lan: [u8; 3],
    /// The bridge in the router namespace.
    bridge: String,
    /// Nodes on the LAN so far.
    hosts: u8,
}

/// One node: a namespace on a site's LAN that runs `wice up`.
#[derive(Debug)]
pub struct LabNode {
    /// A short label (`a`, `b`, …).
    pub label: String,
    /// Index of its site.
    pub site: usize,
    /// Its namespace.
    pub ns: Netns,
    /// Its LAN address.
    pub underlay: Ipv4Addr,
    /// Its tunnel address.
    pub overlay: Ipv4Addr,
    /// Its WireGuard public key, base64.
    pub public_key: String,
    private_key: String,
    /// TUN interface name.
    pub interface: String,
    /// Control socket path.
    pub socket: PathBuf,
    /// Where the daemon's stderr goes (appended across restarts).
    pub log: PathBuf,
    /// The daemon's PID while it runs.
    pub pid: Option<u32>,
    /// This node's own `[signaling]` section, replacing the lab-wide one.
    signaling: Option<String>,
    /// Environment variables the daemon gets (an HTTP proxy, say).
    env: Vec<(String, String)>,
}

/// A connected pair as seen by [`Lab::wait_connected`].
#[derive(Debug, Clone)]
pub struct PairReport {
    /// Node indices.
    pub a: usize,
    /// Node indices.
    pub b: usize,
    /// From `since` until both sides said connected.
    pub setup: Duration,
    /// `path` in a's status for b.
    pub path_a: String,
    /// `path` in b's status for a.
    pub path_b: String,
}

impl PairReport {
    /// The path both sides agree on, or `x/y` when they differ.
    pub fn path(&self) -> String {
        if self.path_a == self.path_b {
            self.path_a.clone()
        } else {
            format!("{}/{}", self.path_a, self.path_b)
        }
    }

    /// True if either side relays.
    pub fn relayed(&self) -> bool {
        self.path_a == "relay" || self.path_b == "relay"
    }
}

/// The whole lab; dropping it tears everything down.
#[derive(Debug)]
pub struct Lab {
    // Field order is drop order: nodes, then routers, then the internet, then files.
    nodes: Vec<LabNode>,
    sites: Vec<Site>,
    internet: Netns,
    signal_pid: Option<u32>,
    turn_pid: Option<u32>,
    options: LabOptions,
    /// Scratch directory: configs, sockets, logs.
    pub dir: TempDir,
}

impl Lab {
    /// The internet namespace with [`PUBLIC_ADDR`]; no sites or servers yet.
    pub fn new(options: LabOptions) -> Result<Self, LabError> {
        if !netns::is_root() {
            return Err(LabError(
                "the lab needs root (network namespaces, veth pairs, TUN devices)".into(),
            ));
        }
        if !netns::have("ip") {
            return Err(LabError("the lab needs `ip` (iproute2)".into()));
        }
        netns::sweep_dead_runs();
        let dir = TempDir::create()?;
        let internet = Netns::create(options.prefix)?;
        internet.try_ip(&["addr", "add", &format!("{PUBLIC_ADDR}/32"), "dev", "lo"])?;
        router_sysctls(&internet)?;
        // A real internet routes everywhere. Without a default route coturn's sends to
        // unroutable peers (the other side's private host candidates) fail with
        // ENETUNREACH, and coturn closes the whole allocation. A veth pair with both ends in
        // this namespace is a black hole: sends succeed, ARP goes unanswered, nothing leaves.
        let hole = format!("bh{}", netns::unique());
        let hole_peer = format!("{hole}p");
        internet.try_ip(&[
            "link", "add", &hole, "type", "veth", "peer", "name", &hole_peer,
        ])?;
        internet.try_ip(&["link", "set", &hole, "up"])?;
        internet.try_ip(&["link", "set", &hole_peer, "up"])?;
        internet.try_ip(&["route", "add", "default", "dev", &hole])?;
        Ok(Self {
            nodes: Vec::new(),
            sites: Vec::new(),
            internet,
            signal_pid: None,
            turn_pid: None,
            options,
            dir,
        })
    }

    /// The internet namespace.
    pub fn internet(&self) -> &Netns {
        &self.internet
    }

    /// The nodes, in the order they were added.
    pub fn nodes(&self) -> &[LabNode] {
        &self.nodes
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &LabNode {
        &self.nodes[i]
    }

    /// Site `i`.
    pub fn site(&self, i: usize) -> &Site {
        &self.sites[i]
    }

    /// Adds a site: a router namespace behind `nat`, linked to the internet, with an empty LAN.
    pub fn add_site(&mut self, nat: NatKind) -> Result<usize, LabError> {
        if nat.needs_nft() && !netns::have("nft") {
            return Err(LabError(format!("a {nat} NAT site needs `nft` (nftables)")));
        }
        let k = u8::try_from(self.sites.len() + 1)
            .ok()
            .filter(|k| *k < 250)
            .ok_or_else(|| LabError("too many sites".into()))?;
        let router = Netns::create(self.options.prefix)?;
        router_sysctls(&router)?;
        let (_, wan) = netns::try_veth(
            &self.internet,
            Some(&format!("198.18.{k}.1/24")),
            &router,
            Some(&format!("198.18.{k}.2/24")),
        )?;
        router.try_ip(&["route", "add", "default", "via", &format!("198.18.{k}.1")])?;
        let lan = match nat {
            NatKind::Public => [198, 19, k],
            _ => [192, 168, k],
        };
        let bridge = format!("br{}", netns::unique());
        router.try_ip(&["link", "add", &bridge, "type", "bridge"])?;
        // Bridged frames must not go through the router's nftables rules.
        for key in [
            "net.bridge.bridge-nf-call-iptables",
            "net.bridge.bridge-nf-call-ip6tables",
            "net.bridge.bridge-nf-call-arptables",
        ] {
            let _ = router.sysctl(key, "0");
        }
        let [x, y, z] = lan;
        router.try_ip(&["addr", "add", &format!("{x}.{y}.{z}.1/24"), "dev", &bridge])?;
        router.try_ip(&["link", "set", &bridge, "up"])?;
        if nat == NatKind::Public {
            self.internet.try_ip(&[
                "route",
                "add",
                &format!("{x}.{y}.{z}.0/24"),
                "via",
                &format!("198.18.{k}.2"),
            ])?;
        }
        if let Some(rules) = nat::ruleset(nat, &wan) {
            let mut nft = router.command("nft");
            nft.args(["-f", "-"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = nft
                .spawn()
                .map_err(|e| LabError(format!("cannot run nft: {e}")))?;
            if let Some(mut stdin) = child.stdin.take() {
                use std::io::Write;
                stdin
                    .write_all(rules.as_bytes())
                    .map_err(|e| LabError(format!("nft stdin: {e}")))?;
            }
            let out = child
                .wait_with_output()
                .map_err(|e| LabError(format!("nft: {e}")))?;
            if !out.status.success() {
                return Err(LabError(format!(
                    "nft in {}: {}",
                    router.name,
                    String::from_utf8_lossy(&out.stderr).trim_end()
                )));
            }
        }
        self.sites.push(Site {
            nat,
            router,
            wan: Ipv4Addr::new(198, 18, k, 2),
            lan,
            bridge,
            hosts: 1,
        });
        Ok(self.sites.len() - 1)
    }

    /// Adds a node on `site`'s LAN with a fresh key; returns its index. Its daemon is not started.
    pub fn add_node(&mut self, site: usize, label: &str) -> Result<usize, LabError> {
        let n = u8::try_from(self.nodes.len() + 1)
            .ok()
            .filter(|n| *n < 250)
            .ok_or_else(|| LabError("too many nodes".into()))?;
        let s = self
            .sites
            .get_mut(site)
            .ok_or_else(|| LabError(format!("no site {site}")))?;
        s.hosts += 1;
        let [x, y, z] = s.lan;
        let underlay = Ipv4Addr::new(x, y, z, s.hosts);
        let ns = Netns::create(self.options.prefix)?;
        let (_, router_end) =
            netns::try_veth(&ns, Some(&format!("{underlay}/24")), &s.router, None)?;
        s.router
            .try_ip(&["link", "set", &router_end, "master", &s.bridge])?;
        ns.try_ip(&["route", "add", "default", "via", &format!("{x}.{y}.{z}.1")])?;
        let key = PrivateKey::generate();
        let id = netns::unique();
        self.nodes.push(LabNode {
            label: label.to_owned(),
            site,
            ns,
            underlay,
            overlay: Ipv4Addr::new(10, 77, 0, n),
            public_key: key.public_key().to_base64(),
            private_key: key.to_base64(),
            interface: format!("w{id}"),
            socket: self.dir.path(&format!("{label}-{id}.sock")),
            log: self.dir.path(&format!("{label}.log")),
            pid: None,
            signaling: None,
            env: Vec::new(),
        });
        Ok(self.nodes.len() - 1)
    }

    /// Gives node `i` its own `[signaling]` section (the whole section, header included)
    /// and environment, for its next start: nodes on different backends, or behind a proxy.
    pub fn set_node_signaling(&mut self, i: usize, section: &str, env: &[(&str, &str)]) {
        let node = &mut self.nodes[i];
        node.signaling = Some(section.to_owned());
        node.env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
    }

    /// Starts `wice signal` on [`PUBLIC_ADDR`]:[`SIGNAL_PORT`] and waits until it accepts.
    pub fn start_signal(&mut self) -> Result<(), LabError> {
        if self.signal_pid.is_some() {
            return Ok(());
        }
        let listen = SocketAddr::new(PUBLIC_ADDR.into(), SIGNAL_PORT);
        let log = append(&self.dir.path("signal.log"))?;
        let mut command = self.internet.command(&self.options.wice);
        command
            .args(["signal", "--listen", &listen.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let pid = self.internet.try_spawn(command)?;
        self.signal_pid = Some(pid);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self
            .internet
            .tcp_reachable(listen, Duration::from_millis(200))
        {
            if let Some(code) = self.internet.try_wait(pid) {
                return Err(LabError(format!(
                    "wice signal exited ({code:?}):\n{}",
                    tail(&self.dir.path("signal.log"), 20)
                )));
            }
            if Instant::now() > deadline {
                return Err(LabError(
                    "wice signal did not start listening in 10 s".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Stops the signaling server (SIGTERM, then SIGKILL after 2 s).
    pub fn stop_signal(&mut self) {
        if let Some(pid) = self.signal_pid.take() {
            self.internet
                .stop(pid, libc::SIGTERM, Duration::from_secs(2));
        }
    }

    /// Starts coturn on [`PUBLIC_ADDR`]:[`TURN_PORT`] and waits until it answers STUN.
    pub fn start_turn(&mut self) -> Result<(), LabError> {
        if self.turn_pid.is_some() {
            return Ok(());
        }
        if !netns::have("turnserver") {
            return Err(LabError("coturn's `turnserver` is not installed".into()));
        }
        let command = coturn::command(PUBLIC_ADDR.into(), TURN_PORT, &self.dir.0);
        let mut wrapped = self.internet.command(command.get_program());
        wrapped
            .args(command.get_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let pid = self.internet.try_spawn(wrapped)?;
        self.turn_pid = Some(pid);
        let server = SocketAddr::new(PUBLIC_ADDR.into(), TURN_PORT);
        let answered = self
            .internet
            .within(move || {
                let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if let Some(addr) = coturn::binding(&socket, server, Duration::from_millis(400))
                    {
                        return Some(addr);
                    }
                }
                None
            })
            .join()
            .ok()
            .flatten();
        if answered.is_none() {
            return Err(LabError(format!(
                "coturn did not answer STUN within 10 s:\n{}",
                tail(&self.dir.path("turnserver.log"), 20)
            )));
        }
        Ok(())
    }

    /// Whether coturn runs.
    pub fn has_turn(&self) -> bool {
        self.turn_pid.is_some()
    }

    /// The config node `i` runs: every other lab node is a peer without an endpoint.
    pub fn config(&self, i: usize) -> String {
        let node = &self.nodes[i];
        let mut t = format!(
            "[interface]\nname = \"{}\"\nprivate_key = \"{}\"\nlisten_port = {NODE_PORT}\naddresses = [\"{}/24\"]\ncontrol_socket = \"{}\"\n",
            node.interface,
            node.private_key,
            node.overlay,
            node.socket.display()
        );
        for (j, peer) in self.nodes.iter().enumerate() {
            if j != i {
                t.push_str(&format!(
                    "\n[[{PEER_TABLE}]]\npublic_key = \"{}\"\nallowed_ips = [\"{}/32\"]\n",
                    peer.public_key, peer.overlay
                ));
            }
        }
        match (&node.signaling, &self.options.signaling_backends) {
            (Some(section), _) => {
                t.push('\n');
                t.push_str(section);
                t.push('\n');
            }
            (None, Some(urls)) => {
                let list: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
                t.push_str(&format!(
                    "\n[signaling]\nbackends = [{}]\n",
                    list.join(", ")
                ));
            }
            (None, None) => t.push_str(&format!(
                "\n[signaling]\nbackends = [\"grpc://{PUBLIC_ADDR}:{SIGNAL_PORT}\"]\n"
            )),
        }
        if let Some(types) = &self.options.candidate_types {
            let list: Vec<String> = types.iter().map(|t| format!("\"{t}\"")).collect();
            t.push_str(&format!(
                "\n[ice]\ncandidate_types = [{}]\n",
                list.join(", ")
            ));
        }
        if self.has_turn() {
            t.push_str(&format!(
                "\n[[ice.servers]]\nurls = [\"stun:{PUBLIC_ADDR}:{TURN_PORT}\"]\n\n[[ice.servers]]\nurls = [\"turn:{PUBLIC_ADDR}:{TURN_PORT}?transport=udp\"]\nusername = \"{}\"\ncredential = \"{}\"\n",
                coturn::USER,
                coturn::PASSWORD
            ));
        }
        t
    }

    /// Writes node `i`'s config and starts its daemon; does not wait for it.
    pub fn spawn_node(&mut self, i: usize) -> Result<(), LabError> {
        if self.nodes[i].pid.is_some() {
            return Err(LabError(format!("{} already runs", self.nodes[i].label)));
        }
        let config = self.config(i);
        let node = &mut self.nodes[i];
        let path = self.dir.path(&format!("{}.toml", node.label));
        // 0600: the config holds the node's private key and TURN credential inline.
        netns::write_private(&path, &config)
            .map_err(|e| LabError(format!("cannot write {}: {e}", path.display())))?;
        let log = append(&node.log)?;
        let mut command = node.ns.command(&self.options.wice);
        command
            .args(["up", "-c"])
            .arg(&path)
            .args(["--log-level", &self.options.log_level])
            // turn-client-proto traces every poll at INFO; boringtun logs routine expiry as ERROR.
            .env(
                "RUST_LOG",
                format!(
                    "{0},turn_client_proto=warn,boringtun=off",
                    self.options.log_level
                ),
            )
            .envs(node.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        node.pid = Some(node.ns.try_spawn(command)?);
        Ok(())
    }

    /// Starts the daemons of `nodes` together and waits until each control socket answers.
    pub fn start_nodes(&mut self, nodes: &[usize]) -> Result<(), LabError> {
        for &i in nodes {
            self.spawn_node(i)?;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for &i in nodes {
            while self.status(i).is_none() {
                self.check_interrupt()?;
                let node = &mut self.nodes[i];
                if let Some(pid) = node.pid
                    && let Some(code) = node.ns.try_wait(pid)
                {
                    node.pid = None;
                    return Err(LabError(format!(
                        "wice up for {} exited ({code:?}):\n{}",
                        node.label,
                        tail(&node.log, 30)
                    )));
                }
                if Instant::now() > deadline {
                    return Err(LabError(format!(
                        "wice up for {} did not answer on its control socket in 10 s:\n{}",
                        node.label,
                        tail(&node.log, 30)
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Stops node `i`'s daemon with `signal` (SIGKILL: a crash; SIGTERM: a clean stop).
    pub fn stop_node(&mut self, i: usize, signal: i32) {
        let node = &mut self.nodes[i];
        if let Some(pid) = node.pid.take() {
            node.ns.stop(pid, signal, Duration::from_secs(3));
        }
        // A killed daemon leaves its socket; the next start removes leftovers itself.
    }

    /// `wice status --json` of node `i`, if its daemon answers.
    pub fn status(&self, i: usize) -> Option<serde_json::Value> {
        request_status(&self.nodes[i].socket)
    }

    /// Node `i`'s status entry for node `j`.
    pub fn peer_status(&self, i: usize, j: usize) -> Option<serde_json::Value> {
        let key = &self.nodes[j].public_key;
        self.status(i)?["peers"]
            .as_array()?
            .iter()
            .find(|p| p["public_key"].as_str() == Some(key))
            .cloned()
    }

    /// Waits until both sides of every pair report the other connected (state `connected` and a
    /// handshake); polls every [`POLL`]. The error names each pair still missing, with both
    /// sides' state and reason.
    pub fn wait_connected(
        &self,
        pairs: &[(usize, usize)],
        since: Instant,
        timeout: Duration,
    ) -> Result<Vec<PairReport>, LabError> {
        let mut done: Vec<Option<PairReport>> = vec![None; pairs.len()];
        let deadline = Instant::now() + timeout;
        loop {
            for (slot, &(a, b)) in done.iter_mut().zip(pairs) {
                if slot.is_some() {
                    continue;
                }
                let (Some(pa), Some(pb)) = (self.peer_status(a, b), self.peer_status(b, a)) else {
                    continue;
                };
                if connected(&pa) && connected(&pb) {
                    *slot = Some(PairReport {
                        a,
                        b,
                        setup: since.elapsed(),
                        path_a: text(&pa["path"]),
                        path_b: text(&pb["path"]),
                    });
                }
            }
            if done.iter().all(Option::is_some) {
                return Ok(done.into_iter().flatten().collect());
            }
            self.check_interrupt()?;
            if Instant::now() > deadline {
                let mut message = format!("not connected after {:.1} s:", timeout.as_secs_f64());
                for (slot, &(a, b)) in done.iter().zip(pairs) {
                    if slot.is_none() {
                        message.push_str(&format!(
                            "\n  {} ↔ {}: {}; {}",
                            self.nodes[a].label,
                            self.nodes[b].label,
                            self.describe(a, b),
                            self.describe(b, a)
                        ));
                    }
                }
                return Err(LabError(message));
            }
            std::thread::sleep(POLL);
        }
    }

    /// One line about how `i` sees `j`: state, path, reason.
    pub fn describe(&self, i: usize, j: usize) -> String {
        let who = &self.nodes[i].label;
        match self.peer_status(i, j) {
            None => format!("{who}: no status"),
            Some(p) => format!(
                "{who} says state={} path={} reason={}",
                text(&p["state"]),
                text(&p["path"]),
                text(&p["reason"])
            ),
        }
    }

    /// The last `lines` lines of every node's log and the servers' logs, for failure messages.
    pub fn logs(&self, lines: usize) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            out.push_str(&format!(
                "--- {} ({})\n{}\n",
                node.label,
                node.log.display(),
                tail(&node.log, lines)
            ));
        }
        for name in ["signal.log", "turnserver.log"] {
            let path = self.dir.path(name);
            if path.exists() {
                out.push_str(&format!("--- {name}\n{}\n", tail(&path, lines * 3)));
            }
        }
        out
    }

    /// Every unordered pair of the given nodes.
    pub fn pairs(nodes: &[usize]) -> Vec<(usize, usize)> {
        let mut pairs = Vec::new();
        for (x, &a) in nodes.iter().enumerate() {
            for &b in &nodes[x + 1..] {
                pairs.push((a, b));
            }
        }
        pairs
    }

    fn check_interrupt(&self) -> Result<(), LabError> {
        match &self.options.interrupt {
            Some(flag) if flag.load(Ordering::Relaxed) => Err(LabError("interrupted".into())),
            _ => Ok(()),
        }
    }
}

/// Connected in the test sense: state `connected` and a handshake seen.
pub fn connected(peer: &serde_json::Value) -> bool {
    peer["state"] == "connected" && !peer["last_handshake_secs"].is_null()
}

/// A direct (not relayed) ICE path type.
pub fn is_direct(path: &str) -> bool {
    matches!(path, "host" | "srflx" | "prflx")
}

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn router_sysctls(ns: &Netns) -> Result<(), LabError> {
    ns.sysctl("net.ipv4.ip_forward", "1")?;
    ns.sysctl("net.ipv4.conf.all.rp_filter", "0")?;
    ns.sysctl("net.ipv4.conf.default.rp_filter", "0")?;
    Ok(())
}

fn append(path: &Path) -> Result<std::fs::File, LabError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| LabError(format!("cannot open {}: {e}", path.display())))
}

/// The last `lines` lines of a file (empty if unreadable).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The overlay address of node `i` as an [`IpAddr`].
impl LabNode {
    /// Its tunnel address.
    pub fn overlay_ip(&self) -> IpAddr {
        IpAddr::V4(self.overlay)
    }
}
