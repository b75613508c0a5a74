//! `wice netcheck`: the node's view of the internet over UDP. Asks every configured STUN and
//! TURN server for our address (reachability, latency, public addresses), runs RFC 5780's
//! mapping and filtering tests against the first server that names an alternate address
//! (coturn with two listening IPs does), checks IPv6 the same way, and prints a verdict.
//!
//! The protocol is [`wice_core::netcheck`]; this module owns the sockets and the clock.
//!
//! "From the node's own socket": netcheck binds the node's `listen_port` when it is free
//! (the node is down), so the NAT sees exactly the socket the node will use. When the node
//! is up the port is taken; netcheck then binds a fresh port on the same address family and
//! says so. A NAT maps and filters a new socket by the same rules as the node's, so mapping,
//! filtering and the verdict hold for the node; only the public port differs. (Asking the
//! running daemon to send the tests from its socket would need the datapath to hand back
//! answers to transactions that are not the controller's; not worth it for one diagnostic.)

mod render;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use wice_core::ice::ServerScheme;
use wice_core::netcheck::{Netcheck, NetcheckReport, Verdict, verdict};
use wice_core::session::rng::IceRandom;

use crate::config::Config;

pub use render::{render, to_json};

/// One server to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// How the config named it (`stun:host:port`, `turn:…`, or `ADDR` from `--server`).
    pub label: String,
    /// Where to send.
    pub address: SocketAddr,
    /// A TURN server (it answers Binding requests too).
    pub turn: bool,
}

/// The servers a config lists, each address once (a TURN server that is also listed as a
/// STUN server counts as TURN).
pub fn servers_of(config: &Config) -> Vec<Server> {
    let mut servers: Vec<Server> = Vec::new();
    for server in &config.ice.servers {
        let turn = server.url.scheme == ServerScheme::Turn;
        match servers.iter_mut().find(|s| s.address == server.address) {
            Some(known) => known.turn |= turn,
            None => servers.push(Server {
                label: server.url.to_string(),
                address: server.address,
                turn,
            }),
        }
    }
    servers
}

/// Which socket the checks of one address family ran from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketUsed {
    /// Its bound address.
    pub bound: SocketAddr,
    /// The node's port was taken (the node is up) and a fresh one was bound instead.
    pub node_port_taken: Option<u16>,
}

/// One address family's results.
#[derive(Debug, Clone)]
pub struct FamilyCheck {
    /// The socket.
    pub socket: SocketUsed,
    /// The servers of this family, in config order.
    pub servers: Vec<Server>,
    /// What they said.
    pub report: NetcheckReport,
    /// The verdict for this family.
    pub verdict: Verdict,
}

/// IPv6 as far as netcheck could tell.
#[derive(Debug, Clone)]
pub enum Ipv6Check {
    /// IPv6 servers were asked.
    Checked(Box<FamilyCheck>),
    /// No IPv6 server configured; whether the host has a global IPv6 address.
    NoServer {
        /// A global unicast IPv6 address on an interface that is up.
        global_address: Option<Ipv6Addr>,
    },
    /// The IPv6 socket could not be opened.
    NoSocket(String),
}

/// Everything `wice netcheck` prints.
#[derive(Debug, Clone)]
pub struct NetcheckOutput {
    /// IPv4 results; `None` when no IPv4 server is configured.
    pub ipv4: Option<FamilyCheck>,
    /// IPv6 results.
    pub ipv6: Ipv6Check,
    /// The verdict for the node: IPv4's, or IPv6's when only IPv6 was checked.
    pub verdict: Verdict,
}

