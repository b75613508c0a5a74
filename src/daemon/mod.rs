//! `wice up`: bring the node up, find paths to peers, serve status, tear down on a signal.
//!
//! Order matters for "a failed start leaves nothing behind": claim the name
//! (cleaning a crashed run's leftovers), create the datapath, configure
//! addresses and routes, start ICE for peers without an endpoint, then serve.
//! Any failure after the claim unwinds through [`Node::teardown`].
//!
//! Once up, the node runs until a signal, or until a part it cannot run
//! without dies: a datapath packet thread or the ICE task. Then it tears down
//! the same way and exits with an error naming what died, never staying "up"
//! with a dead datapath.

mod community;
mod ice_driver;
mod peer_events;
mod peer_set;
mod reload;
mod supervise;

use std::collections::HashSet;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use wice_core::session::rng::IceRandom;
use wice_datapath::{Device, DeviceConfig, Endpoint, ThreadExit};

use crate::config::{Config, IceConfig};
use crate::control;
use crate::control::ReloadRequest;
use crate::signaling::{Signaling, backends_from_urls};
use crate::status::Status;
use crate::system::policy_routing::{self, PolicyRouting};
use crate::system::{self, SystemError};
use wice_core::ice::{
    Controller, InterfaceAddress, ServerScheme, Sources, TurnServer, host_candidates,
};
use wice_core::keys::PublicKey;
use wice_core::signaling::SenderPolicy;

use community::Community;
use ice_driver::{Datapath, DriverCommand, IceSnapshot, SharedSnapshot};
use peer_set::{InstalledRoutes, PeerSet};

