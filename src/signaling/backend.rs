//! The `Backend` trait: how envelopes get from one peer to another.
//!
//! What every backend promises, and what it does not:
//!
//! - it delivers envelopes between peers addressed by public key, to each current subscriber
//!   of the recipient key;
//! - it can deliver to a group: [`Backend::publish`] takes a batch, one envelope per
//!   recipient (each is sealed to its own recipient);
//! - it can deliver to a group whose members the sender does not know: every member holds
//!   one group key (a community key derived from a shared secret) and subscribes it with
//!   [`Backend::subscribe_group`]; one envelope sealed to that key reaches each member,
//!   however many there are (up to the backend's documented group limit), and no member's
//!   subscription ends another's;
//! - it may reorder envelopes, and may deliver one more than once when several backends are
//!   configured ([`Signaling`](super::Signaling) de-duplicates);
//! - it drops envelopes for recipients it does not currently know: nothing is queued for a
//!   peer that subscribes later;
//! - it stores nothing: it keeps no envelope beyond handing it on.
//!
//! Backends never see plaintext, and need not be trusted: the envelope authenticates its
//! sender, and the worst a backend can do is drop, delay, reorder or replay, which the
//! receiver's replay window and the ICE layer's retries absorb.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use tokio::sync::mpsc;

use wice_core::keys::{PrivateKey, PublicKey};
use wice_core::signaling::envelope::Envelope;

use super::libp2p_url::parse_libp2p;
pub use super::libp2p_url::{Libp2pAddr, Libp2pUrl};

/// A backend's future: boxed so that backends of different types can sit in one list.
pub type BackendFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BackendError>> + Send + 'a>>;

/// Which kind of backend this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// A hub shared inside one process.
    InProcess,
    /// A `wice signal` server over gRPC.
    Grpc,
    /// A NATS server or cluster.
    Nats,
    /// A `wice signal` server over a WebSocket.
    WebSocket,
    /// A Kubernetes API server.
    Kubernetes,
    /// A libp2p network (no server).
    Libp2p,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InProcess => "inprocess",
            Self::Grpc => "grpc",
            Self::Nats => "nats",
            Self::WebSocket => "ws",
            Self::Kubernetes => "kubernetes",
            Self::Libp2p => "libp2p",
        })
    }
}

/// Why a backend call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The backend cannot be reached now; it keeps trying in the background where that
    /// makes sense (subscriptions).
    #[error("{kind} backend unavailable: {reason}")]
    Unavailable {
        /// Which backend.
        kind: BackendKind,
        /// What happened.
        reason: String,
    },
    /// The backend refused the request (rate limit, proof of key refused, bad input).
    #[error("{kind} backend refused: {reason}")]
    Refused {
        /// Which backend.
        kind: BackendKind,
        /// What it said.
        reason: String,
    },
    /// The backend was closed.
    #[error("backend closed")]
    Closed,
    /// The backend could not be set up (bad URL, bad TLS material).
    #[error("{0}")]
    Setup(String),
}

/// An envelope as it came out of a backend.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Index of the backend it came through, as tagged by [`Inbox::for_backend`].
    pub backend: usize,
    /// The envelope, not yet opened.
    pub envelope: Envelope,
}

/// Where a backend puts the envelopes it receives for a subscribed key.
///
/// Bounded: when the receiver falls behind, [`Inbox::deliver`] drops the envelope rather than
/// buffer without limit (signaling is retried by the layers above).
#[derive(Debug, Clone)]
pub struct Inbox {
    tx: mpsc::Sender<Delivery>,
    backend: usize,
}

impl Inbox {
    /// An inbox holding up to `capacity` envelopes, and its receiving end.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<Delivery>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx, backend: 0 }, rx)
    }

    /// The same inbox, tagging deliveries with backend index `backend`.
    pub fn for_backend(&self, backend: usize) -> Self {
        Self {
            tx: self.tx.clone(),
            backend,
        }
    }

    /// Hands `envelope` on; false when the inbox is full or its receiver is gone.
    pub fn deliver(&self, envelope: Envelope) -> bool {
        self.tx
            .try_send(Delivery {
                backend: self.backend,
                envelope,
            })
            .is_ok()
    }

    /// True when the receiving end has been dropped.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Resolves when the receiving end has been dropped.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }
}