/// Why netcheck could not run.
#[derive(Debug, thiserror::Error)]
pub enum NetcheckError {
    /// Nothing to ask.
    #[error("no STUN or TURN server to ask: add [[ice.servers]] to the config or pass --server")]
    NoServers,
    /// No UDP socket of a family could be bound.
    #[error("cannot open a UDP socket on {address}: {source}")]
    Bind {
        /// The address tried.
        address: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
}

/// Runs every check; `listen_port` is the node's port (0: any).
pub fn run(servers: &[Server], listen_port: u16) -> Result<NetcheckOutput, NetcheckError> {
    if servers.is_empty() {
        return Err(NetcheckError::NoServers);
    }
    let (v4, v6): (Vec<Server>, Vec<Server>) =
        servers.iter().cloned().partition(|s| s.address.is_ipv4());
    let (ipv4, ipv6) = std::thread::scope(|scope| {
        let v6_thread = (!v6.is_empty()).then(|| {
            scope.spawn(|| check_family(&v6, IpAddr::V6(Ipv6Addr::UNSPECIFIED), listen_port))
        });
        let ipv4 = (!v4.is_empty())
            .then(|| check_family(&v4, IpAddr::V4(Ipv4Addr::UNSPECIFIED), listen_port));
        let ipv6 = v6_thread.map(|t| t.join().unwrap_or_else(|_| Err(thread_panicked())));
        (ipv4, ipv6)
    });
    let ipv4 = ipv4.transpose()?;
    let ipv6 = match ipv6 {
        Some(Ok(check)) => Ipv6Check::Checked(Box::new(check)),
        Some(Err(err)) if ipv4.is_some() => Ipv6Check::NoSocket(err.to_string()),
        Some(Err(err)) => return Err(err),
        None => Ipv6Check::NoServer {
            global_address: global_ipv6_address(),
        },
    };
    let verdict = match (&ipv4, &ipv6) {
        (Some(v4), _) => v4.verdict,
        (None, Ipv6Check::Checked(v6)) => v6.verdict,
        (None, _) => Verdict::NoServers,
    };
    Ok(NetcheckOutput {
        ipv4,
        ipv6,
        verdict,
    })
}

fn thread_panicked() -> NetcheckError {
    NetcheckError::Bind {
        address: SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
        source: io::Error::other("the IPv6 check panicked"),
    }
}

/// Binds the node's port if free, else a fresh one.
fn bind(unspecified: IpAddr, listen_port: u16) -> Result<(UdpSocket, SocketUsed), NetcheckError> {
    let fresh = |port| {
        let address = SocketAddr::new(unspecified, port);
        UdpSocket::bind(address).map_err(|source| NetcheckError::Bind { address, source })
    };
    let (socket, node_port_taken) = match fresh(listen_port) {
        Ok(socket) => (socket, None),
        Err(NetcheckError::Bind { source, .. })
            if listen_port != 0 && source.kind() == io::ErrorKind::AddrInUse =>
        {
            (fresh(0)?, Some(listen_port))
        }
        Err(err) => return Err(err),
    };
    let bound = socket.local_addr().map_err(|source| NetcheckError::Bind {
        address: SocketAddr::new(unspecified, listen_port),
        source,
    })?;
    Ok((
        socket,
        SocketUsed {
            bound,
            node_port_taken,
        },
    ))
}

/// Our own address toward `server`: the source address the kernel picks, with our port.
fn local_toward(server: SocketAddr, port: u16) -> Option<SocketAddr> {
    let unspecified = match server {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let probe = UdpSocket::bind(SocketAddr::new(unspecified, 0)).ok()?;
    probe.connect(server).ok()?;
    Some(SocketAddr::new(probe.local_addr().ok()?.ip(), port))
}

fn check_family(
    servers: &[Server],
    unspecified: IpAddr,
    listen_port: u16,
) -> Result<FamilyCheck, NetcheckError> {
    let (socket, used) = bind(unspecified, listen_port)?;
    let addresses: Vec<SocketAddr> = servers.iter().map(|s| s.address).collect();
    let local = local_toward(addresses[0], used.bound.port());
    let mut check = Netcheck::new(&addresses, local, Instant::now(), IceRandom::from_os());
    drive(&socket, &mut check);
    let report = check.report();
    let relay_answers = servers
        .iter()
        .zip(&report.servers)
        .any(|(server, answer)| server.turn && answer.mapped().is_some());
    let verdict = verdict(&report, relay_answers);
    Ok(FamilyCheck {
        socket: used,
        servers: servers.to_vec(),
        report,
        verdict,
    })
}

/// Sends and receives until the check is done. Every wait is bounded by the check's next
/// deadline, so silence ends it.
fn drive(socket: &UdpSocket, check: &mut Netcheck) {
    let mut buf = [0u8; 1500];
    loop {
        while let Some((to, request)) = check.poll_transmit() {
            // A failed send is a server that does not answer; the probe times out.
            let _ = socket.send_to(&request, to);
        }
        if check.done() {
            return;
        }
        let Some(at) = check.poll_timeout() else {
            return;
        };
        let now = Instant::now();
        if at <= now {
            check.handle_timeout(now);
            continue;
        }
        let wait = (at - now).max(Duration::from_millis(1));
        if socket.set_read_timeout(Some(wait)).is_err() {
            return;
        }
        match socket.recv_from(&mut buf) {
            Ok((len, from)) => {
                check.handle_datagram(Instant::now(), from, &buf[..len]);
            }
            Err(_) => check.handle_timeout(Instant::now()),
        }
    }
}

fn global_ipv6_address() -> Option<Ipv6Addr> {
    if_addrs::get_if_addrs()
        .ok()?
        .into_iter()
        .filter(|i| !matches!(i.oper_status, if_addrs::IfOperStatus::Down))
        .find_map(|i| match i.ip() {
            // 2000::/3: global unicast.
            IpAddr::V6(v6) if v6.segments()[0] & 0xe000 == 0x2000 => Some(v6),
            _ => None,
        })
}