/// Why the node could not come up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpError {
    /// Not root (or without CAP_NET_ADMIN).
    #[error("wice up needs root (CAP_NET_ADMIN) to create {0}")]
    NotRoot(String),
    /// The host refused a change.
    #[error(transparent)]
    System(#[from] SystemError),
    /// The datapath did not start.
    #[error(transparent)]
    Device(#[from] wice_datapath::DeviceError),
    /// The control socket could not be bound.
    #[error("control socket {path}: {source}")]
    ControlSocket {
        /// Socket path.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
    /// The datapath's socket could not be marked for policy routing.
    #[error("cannot set SO_MARK on the UDP socket: {0}")]
    SocketMark(std::io::Error),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// A signaling backend could not be set up.
    #[error("signaling: {0}")]
    Signaling(#[from] crate::signaling::BackendError),
    /// The community could not be joined.
    #[error("community: {0}")]
    Community(String),
    /// The thread bridging STUN/TURN datagrams to ICE could not start.
    #[error("cannot start the ICE control thread: {0}")]
    ControlThread(std::io::Error),
    /// A datapath packet thread died while the node was up.
    #[error("{0}; the node was taken down")]
    DatapathThread(ThreadExit),
    /// The ICE task ended while the node was up.
    #[error("the ICE task {0}; the node was taken down")]
    IceTask(String),
    /// The metrics address could not be bound.
    #[error("metrics_listen {address}: {source}")]
    Metrics {
        /// The configured address.
        address: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
}

/// A node that is up: what teardown has to undo.
struct Node {
    name: String,
    control_socket: std::path::PathBuf,
    /// Shared with the ICE driver, which is stopped first: dropping the last
    /// reference stops the packet threads.
    device: Option<Arc<Device>>,
    routes: InstalledRoutes,
    /// Rules and table of an exit node's default route, when one is installed.
    policy_routing: Option<PolicyRouting>,
}

impl Node {
    fn teardown(&mut self) {
        if let Some(device) = self.device.take() {
            match Arc::try_unwrap(device) {
                Ok(device) => device.shutdown(),
                Err(shared) => drop(shared),
            }
        }
        if let Some(routing) = self.policy_routing.take() {
            routing.remove(&self.name);
        }
        let routes =
            std::mem::take(&mut *self.routes.lock().unwrap_or_else(PoisonError::into_inner));
        system::teardown(&self.name, &routes);
        system::release_interface(&self.control_socket);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Runs the node until SIGINT or SIGTERM, then removes the interface and its routes.
/// SIGHUP and `wice reload` re-read the config file and apply the difference.
pub async fn run(config: Config) -> Result<(), UpError> {
    if !system::has_net_admin() {
        return Err(UpError::NotRoot(config.interface.name.clone()));
    }
    let iface = &config.interface;
    let mut sigint = signal(SignalKind::interrupt()).map_err(UpError::Signals)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(UpError::Signals)?;

    system::claim_interface(&iface.name, &iface.control_socket)?;
    // Before anything can fail: dropping it on a failed start takes the hosts block out.
    let (peer_events, hook_runner) = peer_events::PeerEvents::start(&config);
    let peer_events = Arc::new(Mutex::new(peer_events));
    let mut node = Node {
        name: iface.name.clone(),
        control_socket: iface.control_socket.clone(),
        device: None,
        routes: InstalledRoutes::default(),
        policy_routing: None,
    };
    let device = Device::create(&DeviceConfig {
        name: iface.name.clone(),
        mtu: iface.mtu,
        listen_port: iface.listen_port,
        private_key: iface.private_key.to_bytes(),
    })?;
    system::record_interface(&iface.name, &iface.control_socket)?;
    let engine = Arc::clone(device.engine());
    let listen_port = device.listen_port();
    let control_datagrams = device.take_control_receiver();
    let (exit_tx, mut thread_exits) = mpsc::unbounded_channel();
    device.on_thread_exit(move |exit| {
        let _ = exit_tx.send(exit.clone());
    });
    let device = Arc::new(device);
    node.device = Some(Arc::clone(&device));

    system::configure_interface(&iface.name, &iface.addresses)?;
    let mut peer_set = PeerSet::new(&iface.name, &iface.addresses, Arc::clone(&node.routes));
    let added = peer_set.reconcile(Instant::now(), &config.peers, &engine, None);
    node.policy_routing = install_exit_routing(&config, &device)?;
    if !iface.routes.is_empty() {
        system::policy_routing::warn_without_forwarding(&iface.routes);
    }
    peer_events::lock(&peer_events).handle_peer_set(&added, &config.peers);
    let hooks = peer_events::lock(&peer_events).hooks().clone();
    // Like wg on interface up: peers with a persistent keepalive hear from us
    // now, so one still holding a session with our previous run re-keys at once.
    let keepalives = device.send_keepalives();
    if keepalives > 0 {
        tracing::debug!(keepalives, "keepalives sent on interface up");
    }

    let snapshot: SharedSnapshot = Arc::new(Mutex::new(IceSnapshot::default()));
    let managed_peers = peer_set.managed_peers();
    let shared_ice = Arc::new(Mutex::new(config.ice.clone()));
    // ICE runs whenever signaling is configured, even with no ICE peer yet: a reload (or
    // the community) may add some.
    let mut ice_task = None;
    let reload_target;
    // To tell the community we leave on a clean shutdown.
    let mut leave_tx = None;
    if config.signaling.backends.is_empty() {
        reload_target = reload::Target::Static {
            peer_set: Box::new(peer_set),
            engine: Arc::clone(&engine),
        };
    } else {
        let receiver = control_datagrams.ok_or(UpError::ControlThread(std::io::Error::other(
            "control queue already taken",
        )))?;
        let (commands_tx, commands) = mpsc::channel(4);
        ice_task = Some(
            start_ice(
                &config,
                IceStart {
                    peer_set,
                    commands,
                    listen_port,
                    device: Arc::clone(&device),
                    control: receiver,
                    snapshot: Arc::clone(&snapshot),
                    ice: Arc::clone(&shared_ice),
                    hooks: hooks.clone(),
                    peer_events: Arc::clone(&peer_events),
                },
            )
            .await?,
        );
        leave_tx = Some(commands_tx.clone());
        reload_target = reload::Target::Driver(commands_tx);
    }
    let (reload_tx, reload_rx) = mpsc::channel::<ReloadRequest>(4);
    let static_watch = peer_events::watch_static_peers(
        Arc::clone(&engine),
        config
            .peers
            .iter()
            .filter(|peer| peer.endpoint.is_none() && !config.signaling.backends.is_empty())
            .map(|peer| peer.public_key)
            .collect(),
        Arc::clone(&snapshot),
        hooks.clone(),
    );

    let listener =
        control::bind(&iface.control_socket).map_err(|source| UpError::ControlSocket {
            path: iface.control_socket.display().to_string(),
            source,
        })?;
    let name = iface.name.clone();
    let status_engine = Arc::clone(&engine);
    let hook_counters = hooks.counters();
    drop(hooks);
    let status: Arc<dyn Fn() -> Status + Send + Sync> = Arc::new(move || {
        let ice = snapshot.lock().unwrap_or_else(PoisonError::into_inner);
        let mut status =
            Status::collect(&name, listen_port, &status_engine, &ice.peers, ice.counters);
        status.community = ice.community.clone();
        hook_counters.add_to(&mut status.drops);
        status
    });
    let server = tokio::spawn(control::serve(
        listener,
        Arc::clone(&status),
        Some(reload_tx.clone()),
    ));
    let metrics = match iface.metrics_listen {
        Some(address) => Some(supervise::start_metrics(address, Arc::clone(&status)).await?),
        None => None,
    };
    let uapi = crate::uapi::serve_for_node(&iface.name, &device, managed_peers);

    tracing::info!(
        interface = %iface.name,
        public_key = %iface.private_key.public_key(),
        listen_port,
        peers = config.peers.len(),
        routes = node.routes.lock().unwrap_or_else(PoisonError::into_inner).len(),
        "up"
    );
    let notifier = Arc::new(crate::sd_notify::Notifier::from_env());
    let reloader = tokio::spawn(
        reload::Reloader {
            path: config.path.clone(),
            running: config,
            target: reload_target,
            ice: shared_ice,
            listen_port,
            socket_mark: Some(device.fwmark()).filter(|mark| *mark != 0),
            notifier: Arc::clone(&notifier),
            status: Arc::clone(&status),
            peer_events: Arc::clone(&peer_events),
        }
        .run(reload_rx),
    );
    let mut supervision = supervise::start(
        Arc::clone(&notifier),
        supervise::Watched {
            device: Arc::downgrade(&device),
            ice_task: ice_task.as_ref().map(JoinHandle::abort_handle),
            status,
        },
        reload_tx,
    );
    supervision.push(reloader);

    let signals = async {
        tokio::select! {
            _ = sigint.recv() => "SIGINT",
            _ = sigterm.recv() => "SIGTERM",
        }
    };
    let stopped = wait_for_stop(signals, &mut thread_exits, &mut ice_task).await;
    match &stopped {
        Ok(signal_name) => tracing::info!(signal = signal_name, "shutting down"),
        Err(error) => tracing::error!(%error, "shutting down"),
    }
    notifier.stopping();
    if stopped.is_ok()
        && let Some(commands) = leave_tx
    {
        leave_community(&commands).await;
    }
    server.abort();
    for task in supervision.into_iter().chain(metrics) {
        task.abort();
    }
    drop(uapi);
    if let Some(task) = ice_task {
        task.abort();
        let _ = task.await;
    }
    if let Some(task) = static_watch {
        task.abort();
        let _ = task.await;
    }
    // `removed` hooks run while the interface still exists; the hosts block goes.
    peer_events::lock(&peer_events).close();
    hook_runner.finish(crate::hooks::DRAIN_AT_EXIT).await;
    drop(device);
    let drops = engine.drops.snapshot();
    let dropped: Vec<String> = drops
        .fields()
        .iter()
        .filter(|(_, v)| *v > 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !dropped.is_empty() {
        tracing::info!(dropped = %dropped.join(" "), "drop counters at exit");
    }
    node.teardown();
    stopped.map(|_| ())
}

/// How long a clean shutdown waits for the community's leaving announcement to be published.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Has the driver announce that we leave (when the node is in a community), waiting at most
/// [`LEAVE_TIMEOUT`].
async fn leave_community(commands: &mpsc::Sender<DriverCommand>) {
    let (done, published) = tokio::sync::oneshot::channel();
    if commands.send(DriverCommand::Leave(done)).await.is_ok() {
        let _ = tokio::time::timeout(LEAVE_TIMEOUT, published).await;
    }
}

/// When a peer's allowed IPs hold a default route (an exit node): marks our sockets, records
/// the mark and table in the pid file (for the cleanup after a crash), then installs the
/// rules. Returns what teardown must remove.
fn install_exit_routing(
    config: &Config,
    device: &Device,
) -> Result<Option<PolicyRouting>, UpError> {
    // A community exit node is found later: its rules go in now, so traffic waits for it
    // in the tunnel instead of leaking to the underlay (and wice's own sockets are marked
    // before signaling connects).
    // ipnet's default networks are 0.0.0.0/0 and ::/0.
    let community_exit = [
        ipnet::IpNet::V4(Default::default()),
        ipnet::IpNet::V6(Default::default()),
    ];
    let wanted_exit = config.community.is_some() && config.routing.use_exit_node.is_some();
    let families = policy_routing::default_route_families(
        config
            .peers
            .iter()
            .flat_map(|p| &p.allowed_ips)
            .chain(community_exit.iter().filter(|_| wanted_exit)),
    );
    if families.is_empty() {
        return Ok(None);
    }
    let iface = &config.interface;
    let routing = config.routing.policy_routing();
    device
        .set_fwmark(routing.fwmark)
        .map_err(UpError::SocketMark)?;
    system::record_policy_routing(&iface.name, &iface.control_socket, routing)?;
    routing.install(&iface.name, &families)?;
    tracing::info!(
        table = routing.table,
        fwmark = routing.fwmark,
        ?families,
        "default route through the tunnel"
    );
    Ok(Some(routing))
}

/// Waits for `signals` (returning the signal's name), or for a part the node
/// cannot run without to die: a datapath packet thread (`thread_exits`) or
/// the ICE task (which is then taken out of `ice_task`).
async fn wait_for_stop(
    signals: impl Future<Output = &'static str>,
    thread_exits: &mut mpsc::UnboundedReceiver<ThreadExit>,
    ice_task: &mut Option<JoinHandle<()>>,
) -> Result<&'static str, UpError> {
    let ice_ended = async {
        match ice_task.as_mut() {
            Some(task) => task.await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        signal_name = signals => Ok(signal_name),
        Some(exit) = thread_exits.recv() => Err(UpError::DatapathThread(exit)),
        ended = ice_ended => Err(UpError::IceTask(match ended {
            Ok(()) => "exited".to_owned(),
            Err(error) if error.is_panic() => {
                let panic = error.into_panic();
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                format!("panicked: {message}")
            }
            Err(error) => format!("failed: {error}"),
        })),
    };
    if matches!(result, Err(UpError::IceTask(_))) {
        *ice_task = None;
    }
    result
}

/// The datapath as the ICE driver uses it.
struct DeviceDatapath(Arc<Device>);

impl Datapath for DeviceDatapath {
    fn send(&self, to: SocketAddr, datagram: &[u8]) {
        // Never waits for the socket; a full buffer is counted, not logged.
        if let Err(error) = self.0.send_control(to, datagram)
            && error.kind() != std::io::ErrorKind::WouldBlock
        {
            tracing::debug!(%to, %error, "STUN/TURN datagram not sent");
        }
    }

    fn set_path(&self, peer: &PublicKey, target: Endpoint) {
        let key = peer.to_bytes();
        self.0.engine().set_path(&key, target);
        // Handshake at once: waiting for boringtun's own retry costs up to 5 s.
        self.0.initiate_handshake(&key);
    }

    fn engine(&self) -> &wice_datapath::Engine {
        self.0.engine()
    }

    fn traffic(&self) -> Vec<(PublicKey, u64)> {
        self.0
            .engine()
            .peer_stats()
            .into_iter()
            .map(|s| {
                (
                    PublicKey::from(s.public_key),
                    s.tx_bytes.wrapping_add(s.rx_bytes),
                )
            })
            .collect()
    }
}

/// What the ICE driver starts from besides the config.
struct IceStart {
    peer_set: PeerSet,
    commands: mpsc::Receiver<DriverCommand>,
    listen_port: u16,
    device: Arc<Device>,
    control: std::sync::mpsc::Receiver<wice_datapath::ControlDatagram>,
    snapshot: SharedSnapshot,
    /// The `[ice]` section as reloads leave it, read by the address scan.
    ice: Arc<Mutex<IceConfig>>,
    /// Told about connectivity and path changes.
    hooks: crate::hooks::Hooks,
    /// The hosts file and the added/removed hooks, told of every reconcile.
    peer_events: peer_events::SharedPeerEvents,
}

/// Starts signaling and the ICE driver for the peer set's ICE peers.
async fn start_ice(config: &Config, start: IceStart) -> Result<JoinHandle<()>, UpError> {
    let IceStart {
        peer_set,
        commands,
        listen_port,
        device,
        control,
        snapshot,
        ice,
        hooks,
        peer_events,
    } = start;
    // Marked like the datapath's socket, signaling bypasses an exit node's default route.
    let socket_mark = Some(device.fwmark()).filter(|mark| *mark != 0);
    let (signaling, received) = start_signaling(config, peer_set.keys(), socket_mark).await?;
    let community = Community::start(config, &signaling)
        .await
        .map_err(|e| UpError::Community(e.to_string()))?;
    let mut sources = candidate_sources(&config.ice, &config.interface.name, listen_port);
    sources.mesh = peer_set.mesh_prefixes();
    tracing::info!(
        host = ?sources.host,
        stun = ?sources.stun,
        turn = ?sources.turn.iter().map(|t| t.address).collect::<Vec<_>>(),
        "ICE candidate sources"
    );
    let controller = Controller::new(
        config.interface.private_key.public_key(),
        &peer_set.ice_peers(),
        sources,
        IceRandom::from_os(),
        Instant::now(),
    );
    device
        .engine()
        .set_relay_servers(controller.relay_servers());
    let datagrams = ice_driver::bridge(control).map_err(UpError::ControlThread)?;
    let own_interface = config.interface.name.clone();
    let addresses: ice_driver::AddressScan = Box::new(move || {
        let ice = ice.lock().unwrap_or_else(PoisonError::into_inner).clone();
        (
            host_addresses(&own_interface, listen_port),
            turn_servers(&ice, listen_port),
        )
    });
    Ok(tokio::spawn(ice_driver::run(ice_driver::Driver {
        controller,
        peer_set,
        signaling: Arc::new(signaling),
        received,
        datagrams,
        commands,
        datapath: Arc::new(DeviceDatapath(device)),
        snapshot,
        addresses,
        community,
        hooks,
        peer_events,
    })))
}

/// The configured STUN servers.
fn stun_servers(ice: &IceConfig) -> Vec<SocketAddr> {
    ice.servers
        .iter()
        .filter(|server| server.url.scheme == ServerScheme::Stun)
        .map(|server| server.address)
        .collect()
}

/// Signaling over `config`'s backends, opening envelopes only from `allowed`. `socket_mark`
/// marks the backends' connections so an exit node's default route does not catch them.
pub(super) async fn start_signaling(
    config: &Config,
    allowed: HashSet<PublicKey>,
    socket_mark: Option<u32>,
) -> Result<(Signaling, mpsc::Receiver<crate::signaling::Received>), UpError> {
    let backends = backends_from_urls(
        &config.signaling.backends,
        &config.interface.private_key,
        config.signaling.tls_ca.as_ref().map(|ca| ca.pem.as_slice()),
        socket_mark,
    )?;
    Ok(Signaling::start(
        config.interface.private_key.clone(),
        SenderPolicy::Only(allowed),
        backends,
    )
    .await)
}

/// Interface addresses, STUN and TURN servers, as the OS and the config give them now.
fn candidate_sources(ice: &IceConfig, own_interface: &str, listen_port: u16) -> Sources {
    Sources {
        candidate_types: ice.candidate_types,
        host: host_addresses(own_interface, listen_port),
        stun: stun_servers(ice),
        turn: turn_servers(ice, listen_port),
        mesh: Vec::new(),
    }
}

/// Host candidates: the addresses of this node's interfaces, with the listen port.
fn host_addresses(own_interface: &str, listen_port: u16) -> Vec<SocketAddr> {
    let interfaces: Vec<InterfaceAddress> = match if_addrs::get_if_addrs() {
        Ok(list) => list
            .into_iter()
            .map(|interface| InterfaceAddress {
                up: !matches!(interface.oper_status, if_addrs::IfOperStatus::Down),
                loopback: interface.is_loopback(),
                ip: interface.ip(),
                interface: interface.name,
            })
            .collect(),
        Err(error) => {
            tracing::warn!(%error, "cannot list interfaces; no host candidates");
            Vec::new()
        }
    };
    host_candidates(&interfaces, own_interface, listen_port)
}

/// The configured TURN servers with our address toward each, as routing says now.
fn turn_servers(ice: &IceConfig, listen_port: u16) -> Vec<TurnServer> {
    ice.servers
        .iter()
        .filter_map(|server| {
            let credentials = server.credentials.as_ref()?;
            Some(TurnServer {
                address: server.address,
                local: SocketAddr::new(local_ip_toward(server.address), listen_port),
                username: credentials.username.clone(),
                credential: credentials.credential.clone(),
            })
        })
        .collect()
}

/// The source address the kernel picks toward `server` (a connected UDP socket sends
/// nothing), so the TURN allocation's base matches what the shared socket sends from.
fn local_ip_toward(server: SocketAddr) -> IpAddr {
    let unspecified = match server {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    UdpSocket::bind(SocketAddr::new(unspecified, 0))
        .and_then(|socket| {
            socket.connect(server)?;
            socket.local_addr()
        })
        .map_or(unspecified, |local| local.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_thread_exits() -> (
        mpsc::UnboundedSender<ThreadExit>,
        mpsc::UnboundedReceiver<ThreadExit>,
    ) {
        mpsc::unbounded_channel()
    }

    #[tokio::test]
    async fn a_panicking_ice_task_stops_the_node_with_an_error_naming_it() {
        let (_keep, mut exits) = no_thread_exits();
        let mut ice_task = Some(tokio::spawn(async { panic!("controller bug") }));
        let stopped = wait_for_stop(std::future::pending(), &mut exits, &mut ice_task).await;
        let error = stopped.expect_err("the node stops");
        assert_eq!(
            error.to_string(),
            "the ICE task panicked: controller bug; the node was taken down"
        );
        assert!(ice_task.is_none());
    }

    #[tokio::test]
    async fn an_ice_task_that_returns_stops_the_node() {
        let (_keep, mut exits) = no_thread_exits();
        let mut ice_task = Some(tokio::spawn(async {}));
        let stopped = wait_for_stop(std::future::pending(), &mut exits, &mut ice_task).await;
        assert!(matches!(stopped, Err(UpError::IceTask(reason)) if reason == "exited"));
    }

    #[tokio::test]
    async fn a_dead_datapath_thread_stops_the_node_with_an_error_naming_it() {
        let (tx, mut exits) = no_thread_exits();
        tx.send(ThreadExit {
            thread: "wice-tun-rx",
            reason: "failed: TUN read: File descriptor in bad state".to_owned(),
        })
        .expect("send");
        let stopped = wait_for_stop(std::future::pending(), &mut exits, &mut None).await;
        assert_eq!(
            stopped.expect_err("the node stops").to_string(),
            "datapath thread wice-tun-rx failed: TUN read: File descriptor in bad state; \
             the node was taken down"
        );
    }

    #[tokio::test]
    async fn a_signal_stops_the_node_cleanly() {
        let (_keep, mut exits) = no_thread_exits();
        let mut ice_task = Some(tokio::spawn(std::future::pending::<()>()));
        let stopped = wait_for_stop(async { "SIGTERM" }, &mut exits, &mut ice_task).await;
        assert_eq!(stopped.expect("clean stop"), "SIGTERM");
        assert!(ice_task.is_some(), "still there for the shutdown to abort");
    }
}
