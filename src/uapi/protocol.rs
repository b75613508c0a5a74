//! WireGuard's cross-platform userspace API (UAPI) on the wire, without I/O:
//! parsing a `get=1` / `set=1` request, writing the answers.
//!
//! A request is `get=1\n\n`, or `set=1\n` followed by `key=value` lines and
//! an empty line. Keys and hex keys are as in <https://www.wireguard.com/xplatform/>:
//! device keys first, then per-peer keys after each `public_key=`. Answers
//! end with `errno=N\n\n`, `N` being 0 or a negated errno, as wireguard-go
//! and the `wg` tool expect.
//!
//! Everything here is hostile input: lengths are bounded by the caller
//! ([`MAX_REQUEST_BYTES`]), every value is checked, and nothing panics.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;

/// Largest request accepted: a `wg setconf` of hundreds of peers with tens of
/// thousands of allowed IPs is a few MiB (an IPv6 `allowed_ip` line is at
/// most 55 bytes).
pub const MAX_REQUEST_BYTES: usize = 32 << 20;

/// Longest line accepted; the longest valid one is well under 100 bytes.
pub const MAX_LINE_BYTES: usize = 1024;

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `get=1`: the device's configuration and peer statistics.
    Get,
    /// `set=1`: changes to apply.
    Set(SetRequest),
}

/// The changes one `set=1` request asks for, in request order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetRequest {
    /// New private key; all zeros clears it.
    pub private_key: Option<[u8; 32]>,
    /// New UDP port (0: any).
    pub listen_port: Option<u16>,
    /// New `SO_MARK` (0: none).
    pub fwmark: Option<u32>,
    /// Remove every peer not named below first.
    pub replace_peers: bool,
    /// Per-peer changes.
    pub peers: Vec<PeerChange>,
}

/// What a `set=1` request says about one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerChange {
    /// The peer.
    pub public_key: [u8; 32],
    /// `remove=true`: remove the peer (other keys for it are ignored).
    pub remove: bool,
    /// `update_only=true`: change the peer only if it exists.
    pub update_only: bool,
    /// New preshared key; all zeros clears it.
    pub preshared_key: Option<[u8; 32]>,
    /// New endpoint.
    pub endpoint: Option<SocketAddr>,
    /// New persistent keepalive interval in seconds (0: off).
    pub persistent_keepalive: Option<u16>,
    /// `replace_allowed_ips=true`: the peer's allowed IPs become exactly
    /// `allowed_ips` instead of growing by them.
    pub replace_allowed_ips: bool,
    /// Allowed IPs to add.
    pub allowed_ips: Vec<IpNet>,
}

impl PeerChange {
    fn new(public_key: [u8; 32]) -> Self {
        Self {
            public_key,
            remove: false,
            update_only: false,
            preshared_key: None,
            endpoint: None,
            persistent_keepalive: None,
            replace_allowed_ips: false,
            allowed_ips: Vec::new(),
        }
    }
}

/// Why a request failed; each maps to the errno wireguard-go answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UapiError {
    /// The request is not `get=1` or `set=1`, or a line is not `key=value`.
    #[error("malformed request: {0}")]
    Protocol(String),
    /// A key is unknown, a value does not parse, or a key is out of place.
    #[error("invalid {key}: {reason}")]
    Invalid {
        /// The key.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The request is longer than [`MAX_REQUEST_BYTES`] or a line longer
    /// than [`MAX_LINE_BYTES`].
    #[error("request too large")]
    TooLarge,
    /// The change touches what this interface does not let `wg` change
    /// (a peer wice finds through ICE, or its identity).
    #[error("not permitted: {0}")]
    NotPermitted(String),
    /// The UDP port is taken.
    #[error("listen port in use")]
    PortInUse,
    /// The device refused a change.
    #[error("device: {0}")]
    Io(String),
}

