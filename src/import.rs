//! `wice import wg0.conf`: a wg-quick(8) config turned into a wice node config (TOML).
//!
//! What maps: `PrivateKey`, `ListenPort`, `Address`, `MTU` and every peer's `PublicKey`,
//! `PresharedKey`, `AllowedIPs`, `Endpoint`, `PersistentKeepalive`. What has no wice
//! equivalent (`DNS`, `Table`, `FwMark`, `PreUp`/`PostUp`/`PreDown`/`PostDown`,
//! `SaveConfig`, unknown keys) is listed in [`Imported::unmapped`] with its line, so the
//! user can decide what to do about it; nothing is dropped silently.
//!
//! Like wg-quick, key names are case-insensitive, `#` starts a comment, and list values
//! (`Address`, `AllowedIPs`, `DNS`) are comma-separated and may repeat. A bare address
//! (`10.0.0.1`) is a host route (`/32`, `/128`), as `ip address add` and `wg` take it.

use std::fmt::Write as _;

/// The result of an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The wice config, TOML.
    pub toml: String,
    /// Settings with no wice equivalent: `line N: Key = value: why`.
    pub unmapped: Vec<String>,
}

/// Why a wg-quick file could not be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ImportError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

#[derive(Debug, Default)]
struct Interface {
    private_key: Option<String>,
    /// (line, value)
    listen_port: Option<(usize, String)>,
    addresses: Vec<String>,
    /// (line, value)
    mtu: Option<(usize, String)>,
}

#[derive(Debug, Default)]
struct Peer {
    line: usize,
    public_key: Option<String>,
    preshared_key: Option<String>,
    allowed_ips: Vec<String>,
    endpoint: Option<String>,
    persistent_keepalive: Option<String>,
}

enum Section {
    None,
    Interface,
    Peer,
}

/// Converts the text of a wg-quick config; `name` is the interface name (the file's stem).
pub fn import_wg_quick(name: &str, text: &str) -> Result<Imported, ImportError> {
    let mut interface = Interface::default();
    let mut seen_interface = false;
    let mut peers: Vec<Peer> = Vec::new();
    let mut unmapped = Vec::new();
    let mut section = Section::None;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let content = raw.split('#').next().unwrap_or_default().trim();
        if content.is_empty() {
            continue;
        }
        if content.starts_with('[') {
            section = match content.to_ascii_lowercase().as_str() {
                "[interface]" => {
                    seen_interface = true;
                    Section::Interface
                }
                "[peer]" => {
                    peers.push(Peer {
                        line,
                        ..Peer::default()
                    });
                    Section::Peer
                }
                _ => {
                    return Err(ImportError {
                        line,
                        reason: format!("unknown section {content}"),
                    });
                }
            };
            continue;
        }
        let Some((key, value)) = content.split_once('=') else {
            return Err(ImportError {
                line,
                reason: format!("expected `Key = value`, found `{content}`"),
            });
        };
        let (key, value) = (key.trim(), value.trim().to_owned());
        let lower = key.to_ascii_lowercase();
        let mut note = |why: &str| unmapped.push(format!("line {line}: {key} = {value}: {why}"));
        match (&section, lower.as_str()) {
            (Section::None, _) => {
                return Err(ImportError {
                    line,
                    reason: format!("`{key}` outside [Interface] or [Peer]"),
                });
            }
            (Section::Interface, "privatekey") => interface.private_key = Some(value),
            (Section::Interface, "listenport") => interface.listen_port = Some((line, value)),
            (Section::Interface, "address") => interface.addresses.extend(list(&value)),
            (Section::Interface, "mtu") => interface.mtu = Some((line, value)),
            (Section::Interface, "dns") => {
                note("wice does not manage DNS; configure the resolver yourself");
            }
            (Section::Interface, "table") => {
                note("wice adds routes for allowed IPs to the main table only");
            }
            (Section::Interface, "fwmark") => note("wice does not set a firewall mark"),
            (Section::Interface, "preup" | "postup" | "predown" | "postdown") => {
                note(
                    "wice runs no hook commands; use ExecStartPre=/ExecStartPost= in a systemd drop-in",
                );
            }
            (Section::Interface, "saveconfig") => note("wice never writes its config back"),
            (Section::Peer, field) => {
                let Some(peer) = peers.last_mut() else {
                    continue;
                };
                match field {
                    "publickey" => peer.public_key = Some(value),
                    "presharedkey" => peer.preshared_key = Some(value),
                    "allowedips" => peer.allowed_ips.extend(list(&value)),
                    "endpoint" => peer.endpoint = Some(value),
                    "persistentkeepalive" => peer.persistent_keepalive = Some(value),
                    _ => note("unknown [Peer] key"),
                }
            }
            (Section::Interface, _) => note("unknown [Interface] key"),
        }
    }
    if !seen_interface {
        return Err(ImportError {
            line: 1,
            reason: "no [Interface] section".to_owned(),
        });
    }
    let toml = render(name, &interface, &peers, &mut unmapped)?;
    Ok(Imported { toml, unmapped })
}