/// A signaling backend. See the module docs for its semantics.
pub trait Backend: Send + Sync + 'static {
    /// Which kind of backend this is.
    fn kind(&self) -> BackendKind;

    /// Delivers each envelope to the current subscribers of its recipient. Succeeds when the
    /// backend took the batch, whether or not any recipient was subscribed.
    fn publish(&self, envelopes: Vec<Envelope>) -> BackendFuture<'_, ()>;

    /// Starts delivering the envelopes addressed to `identity`'s public key into `inbox`,
    /// until [`Backend::unsubscribe`] or [`Backend::close`]. The private key is used only to
    /// prove ownership of the mailbox to a server that asks.
    ///
    /// Resolves once the subscription is active. A backend that reconnects (gRPC) resolves
    /// with [`BackendError::Unavailable`] when its first attempt fails, and keeps trying.
    fn subscribe(&self, identity: PrivateKey, inbox: Inbox) -> BackendFuture<'_, ()>;

    /// Like [`Backend::subscribe`], for a group key that many nodes hold: every group
    /// subscriber of the key receives each envelope sealed to it, and a new subscription
    /// never ends an older one (as a node's own key's newest subscription may). Backends
    /// with no per-key limit need nothing more than `subscribe`.
    fn subscribe_group(&self, identity: PrivateKey, inbox: Inbox) -> BackendFuture<'_, ()> {
        self.subscribe(identity, inbox)
    }

    /// Stops delivering envelopes for `key`.
    fn unsubscribe(&self, key: PublicKey) -> BackendFuture<'_, ()>;

    /// Ends every subscription and refuses further calls.
    fn close(&self) -> BackendFuture<'_, ()>;

    /// Our own addresses changed: drop connections that may be bound to an address we no
    /// longer have and subscribe again at once, instead of waiting for a keepalive to time
    /// out. Backends without connections have nothing to do.
    fn reconnect(&self) -> BackendFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}

/// Where a configured backend is, as written in `[signaling] backends`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BackendUrl {
    /// `inprocess`: the hub shared by every node in this process.
    InProcess,
    /// `grpc://host:port` (plain) or `grpcs://host:port` (TLS).
    Grpc {
        /// Host name or IP address; IPv6 without brackets.
        host: String,
        /// TCP port.
        port: u16,
        /// `grpcs://`.
        tls: bool,
    },
    /// `nats://host[:port][,host[:port]…]` (plain) or `tls://…` (TLS), with optional
    /// `?creds=PATH` (a `.creds` file), `?nkey=PATH` (a file holding an NKey seed) and
    /// `?ca=PATH` (an extra CA, PEM). Several servers of one cluster are tried in turn.
    Nats(NatsUrl),
    /// `ws://host[:port]` (plain, port 80 by default) or `wss://host[:port]` (TLS, port 443
    /// by default): `wice signal --ws-listen`, through the HTTP proxy the environment names.
    WebSocket {
        /// Host name or IP address; IPv6 without brackets.
        host: String,
        /// TCP port.
        port: u16,
        /// `wss://`.
        tls: bool,
    },
    /// `k8s://[NAMESPACE][?kubeconfig=PATH]` or `kubernetes:[NAMESPACE][?kubeconfig=PATH]`:
    /// envelopes as objects in a Kubernetes API server. Without `kubeconfig=` the client
    /// finds its configuration as kubectl does (`$KUBECONFIG`, `~/.kube/config`), or the
    /// pod's service account in a cluster.
    Kubernetes(KubernetesUrl),
    /// `libp2p:[BOOTSTRAP[,BOOTSTRAP…]][?listen=MULTIADDR]`: a serverless libp2p network
    /// joined through the bootstrap multiaddrs (see [`Libp2pUrl`]).
    Libp2p(Libp2pUrl),
}

/// Where a Kubernetes backend keeps its objects, and how it reaches the API server.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct KubernetesUrl {
    /// The namespace of the envelope objects; the configuration's default namespace (the
    /// pod's own, in a cluster) when `None`.
    pub namespace: Option<String>,
    /// A kubeconfig file; inferred as kubectl does when `None`.
    pub kubeconfig: Option<std::path::PathBuf>,
}

