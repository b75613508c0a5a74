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

/// A config file that could not be loaded, pointing at the offending place.
///
/// Displays as `{file}:{line}: {key}: {reason}`, leaving out the line or key when there is
/// none, e.g. `node.toml:9: peer[1].public_key: not valid base64`.
#[derive(Debug)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line of the offending value, when the error has a place in the file.
    pub line: Option<usize>,
    /// Key path such as `interface.mtu` or `peer[0].allowed_ips[1]`; empty when the error is
    /// about the file as a whole.
    pub key: String,
    /// What is wrong.
    pub reason: ConfigErrorKind,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.reason)
    }
}

// The reason is already part of the message, so it is not repeated as a source.
impl std::error::Error for ConfigError {}

/// What is wrong with a config file. Messages are written to follow `key: `.
#[derive(Debug, thiserror::Error)]
pub enum ConfigErrorKind {
    /// The config file itself could not be read.
    #[error("cannot read the file: {0}")]
    FileUnreadable(io::Error),
    /// The text is not TOML, or a value has the wrong TOML type.
    #[error("{0}")]
    InvalidToml(String),
    /// A key this schema does not have; usually a typo.
    #[error("unknown key{}", expected.as_deref().map(|e| format!("; {e}")).unwrap_or_default())]
    UnknownKey {
        /// The keys allowed here, as the TOML parser words it (`expected one of ...`).
        expected: Option<String>,
    },
    /// The file has no `[interface]` section.
    #[error("missing [interface] section")]
    MissingInterface,
    /// Neither `private_key` nor `private_key_file` is given.
    #[error("missing; give private_key or private_key_file")]
    MissingPrivateKey,
    /// Both `private_key` and `private_key_file` are given.
    #[error(
        "given together with interface.private_key (line {other_line}); give only one of the two"
    )]
    PrivateKeyGivenTwice {
        /// Line of the inline `private_key`.
        other_line: usize,
    },
    /// A `[[peer]]` has no `public_key`.
    #[error("missing; every [[peer]] needs a public_key")]
    MissingPublicKey,
    /// A key value is not a WireGuard key.
    #[error("{0}")]
    InvalidKey(KeyError),
    /// The config file holds a secret and group or others can access it.
    #[error(
        "is a secret, and {} is {} by group or others (mode {mode:04o}); run: chmod 600 {} (or move the secret to a file of its own, like private_key_file)",
        path.display(),
        if mode & 0o044 != 0 { "readable" } else { "accessible" },
        path.display()
    )]
    SecretsInOpenFile {
        /// The config file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The private key file could not be opened or read.
    #[error("cannot read {}: {error}", path.display())]
    KeyFileUnreadable {
        /// The key file, after resolving a relative path.
        path: PathBuf,
        /// Why reading failed.
        error: io::Error,
    },
    /// The private key file could be read by other users, so the key may already be leaked.
    #[error(
        "{} is {} by group or others (mode {mode:04o}); run: chmod 600 {}",
        path.display(),
        if mode & 0o044 != 0 { "readable" } else { "accessible" },
        path.display()
    )]
    KeyFileTooOpen {
        /// The key file, after resolving a relative path.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The private key file does not hold a WireGuard key.
    #[error("{}: {error}", path.display())]
    KeyFileInvalid {
        /// The key file, after resolving a relative path.
        path: PathBuf,
        /// What is wrong with its contents.
        error: KeyError,
    },
    /// A path value is empty.
    #[error("must not be empty")]
    EmptyPath,
    /// An address or prefix that does not parse.
    #[error("`{value}` is not valid: {why}")]
    InvalidCidr {
        /// The text as written.
        value: String,
        /// What form was expected.
        why: &'static str,
    },
    /// A name Linux would refuse for an interface.
    #[error("`{value}` is not a valid interface name: {why}")]
    InvalidInterfaceName {
        /// The name as written.
        value: String,
        /// Which rule it breaks.
        why: &'static str,
    },
    /// An endpoint that is not `host:port` or `[v6]:port`.
    #[error("`{value}` is not a valid endpoint: {why}")]
    InvalidEndpoint {
        /// The endpoint as written.
        value: String,
        /// Which rule it breaks.
        why: &'static str,
    },
    /// An endpoint host name that did not resolve.
    #[error("cannot resolve host `{host}`: {error}")]
    UnresolvableEndpoint {
        /// The host name as written.
        host: String,
        /// The resolver's answer.
        error: String,
    },
    /// A number outside its allowed range.
    #[error("{value} is out of range; must be {min}..={max}")]
    OutOfRange {
        /// The number as written.
        value: i64,
        /// Smallest allowed value.
        min: i64,
        /// Largest allowed value.
        max: i64,
    },
    /// An MTU IPv6 cannot use while the interface has an IPv6 address.
    #[error(
        "{mtu} is below {MIN_MTU_IPV6}, the IPv6 minimum, and interface.addresses has IPv6 address {address}"
    )]
    MtuTooSmallForIpv6 {
        /// The MTU as written.
        mtu: u16,
        /// The first IPv6 address of the interface.
        address: IpNet,
    },
    /// Two peers claim overlapping prefixes, so some packets would have two possible peers.
    #[error(
        "{prefix} overlaps {other_prefix} of peer[{other_peer}] \
         (line {other_line}); \
         each address must route to exactly one peer"
    )]
    OverlappingAllowedIps {
        /// The later peer's prefix; the error's key names the later peer.
        prefix: IpNet,
        /// The earlier peer's index.
        other_peer: usize,
        /// The earlier peer's prefix.
        other_prefix: IpNet,
        /// Line of the earlier prefix.
        other_line: usize,
    },
    /// The same public key appears in two `[[peer]]` sections.
    #[error("same public key as peer[{first}] (line {first_line}); list each peer once")]
    DuplicatePeer {
        /// Index of the first peer with this key.
        first: usize,
        /// Line of that peer's `public_key`.
        first_line: usize,
    },
    /// A peer's public key is this node's own.
    #[error("is this node's own public key (from its private key); a node is not its own peer")]
    OwnPublicKey,
    /// A signaling backend URL that does not parse.
    #[error("{0}")]
    InvalidBackend(BackendUrlError),
    /// The same backend listed twice.
    #[error(
        "same backend as signaling.backends[{first}] (line {first_line}); list each backend once"
    )]
    DuplicateBackend {
        /// Index of the first listing.
        first: usize,
        /// Its line.
        first_line: usize,
    },
    /// The CA file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    CaFileUnreadable {
        /// The file, after resolving a relative path.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The CA file holds no PEM certificate.
    #[error("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    CaFileInvalid {
        /// The file, after resolving a relative path.
        path: PathBuf,
    },
    /// A CA file is given but no backend uses TLS.
    #[error("is set but no backend uses grpcs://, so it would be ignored")]
    CaFileUnused,
    /// A STUN or TURN URL that does not parse or cannot be used.
    #[error("{0}")]
    InvalidServerUrl(ServerUrlError),
    /// A STUN or TURN server host name that did not resolve.
    #[error("cannot resolve host `{host}`: {error}")]
    UnresolvableServer {
        /// The host name as written.
        host: String,
        /// The resolver's answer.
        error: String,
    },
    /// A `turn:` URL without `username` and `credential`.
    #[error("missing; a turn: URL needs username and credential (TURN long-term credentials)")]
    MissingTurnCredentials,
    /// `username`/`credential` on a server with only `stun:` URLs.
    #[error("is only used by turn: URLs; this server lists none")]
    UnusedCredentials,
    /// An `[[ice.servers]]` entry without URLs.
    #[error("missing; list at least one stun: or turn: URL")]
    MissingUrls,
    /// A candidate type that does not exist.
    #[error("`{0}` is not a candidate type; use host, srflx or relay")]
    UnknownCandidateType(String),
    /// An empty `candidate_types`.
    #[error("must list at least one of host, srflx, relay")]
    NoCandidateTypes,
    /// `[ice]` without signaling backends: no peer could use it.
    #[error("is set but [signaling] lists no backends, so no peer can use ICE")]
    IceWithoutSignaling,
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

/// The file as TOML gives it, before validation. Every value keeps its span so errors can
/// name the line; numbers are `i64` so out-of-range values get our message, not serde's.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    interface: Option<Spanned<RawInterface>>,
    #[serde(default)]
    peer: Vec<Spanned<RawPeer>>,
    signaling: Option<Spanned<RawSignaling>>,
    ice: Option<Spanned<RawIce>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawIce {
    #[serde(default)]
    servers: Vec<Spanned<RawIceServer>>,
    candidate_types: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawIceServer {
    #[serde(default)]
    urls: Vec<Spanned<String>>,
    username: Option<Spanned<String>>,
    credential: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawSignaling {
    #[serde(default)]
    backends: Vec<Spanned<String>>,
    tls_ca_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawInterface {
    name: Option<Spanned<String>>,
    private_key: Option<Spanned<String>>,
    private_key_file: Option<Spanned<String>>,
    listen_port: Option<Spanned<i64>>,
    #[serde(default)]
    addresses: Vec<Spanned<String>>,
    mtu: Option<Spanned<i64>>,
    control_socket: Option<Spanned<String>>,
    metrics_listen: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawPeer {
    public_key: Option<Spanned<String>>,
    #[serde(default)]
    allowed_ips: Vec<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
    persistent_keepalive: Option<Spanned<i64>>,
    preshared_key: Option<Spanned<String>>,
}

/// One parse of one file: holds what every error needs to say where it is.
struct Parser<'a> {
    path: &'a Path,
    text: &'a str,
    world: World,
}

/// Largest config file read: far above any real mesh, small enough that pointing `-c` at a
/// device or a huge file fails at once instead of filling memory.
pub const MAX_CONFIG_LEN: u64 = 1 << 20;
/// Largest CA certificate file read.
const MAX_CA_FILE_LEN: u64 = 1 << 20;

/// Reads at most `max` bytes of a regular file as UTF-8, with its permission bits, from one
/// open file. Refuses what is not a regular file (a FIFO or device could block or never
/// end) and a longer file.
fn read_bounded(path: &Path, max: u64) -> io::Result<(String, u32)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut text = String::new();
    file.take(max + 1).read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        ));
    }
    Ok((text, metadata.permissions().mode() & 0o7777))
}

