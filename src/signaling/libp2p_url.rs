//! The `libp2p:` backend URL: bootstrap peers and the listen address, as multiaddrs.
//!
//! ```text
//! libp2p:[BOOTSTRAP[,BOOTSTRAP…]][?listen=MULTIADDR]
//! BOOTSTRAP = /ip4/A.B.C.D/tcp/PORT[/p2p/PEER-ID] | /ip6/ADDR/tcp/PORT[/p2p/PEER-ID]
//! MULTIADDR = /ip4/A.B.C.D/tcp/PORT | /ip6/ADDR/tcp/PORT
//! ```
//!
//! Parsed here without libp2p itself, so a build without the `libp2p` feature still reads a
//! config that names one and refuses it with a reason. Only TCP over IP literals: the backend
//! has no DNS resolver (one less dependency, and no name lookups a network can steer). The
//! peer id is checked for its form (base58, the lengths libp2p prints) here and decoded by
//! the backend.

use std::fmt;
use std::net::IpAddr;

use super::backend::BackendUrlError;

/// Where a libp2p backend finds the network, and where it listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Libp2pUrl {
    /// Peers dialled to join the network (none for the first node of a network).
    pub bootstraps: Vec<Libp2pAddr>,
    /// Where this node accepts connections; `/ip4/0.0.0.0/tcp/0` (every interface, a port
    /// the OS picks and peers learn through identify) when `None`.
    pub listen: Option<Libp2pAddr>,
}

/// A TCP multiaddr: `/ip4/…/tcp/PORT` or `/ip6/…/tcp/PORT`, with an optional `/p2p/PEER-ID`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Libp2pAddr {
    /// The IP address.
    pub ip: IpAddr,
    /// The TCP port (0 only in a listen address: the OS picks one).
    pub port: u16,
    /// The peer id expected there (base58), if given: the connection is refused when the
    /// remote proves another identity.
    pub peer: Option<String>,
}

/// Why a `libp2p:` URL is not valid: what to write instead.
fn bad(text: &str, reason: impl Into<String>) -> BackendUrlError {
    BackendUrlError::BadLibp2p(text.to_owned(), reason.into())
}