/// Where a NATS backend connects, and how it authenticates.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NatsUrl {
    /// `(host, port)` of each seed server; IPv6 hosts without brackets. The client also
    /// learns the cluster's other servers from them.
    pub servers: Vec<(String, u16)>,
    /// `tls://`: TLS required.
    pub tls: bool,
    /// How the client authenticates to the cluster, if at all.
    pub auth: Option<NatsAuth>,
    /// An extra CA certificate file (PEM) trusted for TLS.
    pub ca_file: Option<std::path::PathBuf>,
}

/// A NATS client's credentials.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NatsAuth {
    /// A `.creds` file (user JWT and NKey seed), `?creds=PATH`.
    CredsFile(std::path::PathBuf),
    /// A file holding an NKey seed (`SU…`), `?nkey=PATH`.
    NkeyFile(std::path::PathBuf),
}

/// Why a backend URL is not valid; the text follows `key: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendUrlError {
    /// Not `inprocess`, `grpc://`, `grpcs://`, `nats://`, `tls://`, `ws://`, `wss://`,
    /// `k8s://`, `kubernetes:` or `libp2p:`.
    #[error(
        "`{0}` is not a backend; use \"grpc://host:port\", \"grpcs://host:port\", \"nats://host:port\", \"tls://host:port\", \"ws://host:port\", \"wss://host[:port]\", \"k8s://[namespace]\", \"libp2p:[bootstrap multiaddrs]\" or \"inprocess\""
    )]
    UnknownScheme(String),
    /// No host between `://` and the port.
    #[error("`{0}` has no host")]
    MissingHost(String),
    /// No `:port`, or a port that is not 1..=65535.
    #[error("`{0}` needs a port from 1 to 65535, like grpc://198.51.100.1:8443")]
    BadPort(String),
    /// A path, query or user part, which the gRPC backend would ignore.
    #[error("`{0}` has a path, query or user part; give only scheme://host:port")]
    ExtraParts(String),
    /// An IPv6 address without brackets, or a bracketed host that is not IPv6.
    #[error("`{0}`: write an IPv6 host in brackets, like grpc://[2001:db8::1]:8443")]
    BadIpv6(String),
    /// A NATS URL option other than one `creds=`, `nkey=` or `ca=` with a path.
    #[error(
        "`{0}`: a NATS URL takes only ?creds=PATH or ?nkey=PATH, and &ca=PATH, like nats://10.0.0.1:4222?creds=/etc/wice/nats.creds"
    )]
    BadNatsOption(String),
    /// A Kubernetes URL whose namespace is not a DNS label, or with an option other than
    /// one `kubeconfig=PATH`.
    #[error(
        "`{0}`: a Kubernetes URL is k8s://[NAMESPACE][?kubeconfig=PATH], like k8s://wice or k8s://wice?kubeconfig=/etc/wice/kubeconfig (a namespace is lowercase letters, digits and '-', at most 63)"
    )]
    BadKubernetes(String),
    /// A `libp2p:` URL that is not `libp2p:[BOOTSTRAP,…][?listen=MULTIADDR]`; the second
    /// field says which part is wrong.
    #[error(
        "`{0}`: {1}; a libp2p URL is libp2p:[BOOTSTRAP,…][?listen=MULTIADDR] with TCP multiaddrs like /ip4/10.0.0.1/tcp/4001[/p2p/PEER-ID]"
    )]
    BadLibp2p(String, String),
}

/// The port a NATS URL means when it names none.
pub const NATS_DEFAULT_PORT: u16 = 4222;

impl BackendUrl {
    /// Parses a backend URL.
    pub fn parse(text: &str) -> Result<Self, BackendUrlError> {
        if text == "inprocess" {
            return Ok(Self::InProcess);
        }
        if let Some(rest) = text.strip_prefix("nats://") {
            return parse_nats(text, rest, false);
        }
        if let Some(rest) = text.strip_prefix("tls://") {
            return parse_nats(text, rest, true);
        }
        if let Some(rest) = text.strip_prefix("libp2p:") {
            return parse_libp2p(text, rest).map(Self::Libp2p);
        }
        if let Some(rest) = text
            .strip_prefix("k8s://")
            .or_else(|| text.strip_prefix("kubernetes:"))
        {
            return parse_kubernetes(text, rest);
        }
        for (scheme, tls, default_port) in [("ws://", false, 80), ("wss://", true, 443)] {
            if let Some(rest) = text.strip_prefix(scheme) {
                let rest = rest.strip_suffix('/').unwrap_or(rest);
                if rest.contains(['/', '?', '#', '@']) {
                    return Err(BackendUrlError::ExtraParts(text.to_owned()));
                }
                let (host, port) = host_port(text, rest, Some(default_port))?;
                return Ok(Self::WebSocket { host, port, tls });
            }
        }
        let (rest, tls) = if let Some(rest) = text.strip_prefix("grpcs://") {
            (rest, true)
        } else if let Some(rest) = text.strip_prefix("grpc://") {
            (rest, false)
        } else {
            return Err(BackendUrlError::UnknownScheme(text.to_owned()));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(BackendUrlError::ExtraParts(text.to_owned()));
        }
        let (host, port) = host_port(text, rest, None)?;
        Ok(Self::Grpc { host, port, tls })
    }

