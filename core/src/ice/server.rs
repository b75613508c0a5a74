//! STUN and TURN server URLs as WebRTC writes them (RFC 7064 `stun:`, RFC 7065 `turn:`).
//!
//! Only what the shared UDP socket can use is accepted: `stun:host[:port]` and
//! `turn:host[:port][?transport=udp]`. TLS (`stuns:`, `turns:`) and TURN over TCP would need
//! a second socket next to WireGuard's, so they are refused with a reason rather than
//! silently skipped.

use std::fmt;

/// The default port for `stun:` and `turn:` URLs (RFC 7064 §3.2, RFC 7065 §3.2).
pub const DEFAULT_PORT: u16 = 3478;

/// What a server URL asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerScheme {
    /// A STUN server: binding requests give a server-reflexive candidate.
    Stun,
    /// A TURN server: an allocation gives a relayed candidate (and, as a STUN server, a
    /// server-reflexive one).
    Turn,
}

/// A parsed `stun:` or `turn:` URL; the host is not resolved yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// STUN or TURN.
    pub scheme: ServerScheme,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// UDP port.
    pub port: u16,
}

/// Why a server URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerUrlError {
    /// Not `stun:` or `turn:`.
    #[error("`{0}` is not a stun: or turn: URL (like stun:198.51.100.1:3478)")]
    UnknownScheme(String),
    /// `stuns:` or `turns:`.
    #[error("`{0}`: TLS (stuns:/turns:) is not supported; wice talks to servers over UDP")]
    Tls(String),
    /// `?transport=tcp` or another transport.
    #[error("`{0}`: only transport=udp is supported (TURN shares WireGuard's UDP socket)")]
    Transport(String),
    /// A query parameter other than `transport`.
    #[error("`{0}`: unknown parameter; only ?transport=udp is allowed")]
    Parameter(String),
    /// No host, or a malformed host or port.
    #[error("`{url}`: {why}")]
    Malformed {
        /// The URL as written.
        url: String,
        /// What is wrong.
        why: &'static str,
    },
}

impl ServerUrl {
    /// Parses one URL.
    pub fn parse(url: &str) -> Result<Self, ServerUrlError> {
        let malformed = |why| ServerUrlError::Malformed {
            url: url.to_owned(),
            why,
        };
        let (scheme, rest) = url
            .split_once(':')
            .ok_or_else(|| ServerUrlError::UnknownScheme(url.to_owned()))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "stun" => ServerScheme::Stun,
            "turn" => ServerScheme::Turn,
            "stuns" | "turns" => return Err(ServerUrlError::Tls(url.to_owned())),
            _ => return Err(ServerUrlError::UnknownScheme(url.to_owned())),
        };
        let (authority, query) = match rest.split_once('?') {
            Some((authority, query)) => (authority, Some(query)),
            None => (rest, None),
        };
        if let Some(query) = query {
            if scheme == ServerScheme::Stun {
                return Err(ServerUrlError::Parameter(url.to_owned()));
            }
            for parameter in query.split('&') {
                match parameter.split_once('=') {
                    Some((key, value)) if key.eq_ignore_ascii_case("transport") => {
                        if !value.eq_ignore_ascii_case("udp") {
                            return Err(ServerUrlError::Transport(url.to_owned()));
                        }
                    }
                    _ => return Err(ServerUrlError::Parameter(url.to_owned())),
                }
            }
        }
        if authority.starts_with("//") {
            return Err(malformed("write stun:host:port, without //"));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| malformed("an IPv6 address needs a closing ]"))?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| malformed("expected :port after ]"))?,
                ),
            };
            (host, port)
        } else if authority.matches(':').count() > 1 {
            return Err(malformed(
                "an IPv6 address needs brackets, like turn:[2001:db8::1]:3478",
            ));
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(malformed("the host is empty"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|port| *port != 0)
                .ok_or_else(|| malformed("the port must be a number from 1 to 65535"))?,
        };
        Ok(Self {
            scheme,
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            ServerScheme::Stun => "stun",
            ServerScheme::Turn => "turn",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}:[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}:{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(scheme: ServerScheme, host: &str, port: u16) -> ServerUrl {
        ServerUrl {
            scheme,
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn webrtc_style_urls_parse_with_the_default_port() {
        assert_eq!(
            ServerUrl::parse("stun:198.51.100.1:3479").unwrap(),
            url(ServerScheme::Stun, "198.51.100.1", 3479)
        );
        assert_eq!(
            ServerUrl::parse("stun:stun.example.org").unwrap(),
            url(ServerScheme::Stun, "stun.example.org", 3478)
        );
        assert_eq!(
            ServerUrl::parse("turn:198.51.100.1:3478?transport=udp").unwrap(),
            url(ServerScheme::Turn, "198.51.100.1", 3478)
        );
        assert_eq!(
            ServerUrl::parse("TURN:[2001:db8::1]?transport=UDP").unwrap(),
            url(ServerScheme::Turn, "2001:db8::1", 3478)
        );
        assert_eq!(
            ServerUrl::parse("turn:[2001:db8::1]:5349")
                .unwrap()
                .to_string(),
            "turn:[2001:db8::1]:5349"
        );
    }

    #[test]
    fn what_the_udp_socket_cannot_use_is_refused_with_a_reason() {
        let cases = [
            ("turns:example.org", "TLS"),
            ("turn:example.org?transport=tcp", "only transport=udp"),
            ("stun:example.org?transport=udp", "unknown parameter"),
            ("turn:example.org?foo=bar", "unknown parameter"),
            ("http://example.org", "not a stun: or turn: URL"),
            ("example.org", "not a stun: or turn: URL"),
            ("stun:", "host is empty"),
            ("stun:example.org:0", "port must be"),
            ("stun:example.org:99999", "port must be"),
            ("stun:2001:db8::1", "needs brackets"),
            ("stun://example.org", "without //"),
            ("stun:[2001:db8::1", "closing ]"),
        ];
        for (text, phrase) in cases {
            let message = ServerUrl::parse(text).unwrap_err().to_string();
            assert!(message.contains(phrase), "{text}: {message}");
        }
    }
}