impl UapiError {
    /// The errno (positive) this error is reported as.
    pub fn errno(&self) -> i32 {
        match self {
            Self::Protocol(_) => libc::EPROTO,
            Self::Invalid { .. } => libc::EINVAL,
            Self::TooLarge => libc::EMSGSIZE,
            Self::NotPermitted(_) => libc::EPERM,
            Self::PortInUse => libc::EADDRINUSE,
            Self::Io(_) => libc::EIO,
        }
    }

    fn invalid(key: &str, reason: &'static str) -> Self {
        Self::Invalid {
            key: key.chars().take(32).collect(),
            reason,
        }
    }
}

/// Parses one request: its lines without the terminating empty line.
pub fn parse_request(text: &str) -> Result<Request, UapiError> {
    if text.len() > MAX_REQUEST_BYTES {
        return Err(UapiError::TooLarge);
    }
    let mut lines = text.split('\n').filter(|line| !line.is_empty());
    match lines.next() {
        Some("get=1") => match lines.next() {
            None => Ok(Request::Get),
            Some(_) => Err(UapiError::Protocol("get=1 takes no keys".into())),
        },
        Some("set=1") => parse_set(lines).map(Request::Set),
        _ => Err(UapiError::Protocol("expected get=1 or set=1".into())),
    }
}

fn parse_set<'a>(lines: impl Iterator<Item = &'a str>) -> Result<SetRequest, UapiError> {
    let mut request = SetRequest::default();
    for line in lines {
        if line.len() > MAX_LINE_BYTES {
            return Err(UapiError::TooLarge);
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| UapiError::Protocol("line without '='".into()))?;
        if key == "public_key" {
            request.peers.push(PeerChange::new(parse_key(key, value)?));
            continue;
        }
        match request.peers.last_mut() {
            None => set_device_key(&mut request, key, value)?,
            Some(peer) => set_peer_key(peer, key, value)?,
        }
    }
    Ok(request)
}

fn set_device_key(request: &mut SetRequest, key: &str, value: &str) -> Result<(), UapiError> {
    match key {
        "private_key" => request.private_key = Some(parse_key(key, value)?),
        "listen_port" => {
            request.listen_port = Some(
                value
                    .parse()
                    .map_err(|_| UapiError::invalid(key, "not a port"))?,
            );
        }
        "fwmark" => {
            // `wg set fwmark off` sends 0; hex is accepted by wg itself, not here.
            request.fwmark = Some(
                value
                    .parse()
                    .map_err(|_| UapiError::invalid(key, "not a u32"))?,
            );
        }
        "replace_peers" => request.replace_peers = parse_true(key, value)?,
        _ => return Err(UapiError::invalid(key, "unknown device key")),
    }
    Ok(())
}

fn set_peer_key(peer: &mut PeerChange, key: &str, value: &str) -> Result<(), UapiError> {
    match key {
        "remove" => peer.remove = parse_true(key, value)?,
        "update_only" => peer.update_only = parse_true(key, value)?,
        "preshared_key" => peer.preshared_key = Some(parse_key(key, value)?),
        "endpoint" => {
            peer.endpoint = Some(
                value
                    .parse()
                    .map_err(|_| UapiError::invalid(key, "not IP:port"))?,
            );
        }
        "persistent_keepalive_interval" => {
            peer.persistent_keepalive = Some(
                value
                    .parse()
                    .map_err(|_| UapiError::invalid(key, "not 0-65535"))?,
            );
        }
        "replace_allowed_ips" => peer.replace_allowed_ips = parse_true(key, value)?,
        "allowed_ip" => {
            let net: IpNet = value
                .parse()
                .map_err(|_| UapiError::invalid(key, "not an IP/prefix"))?;
            peer.allowed_ips.push(net);
        }
        "protocol_version" => {
            if value != "1" {
                return Err(UapiError::invalid(key, "only version 1 exists"));
            }
        }
        _ => return Err(UapiError::invalid(key, "unknown peer key")),
    }
    Ok(())
}