    /// The kind of backend this URL names.
    pub fn kind(&self) -> BackendKind {
        match self {
            Self::InProcess => BackendKind::InProcess,
            Self::Grpc { .. } => BackendKind::Grpc,
            Self::Nats(_) => BackendKind::Nats,
            Self::WebSocket { .. } => BackendKind::WebSocket,
            Self::Kubernetes(_) => BackendKind::Kubernetes,
            Self::Libp2p(_) => BackendKind::Libp2p,
        }
    }
}

/// `host:port` or `[v6]:port` out of `rest` (part of `text`); `default_port` when the port
/// is left out, where that is allowed.
fn host_port(
    text: &str,
    rest: &str,
    default_port: Option<u16>,
) -> Result<(String, u16), BackendUrlError> {
    let bad_port = || BackendUrlError::BadPort(text.to_owned());
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| BackendUrlError::BadIpv6(text.to_owned()))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(BackendUrlError::BadIpv6(text.to_owned()));
        }
        (host, after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                return Err(BackendUrlError::BadIpv6(text.to_owned()));
            }
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(BackendUrlError::MissingHost(text.to_owned()));
    }
    let port = match port {
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(bad_port)?,
        None => default_port.ok_or_else(bad_port)?,
    };
    Ok((host.to_owned(), port))
}

/// The part of a `nats://` or `tls://` URL after the scheme.
fn parse_nats(text: &str, rest: &str, tls: bool) -> Result<BackendUrl, BackendUrlError> {
    let (servers, options) = rest.split_once('?').unwrap_or((rest, ""));
    let servers = servers.strip_suffix('/').unwrap_or(servers);
    if servers.contains(['/', '#', '@']) {
        return Err(BackendUrlError::ExtraParts(text.to_owned()));
    }
    let servers = servers
        .split(',')
        .map(|server| host_port(text, server, Some(NATS_DEFAULT_PORT)))
        .collect::<Result<Vec<_>, _>>()?;
    let bad_option = || BackendUrlError::BadNatsOption(text.to_owned());
    let mut auth = None;
    let mut ca_file = None;
    for option in options.split('&').filter(|o| !o.is_empty()) {
        let (name, path) = option.split_once('=').ok_or_else(bad_option)?;
        if path.is_empty() {
            return Err(bad_option());
        }
        let path = std::path::PathBuf::from(path);
        match name {
            "creds" if auth.is_none() => auth = Some(NatsAuth::CredsFile(path)),
            "nkey" if auth.is_none() => auth = Some(NatsAuth::NkeyFile(path)),
            "ca" if ca_file.is_none() => ca_file = Some(path),
            _ => return Err(bad_option()),
        }
    }
    Ok(BackendUrl::Nats(NatsUrl {
        servers,
        tls,
        auth,
        ca_file,
    }))
}

/// The part of a `k8s://` or `kubernetes:` URL after the scheme.
fn parse_kubernetes(text: &str, rest: &str) -> Result<BackendUrl, BackendUrlError> {
    let bad = || BackendUrlError::BadKubernetes(text.to_owned());
    let (namespace, options) = rest.split_once('?').unwrap_or((rest, ""));
    let namespace = namespace.strip_suffix('/').unwrap_or(namespace);
    let is_dns_label = |name: &str| {
        name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-')
    };
    if !is_dns_label(namespace) {
        return Err(bad());
    }
    let mut kubeconfig = None;
    for option in options.split('&').filter(|o| !o.is_empty()) {
        match option.split_once('=') {
            Some(("kubeconfig", path)) if !path.is_empty() && kubeconfig.is_none() => {
                kubeconfig = Some(std::path::PathBuf::from(path));
            }
            _ => return Err(bad()),
        }
    }
    Ok(BackendUrl::Kubernetes(KubernetesUrl {
        namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
        kubeconfig,
    }))
}