/// What a parse may touch besides the text.
#[derive(Clone, Copy, PartialEq, Eq)]
enum World {
    /// Resolve host names and read the files the config names.
    System,
    /// Neither: see [`Config::parse_offline`].
    Offline,
}

/// The error an offline parse gives where it would have read a file.
fn offline_file_error() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "not read: parsing offline")
}

impl World {
    /// The first address of `host`, as the resolver orders them (RFC 6724), as `wg` uses.
    fn lookup(self, host: &str, port: u16) -> Result<SocketAddr, String> {
        match self {
            Self::System => (host, port)
                .to_socket_addrs()
                .map_err(|e| e.to_string())?
                .next()
                .ok_or_else(|| "no addresses found".to_owned()),
            Self::Offline => Err("not resolved: parsing offline".to_owned()),
        }
    }

    fn read_private_key_file(self, path: &Path) -> Result<PrivateKey, ConfigErrorKind> {
        match self {
            Self::System => read_private_key_file(path),
            Self::Offline => Err(ConfigErrorKind::KeyFileUnreadable {
                path: path.to_path_buf(),
                error: offline_file_error(),
            }),
        }
    }

    fn read_ca_file(self, path: &Path) -> Result<Vec<u8>, ConfigErrorKind> {
        match self {
            Self::System => read_ca_file(path),
            Self::Offline => Err(ConfigErrorKind::CaFileUnreadable {
                path: path.to_path_buf(),
                error: offline_file_error(),
            }),
        }
    }
}

