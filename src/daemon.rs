//! `wice up`: bring the node up, serve status, tear down on a signal.
//!
//! Order matters for "a failed start leaves nothing behind": claim the name
//! (cleaning a crashed run's leftovers), create the datapath, configure
//! addresses and routes, then serve. Any failure after the claim unwinds
//! through [`Node::teardown`].

use std::sync::Arc;

use ipnet::IpNet;
use tokio::signal::unix::{SignalKind, signal};
use wice_datapath::{Device, DeviceConfig, PeerConfig as DatapathPeer};

use crate::config::Config;
use crate::status::Status;
use crate::system::{self, SystemError};
use crate::{control, keys::PublicKey};

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
    /// A peer was rejected by the datapath.
    #[error("peer {key}: {source}")]
    Peer {
        /// The peer.
        key: PublicKey,
        /// Why.
        source: wice_datapath::PeerTableError,
    },
    /// The control socket could not be bound.
    #[error("control socket {path}: {source}")]
    ControlSocket {
        /// Socket path.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// A node that is up: what teardown has to undo.
struct Node {
    name: String,
    control_socket: std::path::PathBuf,
    device: Option<Device>,
    routes: Vec<IpNet>,
}

impl Node {
    fn teardown(&mut self) {
        if let Some(device) = self.device.take() {
            device.shutdown();
        }
        system::teardown(&self.name, &self.routes);
        system::release_interface(&self.control_socket);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Runs the node until SIGINT or SIGTERM, then removes the interface and its routes.
pub async fn run(config: Config) -> Result<(), UpError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(UpError::NotRoot(config.interface.name.clone()));
    }
    let iface = &config.interface;
    let mut sigint = signal(SignalKind::interrupt()).map_err(UpError::Signals)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(UpError::Signals)?;

    system::claim_interface(&iface.name, &iface.control_socket)?;
    let mut node = Node {
        name: iface.name.clone(),
        control_socket: iface.control_socket.clone(),
        device: None,
        routes: Vec::new(),
    };
    let device = Device::create(&DeviceConfig {
        name: iface.name.clone(),
        mtu: iface.mtu,
        listen_port: iface.listen_port,
        private_key: iface.private_key.to_bytes(),
    })?;
    let engine = Arc::clone(device.engine());
    let listen_port = device.listen_port();
    node.device = Some(device);

    for peer in &config.peers {
        engine
            .add_peer(&DatapathPeer {
                public_key: peer.public_key.to_bytes(),
                preshared_key: peer.preshared_key.as_ref().map(|k| k.to_bytes()),
                persistent_keepalive: peer.persistent_keepalive,
                endpoint: peer.endpoint,
                allowed_ips: peer.allowed_ips.clone(),
            })
            .map_err(|source| UpError::Peer {
                key: peer.public_key,
                source,
            })?;
    }

    system::configure_interface(&iface.name, &iface.addresses)?;
    let wanted = system::routes_needed(
        &iface.addresses,
        config.peers.iter().flat_map(|p| &p.allowed_ips),
    );
    node.routes = system::add_routes(&iface.name, &wanted);

    let listener =
        control::bind(&iface.control_socket).map_err(|source| UpError::ControlSocket {
            path: iface.control_socket.display().to_string(),
            source,
        })?;
    let name = iface.name.clone();
    let status_engine = Arc::clone(&engine);
    let status = Arc::new(move || Status::collect(&name, listen_port, &status_engine));
    let server = tokio::spawn(control::serve(listener, status));

    tracing::info!(
        interface = %iface.name,
        public_key = %iface.private_key.public_key(),
        listen_port,
        peers = config.peers.len(),
        routes = node.routes.len(),
        "up"
    );

    let signal_name = tokio::select! {
        _ = sigint.recv() => "SIGINT",
        _ = sigterm.recv() => "SIGTERM",
    };
    tracing::info!(signal = signal_name, "shutting down");
    server.abort();
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
    Ok(())
}