impl NatsUrl {
    /// The servers as the NATS client takes them (`nats://host:port`, `tls://host:port`).
    pub fn server_addresses(&self) -> Vec<String> {
        let scheme = if self.tls { "tls" } else { "nats" };
        self.servers
            .iter()
            .map(|(host, port)| format!("{scheme}://{}", bracketed(host, *port)))
            .collect()
    }
}

/// `host:port`, with an IPv6 host in brackets.
fn bracketed(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl fmt::Display for BackendUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InProcess => f.write_str("inprocess"),
            Self::Grpc { host, port, tls } => {
                let scheme = if *tls { "grpcs" } else { "grpc" };
                write!(f, "{scheme}://{}", bracketed(host, *port))
            }
            Self::WebSocket { host, port, tls } => {
                let scheme = if *tls { "wss" } else { "ws" };
                write!(f, "{scheme}://{}", bracketed(host, *port))
            }
            Self::Libp2p(url) => write!(f, "{url}"),
            Self::Kubernetes(url) => {
                write!(f, "k8s://{}", url.namespace.as_deref().unwrap_or(""))?;
                if let Some(path) = &url.kubeconfig {
                    write!(f, "?kubeconfig={}", path.display())?;
                }
                Ok(())
            }
            Self::Nats(url) => {
                f.write_str(if url.tls { "tls://" } else { "nats://" })?;
                let servers: Vec<String> = url
                    .servers
                    .iter()
                    .map(|(host, port)| bracketed(host, *port))
                    .collect();
                f.write_str(&servers.join(","))?;
                let mut options = Vec::new();
                match &url.auth {
                    Some(NatsAuth::CredsFile(path)) => {
                        options.push(format!("creds={}", path.display()));
                    }
                    Some(NatsAuth::NkeyFile(path)) => {
                        options.push(format!("nkey={}", path.display()));
                    }
                    None => {}
                }
                if let Some(path) = &url.ca_file {
                    options.push(format!("ca={}", path.display()));
                }
                if !options.is_empty() {
                    write!(f, "?{}", options.join("&"))?;
                }
                Ok(())
            }
        }
    }
}