/// The part of a `libp2p:` URL after the scheme.
pub(super) fn parse_libp2p(text: &str, rest: &str) -> Result<Libp2pUrl, BackendUrlError> {
    let (bootstraps, options) = rest.split_once('?').unwrap_or((rest, ""));
    let bootstraps = bootstraps
        .split(',')
        .filter(|part| !part.is_empty())
        .map(|part| {
            parse_multiaddr(part).map_err(|reason| bad(text, format!("`{part}`: {reason}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(zero) = bootstraps.iter().find(|b| b.port == 0) {
        return Err(bad(text, format!("bootstrap {zero} has port 0")));
    }
    let mut listen = None;
    for option in options.split('&').filter(|o| !o.is_empty()) {
        match option.split_once('=') {
            Some(("listen", addr)) if listen.is_none() => {
                let addr = parse_multiaddr(addr)
                    .map_err(|reason| bad(text, format!("listen `{addr}`: {reason}")))?;
                if addr.peer.is_some() {
                    return Err(bad(text, "a listen address has no /p2p/ part"));
                }
                listen = Some(addr);
            }
            Some(("listen", _)) => return Err(bad(text, "one listen= only")),
            _ => {
                return Err(bad(
                    text,
                    format!("unknown option `{option}` (the only one is listen=MULTIADDR)"),
                ));
            }
        }
    }
    Ok(Libp2pUrl { bootstraps, listen })
}

/// `/ip4/A/tcp/P[/p2p/ID]` or `/ip6/A/tcp/P[/p2p/ID]`; the error says what is wrong.
pub(super) fn parse_multiaddr(text: &str) -> Result<Libp2pAddr, String> {
    let parts: Vec<&str> = text.split('/').collect();
    let (family, ip_text, port, peer) = match parts.as_slice() {
        ["", family, ip, "tcp", port] => (*family, *ip, *port, None),
        ["", family, ip, "tcp", port, "p2p", peer] => (*family, *ip, *port, Some(*peer)),
        _ => {
            return Err(
                "not a TCP multiaddr like /ip4/10.0.0.1/tcp/4001[/p2p/PEER-ID] (no DNS names, no QUIC)"
                    .to_owned(),
            );
        }
    };
    let ip: IpAddr = match family {
        "ip4" => ip_text
            .parse::<std::net::Ipv4Addr>()
            .map_err(|_| format!("`{ip_text}` is not an IPv4 address"))?
            .into(),
        "ip6" => ip_text
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("`{ip_text}` is not an IPv6 address"))?
            .into(),
        other => {
            return Err(format!(
                "`/{other}/`: use /ip4/ or /ip6/ with an address (no DNS names)"
            ));
        }
    };
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("`{port}` is not a TCP port"))?;
    if let Some(peer) = peer {
        check_peer_id(peer)?;
    }
    Ok(Libp2pAddr {
        ip,
        port,
        peer: peer.map(str::to_owned),
    })
}

/// A peer id as libp2p prints it: base58btc, 46 (`Qm…`, SHA-256) to 52 (`12D3KooW…`,
/// an inline ed25519 key) characters.
fn check_peer_id(peer: &str) -> Result<(), String> {
    const BASE58: &str = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    if !(46..=52).contains(&peer.len()) || !peer.chars().all(|c| BASE58.contains(c)) {
        return Err(format!(
            "`{peer}` is not a peer id (base58, like 12D3KooW… as the node logs at start)"
        ));
    }
    Ok(())
}

impl fmt::Display for Libp2pAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(ip) => write!(f, "/ip4/{ip}/tcp/{}", self.port)?,
            IpAddr::V6(ip) => write!(f, "/ip6/{ip}/tcp/{}", self.port)?,
        }
        if let Some(peer) = &self.peer {
            write!(f, "/p2p/{peer}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Libp2pUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("libp2p:")?;
        for (index, bootstrap) in self.bootstraps.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{bootstrap}")?;
        }
        if let Some(listen) = &self.listen {
            write!(f, "?listen={listen}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::backend::BackendUrl;

    const PEER: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";

    #[test]
    fn libp2p_urls_parse_and_print_back() {
        for text in [
            "libp2p:",
            "libp2p:?listen=/ip4/0.0.0.0/tcp/4001",
            &format!("libp2p:/ip4/10.0.0.1/tcp/4001/p2p/{PEER}"),
            &format!(
                "libp2p:/ip4/10.0.0.1/tcp/4001/p2p/{PEER},/ip6/2001:db8::1/tcp/4002?listen=/ip6/::/tcp/4001"
            ),
        ] {
            assert_eq!(BackendUrl::parse(text).expect(text).to_string(), text);
        }
        let Ok(BackendUrl::Libp2p(url)) =
            BackendUrl::parse(&format!("libp2p:/ip4/10.0.0.1/tcp/4001/p2p/{PEER}"))
        else {
            panic!("a libp2p URL");
        };
        assert_eq!(url.bootstraps[0].port, 4001);
        assert_eq!(url.bootstraps[0].peer.as_deref(), Some(PEER));
        assert_eq!(url.listen, None);
    }

    #[test]
    fn bad_libp2p_urls_say_what_is_wrong() {
        for (text, says) in [
            ("libp2p:/dns4/example.org/tcp/4001", "no DNS names"),
            (
                "libp2p:/ip4/10.0.0.1/udp/4001/quic-v1",
                "not a TCP multiaddr",
            ),
            ("libp2p:/ip4/10.0.0.300/tcp/4001", "not an IPv4 address"),
            ("libp2p:/ip6/10.0.0.1/tcp/4001", "not an IPv6 address"),
            ("libp2p:/ip4/10.0.0.1/tcp/70000", "not a TCP port"),
            ("libp2p:/ip4/10.0.0.1/tcp/0", "port 0"),
            ("libp2p:/ip4/10.0.0.1/tcp/4001/p2p/0OIl", "not a peer id"),
            ("libp2p:10.0.0.1:4001", "not a TCP multiaddr"),
            (
                "libp2p:?listen=/ip4/0.0.0.0/tcp/1&listen=/ip4/0.0.0.0/tcp/2",
                "one listen",
            ),
            ("libp2p:?port=4001", "unknown option `port=4001`"),
            (
                &format!("libp2p:?listen=/ip4/0.0.0.0/tcp/1/p2p/{PEER}"),
                "no /p2p/ part",
            ),
        ] {
            let error = BackendUrl::parse(text).expect_err(text).to_string();
            assert!(error.contains(says), "{text}: {error}");
            assert!(error.contains("libp2p:[BOOTSTRAP"), "{text}: {error}");
        }
    }
}