impl Parser<'_> {
    /// The key path and place of the first secret written inline in the text, if any.
    fn first_inline_secret(&self) -> Option<(String, Range<usize>)> {
        let raw: RawConfig = toml::from_str(self.text).ok()?;
        if let Some(key) = raw.interface.and_then(|i| i.into_inner().private_key) {
            return Some(("interface.private_key".to_owned(), key.span()));
        }
        for (index, peer) in raw.peer.into_iter().enumerate() {
            if let Some(psk) = peer.into_inner().preshared_key {
                return Some((format!("peer[{index}].preshared_key"), psk.span()));
            }
        }
        let servers = raw
            .ice
            .map(|ice| ice.into_inner().servers)
            .unwrap_or_default();
        for (index, server) in servers.into_iter().enumerate() {
            if let Some(credential) = server.into_inner().credential {
                return Some((
                    format!("ice.servers[{index}].credential"),
                    credential.span(),
                ));
            }
        }
        None
    }

    fn error(&self, span: &Range<usize>, key: String, reason: ConfigErrorKind) -> ConfigError {
        ConfigError {
            file: self.path.to_path_buf(),
            line: Some(line_of(self.text, span.start)),
            key,
            reason,
        }
    }

    fn line(&self, span: &Range<usize>) -> usize {
        line_of(self.text, span.start)
    }

    /// Resolves a path from the file against the file's directory (see the module docs).
    fn resolve(&self, value: &str) -> PathBuf {
        let value = Path::new(value);
        match self.path.parent() {
            Some(dir) if value.is_relative() => dir.join(value),
            _ => value.to_path_buf(),
        }
    }

    fn parse(&self) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(self.text).map_err(|e| self.toml_error(&e))?;
        let Some(raw_interface) = raw.interface else {
            return Err(ConfigError {
                file: self.path.to_path_buf(),
                line: None,
                key: "interface".to_owned(),
                reason: ConfigErrorKind::MissingInterface,
            });
        };
        let interface = self.interface(raw_interface)?;
        let own_key = interface.private_key.public_key();

        let mut peers = Vec::with_capacity(raw.peer.len());
        // Public key → (peer index, line), to report a repeat with the first place it appeared.
        let mut seen: HashMap<PublicKey, (usize, usize)> = HashMap::new();
        // For the overlap check: every peer's prefixes with their spans.
        let mut prefixes: Vec<Vec<(IpNet, Range<usize>)>> = Vec::with_capacity(raw.peer.len());
        for (index, raw_peer) in raw.peer.into_iter().enumerate() {
            let (peer, spans) = self.peer(index, raw_peer, &own_key, &mut seen)?;
            self.check_overlaps(index, &peer.allowed_ips, &spans, &prefixes)?;
            prefixes.push(peer.allowed_ips.iter().copied().zip(spans).collect());
            peers.push(peer);
        }

        let signaling = match raw.signaling {
            Some(raw_signaling) => self.signaling(raw_signaling.into_inner())?,
            None => SignalingConfig::default(),
        };

        let ice = match raw.ice {
            Some(raw_ice) => {
                if signaling.backends.is_empty() {
                    return Err(self.error(
                        &raw_ice.span(),
                        "ice".to_owned(),
                        ConfigErrorKind::IceWithoutSignaling,
                    ));
                }
                self.ice(raw_ice.into_inner())?
            }
            None => IceConfig::default(),
        };

        Ok(Config {
            path: self.path.to_path_buf(),
            interface,
            peers,
            signaling,
            ice,
        })
    }

    fn ice(&self, raw: RawIce) -> Result<IceConfig, ConfigError> {
        let mut servers = Vec::new();
        for (index, raw_server) in raw.servers.into_iter().enumerate() {
            let span = raw_server.span();
            let raw_server = raw_server.into_inner();
            let key = |field: &str| format!("ice.servers[{index}].{field}");
            if raw_server.urls.is_empty() {
                return Err(self.error(&span, key("urls"), ConfigErrorKind::MissingUrls));
            }
            let mut parsed = Vec::with_capacity(raw_server.urls.len());
            for (n, text) in raw_server.urls.iter().enumerate() {
                let url_key = format!("ice.servers[{index}].urls[{n}]");
                let url = ServerUrl::parse(text.get_ref()).map_err(|e| {
                    self.error(
                        &text.span(),
                        url_key.clone(),
                        ConfigErrorKind::InvalidServerUrl(e),
                    )
                })?;
                let address = resolve_server(&url, self.world)
                    .map_err(|reason| self.error(&text.span(), url_key, reason))?;
                parsed.push((url, address));
            }
            let wants_turn = parsed
                .iter()
                .any(|(url, _)| url.scheme == ServerScheme::Turn);
            let credentials = match (&raw_server.username, &raw_server.credential) {
                (Some(username), Some(credential)) if wants_turn => Some(TurnCredentials {
                    username: username.get_ref().clone(),
                    credential: SecretString::new(credential.get_ref().as_str()),
                }),
                (None, _) | (_, None) if wants_turn => {
                    let field = if raw_server.username.is_none() {
                        "username"
                    } else {
                        "credential"
                    };
                    return Err(self.error(
                        &span,
                        key(field),
                        ConfigErrorKind::MissingTurnCredentials,
                    ));
                }
                (Some(given), _) | (None, Some(given)) => {
                    let field = if raw_server.username.is_some() {
                        "username"
                    } else {
                        "credential"
                    };
                    return Err(self.error(
                        &given.span(),
                        key(field),
                        ConfigErrorKind::UnusedCredentials,
                    ));
                }
                (None, None) => None,
            };
            for (url, address) in parsed {
                let credentials = match url.scheme {
                    ServerScheme::Turn => credentials.clone(),
                    ServerScheme::Stun => None,
                };
                servers.push(IceServer {
                    url,
                    address,
                    credentials,
                });
            }
        }
        let candidate_types = match raw.candidate_types {
            None => CandidateTypes::ALL,
            Some(list) => {
                let span = list.span();
                let list = list.into_inner();
                if list.is_empty() {
                    return Err(self.error(
                        &span,
                        "ice.candidate_types".to_owned(),
                        ConfigErrorKind::NoCandidateTypes,
                    ));
                }
                let mut types = CandidateTypes {
                    host: false,
                    srflx: false,
                    relay: false,
                };
                for (n, name) in list.iter().enumerate() {
                    match name.get_ref().as_str() {
                        "host" => types.host = true,
                        "srflx" => types.srflx = true,
                        "relay" => types.relay = true,
                        other => {
                            return Err(self.error(
                                &name.span(),
                                format!("ice.candidate_types[{n}]"),
                                ConfigErrorKind::UnknownCandidateType(other.to_owned()),
                            ));
                        }
                    }
                }
                types
            }
        };
        Ok(IceConfig {
            servers,
            candidate_types,
        })
    }

    fn signaling(&self, raw: RawSignaling) -> Result<SignalingConfig, ConfigError> {
        let mut backends: Vec<BackendUrl> = Vec::with_capacity(raw.backends.len());
        let mut lines = Vec::with_capacity(raw.backends.len());
        for (index, text) in raw.backends.iter().enumerate() {
            let key = format!("signaling.backends[{index}]");
            let url = BackendUrl::parse(text.get_ref()).map_err(|e| {
                self.error(
                    &text.span(),
                    key.clone(),
                    ConfigErrorKind::InvalidBackend(e),
                )
            })?;
            if let Some(first) = backends.iter().position(|other| *other == url) {
                return Err(self.error(
                    &text.span(),
                    key,
                    ConfigErrorKind::DuplicateBackend {
                        first,
                        first_line: lines[first],
                    },
                ));
            }
            lines.push(self.line(&text.span()));
            backends.push(url);
        }
        let tls_ca = match raw.tls_ca_file {
            Some(file) => {
                let key = "signaling.tls_ca_file".to_owned();
                if file.get_ref().is_empty() {
                    return Err(self.error(&file.span(), key, ConfigErrorKind::EmptyPath));
                }
                let uses_tls = backends
                    .iter()
                    .any(|b| matches!(b, BackendUrl::Grpc { tls: true, .. }));
                if !uses_tls {
                    return Err(self.error(&file.span(), key, ConfigErrorKind::CaFileUnused));
                }
                let path = self.resolve(file.get_ref());
                let pem = self
                    .world
                    .read_ca_file(&path)
                    .map_err(|reason| self.error(&file.span(), key, reason))?;
                Some(CaCertificate { path, pem })
            }
            None => None,
        };
        Ok(SignalingConfig { backends, tls_ca })
    }

    fn interface(&self, raw: Spanned<RawInterface>) -> Result<InterfaceConfig, ConfigError> {
        let header = raw.span();
        let raw = raw.into_inner();

        let name = match raw.name {
            Some(name) => {
                validate_interface_name(name.get_ref()).map_err(|why| {
                    self.error(
                        &name.span(),
                        "interface.name".to_owned(),
                        ConfigErrorKind::InvalidInterfaceName {
                            value: name.get_ref().clone(),
                            why,
                        },
                    )
                })?;
                name.into_inner()
            }
            None => DEFAULT_INTERFACE_NAME.to_owned(),
        };

        let private_key = match (raw.private_key, raw.private_key_file) {
            (Some(inline), Some(file)) => {
                return Err(self.error(
                    &file.span(),
                    "interface.private_key_file".to_owned(),
                    ConfigErrorKind::PrivateKeyGivenTwice {
                        other_line: self.line(&inline.span()),
                    },
                ));
            }
            (None, None) => {
                return Err(self.error(
                    &header,
                    "interface.private_key".to_owned(),
                    ConfigErrorKind::MissingPrivateKey,
                ));
            }
            (Some(inline), None) => PrivateKey::from_base64(inline.get_ref()).map_err(|e| {
                self.error(
                    &inline.span(),
                    "interface.private_key".to_owned(),
                    ConfigErrorKind::InvalidKey(e),
                )
            })?,
            (None, Some(file)) => {
                let key = "interface.private_key_file".to_owned();
                if file.get_ref().is_empty() {
                    return Err(self.error(&file.span(), key, ConfigErrorKind::EmptyPath));
                }
                self.world
                    .read_private_key_file(&self.resolve(file.get_ref()))
                    .map_err(|reason| self.error(&file.span(), key, reason))?
            }
        };

        let listen_port = match raw.listen_port {
            Some(port) => self.in_range(&port, "interface.listen_port", 0, u16::MAX)?,
            None => DEFAULT_LISTEN_PORT,
        };

        let mut addresses = Vec::with_capacity(raw.addresses.len());
        for (index, address) in raw.addresses.iter().enumerate() {
            let parsed = parse_address(address.get_ref()).map_err(|reason| {
                self.error(
                    &address.span(),
                    format!("interface.addresses[{index}]"),
                    reason,
                )
            })?;
            addresses.push(parsed);
        }

        let mtu = match raw.mtu {
            Some(mtu) => {
                let key = "interface.mtu";
                let value = self.in_range(&mtu, key, MIN_MTU_IPV4, u16::MAX)?;
                let first_v6 = addresses.iter().find(|a| matches!(a, IpNet::V6(_)));
                if let Some(&address) = first_v6
                    && value < MIN_MTU_IPV6
                {
                    return Err(self.error(
                        &mtu.span(),
                        key.to_owned(),
                        ConfigErrorKind::MtuTooSmallForIpv6 {
                            mtu: value,
                            address,
                        },
                    ));
                }
                value
            }
            None => DEFAULT_MTU,
        };

        let control_socket = match raw.control_socket {
            Some(socket) if socket.get_ref().is_empty() => {
                return Err(self.error(
                    &socket.span(),
                    "interface.control_socket".to_owned(),
                    ConfigErrorKind::EmptyPath,
                ));
            }
            Some(socket) => self.resolve(socket.get_ref()),
            None => PathBuf::from(format!("/run/wice/{name}.sock")),
        };

        let metrics_listen = match raw.metrics_listen {
            Some(text) => Some(text.get_ref().parse::<SocketAddr>().map_err(|_| {
                self.error(
                    &text.span(),
                    "interface.metrics_listen".to_owned(),
                    ConfigErrorKind::InvalidEndpoint {
                        value: text.get_ref().clone(),
                        why: "expected ip:port, like 127.0.0.1:9586 or [::1]:9586",
                    },
                )
            })?),
            None => None,
        };

        Ok(InterfaceConfig {
            name,
            private_key,
            listen_port,
            addresses,
            mtu,
            control_socket,
            metrics_listen,
        })
    }

    /// Validates one peer; also returns the span of each allowed IP for the overlap check.
    fn peer(
        &self,
        index: usize,
        raw: Spanned<RawPeer>,
        own_key: &PublicKey,
        seen: &mut HashMap<PublicKey, (usize, usize)>,
    ) -> Result<(PeerConfig, Vec<Range<usize>>), ConfigError> {
        let header = raw.span();
        let raw = raw.into_inner();
        let key = |field: &str| format!("peer[{index}].{field}");

        let Some(raw_key) = raw.public_key else {
            return Err(self.error(
                &header,
                key("public_key"),
                ConfigErrorKind::MissingPublicKey,
            ));
        };
        let key_error = |reason| self.error(&raw_key.span(), key("public_key"), reason);
        let public_key = PublicKey::from_base64(raw_key.get_ref())
            .map_err(|e| key_error(ConfigErrorKind::InvalidKey(e)))?;
        if public_key == *own_key {
            return Err(key_error(ConfigErrorKind::OwnPublicKey));
        }
        let line = self.line(&raw_key.span());
        if let Some(&(first, first_line)) = seen.get(&public_key) {
            return Err(key_error(ConfigErrorKind::DuplicatePeer {
                first,
                first_line,
            }));
        }
        seen.insert(public_key, (index, line));

        let mut allowed_ips = Vec::with_capacity(raw.allowed_ips.len());
        let mut spans = Vec::with_capacity(raw.allowed_ips.len());
        for (i, prefix) in raw.allowed_ips.iter().enumerate() {
            let parsed = parse_allowed_ip(prefix.get_ref()).map_err(|reason| {
                self.error(&prefix.span(), key(&format!("allowed_ips[{i}]")), reason)
            })?;
            allowed_ips.push(parsed);
            spans.push(prefix.span());
        }

        let endpoint = match raw.endpoint {
            Some(endpoint) => Some(
                resolve_endpoint(endpoint.get_ref(), self.world)
                    .map_err(|reason| self.error(&endpoint.span(), key("endpoint"), reason))?,
            ),
            None => None,
        };

        let persistent_keepalive = match raw.persistent_keepalive {
            Some(seconds) => {
                match self.in_range(&seconds, &key("persistent_keepalive"), 0, u16::MAX)? {
                    0 => None,
                    seconds => Some(seconds),
                }
            }
            None => None,
        };

        let preshared_key = match raw.preshared_key {
            Some(psk) => Some(PresharedKey::from_base64(psk.get_ref()).map_err(|e| {
                self.error(
                    &psk.span(),
                    key("preshared_key"),
                    ConfigErrorKind::InvalidKey(e),
                )
            })?),
            None => None,
        };

        let peer = PeerConfig {
            public_key,
            allowed_ips,
            endpoint,
            persistent_keepalive,
            preshared_key,
        };
        Ok((peer, spans))
    }

    /// Refuses a prefix of peer `index` that intersects a prefix of an earlier peer: routing
    /// by longest match would silently steal part of the other peer's range.
    fn check_overlaps(
        &self,
        index: usize,
        allowed_ips: &[IpNet],
        spans: &[Range<usize>],
        earlier: &[Vec<(IpNet, Range<usize>)>],
    ) -> Result<(), ConfigError> {
        for (i, (prefix, span)) in allowed_ips.iter().zip(spans).enumerate() {
            for (other_peer, others) in earlier.iter().enumerate() {
                for (other_prefix, other_span) in others {
                    // Prefixes are aligned, so they intersect exactly when one holds the other.
                    if prefix.contains(other_prefix) || other_prefix.contains(prefix) {
                        return Err(self.error(
                            span,
                            format!("peer[{index}].allowed_ips[{i}]"),
                            ConfigErrorKind::OverlappingAllowedIps {
                                prefix: *prefix,
                                other_peer,
                                other_prefix: *other_prefix,
                                other_line: self.line(other_span),
                            },
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn in_range(
        &self,
        value: &Spanned<i64>,
        key: &str,
        min: u16,
        max: u16,
    ) -> Result<u16, ConfigError> {
        u16::try_from(*value.get_ref())
            .ok()
            .filter(|v| (min..=max).contains(v))
            .ok_or_else(|| {
                self.error(
                    &value.span(),
                    key.to_owned(),
                    ConfigErrorKind::OutOfRange {
                        value: *value.get_ref(),
                        min: min.into(),
                        max: max.into(),
                    },
                )
            })
    }

    /// Turns the TOML parser's error (syntax, wrong type, unknown key) into ours, naming the
    /// key by finding which key or value its span falls in.
    fn toml_error(&self, error: &toml::de::Error) -> ConfigError {
        let span = error.span();
        let message = error.message().trim_end();
        let key = match &span {
            // A duplicate key makes the text unparsable, so the path cannot be looked up; the
            // span holds the repeated key's name, which with the line is enough to find it.
            Some(span) if message == "duplicate key" => self
                .text
                .get(span.clone())
                .unwrap_or_default()
                .trim()
                .to_owned(),
            Some(span) => key_path_at(self.text, span.start).unwrap_or_default(),
            None => String::new(),
        };
        let reason = match message.strip_prefix("unknown field `") {
            Some(rest) => ConfigErrorKind::UnknownKey {
                expected: rest
                    .split_once("`, ")
                    .map(|(_, expected)| expected.to_owned()),
            },
            // Say TOML's words rather than the Rust types serde reports.
            None => ConfigErrorKind::InvalidToml(
                message
                    .replace("expected i64", "expected an integer")
                    .replace("expected a sequence", "expected an array"),
            ),
        };
        ConfigError {
            file: self.path.to_path_buf(),
            line: span.map(|span| line_of(self.text, span.start)),
            key,
            reason,
        }
    }
}

/// 1-based line holding byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let before = &text.as_bytes()[..offset.min(text.len())];
    before.iter().filter(|&&b| b == b'\n').count() + 1
}

/// The key path (`peer[1].endpoint`) of the innermost key or value covering byte `offset`.
/// `None` when the text is not valid TOML or the offset is in no key or value.
fn key_path_at(text: &str, offset: usize) -> Option<String> {
    let table = DeTable::parse(text).ok()?;
    path_in_table(table.get_ref(), offset, "")
}

fn path_in_table(table: &DeTable<'_>, offset: usize, prefix: &str) -> Option<String> {
    table.iter().find_map(|(key, value)| {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        // Children first: a table's own span covers only its header, but an inline table's
        // covers its children too, and the innermost match is the useful one.
        path_in_value(value, offset, &path).or_else(|| covers(&key.span(), offset).then_some(path))
    })
}

fn path_in_value(value: &Spanned<DeValue<'_>>, offset: usize, path: &str) -> Option<String> {
    let inner = match value.get_ref() {
        DeValue::Table(table) => path_in_table(table, offset, path),
        DeValue::Array(array) => array
            .iter()
            .enumerate()
            .find_map(|(i, element)| path_in_value(element, offset, &format!("{path}[{i}]"))),
        _ => None,
    };
    inner.or_else(|| covers(&value.span(), offset).then(|| path.to_owned()))
}

fn covers(span: &Range<usize>, offset: usize) -> bool {
    span.contains(&offset) || (span.is_empty() && span.start == offset)
}

/// Applies Linux's rules for interface names (`dev_valid_name`), so a bad name is caught here
/// rather than as an `EINVAL` when the TUN device is created.
fn validate_interface_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("it is empty")
    } else if name.len() > MAX_INTERFACE_NAME_LEN {
        Err("it is longer than 15 bytes")
    } else if name == "." || name == ".." {
        Err("`.` and `..` are reserved")
    } else if name.contains('/') {
        Err("it contains '/'")
    } else if name.contains(':') {
        Err("it contains ':'")
    } else if name.chars().any(char::is_whitespace) {
        Err("it contains whitespace")
    } else if name.chars().any(char::is_control) {
        Err("it contains a control character")
    } else {
        Ok(())
    }
}

/// An interface address: needs an explicit prefix (a bare address would give no on-link
/// route), and keeps its host bits because they are the address.
fn parse_address(text: &str) -> Result<IpNet, ConfigErrorKind> {
    let why = if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net);
    } else if text.parse::<IpAddr>().is_ok() {
        "an interface address needs a prefix length, like 10.77.0.1/24 or fd77::1/64"
    } else {
        "expected an address with a prefix length, like 10.77.0.1/24 or fd77::1/64"
    };
    Err(ConfigErrorKind::InvalidCidr {
        value: text.to_owned(),
        why,
    })
}

/// An allowed IP prefix, normalized like `wg` does: host bits cleared, and a bare address
/// taken as a single-host prefix.
fn parse_allowed_ip(text: &str) -> Result<IpNet, ConfigErrorKind> {
    if let Ok(net) = text.parse::<IpNet>() {
        Ok(net.trunc())
    } else if let Ok(addr) = text.parse::<IpAddr>() {
        Ok(IpNet::from(addr))
    } else {
        Err(ConfigErrorKind::InvalidCidr {
            value: text.to_owned(),
            why: "expected an IP prefix, like 10.77.0.2/32 or fd77::/64",
        })
    }
}

/// Parses `ip:port`, `[v6]:port` or `host:port`, resolving a host name to its first address.
fn resolve_endpoint(text: &str, world: World) -> Result<SocketAddr, ConfigErrorKind> {
    let invalid = |why| ConfigErrorKind::InvalidEndpoint {
        value: text.to_owned(),
        why,
    };
    const BAD_PORT: &str = "the port must be a number from 1 to 65535";
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return if addr.port() == 0 {
            Err(invalid(BAD_PORT))
        } else {
            Ok(addr)
        };
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(invalid(
            "it has no port; write host:port, like 198.51.100.7:51820",
        ));
    };
    if host.starts_with('[') {
        return Err(invalid("the part in brackets must be an IPv6 address"));
    }
    if host.contains(':') {
        return Err(invalid(
            "an IPv6 address needs brackets, like [2001:db8::1]:51820",
        ));
    }
    if host.is_empty() {
        return Err(invalid("the host is empty"));
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|&port| port != 0)
        .ok_or_else(|| invalid(BAD_PORT))?;
    let unresolvable = |error: String| ConfigErrorKind::UnresolvableEndpoint {
        host: host.to_owned(),
        error,
    };
    world.lookup(host, port).map_err(unresolvable)
}