/// The envelopes a backend without a server-side key proof (NATS, Kubernetes, libp2p) may publish:
/// those from keys it subscribed, so it publishes only as keys it holds. The others are
/// counted in `refused`; with no key subscribed at all the publish is refused.
#[cfg(any(feature = "nats", feature = "kubernetes", feature = "libp2p"))]
pub(crate) fn from_subscribed_senders<V>(
    envelopes: Vec<Envelope>,
    subscribed: &std::collections::HashMap<PublicKey, V>,
    kind: BackendKind,
    refused: &std::sync::atomic::AtomicU64,
) -> Result<Vec<Envelope>, BackendError> {
    if subscribed.is_empty() {
        return Err(BackendError::Refused {
            kind,
            reason: "subscribe a key before publishing".to_owned(),
        });
    }
    let (allowed, others): (Vec<_>, Vec<_>) = envelopes
        .into_iter()
        .partition(|e| subscribed.contains_key(&e.sender));
    refused.fetch_add(others.len() as u64, std::sync::atomic::Ordering::Relaxed);
    Ok(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_urls_parse_and_print_back() {
        for text in [
            "inprocess",
            "grpc://198.51.100.1:8443",
            "grpcs://signal.example.org:443",
            "grpc://[2001:db8::1]:8443",
            "nats://10.0.0.1:4222",
            "tls://nats.example.org:4222,[2001:db8::2]:4223?creds=/etc/wice/nats.creds&ca=/etc/ca.pem",
            "nats://10.0.0.1:4222?nkey=/etc/wice/nats.nk",
            "ws://198.51.100.1:8080",
            "wss://signal.example.org:443",
            "wss://[2001:db8::1]:8443",
            "k8s://",
            "k8s://wice",
            "k8s://wice-system?kubeconfig=/etc/wice/kubeconfig",
            "k8s://?kubeconfig=/root/.kube/config",
        ] {
            assert_eq!(BackendUrl::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(
            BackendUrl::parse("grpcs://[::1]:9").unwrap(),
            BackendUrl::Grpc {
                host: "::1".to_owned(),
                port: 9,
                tls: true
            }
        );
    }

    #[test]
    fn a_websocket_url_without_a_port_means_80_or_443() {
        assert_eq!(
            BackendUrl::parse("wss://signal.example.org/"),
            Ok(BackendUrl::WebSocket {
                host: "signal.example.org".to_owned(),
                port: 443,
                tls: true
            })
        );
        assert_eq!(
            BackendUrl::parse("ws://10.0.0.1").map(|u| u.to_string()),
            Ok("ws://10.0.0.1:80".to_owned())
        );
        assert_eq!(
            BackendUrl::parse("wss://signal.example.org/wice"),
            Err(BackendUrlError::ExtraParts(
                "wss://signal.example.org/wice".to_owned()
            ))
        );
    }

    #[test]
    fn kubernetes_is_an_alias_of_k8s() {
        assert_eq!(
            BackendUrl::parse("kubernetes:wice?kubeconfig=/k"),
            Ok(BackendUrl::Kubernetes(KubernetesUrl {
                namespace: Some("wice".to_owned()),
                kubeconfig: Some("/k".into()),
            }))
        );
        assert_eq!(
            BackendUrl::parse("kubernetes:").map(|u| u.to_string()),
            Ok("k8s://".to_owned())
        );
    }

    #[test]
    fn a_nats_url_without_a_port_means_4222() {
        let Ok(BackendUrl::Nats(url)) = BackendUrl::parse("nats://a.example,b.example:5222") else {
            panic!("a NATS URL");
        };
        assert_eq!(
            url.server_addresses(),
            ["nats://a.example:4222", "nats://b.example:5222"]
        );
    }

    #[test]
    fn bad_backend_urls_say_what_is_wrong() {
        fn check(text: &str, expected: fn(String) -> BackendUrlError) {
            assert_eq!(
                BackendUrl::parse(text),
                Err(expected(text.to_owned())),
                "{text}"
            );
        }
        check("http://198.51.100.1:8443", BackendUrlError::UnknownScheme);
        check("in-process", BackendUrlError::UnknownScheme);
        check("grpc://:8443", BackendUrlError::MissingHost);
        check("grpc://198.51.100.1", BackendUrlError::BadPort);
        check("grpc://198.51.100.1:0", BackendUrlError::BadPort);
        check("grpc://198.51.100.1:8443/path", BackendUrlError::ExtraParts);
        check("grpc://2001:db8::1:8443", BackendUrlError::BadIpv6);
        check("grpc://[not-v6]:8443", BackendUrlError::BadIpv6);
        check(
            "nats://10.0.0.1:4222?user=x",
            BackendUrlError::BadNatsOption,
        );
        check(
            "nats://10.0.0.1?creds=/a&nkey=/b",
            BackendUrlError::BadNatsOption,
        );
        check("nats://10.0.0.1?creds=", BackendUrlError::BadNatsOption);
        check("nats://u:p@10.0.0.1", BackendUrlError::ExtraParts);
        check("nats://10.0.0.1:0", BackendUrlError::BadPort);
        check("nats://,10.0.0.1", BackendUrlError::MissingHost);
        check("k8s://Wice", BackendUrlError::BadKubernetes);
        check("k8s://wice/other", BackendUrlError::BadKubernetes);
        check("k8s://wice?context=x", BackendUrlError::BadKubernetes);
        check("k8s://wice?kubeconfig=", BackendUrlError::BadKubernetes);
        check("k8s://-wice", BackendUrlError::BadKubernetes);
    }

    #[test]
    fn a_full_inbox_drops_instead_of_growing() {
        let (inbox, mut rx) = Inbox::channel(2);
        let envelope = wice_core::signaling::envelope::Envelope {
            sender: PublicKey::from_bytes([1; 32]),
            recipient: PublicKey::from_bytes([2; 32]),
            nonce: [0; 24],
            ciphertext: prost::bytes::Bytes::new(),
        };
        assert!(inbox.deliver(envelope.clone()));
        assert!(inbox.for_backend(3).deliver(envelope.clone()));
        assert!(!inbox.deliver(envelope.clone()));
        assert_eq!(rx.try_recv().unwrap().backend, 0);
        assert_eq!(rx.try_recv().unwrap().backend, 3);
        drop(rx);
        assert!(inbox.is_closed());
    }
}
