//! The node config file: one TOML file describing this node's interface and its peers.
//!
//! ```toml
//! [interface]
//! name = "wice0"                          # default "wice0"
//! private_key = "<base64>"                # or private_key_file = "/etc/wice/private.key"
//! listen_port = 51820                     # default 51820; 0 picks a free port
//! addresses = ["10.77.0.1/24", "fd77::1/64"]
//! mtu = 1420                              # default 1420
//! control_socket = "/run/wice/wice0.sock" # default /run/wice/<name>.sock
//! metrics_listen = "127.0.0.1:9586"       # optional: Prometheus metrics on http://ADDR/metrics
//!
//! [[peer]]
//! public_key = "<base64>"
//! allowed_ips = ["10.77.0.2/32", "fd77::2/128"]
//! endpoint = "198.51.100.7:51820"         # optional; host names are resolved at load
//! persistent_keepalive = 25               # optional, seconds; 0 means off
//! preshared_key = "<base64>"              # optional
//!
//! [signaling]                             # optional; without it the mesh is static
//! backends = ["grpc://198.51.100.1:8443"] # "grpcs://" = TLS; "inprocess" = in-process hub
//! tls_ca_file = "ca.pem"                  # optional extra CA for grpcs:// servers
//!
//! [ice]                                   # optional; for peers without an endpoint
//! candidate_types = ["host", "srflx", "relay"]  # default: all three
//!
//! [[ice.servers]]
//! urls = ["stun:198.51.100.1:3478"]
//!
//! [[ice.servers]]
//! urls = ["turn:198.51.100.1:3478?transport=udp"]
//! username = "lab"
//! credential = "labpass"
//! ```
//!
//! Peers without an `endpoint` find their path with ICE when `[signaling]` lists backends;
//! peers with one keep it (ICE leaves them alone).
//!
//! Loading validates everything it can without touching the system: it reads the config file
//! and the private key file and resolves endpoint host names, nothing else. Every error names
//! the file, the 1-based line and the key path (`peer[0].allowed_ips[1]`, peers counted from
//! 0 in file order), so a person can go straight to the mistake.
//!
//! Relative paths in the file (`private_key_file`, `control_socket`) are taken relative to the
//! directory holding the config file, so a config behaves the same whatever directory the
//! daemon was started from (systemd starts it in `/`).

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read as _};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _};
use std::ops::Range;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use wice_core::ice::CandidateTypes;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::signaling::{BackendUrl, BackendUrlError};
use wice_core::ice::{ServerScheme, ServerUrl, ServerUrlError};
use wice_core::keys::{KeyError, PresharedKey, PrivateKey, PublicKey};
use wice_core::secret::SecretString;

/// TUN interface name used when the file gives none.
pub const DEFAULT_INTERFACE_NAME: &str = "wice0";
/// UDP port used when the file gives none: WireGuard's customary port.
pub const DEFAULT_LISTEN_PORT: u16 = 51820;
/// MTU used when the file gives none: wg-quick's default, which leaves room for the
/// WireGuard and outer IPv6/UDP headers inside a 1500-byte path.
pub const DEFAULT_MTU: u16 = 1420;
/// Smallest MTU every IPv4 host must accept (RFC 791).
pub const MIN_MTU_IPV4: u16 = 576;
/// Smallest MTU IPv6 allows on a link (RFC 8200); Linux removes IPv6 from a smaller one.
pub const MIN_MTU_IPV6: u16 = 1280;
/// Longest Linux interface name: `IFNAMSIZ` (16) less the terminating NUL.
const MAX_INTERFACE_NAME_LEN: usize = 15;

/// A validated node config.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file the config was read from, as given to [`Config::load`] or [`Config::parse`].
    pub path: PathBuf,
    /// This node's own interface.
    pub interface: InterfaceConfig,
    /// The peers, in file order.
    pub peers: Vec<PeerConfig>,
    /// The `[signaling]` section; empty when the file has none.
    pub signaling: SignalingConfig,
    /// The `[ice]` section; no servers and every candidate type when the file has none.
    pub ice: IceConfig,
}

/// The `[ice]` section: how paths to peers without a static endpoint are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceConfig {
    /// STUN and TURN servers, one entry per URL, in file order.
    pub servers: Vec<IceServer>,
    /// Which kinds of local candidates to gather.
    pub candidate_types: CandidateTypes,
}

impl Default for IceConfig {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            candidate_types: CandidateTypes::ALL,
        }
    }
}

/// One STUN or TURN server, its host resolved at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    /// The URL as parsed.
    pub url: ServerUrl,
    /// Where to send.
    pub address: SocketAddr,
    /// TURN long-term credentials; `Some` exactly for `turn:` URLs.
    pub credentials: Option<TurnCredentials>,
}

/// TURN long-term credentials (RFC 8489 §9.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredentials {
    /// User name.
    pub username: String,
    /// Password; `Debug` redacts it.
    pub credential: SecretString,
}