/// `true` is the only value boolean keys take.
fn parse_true(key: &str, value: &str) -> Result<bool, UapiError> {
    match value {
        "true" => Ok(true),
        _ => Err(UapiError::invalid(key, "only 'true' is accepted")),
    }
}

/// A 32-byte key as 64 hex digits.
fn parse_key(key: &str, value: &str) -> Result<[u8; 32], UapiError> {
    let digits = value.as_bytes();
    if digits.len() != 64 {
        return Err(UapiError::invalid(key, "not 64 hex digits"));
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let high = hex_digit(pair[0]).ok_or_else(|| UapiError::invalid(key, "not hex"))?;
        let low = hex_digit(pair[1]).ok_or_else(|| UapiError::invalid(key, "not hex"))?;
        *byte = (high << 4) | low;
    }
    Ok(out)
}

fn hex_digit(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// What `get=1` reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceState {
    /// The private key, if one was set.
    pub private_key: Option<[u8; 32]>,
    /// The bound UDP port.
    pub listen_port: u16,
    /// `SO_MARK` (0: none, not reported).
    pub fwmark: u32,
    /// Every peer.
    pub peers: Vec<PeerState>,
}

/// One peer in a `get=1` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerState {
    /// The peer's public key.
    pub public_key: [u8; 32],
    /// Its preshared key, if any.
    pub preshared_key: Option<[u8; 32]>,
    /// Where its packets go now.
    pub endpoint: Option<SocketAddr>,
    /// Persistent keepalive in seconds (0: off).
    pub persistent_keepalive: u16,
    /// When the last handshake completed (wall clock), if ever.
    pub last_handshake: Option<SystemTime>,
    /// Bytes sent to the peer.
    pub tx_bytes: u64,
    /// Bytes received from the peer.
    pub rx_bytes: u64,
    /// Networks routed to it.
    pub allowed_ips: Vec<IpNet>,
}

/// The answer to `get=1`, ending with `errno=0` and the empty line.
pub fn write_get_response(state: &DeviceState) -> String {
    let mut out = String::with_capacity(128 + state.peers.len() * 256);
    if let Some(key) = &state.private_key {
        push_key(&mut out, "private_key", key);
    }
    let _ = writeln!(out, "listen_port={}", state.listen_port);
    if state.fwmark != 0 {
        let _ = writeln!(out, "fwmark={}", state.fwmark);
    }
    for peer in &state.peers {
        push_key(&mut out, "public_key", &peer.public_key);
        push_key(
            &mut out,
            "preshared_key",
            &peer.preshared_key.unwrap_or([0; 32]),
        );
        out.push_str("protocol_version=1\n");
        if let Some(endpoint) = peer.endpoint {
            let _ = writeln!(out, "endpoint={endpoint}");
        }
        let since_epoch = peer
            .last_handshake
            .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
            .unwrap_or(Duration::ZERO);
        let _ = writeln!(out, "last_handshake_time_sec={}", since_epoch.as_secs());
        let _ = writeln!(
            out,
            "last_handshake_time_nsec={}",
            since_epoch.subsec_nanos()
        );
        let _ = writeln!(out, "tx_bytes={}", peer.tx_bytes);
        let _ = writeln!(out, "rx_bytes={}", peer.rx_bytes);
        let _ = writeln!(
            out,
            "persistent_keepalive_interval={}",
            peer.persistent_keepalive
        );
        for net in &peer.allowed_ips {
            let _ = writeln!(out, "allowed_ip={net}");
        }
    }
    out.push_str("errno=0\n\n");
    out
}

/// The answer to `set=1`, or to any request that failed.
pub fn write_status(result: &Result<(), UapiError>) -> String {
    match result {
        Ok(()) => "errno=0\n\n".to_owned(),
        Err(error) => format!("errno=-{}\n\n", error.errno()),
    }
}

fn push_key(out: &mut String, name: &str, key: &[u8; 32]) {
    out.push_str(name);
    out.push('=');
    for byte in key {
        let _ = write!(out, "{byte:02x}");
    }
    out.push('\n');
}
