//! Reaching a server through an HTTP forward proxy with `CONNECT`, as `curl` does: the
//! proxy comes from `https_proxy`/`HTTPS_PROXY` (`wss://`) or `http_proxy`/`HTTP_PROXY`
//! (`ws://`), unless `no_proxy`/`NO_PROXY` names the host.

use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Longest proxy answer head read.
const MAX_PROXY_HEAD_LEN: usize = 8 * 1024;

/// An HTTP proxy: `http://[user:password@]host[:port]` (port 3128 when left out;
/// `https://` proxies are not supported).
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// Host name or IP address; IPv6 without brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `user:password` for `Proxy-Authorization: Basic`.
    pub credentials: Option<String>,
}

impl std::fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        write!(f, "ProxyUrl({}:{})", self.host, self.port)
    }
}

/// Why a proxy URL is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("proxy `{0}` is not http://[user:password@]host[:port]")]
pub struct ProxyUrlError(String);

/// Why going through the proxy failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// Connecting or talking to the proxy failed.
    #[error("proxy {0}")]
    Io(String),
    /// The proxy refused the tunnel.
    #[error("proxy refused CONNECT: {0}")]
    Refused(String),
}

impl ProxyUrl {
    /// Parses `http://[user:password@]host[:port]`; a bare `host:port` is taken as HTTP too.
    pub fn parse(text: &str) -> Result<Self, ProxyUrlError> {
        let bad = || ProxyUrlError(redacted(text));
        let rest = text.strip_prefix("http://").unwrap_or(text);
        if rest.contains("://") {
            return Err(bad());
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (credentials, authority) = match rest.rsplit_once('@') {
            Some((credentials, authority)) => (Some(credentials.to_owned()), authority),
            None => (None, rest),
        };
        if authority.contains(['/', '?', '#']) || authority.is_empty() {
            return Err(bad());
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or_else(bad)?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        let port = match port {
            Some(port) => port.parse().ok().filter(|&p| p != 0).ok_or_else(bad)?,
            None => 3128,
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            credentials,
        })
    }

    /// The proxy the environment names for a `tls` (`wss://`) or plain connection to `host`.
    pub fn from_env(host: &str, tls: bool) -> Result<Option<Self>, ProxyUrlError> {
        let var = |names: [&str; 2]| {
            names
                .iter()
                .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        };
        let proxy = if tls {
            var(["https_proxy", "HTTPS_PROXY"])
        } else {
            var(["http_proxy", "HTTP_PROXY"])
        };
        let Some(proxy) = proxy else { return Ok(None) };
        if var(["no_proxy", "NO_PROXY"]).is_some_and(|list| no_proxy_matches(&list, host)) {
            return Ok(None);
        }
        Self::parse(&proxy).map(Some)
    }

    /// Opens a TCP tunnel to `host:port` through this proxy.
    pub async fn connect(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<TcpStream, ProxyError> {
        let io = |e: std::io::Error| ProxyError::Io(e.to_string());
        let mut stream =
            tokio::time::timeout(timeout, TcpStream::connect((self.host.as_str(), self.port)))
                .await
                .map_err(|_| ProxyError::Io("connect timed out".to_owned()))?
                .map_err(io)?;
        let _ = stream.set_nodelay(true);
        let authority = bracketed(host, port);
        let mut head =
            format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: wice\r\n");
        if let Some(credentials) = &self.credentials {
            let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
            head.push_str(&format!("Proxy-Authorization: Basic {encoded}\r\n"));
        }
        head.push_str("\r\n");
        let answer = tokio::time::timeout(timeout, async {
            stream.write_all(head.as_bytes()).await.map_err(io)?;
            read_head(&mut stream).await
        })
        .await
        .map_err(|_| ProxyError::Io("no answer to CONNECT in time".to_owned()))??;
        let status = answer.lines().next().unwrap_or_default();
        let mut words = status.split_whitespace();
        match (words.next(), words.next()) {
            (Some(version), Some(code))
                if version.starts_with("HTTP/1.") && code.starts_with('2') =>
            {
                Ok(stream)
            }
            _ => Err(ProxyError::Refused(status.chars().take(120).collect())),
        }
    }
}

/// Reads an HTTP response head, byte by byte so that nothing after it is consumed.
async fn read_head(stream: &mut TcpStream) -> Result<String, ProxyError> {
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_PROXY_HEAD_LEN {
            return Err(ProxyError::Io("answer head too long".to_owned()));
        }
        let byte = stream
            .read_u8()
            .await
            .map_err(|e| ProxyError::Io(format!("closed during CONNECT: {e}")))?;
        head.push(byte);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// True when `no_proxy` (comma-separated hosts, `.domain` suffixes, or `*`) names `host`.
pub fn no_proxy_matches(no_proxy: &str, host: &str) -> bool {
    let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
    no_proxy.split(',').map(str::trim).any(|entry| {
        let entry = entry.to_ascii_lowercase();
        let entry = entry.trim_matches(['[', ']']);
        let entry = entry.strip_prefix("*.").map_or(entry, |rest| rest);
        let entry = entry.trim_start_matches('.');
        !entry.is_empty()
            && (entry == "*"
                || host == entry
                || host
                    .strip_suffix(entry)
                    .is_some_and(|prefix| prefix.ends_with('.')))
    })
}

fn bracketed(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn redacted(text: &str) -> String {
    match text.rsplit_once('@') {
        Some((_, authority)) => format!("…@{authority}"),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_parse_with_and_without_scheme_port_and_credentials() {
        let proxy = ProxyUrl::parse("http://u:p@proxy.example:8080/").unwrap();
        assert_eq!(
            (
                proxy.host.as_str(),
                proxy.port,
                proxy.credentials.as_deref()
            ),
            ("proxy.example", 8080, Some("u:p"))
        );
        let proxy = ProxyUrl::parse("10.0.0.1").unwrap();
        assert_eq!((proxy.host.as_str(), proxy.port), ("10.0.0.1", 3128));
        let proxy = ProxyUrl::parse("http://[2001:db8::1]:3129").unwrap();
        assert_eq!((proxy.host.as_str(), proxy.port), ("2001:db8::1", 3129));
        for bad in [
            "https://proxy:1",
            "http://",
            "http://proxy:0",
            "http://proxy:1/path",
        ] {
            assert!(ProxyUrl::parse(bad).is_err(), "{bad}");
        }
        // The password never shows in an error or a debug print.
        let error = ProxyUrl::parse("socks5://u:secret@proxy:1").unwrap_err();
        assert!(!error.to_string().contains("secret"));
        assert!(
            !format!("{:?}", ProxyUrl::parse("http://u:secret@p:1").unwrap()).contains("secret")
        );
    }

    #[test]
    fn no_proxy_names_hosts_domains_and_everything() {
        assert!(no_proxy_matches(
            "localhost, .example.org",
            "signal.example.org"
        ));
        assert!(no_proxy_matches("example.org", "signal.example.org"));
        assert!(no_proxy_matches("example.org", "EXAMPLE.org"));
        assert!(!no_proxy_matches("example.org", "badexample.org"));
        assert!(no_proxy_matches("*", "anything"));
        assert!(no_proxy_matches("10.0.0.1", "10.0.0.1"));
        assert!(!no_proxy_matches("", "10.0.0.1"));
    }
}