/// The `[signaling]` section: where session descriptions are exchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignalingConfig {
    /// The backends, in file order, each listed once. Publishing goes to all of them.
    pub backends: Vec<BackendUrl>,
    /// An extra CA certificate for `grpcs://` backends, read at load.
    pub tls_ca: Option<CaCertificate>,
}

/// A CA certificate file, already read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaCertificate {
    /// The file, after resolving a relative path.
    pub path: PathBuf,
    /// Its PEM contents.
    pub pem: Vec<u8>,
}

/// The `[interface]` section.
#[derive(Debug, Clone)]
pub struct InterfaceConfig {
    /// TUN interface name; a valid Linux interface name.
    pub name: String,
    /// This node's private key, read inline or from `private_key_file`.
    pub private_key: PrivateKey,
    /// UDP port to listen on; 0 lets the system pick a free one.
    pub listen_port: u16,
    /// Addresses for the TUN interface, host bits kept (`10.77.0.1/24`).
    pub addresses: Vec<IpNet>,
    /// TUN MTU, at least 1280 when any address is IPv6.
    pub mtu: u16,
    /// Unix socket the daemon answers `wice` commands on.
    pub control_socket: PathBuf,
    /// Where to serve Prometheus metrics (`GET /metrics`), if anywhere: an `ip:port`.
    pub metrics_listen: Option<SocketAddr>,
}

/// One `[[peer]]` section.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The peer's identity.
    pub public_key: PublicKey,
    /// Prefixes routed to this peer, host bits cleared like `wg` does (`10.77.0.0/24`).
    pub allowed_ips: Vec<IpNet>,
    /// Where to reach the peer first, host names already resolved.
    pub endpoint: Option<SocketAddr>,
    /// Keepalive interval in seconds; `None` when absent or 0.
    pub persistent_keepalive: Option<u16>,
    /// Optional extra symmetric key for the handshake.
    pub preshared_key: Option<PresharedKey>,
}

impl Config {
    /// Reads and validates the config file at `path`, and the private key file it names.
    ///
    /// A file that holds a secret inline (`private_key`, a `preshared_key`, a TURN
    /// `credential`) is refused when group or others can access it, like a key file: the
    /// secret may already be exposed.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let whole_file = |reason| ConfigError {
            file: path.to_path_buf(),
            line: None,
            key: String::new(),
            reason,
        };
        // Mode and text come from one open file, so they describe the same file.
        let (text, mode) = read_bounded(path, MAX_CONFIG_LEN)
            .map_err(|error| whole_file(ConfigErrorKind::FileUnreadable(error)))?;
        let parser = Parser {
            path,
            text: &text,
            world: World::System,
        };
        let config = parser.parse()?;
        if mode & 0o077 != 0
            && let Some((key, span)) = parser.first_inline_secret()
        {
            return Err(parser.error(
                &span,
                key,
                ConfigErrorKind::SecretsInOpenFile {
                    path: path.to_path_buf(),
                    mode,
                },
            ));
        }
        Ok(config)
    }

    /// Validates config `text`; `path` is the file it came from, used in error messages and
    /// as the base for relative paths inside it.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Parser {
            path,
            text,
            world: World::System,
        }
        .parse()
    }

    /// Validates config `text` like [`Config::parse`] without touching the system: host names
    /// are not resolved and key or CA files are not read (each is an error naming its place).
    /// For fuzzing and for checks that must not reach the network or the disk.
    pub fn parse_offline(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Parser {
            path,
            text,
            world: World::Offline,
        }
        .parse()
    }

    /// A one-line human summary, for `wice up --check`.
    pub fn check_summary(&self) -> String {
        let interface = &self.interface;
        let port = match interface.listen_port {
            0 => "any free port".to_owned(),
            port => port.to_string(),
        };
        let mut summary = format!(
            "{}: interface {}, public key {}, listen port {port}, {}, mtu {}, {}",
            self.path.display(),
            interface.name,
            interface.private_key.public_key(),
            count(interface.addresses.len(), "address", "addresses"),
            interface.mtu,
            count(self.peers.len(), "peer", "peers"),
        );
        if !self.signaling.backends.is_empty() {
            let urls: Vec<String> = self
                .signaling
                .backends
                .iter()
                .map(ToString::to_string)
                .collect();
            summary.push_str(&format!(", signaling via {}", urls.join(", ")));
        }
        if !self.ice.servers.is_empty() {
            let urls: Vec<String> = self.ice.servers.iter().map(|s| s.url.to_string()).collect();
            summary.push_str(&format!(", ICE servers {}", urls.join(", ")));
        }
        summary
    }
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

mod error;
mod parser;
mod raw;
mod span;
mod values;

pub use error::{ConfigError, ConfigErrorKind};
pub use parser::MAX_CONFIG_LEN;
use parser::{Parser, World, read_bounded};

#[cfg(test)]
mod tests;
