//! What is wrong with a config file, and where.

use super::*;

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