fn list(value: &str) -> impl Iterator<Item = String> + '_ {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
}

/// `10.0.0.1` → `10.0.0.1/32`, `fd00::1` → `fd00::1/128`; prefixes are kept.
fn with_prefix(address: &str) -> String {
    if address.contains('/') {
        address.to_owned()
    } else if address.contains(':') {
        format!("{address}/128")
    } else {
        format!("{address}/32")
    }
}

fn quoted(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

fn quoted_list(items: impl IntoIterator<Item = String>) -> String {
    let items: Vec<String> = items.into_iter().map(|item| quoted(&item)).collect();
    format!("[{}]", items.join(", "))
}

fn number(line: usize, key: &str, value: &str) -> Result<u32, ImportError> {
    value.parse().map_err(|_| ImportError {
        line,
        reason: format!("{key} = {value}: not a number"),
    })
}

fn render(
    name: &str,
    interface: &Interface,
    peers: &[Peer],
    unmapped: &mut Vec<String>,
) -> Result<String, ImportError> {
    let mut out = String::new();
    let _ = writeln!(out, "# Imported from a wg-quick config by `wice import`.");
    let _ = writeln!(out, "[interface]");
    let _ = writeln!(out, "name = {}", quoted(name));
    match &interface.private_key {
        Some(key) => {
            let _ = writeln!(out, "private_key = {}", quoted(key));
        }
        None => unmapped.push(
            "[Interface] has no PrivateKey (wg-quick sets it in PostUp?): add private_key or \
             private_key_file"
                .to_owned(),
        ),
    }
    match &interface.listen_port {
        Some((line, port)) => {
            let _ = writeln!(out, "listen_port = {}", number(*line, "ListenPort", port)?);
        }
        // wg-quick without ListenPort picks a random port; so does wice with 0.
        None => {
            let _ = writeln!(out, "listen_port = 0");
        }
    }
    let _ = writeln!(
        out,
        "addresses = {}",
        quoted_list(interface.addresses.iter().map(|a| with_prefix(a)))
    );
    if let Some((line, mtu)) = &interface.mtu {
        let _ = writeln!(out, "mtu = {}", number(*line, "MTU", mtu)?);
    }
    for peer in peers {
        let _ = writeln!(out, "\n[[peer]]");
        let Some(key) = &peer.public_key else {
            return Err(ImportError {
                line: peer.line,
                reason: "[Peer] without PublicKey".to_owned(),
            });
        };
        let _ = writeln!(out, "public_key = {}", quoted(key));
        let _ = writeln!(
            out,
            "allowed_ips = {}",
            quoted_list(peer.allowed_ips.iter().map(|a| with_prefix(a)))
        );
        if let Some(endpoint) = &peer.endpoint {
            let _ = writeln!(out, "endpoint = {}", quoted(endpoint));
        }
        if let Some(keepalive) = &peer.persistent_keepalive {
            let seconds = if keepalive.eq_ignore_ascii_case("off") {
                0
            } else {
                number(peer.line, "PersistentKeepalive", keepalive)?
            };
            let _ = writeln!(out, "persistent_keepalive = {seconds}");
        }
        if let Some(psk) = &peer.preshared_key {
            let _ = writeln!(out, "preshared_key = {}", quoted(psk));
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "import_tests.rs"]
mod tests;