/// Resolves a STUN/TURN server's host to its first address, as endpoints are.
fn resolve_server(url: &ServerUrl, world: World) -> Result<SocketAddr, ConfigErrorKind> {
    if let Ok(ip) = url.host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, url.port));
    }
    world
        .lookup(&url.host, url.port)
        .map_err(|error| ConfigErrorKind::UnresolvableServer {
            host: url.host.clone(),
            error,
        })
}

/// Reads a CA certificate file: it must hold at least one PEM certificate.
fn read_ca_file(path: &Path) -> Result<Vec<u8>, ConfigErrorKind> {
    let (pem, _) =
        read_bounded(path, MAX_CA_FILE_LEN).map_err(|error| ConfigErrorKind::CaFileUnreadable {
            path: path.to_path_buf(),
            error,
        })?;
    let marker = "-----BEGIN CERTIFICATE-----";
    if !pem.contains(marker) {
        return Err(ConfigErrorKind::CaFileInvalid {
            path: path.to_path_buf(),
        });
    }
    Ok(pem.into_bytes())
}

/// Reads a private key file, refusing one that other users can read: the key would already
/// be exposed, and `wg` warns about the same thing.
fn read_private_key_file(path: &Path) -> Result<PrivateKey, ConfigErrorKind> {
    let unreadable = |error| ConfigErrorKind::KeyFileUnreadable {
        path: path.to_path_buf(),
        error,
    };
    // Mode and contents come from one open file, so they describe the same file.
    // Non-blocking, so a FIFO given as key file fails below (not a regular file) instead
    // of hanging the start.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(unreadable)?;
    let metadata = file.metadata().map_err(unreadable)?;
    if !metadata.is_file() {
        return Err(unreadable(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(ConfigErrorKind::KeyFileTooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(unreadable)?;
    PrivateKey::from_base64(&text).map_err(|error| ConfigErrorKind::KeyFileInvalid {
        path: path.to_path_buf(),
        error,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use std::fs;
    use std::sync::atomic::{AtomicUsize, Ordering};

    // RFC 7748 §6.1 keys: the node is Alice, Bob is a peer.
    const NODE_PRIVATE: &str = "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=";
    const NODE_PUBLIC: &str = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=";
    const BOB: &str = "3p7bfXt9wbTTW2HC7OQ1Nz+DQ8hbeGdNrfx+FG+IK08=";
    const PSK: &str = "XasIfmJKikt54X+Lg4AO5m87sSkmGLb9HC+LJ/+I4Os=";

    /// A distinct, valid peer public key for each `n`.
    fn peer_key(n: u8) -> String {
        PrivateKey::from_bytes([n; 32]).public_key().to_base64()
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("node.toml"), text)
    }

    fn parse_ok(text: &str) -> Config {
        parse(text).unwrap_or_else(|e| panic!("expected a valid config, got: {e}"))
    }

    /// Parses `text`, expecting an error at `line` on `key` whose message contains `phrase`.
    fn assert_error(text: &str, line: Option<usize>, key: &str, phrase: &str) -> ConfigError {
        let err = parse(text).expect_err("expected an error");
        assert_eq!(
            (err.line, err.key.as_str()),
            (line, key),
            "wrong place for: {err}"
        );
        let reason = err.reason.to_string();
        assert!(
            reason.contains(phrase),
            "reason {reason:?} does not contain {phrase:?}"
        );
        err
    }

    /// A config whose interface holds `interface_lines` after the private key (line 2), so the
    /// first of them is line 3.
    fn with_interface(interface_lines: &str) -> String {
        format!("[interface]\nprivate_key = \"{NODE_PRIVATE}\"\n{interface_lines}")
    }

    /// A directory under the system temp dir, unique to this test and removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!(
                "wice-config-test-{}-{n}-{name}",
                std::process::id()
            ));
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn write(&self, name: &str, contents: &str, mode: u32) -> PathBuf {
            let path = self.0.join(name);
            fs::write(&path, contents).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    // ---- valid configs ----

    #[test]
    fn a_minimal_config_gets_every_default() {
        let config = parse_ok(&with_interface(""));
        assert_eq!(config.path, Path::new("node.toml"));
        let interface = &config.interface;
        assert_eq!(interface.name, "wice0");
        assert_eq!(interface.private_key.public_key().to_base64(), NODE_PUBLIC);
        assert_eq!(interface.listen_port, 51820);
        assert!(interface.addresses.is_empty());
        assert_eq!(interface.mtu, 1420);
        assert_eq!(interface.control_socket, Path::new("/run/wice/wice0.sock"));
        assert!(config.peers.is_empty());
        assert_eq!(config.signaling, SignalingConfig::default());
    }

    #[test]
    fn the_documented_example_parses_with_every_field() {
        let text = format!(
            r#"[interface]
name = "mesh1"
private_key = "{NODE_PRIVATE}"
listen_port = 51821
addresses = ["10.77.0.1/24", "fd77::1/64"]
mtu = 1400
control_socket = "/tmp/wice-mesh1.sock"

[[peer]]
public_key = "{BOB}"
allowed_ips = ["10.77.0.2/32", "fd77::2/128"]
endpoint = "198.51.100.7:51820"
persistent_keepalive = 25
preshared_key = "{PSK}"

[[peer]]
public_key = "{}"
allowed_ips = ["10.77.0.3/32"]
"#,
            peer_key(3)
        );
        let config = parse_ok(&text);
        let interface = &config.interface;
        assert_eq!(interface.name, "mesh1");
        assert_eq!(interface.listen_port, 51821);
        assert_eq!(
            interface.addresses,
            vec![
                "10.77.0.1/24".parse::<IpNet>().unwrap(),
                "fd77::1/64".parse().unwrap()
            ]
        );
        assert_eq!(interface.mtu, 1400);
        assert_eq!(interface.control_socket, Path::new("/tmp/wice-mesh1.sock"));

        assert_eq!(config.peers.len(), 2);
        let bob = &config.peers[0];
        assert_eq!(bob.public_key.to_base64(), BOB);
        assert_eq!(
            bob.allowed_ips,
            vec![
                "10.77.0.2/32".parse::<IpNet>().unwrap(),
                "fd77::2/128".parse().unwrap()
            ]
        );
        assert_eq!(bob.endpoint, Some("198.51.100.7:51820".parse().unwrap()));
        assert_eq!(bob.persistent_keepalive, Some(25));
        assert_eq!(bob.preshared_key.as_ref().unwrap().to_base64(), PSK);

        let third = &config.peers[1];
        assert_eq!(third.public_key.to_base64(), peer_key(3));
        assert_eq!(third.endpoint, None);
        assert_eq!(third.persistent_keepalive, None);
        assert!(third.preshared_key.is_none());
    }

    #[test]
    fn interface_addresses_keep_their_host_bits() {
        let config = parse_ok(&with_interface("addresses = [\"10.77.0.9/24\"]\n"));
        assert_eq!(config.interface.addresses[0].to_string(), "10.77.0.9/24");
    }

    #[test]
    fn allowed_ips_have_their_host_bits_cleared_like_wg() {
        let config = parse_ok(&format!(
            "{}[[peer]]\npublic_key = \"{BOB}\"\nallowed_ips = [\"10.77.0.9/24\", \"fd77::5/64\"]\n",
            with_interface("")
        ));
        let shown: Vec<String> = config.peers[0]
            .allowed_ips
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown, ["10.77.0.0/24", "fd77::/64"]);
    }

    #[test]
    fn a_bare_allowed_ip_is_a_single_host_prefix() {
        let config = parse_ok(&format!(
            "{}[[peer]]\npublic_key = \"{BOB}\"\nallowed_ips = [\"10.77.0.2\", \"fd77::2\"]\n",
            with_interface("")
        ));
        let shown: Vec<String> = config.peers[0]
            .allowed_ips
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown, ["10.77.0.2/32", "fd77::2/128"]);
    }

    #[test]
    fn a_peer_without_allowed_ips_has_none_like_wg() {
        let config = parse_ok(&format!(
            "{}[[peer]]\npublic_key = \"{BOB}\"\n",
            with_interface("")
        ));
        assert!(config.peers[0].allowed_ips.is_empty());
    }

    #[test]
    fn the_default_control_socket_follows_the_interface_name() {
        let config = parse_ok(&with_interface("name = \"mesh7\"\n"));
        assert_eq!(
            config.interface.control_socket,
            Path::new("/run/wice/mesh7.sock")
        );
    }

    #[test]
    fn listen_port_zero_is_kept_to_mean_any_free_port() {
        let config = parse_ok(&with_interface("listen_port = 0\n"));
        assert_eq!(config.interface.listen_port, 0);
    }

    #[test]
    fn persistent_keepalive_zero_means_off() {
        let config = parse_ok(&format!(
            "{}[[peer]]\npublic_key = \"{BOB}\"\npersistent_keepalive = 0\n",
            with_interface("")
        ));
        assert_eq!(config.peers[0].persistent_keepalive, None);
    }

    #[test]
    fn an_ipv6_endpoint_in_brackets_is_accepted() {
        let config = parse_ok(&format!(
            "{}[[peer]]\npublic_key = \"{BOB}\"\nendpoint = \"[2001:db8::7]:51820\"\n",
            with_interface("")
        ));
        assert_eq!(
            config.peers[0].endpoint,
            Some("[2001:db8::7]:51820".parse().unwrap())
        );
    }

    #[test]
    fn an_endpoint_host_name_is_resolved_at_load() {
        let config = parse_ok(&format!(
            "{}[[peer]]\npublic_key = \"{BOB}\"\nendpoint = \"localhost:51820\"\n",
            with_interface("")
        ));
        let endpoint = config.peers[0].endpoint.unwrap();
        assert!(endpoint.ip().is_loopback(), "{endpoint}");
        assert_eq!(endpoint.port(), 51820);
    }

    #[test]
    fn an_mtu_below_1280_is_fine_without_ipv6_addresses() {
        let config = parse_ok(&with_interface(
            "addresses = [\"10.77.0.1/24\"]\nmtu = 576\n",
        ));
        assert_eq!(config.interface.mtu, 576);
    }

    #[test]
    fn the_same_prefix_on_two_address_families_does_not_overlap() {
        parse_ok(&format!(
            "{}[[peer]]\npublic_key = \"{BOB}\"\nallowed_ips = [\"0.0.0.0/0\"]\n\
             [[peer]]\npublic_key = \"{}\"\nallowed_ips = [\"::/0\"]\n",
            with_interface(""),
            peer_key(3)
        ));
    }

    #[test]
    fn check_summary_names_interface_key_port_and_counts() {
        let config = parse_ok(&format!(
            "{}[[peer]]\npublic_key = \"{BOB}\"\n",
            with_interface("addresses = [\"10.77.0.1/24\", \"fd77::1/64\"]\n")
        ));
        assert_eq!(
            config.check_summary(),
            format!(
                "node.toml: interface wice0, public key {NODE_PUBLIC}, listen port 51820, \
                 2 addresses, mtu 1420, 1 peer"
            )
        );
    }

    // ---- errors: TOML level ----

    #[test]
    fn an_unknown_key_in_interface_is_named_with_its_line() {
        let err = assert_error(
            &with_interface("listen_prot = 1\n"),
            Some(3),
            "interface.listen_prot",
            "unknown key",
        );
        assert!(err.reason.to_string().contains("`listen_port`"), "{err}");
    }

    #[test]
    fn an_unknown_key_in_a_peer_is_named_with_the_peer_index() {
        let text = format!(
            "{}[[peer]]\npublic_key = \"{BOB}\"\n[[peer]]\npublic_key = \"{}\"\nendpiont = \"x\"\n",
            with_interface(""),
            peer_key(3)
        );
        assert_error(&text, Some(7), "peer[1].endpiont", "unknown key");
    }

    #[test]
    fn an_unknown_top_level_key_is_an_error() {
        let text = format!("verbose = true\n{}", with_interface(""));
        assert_error(&text, Some(1), "verbose", "unknown key");
    }

    #[test]
    fn an_unknown_section_is_an_error() {
        let text = format!("{}[peers]\npublic_key = \"{BOB}\"\n", with_interface(""));
        assert_error(&text, Some(3), "peers", "unknown key");
    }

    #[test]
    fn an_unknown_key_in_an_inline_table_is_named() {
        let text = format!("interface = {{ private_key = \"{NODE_PRIVATE}\", nmae = \"x\" }}\n");
        assert_error(&text, Some(1), "interface.nmae", "unknown key");
    }

    #[test]
    fn a_toml_syntax_error_gives_the_line() {
        let text = with_interface("name = \"wice0\n");
        assert_error(&text, Some(3), "", "string");
    }

    #[test]
    fn a_value_of_the_wrong_type_names_its_key() {
        assert_error(
            &with_interface("mtu = \"1420\"\n"),
            Some(3),
            "interface.mtu",
            "invalid type",
        );
        let text = format!(
            "{}[[peer]]\npublic_key = \"{BOB}\"\nallowed_ips = [\"10.77.0.2/32\", 7]\n",
            with_interface("")
        );
        assert_error(&text, Some(5), "peer[0].allowed_ips[1]", "invalid type");
    }

    #[test]
    fn a_wrong_type_is_described_in_toml_terms() {
        assert_error(
            &with_interface("mtu = \"1420\"\n"),
            Some(3),
            "interface.mtu",
            "invalid type: string \"1420\", expected an integer",
        );
        assert_error(
            &with_interface("addresses = \"10.77.0.1/24\"\n"),
            Some(3),
            "interface.addresses",
            "expected an array",
        );
    }

    #[test]
    fn a_duplicate_key_is_named_with_the_line_of_the_repeat() {
        assert_error(
            &with_interface("mtu = 1400\nmtu = 1300\n"),
            Some(4),
            "mtu",
            "duplicate key",
        );
        assert_error(
            &format!("{}[interface]\n", with_interface("")),
            Some(3),
            "interface",
            "duplicate key",
        );
    }

    #[test]
    fn a_file_without_an_interface_section_is_refused() {
        let text = format!("[[peer]]\npublic_key = \"{BOB}\"\n");
        assert_error(&text, None, "interface", "missing [interface] section");
        assert_error("", None, "interface", "missing [interface] section");
    }

    // ---- errors: keys ----

    #[test]
    fn a_private_key_that_is_not_base64_is_refused() {
        let text = "[interface]\nprivate_key = \"not base64!\"\n";
        assert_error(text, Some(2), "interface.private_key", "not valid base64");
    }

    #[test]
    fn a_peer_public_key_that_is_not_base64_is_refused() {
        let text = format!(
            "{}[[peer]]\npublic_key = \"{BOB}\"\n[[peer]]\npublic_key = \"%%%%\"\n",
            with_interface("")
        );
        let err = assert_error(&text, Some(6), "peer[1].public_key", "not valid base64");
        assert_eq!(
            err.to_string(),
            "node.toml:6: peer[1].public_key: not valid base64"
        );
    }

    #[test]
    fn a_key_of_the_wrong_length_is_refused_with_its_length() {
        let text = format!("{}[[peer]]\npublic_key = \"AAAA\"\n", with_interface(""));
        assert_error(
            &text,
            Some(4),
            "peer[0].public_key",
            "decodes to 3 bytes; a WireGuard key is 32 bytes",
        );
    }

    #[test]
    fn a_bad_preshared_key_is_refused() {
        let text = format!(
            "{}[[peer]]\npublic_key = \"{BOB}\"\npreshared_key = \"AAAA\"\n",
            with_interface("")
        );
        assert_error(
            &text,
            Some(5),
            "peer[0].preshared_key",
            "decodes to 3 bytes",
        );
    }

    #[test]
    fn a_peer_without_a_public_key_is_refused_at_its_header() {
        let text = format!(
            "{}\n[[peer]]\nallowed_ips = [\"10.77.0.2/32\"]\n",
            with_interface("")
        );
        assert_error(&text, Some(4), "peer[0].public_key", "missing");
    }

    #[test]
    fn giving_both_private_key_and_private_key_file_is_refused() {
        let text = with_interface("private_key_file = \"/etc/wice/private.key\"\n");
        assert_error(
            &text,
            Some(3),
            "interface.private_key_file",
            "given together with interface.private_key (line 2); give only one",
        );
    }

    #[test]
    fn giving_neither_private_key_nor_private_key_file_is_refused() {
        let text = "# node\n[interface]\nname = \"wice0\"\n";
        assert_error(
            text,
            Some(2),
            "interface.private_key",
            "missing; give private_key or private_key_file",
        );
    }

    #[test]
    fn the_same_peer_listed_twice_is_refused() {
        let text = format!(
            "{}[[peer]]\npublic_key = \"{BOB}\"\n[[peer]]\npublic_key = \"{BOB}\"\n",
            with_interface("")
        );
        assert_error(
            &text,
            Some(6),
            "peer[1].public_key",
            "same public key as peer[0] (line 4)",
        );
    }

    #[test]
    fn the_nodes_own_public_key_as_a_peer_is_refused() {
        let text = format!(
            "{}[[peer]]\npublic_key = \"{NODE_PUBLIC}\"\n",
            with_interface("")
        );
        assert_error(&text, Some(4), "peer[0].public_key", "own public key");
    }

    // ---- errors: private key file ----

    #[test]
    fn a_private_key_file_with_mode_0600_is_read_and_trimmed() {
        let dir = TempDir::new("key-ok");
        let key = dir.write("private.key", &format!("{NODE_PRIVATE}\n"), 0o600);
        let text = format!("[interface]\nprivate_key_file = \"{}\"\n", key.display());
        let config = parse_ok(&text);
        assert_eq!(
            config.interface.private_key.public_key().to_base64(),
            NODE_PUBLIC
        );
    }

    #[test]
    fn a_relative_private_key_file_is_found_beside_the_config_file() {
        let dir = TempDir::new("key-relative");
        dir.write("private.key", NODE_PRIVATE, 0o400);
        let config_path = dir.write(
            "node.toml",
            "[interface]\nprivate_key_file = \"private.key\"\ncontrol_socket = \"run/wice.sock\"\n",
            0o644,
        );
        let config = Config::load(&config_path).unwrap();
        assert_eq!(config.path, config_path);
        assert_eq!(
            config.interface.private_key.public_key().to_base64(),
            NODE_PUBLIC
        );
        assert_eq!(config.interface.control_socket, dir.0.join("run/wice.sock"));
    }

    #[test]
    fn a_missing_private_key_file_is_refused() {
        let dir = TempDir::new("key-missing");
        let key = dir.0.join("absent.key");
        let text = format!("[interface]\nprivate_key_file = \"{}\"\n", key.display());
        let err = assert_error(
            &text,
            Some(2),
            "interface.private_key_file",
            &format!("cannot read {}", key.display()),
        );
        assert!(
            matches!(&err.reason, ConfigErrorKind::KeyFileUnreadable { error, .. } if error.kind() == io::ErrorKind::NotFound),
            "{err:?}"
        );
    }

    #[test]
    fn a_directory_as_private_key_file_is_refused() {
        let dir = TempDir::new("key-dir");
        let text = format!("[interface]\nprivate_key_file = \"{}\"\n", dir.0.display());
        assert_error(
            &text,
            Some(2),
            "interface.private_key_file",
            "not a regular file",
        );
    }

    #[test]
    fn a_private_key_file_readable_by_others_is_refused_with_the_fix() {
        let dir = TempDir::new("key-open");
        let key = dir.write("private.key", NODE_PRIVATE, 0o644);
        let text = format!("[interface]\nprivate_key_file = \"{}\"\n", key.display());
        let err = assert_error(
            &text,
            Some(2),
            "interface.private_key_file",
            &format!(
                "{} is readable by group or others (mode 0644); run: chmod 600 {}",
                key.display(),
                key.display()
            ),
        );
        assert!(matches!(
            err.reason,
            ConfigErrorKind::KeyFileTooOpen { mode: 0o644, .. }
        ));
    }

    #[test]
    fn a_private_key_file_writable_by_group_is_refused() {
        let dir = TempDir::new("key-group-write");
        let key = dir.write("private.key", NODE_PRIVATE, 0o620);
        let text = format!("[interface]\nprivate_key_file = \"{}\"\n", key.display());
        assert_error(
            &text,
            Some(2),
            "interface.private_key_file",
            "is accessible by group or others (mode 0620); run: chmod 600",
        );
    }

    #[test]
    fn a_private_key_file_without_a_key_is_refused() {
        let dir = TempDir::new("key-garbage");
        let key = dir.write("private.key", "hello\n", 0o600);
        let text = format!("[interface]\nprivate_key_file = \"{}\"\n", key.display());
        assert_error(
            &text,
            Some(2),
            "interface.private_key_file",
            &format!("{}: not valid base64", key.display()),
        );
    }

    #[test]
    fn an_empty_private_key_file_path_is_refused() {
        assert_error(
            "[interface]\nprivate_key_file = \"\"\n",
            Some(2),
            "interface.private_key_file",
            "must not be empty",
        );
    }

    // ---- errors: addresses and prefixes ----

    #[test]
    fn an_invalid_interface_address_is_refused() {
        assert_error(
            &with_interface("addresses = [\"10.77.0.1/24\", \"10.77.0.300/24\"]\n"),
            Some(3),
            "interface.addresses[1]",
            "`10.77.0.300/24` is not valid",
        );
        assert_error(
            &with_interface("addresses = [\"10.77.0.1/33\"]\n"),
            Some(3),
            "interface.addresses[0]",
            "prefix length",
        );
    }

    #[test]
    fn an_interface_address_without_a_prefix_length_is_refused() {
        assert_error(
            &with_interface("addresses = [\"10.77.0.1\"]\n"),
            Some(3),
            "interface.addresses[0]",
            "needs a prefix length",
        );
    }

    #[test]
    fn an_invalid_allowed_ip_is_refused() {
        let text = format!(
            "{}[[peer]]\npublic_key = \"{BOB}\"\nallowed_ips = [\n  \"10.77.0.2/32\",\n  \"fd77::/129\",\n]\n",
            with_interface("")
        );
        assert_error(
            &text,
            Some(7),
            "peer[0].allowed_ips[1]",
            "`fd77::/129` is not valid: expected an IP prefix",
        );
    }

    #[test]
    fn a_prefix_inside_another_peers_prefix_is_refused_naming_both() {
        let text = format!(
            "{}[[peer]]\npublic_key = \"{BOB}\"\nallowed_ips = [\"10.77.0.0/24\"]\n\
             [[peer]]\npublic_key = \"{}\"\nallowed_ips = [\"fd77::3/128\", \"10.77.0.3/32\"]\n",
            with_interface(""),
            peer_key(3)
        );
        assert_error(
            &text,
            Some(8),
            "peer[1].allowed_ips[1]",
            "10.77.0.3/32 overlaps 10.77.0.0/24 of peer[0] (line 5); \
             each address must route to exactly one peer",
        );
    }

    #[test]
    fn a_prefix_containing_another_peers_prefix_is_refused() {
        let text = format!(
            "{}[[peer]]\npublic_key = \"{BOB}\"\nallowed_ips = [\"fd77::2/128\"]\n\
             [[peer]]\npublic_key = \"{}\"\nallowed_ips = [\"::/0\"]\n",
            with_interface(""),
            peer_key(3)
        );
        assert_error(
            &text,
            Some(8),
            "peer[1].allowed_ips[0]",
            "::/0 overlaps fd77::2/128 of peer[0]",
        );
    }

    #[test]
    fn the_same_prefix_on_two_peers_is_refused_after_normalizing() {
        let text = format!(
            "{}[[peer]]\npublic_key = \"{BOB}\"\nallowed_ips = [\"10.77.0.0/24\"]\n\
             [[peer]]\npublic_key = \"{}\"\nallowed_ips = [\"10.77.0.99/24\"]\n",
            with_interface(""),
            peer_key(3)
        );
        assert_error(
            &text,
            Some(8),
            "peer[1].allowed_ips[0]",
            "10.77.0.0/24 overlaps 10.77.0.0/24 of peer[0]",
        );
    }

    // ---- errors: interface name, endpoint, numbers ----

    #[test]
    fn an_invalid_interface_name_is_refused_with_the_rule_it_breaks() {
        let cases = [
            ("", "it is empty"),
            ("wice0123456789ab", "longer than 15 bytes"),
            ("wice/0", "contains '/'"),
            ("wice:0", "contains ':'"),
            ("wice 0", "contains whitespace"),
            ("..", "reserved"),
        ];
        for (name, phrase) in cases {
            assert_error(
                &with_interface(&format!("name = \"{name}\"\n")),
                Some(3),
                "interface.name",
                phrase,
            );
        }
        // Exactly 15 bytes is the longest allowed.
        parse_ok(&with_interface("name = \"wice0123456789a\"\n"));
    }

    #[test]
    fn an_invalid_endpoint_is_refused_with_the_rule_it_breaks() {
        let cases = [
            ("198.51.100.7", "has no port"),
            ("198.51.100.7:0", "port must be a number from 1 to 65535"),
            (
                "198.51.100.7:70000",
                "port must be a number from 1 to 65535",
            ),
            ("example.com:http", "port must be a number"),
            ("2001:db8::1:51820", "needs brackets"),
            ("[2001:db8::zz]:51820", "must be an IPv6 address"),
            (":51820", "host is empty"),
        ];
        for (endpoint, phrase) in cases {
            let text = format!(
                "{}[[peer]]\npublic_key = \"{BOB}\"\nendpoint = \"{endpoint}\"\n",
                with_interface("")
            );
            assert_error(&text, Some(5), "peer[0].endpoint", phrase);
        }
    }

    #[test]
    fn an_unresolvable_endpoint_host_is_refused() {
        // `.invalid` is reserved never to resolve (RFC 6761).
        let text = format!(
            "{}[[peer]]\npublic_key = \"{BOB}\"\nendpoint = \"no-such-host.invalid:51820\"\n",
            with_interface("")
        );
        assert_error(
            &text,
            Some(5),
            "peer[0].endpoint",
            "cannot resolve host `no-such-host.invalid`",
        );
    }

    #[test]
    fn an_mtu_out_of_range_is_refused() {
        assert_error(
            &with_interface("mtu = 575\n"),
            Some(3),
            "interface.mtu",
            "575 is out of range; must be 576..=65535",
        );
        assert_error(
            &with_interface("mtu = 65536\n"),
            Some(3),
            "interface.mtu",
            "out of range",
        );
    }

    #[test]
    fn an_mtu_below_1280_is_refused_with_an_ipv6_address() {
        assert_error(
            &with_interface("addresses = [\"10.77.0.1/24\", \"fd77::1/64\"]\nmtu = 1279\n"),
            Some(4),
            "interface.mtu",
            "1279 is below 1280, the IPv6 minimum, and interface.addresses has IPv6 address fd77::1/64",
        );
    }

    #[test]
    fn a_listen_port_out_of_range_is_refused() {
        assert_error(
            &with_interface("listen_port = -1\n"),
            Some(3),
            "interface.listen_port",
            "-1 is out of range; must be 0..=65535",
        );
    }

    #[test]
    fn a_persistent_keepalive_out_of_range_is_refused() {
        let text = format!(
            "{}[[peer]]\npublic_key = \"{BOB}\"\npersistent_keepalive = 65536\n",
            with_interface("")
        );
        assert_error(
            &text,
            Some(5),
            "peer[0].persistent_keepalive",
            "65536 is out of range; must be 0..=65535",
        );
    }

    #[test]
    fn an_empty_control_socket_is_refused() {
        assert_error(
            &with_interface("control_socket = \"\"\n"),
            Some(3),
            "interface.control_socket",
            "must not be empty",
        );
    }

    #[test]
    fn metrics_listen_is_an_optional_socket_address() {
        let config = parse_ok(&with_interface("metrics_listen = \"127.0.0.1:9586\"\n"));
        assert_eq!(
            config.interface.metrics_listen,
            Some("127.0.0.1:9586".parse().unwrap())
        );
        assert_eq!(parse_ok(&with_interface("")).interface.metrics_listen, None);
        assert_error(
            &with_interface("metrics_listen = \"localhost\"\n"),
            Some(3),
            "interface.metrics_listen",
            "expected ip:port",
        );
    }

    // ---- ice ----

    fn with_ice(ice: &str) -> String {
        with_interface(&format!("[signaling]\nbackends = [\"inprocess\"]\n{ice}"))
    }

    #[test]
    fn the_webrtc_style_ice_servers_parse_with_credentials_on_turn_only() {
        let config = parse_ok(&with_ice(
            "[ice]\ncandidate_types = [\"host\", \"relay\"]\n\n\
             [[ice.servers]]\nurls = [\"stun:198.51.100.1:3478\"]\n\n\
             [[ice.servers]]\nurls = [\"turn:198.51.100.1?transport=udp\", \"stun:198.51.100.2\"]\n\
             username = \"lab\"\ncredential = \"labpass\"\n",
        ));
        let ice = &config.ice;
        assert_eq!(
            ice.candidate_types,
            CandidateTypes {
                host: true,
                srflx: false,
                relay: true
            }
        );
        let servers: Vec<(String, SocketAddr, bool)> = ice
            .servers
            .iter()
            .map(|s| (s.url.to_string(), s.address, s.credentials.is_some()))
            .collect();
        assert_eq!(
            servers,
            [
                (
                    "stun:198.51.100.1:3478".to_owned(),
                    "198.51.100.1:3478".parse().unwrap(),
                    false
                ),
                (
                    "turn:198.51.100.1:3478".to_owned(),
                    "198.51.100.1:3478".parse().unwrap(),
                    true
                ),
                (
                    "stun:198.51.100.2:3478".to_owned(),
                    "198.51.100.2:3478".parse().unwrap(),
                    false
                ),
            ]
        );
        assert_eq!(ice.servers[1].credentials.as_ref().unwrap().username, "lab");
    }

    #[test]
    fn without_an_ice_section_every_candidate_type_is_gathered_and_no_server_is_used() {
        let config = parse_ok(&with_ice(""));
        assert_eq!(config.ice, IceConfig::default());
        assert_eq!(config.ice.candidate_types, CandidateTypes::ALL);
    }

    #[test]
    fn ice_mistakes_are_refused_with_their_place() {
        assert_error(
            &with_ice("[[ice.servers]]\nurls = [\"turn:198.51.100.1\"]\n"),
            Some(5),
            "ice.servers[0].username",
            "a turn: URL needs username and credential",
        );
        assert_error(
            &with_ice("[[ice.servers]]\nurls = [\"stun:198.51.100.1\"]\nusername = \"u\"\n"),
            Some(7),
            "ice.servers[0].username",
            "only used by turn: URLs",
        );
        assert_error(
            &with_ice("[[ice.servers]]\nurls = [\"turns:198.51.100.1\"]\n"),
            Some(6),
            "ice.servers[0].urls[0]",
            "TLS (stuns:/turns:) is not supported",
        );
        assert_error(
            &with_ice("[ice]\ncandidate_types = [\"host\", \"mdns\"]\n"),
            Some(6),
            "ice.candidate_types[1]",
            "`mdns` is not a candidate type",
        );
        assert_error(
            &with_ice("[ice]\ncandidate_types = []\n"),
            Some(6),
            "ice.candidate_types",
            "at least one of host, srflx, relay",
        );
        assert_error(
            &with_interface("[ice]\ncandidate_types = [\"host\"]\n"),
            Some(3),
            "ice",
            "[signaling] lists no backends",
        );
    }

    // ---- signaling ----

    #[test]
    fn signaling_backends_are_read_in_file_order() {
        let config = parse_ok(&with_interface(
            "[signaling]\nbackends = [\"grpc://198.51.100.1:8443\", \"inprocess\", \"grpcs://[2001:db8::1]:443\"]\n",
        ));
        assert_eq!(
            config.signaling.backends,
            vec![
                BackendUrl::Grpc {
                    host: "198.51.100.1".to_owned(),
                    port: 8443,
                    tls: false
                },
                BackendUrl::InProcess,
                BackendUrl::Grpc {
                    host: "2001:db8::1".to_owned(),
                    port: 443,
                    tls: true
                },
            ]
        );
        assert_eq!(config.signaling.tls_ca, None);
        assert!(
            config.check_summary().ends_with(
                ", signaling via grpc://198.51.100.1:8443, inprocess, grpcs://[2001:db8::1]:443"
            ),
            "{}",
            config.check_summary()
        );
    }

    #[test]
    fn an_invalid_backend_url_is_refused_with_its_place_and_the_fix() {
        let text = with_interface(
            "[signaling]\nbackends = [\n  \"inprocess\",\n  \"http://198.51.100.1:8443\",\n]\n",
        );
        let err = assert_error(
            &text,
            Some(6),
            "signaling.backends[1]",
            "`http://198.51.100.1:8443` is not a backend; use \"grpc://host:port\"",
        );
        assert!(matches!(
            err.reason,
            ConfigErrorKind::InvalidBackend(BackendUrlError::UnknownScheme(_))
        ));
        assert_error(
            &with_interface("[signaling]\nbackends = [\"grpc://198.51.100.1\"]\n"),
            Some(4),
            "signaling.backends[0]",
            "needs a port from 1 to 65535",
        );
    }

    #[test]
    fn the_same_backend_listed_twice_is_refused() {
        let text = with_interface(
            "[signaling]\nbackends = [\"grpc://198.51.100.1:8443\",\n  \"grpc://198.51.100.1:8443\"]\n",
        );
        assert_error(
            &text,
            Some(5),
            "signaling.backends[1]",
            "same backend as signaling.backends[0] (line 4)",
        );
    }

    #[test]
    fn an_unknown_key_in_the_signaling_section_is_refused() {
        let err = assert_error(
            &with_interface("[signaling]\nbackend = [\"inprocess\"]\n"),
            Some(4),
            "signaling.backend",
            "unknown key",
        );
        assert!(err.to_string().contains("backends"), "{err}");
    }

    #[test]
    fn a_tls_ca_file_is_read_from_beside_the_config() {
        let dir = TempDir::new("ca-ok");
        dir.write(
            "ca.pem",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            0o644,
        );
        let path = dir.write(
            "node.toml",
            &with_interface("[signaling]\nbackends = [\"grpcs://signal.example.org:443\"]\ntls_ca_file = \"ca.pem\"\n"),
            0o600,
        );
        let config = Config::load(&path).unwrap();
        let ca = config.signaling.tls_ca.unwrap();
        assert_eq!(ca.path, dir.0.join("ca.pem"));
        assert!(ca.pem.starts_with(b"-----BEGIN CERTIFICATE-----"));
    }

    #[test]
    fn a_tls_ca_file_that_is_missing_or_not_a_certificate_is_refused() {
        let dir = TempDir::new("ca-bad");
        let missing = dir.0.join("absent.pem");
        let text = |file: &Path| {
            with_interface(&format!(
                "[signaling]\nbackends = [\"grpcs://signal.example.org:443\"]\ntls_ca_file = \"{}\"\n",
                file.display()
            ))
        };
        assert_error(
            &text(&missing),
            Some(5),
            "signaling.tls_ca_file",
            &format!("cannot read {}", missing.display()),
        );
        let garbage = dir.write("garbage.pem", "hello\n", 0o644);
        assert_error(
            &text(&garbage),
            Some(5),
            "signaling.tls_ca_file",
            "holds no PEM certificate",
        );
    }

    #[test]
    fn a_tls_ca_file_without_a_grpcs_backend_is_refused_as_unused() {
        assert_error(
            &with_interface(
                "[signaling]\nbackends = [\"grpc://198.51.100.1:8443\"]\ntls_ca_file = \"ca.pem\"\n",
            ),
            Some(5),
            "signaling.tls_ca_file",
            "no backend uses grpcs://",
        );
    }

    // ---- loading ----

    #[test]
    fn loading_a_missing_file_gives_an_error_without_line_or_key() {
        let dir = TempDir::new("missing-config");
        let path = dir.0.join("absent.toml");
        let err = Config::load(&path).unwrap_err();
        assert_eq!((err.line, err.key.as_str()), (None, ""));
        assert!(matches!(err.reason, ConfigErrorKind::FileUnreadable(_)));
        assert!(
            err.to_string()
                .starts_with(&format!("{}: cannot read the file: ", path.display())),
            "{err}"
        );
    }

    // ---- files that hold secrets, offline parsing, Debug ----

    #[test]
    fn a_config_with_an_inline_private_key_readable_by_others_is_refused_with_the_fix() {
        let dir = TempDir::new("open-secret");
        let path = dir.write("node.toml", &with_interface(""), 0o644);
        let err = Config::load(&path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{p}:2: interface.private_key: is a secret, and {p} is readable by group or others (mode 0644); run: chmod 600 {p} (or move the secret to a file of its own, like private_key_file)",
                p = path.display()
            )
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        Config::load(&path).expect("the same file at 0600 loads");
    }

    #[test]
    fn a_preshared_key_or_turn_credential_in_an_open_file_is_refused_by_its_key() {
        let dir = TempDir::new("open-psk");
        dir.write("private.key", NODE_PRIVATE, 0o600);
        let psk = format!(
            "[interface]\nprivate_key_file = \"private.key\"\n\n[[peer]]\npublic_key = \"{BOB}\"\npreshared_key = \"{PSK}\"\n"
        );
        let path = dir.write("psk.toml", &psk, 0o640);
        let err = Config::load(&path).unwrap_err();
        assert_eq!(
            (err.line, err.key.as_str()),
            (Some(6), "peer[0].preshared_key")
        );
        assert!(matches!(
            err.reason,
            ConfigErrorKind::SecretsInOpenFile { mode: 0o640, .. }
        ));

        let turn = "[interface]\nprivate_key_file = \"private.key\"\n\n[signaling]\nbackends = [\"grpc://127.0.0.1:8443\"]\n\n[[ice.servers]]\nurls = [\"turn:127.0.0.1:3478\"]\nusername = \"lab\"\ncredential = \"labpass\"\n";
        let path = dir.write("turn.toml", turn, 0o604);
        let err = Config::load(&path).unwrap_err();
        assert_eq!(err.key, "ice.servers[0].credential");
        assert!(err.to_string().contains("run: chmod 600"), "{err}");
    }

    #[test]
    fn a_config_without_inline_secrets_may_be_world_readable() {
        let dir = TempDir::new("open-nosecret");
        dir.write("private.key", NODE_PRIVATE, 0o600);
        let path = dir.write(
            "node.toml",
            "[interface]\nprivate_key_file = \"private.key\"\n",
            0o644,
        );
        Config::load(&path).expect("no secret inside, so 0644 is fine");
    }

    #[test]
    fn a_config_path_that_is_not_a_regular_file_is_refused_without_reading_it() {
        for path in ["/dev/zero", "/proc/self"] {
            let err = Config::load(Path::new(path)).unwrap_err();
            assert!(
                err.to_string().contains("not a regular file")
                    || err.to_string().contains("Is a directory"),
                "{err}"
            );
        }
    }

    #[test]
    fn an_offline_parse_resolves_no_names_and_reads_no_files() {
        let text = format!(
            "[interface]\nprivate_key = \"{NODE_PRIVATE}\"\n\n[[peer]]\npublic_key = \"{BOB}\"\nendpoint = \"localhost:51820\"\n"
        );
        assert!(
            Config::parse(Path::new("node.toml"), &text).is_ok(),
            "online it resolves"
        );
        let err = Config::parse_offline(Path::new("node.toml"), &text).unwrap_err();
        assert_eq!(err.key, "peer[0].endpoint");
        assert!(err.to_string().contains("parsing offline"), "{err}");

        let dir = TempDir::new("offline");
        dir.write("private.key", NODE_PRIVATE, 0o600);
        let err = Config::parse_offline(
            &dir.0.join("node.toml"),
            "[interface]\nprivate_key_file = \"private.key\"\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("not read: parsing offline"),
            "{err}"
        );
    }

    #[test]
    fn debug_of_a_config_shows_no_secret() {
        let text = format!(
            "[interface]\nprivate_key = \"{NODE_PRIVATE}\"\n\n[[peer]]\npublic_key = \"{BOB}\"\npreshared_key = \"{PSK}\"\n\n[signaling]\nbackends = [\"grpc://127.0.0.1:8443\"]\n\n[[ice.servers]]\nurls = [\"turn:127.0.0.1:3478\"]\nusername = \"lab\"\ncredential = \"s3cret-turn-pass\"\n"
        );
        let shown = format!("{:?}", parse_ok(&text));
        for secret in [NODE_PRIVATE, PSK, "s3cret-turn-pass"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("lab"),
            "the user name is not secret: {shown}"
        );
    }

    #[test]
    fn loading_reads_the_file_and_reports_its_path_in_errors() {
        let dir = TempDir::new("load");
        let path = dir.write("node.toml", &with_interface("mtu = 1\n"), 0o644);
        let err = Config::load(&path).unwrap_err();
        assert_eq!(err.file, path);
        assert_eq!(
            err.to_string(),
            format!(
                "{}:3: interface.mtu: 1 is out of range; must be 576..=65535",
                path.display()
            )
        );
    }

    #[test]
    fn line_numbers_are_one_based_and_count_newlines_before_the_value() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }
}
