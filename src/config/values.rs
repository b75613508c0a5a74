//! Single values: names, addresses, endpoints, and the files a config names.

use super::parser::World;
use super::*;

/// Largest CA certificate file read.
const MAX_CA_FILE_LEN: u64 = 1 << 20;

/// Applies Linux's rules for interface names (`dev_valid_name`), so a bad name is caught here
/// rather than as an `EINVAL` when the TUN device is created.
pub(super) fn validate_interface_name(name: &str) -> Result<(), &'static str> {
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
pub(super) fn parse_address(text: &str) -> Result<IpNet, ConfigErrorKind> {
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
pub(super) fn parse_allowed_ip(text: &str) -> Result<IpNet, ConfigErrorKind> {
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
pub(super) fn resolve_endpoint(text: &str, world: World) -> Result<SocketAddr, ConfigErrorKind> {
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
pub(super) fn resolve_server(url: &ServerUrl, world: World) -> Result<SocketAddr, ConfigErrorKind> {
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
pub(super) fn read_ca_file(path: &Path) -> Result<Vec<u8>, ConfigErrorKind> {
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
pub(super) fn read_private_key_file(path: &Path) -> Result<PrivateKey, ConfigErrorKind> {
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
