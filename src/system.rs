//! The edge that changes the host: interface addresses, link state, routes,
//! and the files that mark an interface as ours.
//!
//! Address and route changes go through iproute2's `ip`, as wg-quick does:
//! one well-known tool, whose error messages we pass on verbatim.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use ipnet::IpNet;

/// Why the system could not be configured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SystemError {
    /// `ip` could not be run at all.
    #[error("cannot run `ip` (is iproute2 installed?): {0}")]
    IpMissing(io::Error),
    /// `ip` ran and refused.
    #[error("`ip {args}` failed: {stderr}")]
    IpFailed {
        /// The arguments given.
        args: String,
        /// What `ip` printed.
        stderr: String,
    },
    /// Another wice process owns the interface.
    #[error("interface {name} is already run by wice (pid {pid}); stop it first")]
    AlreadyRunning {
        /// Interface name.
        name: String,
        /// The live owner.
        pid: u32,
    },
    /// Something other than wice owns the interface name.
    #[error(
        "interface {name} already exists and is not a leftover of wice ({what}); choose another [interface] name or remove it"
    )]
    NameTaken {
        /// Interface name.
        name: String,
        /// Why we think it is not ours.
        what: &'static str,
    },
    /// A runtime file could not be written or removed.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// Runs `ip` with `args`.
pub fn ip(args: &[&str]) -> Result<(), SystemError> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(SystemError::IpMissing)?;
    if output.status.success() {
        Ok(())
    } else {
        Err(SystemError::IpFailed {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Whether a network interface with this name exists.
pub fn interface_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn is_tun(name: &str) -> bool {
    Path::new("/sys/class/net")
        .join(name)
        .join("tun_flags")
        .exists()
}

/// The pid file that marks `control_socket`'s interface as owned by a wice process.
pub fn pid_file(control_socket: &Path) -> PathBuf {
    control_socket.with_extension("pid")
}

/// Makes sure the interface name is free for us, removing what a crashed run
/// of ours left behind, and records our pid. Refuses if a live wice owns it or
/// if it belongs to something else.
pub fn claim_interface(name: &str, control_socket: &Path) -> Result<(), SystemError> {
    let pid_path = pid_file(control_socket);
    let owner = fs::read_to_string(&pid_path)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    let owner_alive = owner.filter(|pid| *pid != std::process::id() && is_wice_process(*pid));
    if let Some(pid) = owner_alive {
        return Err(SystemError::AlreadyRunning {
            name: name.to_owned(),
            pid,
        });
    }
    if interface_exists(name) {
        if owner.is_none() {
            return Err(SystemError::NameTaken {
                name: name.to_owned(),
                what: "no wice pid file records it",
            });
        }
        if !is_tun(name) {
            return Err(SystemError::NameTaken {
                name: name.to_owned(),
                what: "it is not a TUN device",
            });
        }
        tracing::warn!(interface = name, pid = ?owner, "removing the interface a crashed wice left behind");
        ip(&["link", "del", "dev", name])?;
    }
    // A dead owner's socket would make our bind fail.
    remove_if_present(control_socket)?;
    if let Some(dir) = pid_path.parent() {
        fs::create_dir_all(dir).map_err(|source| SystemError::File {
            path: dir.to_owned(),
            source,
        })?;
    }
    fs::write(&pid_path, format!("{}\n", std::process::id())).map_err(|source| SystemError::File {
        path: pid_path,
        source,
    })
}

/// Removes the pid file and control socket.
pub fn release_interface(control_socket: &Path) {
    for path in [control_socket.to_owned(), pid_file(control_socket)] {
        if let Err(err) = remove_if_present(&path) {
            tracing::warn!(%err, "cleanup");
        }
    }
}

fn remove_if_present(path: &Path) -> Result<(), SystemError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(SystemError::File {
            path: path.to_owned(),
            source,
        }),
    }
}

fn is_wice_process(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "wice")
}

/// Gives the interface its addresses and brings it up.
pub fn configure_interface(name: &str, addresses: &[IpNet]) -> Result<(), SystemError> {
    for address in addresses {
        let address = address.to_string();
        let mut args = vec!["address", "add", address.as_str(), "dev", name];
        if address.contains(':') {
            // Skip duplicate address detection: the tunnel is point-to-point and
            // a tentative address would be unusable for the first seconds.
            args.push("nodad");
        }
        ip(&args)?;
    }
    ip(&["link", "set", "dev", name, "up"])
}

/// The peers' allowed IPs that need a route: those outside the interface's own prefixes,
/// which the kernel already routes to the interface.
pub fn routes_needed<'a>(
    addresses: &[IpNet],
    allowed_ips: impl IntoIterator<Item = &'a IpNet>,
) -> Vec<IpNet> {
    let mut routes: Vec<IpNet> = allowed_ips
        .into_iter()
        .map(IpNet::trunc)
        .filter(|net| !addresses.iter().any(|own| own.trunc().contains(net)))
        .collect();
    routes.sort();
    routes.dedup();
    routes
}

/// Installs routes to the interface. A route that cannot be added (it exists
/// elsewhere, say) is reported and skipped: the rest of the mesh still works.
pub fn add_routes(name: &str, routes: &[IpNet]) -> Vec<IpNet> {
    let mut added = Vec::new();
    for route in routes {
        let route_text = route.to_string();
        match ip(&["route", "add", &route_text, "dev", name]) {
            Ok(()) => added.push(*route),
            Err(err) => tracing::warn!(%route, %err, "route not installed"),
        }
    }
    added
}

/// Removes routes and the interface. The interface would vanish with our TUN
/// descriptor anyway; removing it explicitly makes the exit order certain.
pub fn teardown(name: &str, routes: &[IpNet]) {
    for route in routes {
        let route_text = route.to_string();
        let _ = ip(&["route", "del", &route_text, "dev", name]);
    }
    if interface_exists(name) {
        let _ = ip(&["link", "del", "dev", name]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter()
            .map(|s| s.parse().expect("test network"))
            .collect()
    }

    #[test]
    fn allowed_ips_inside_the_interface_prefix_need_no_route() {
        let own = nets(&["10.77.0.1/24", "fd77::1/64"]);
        let allowed = nets(&[
            "10.77.0.2/32",
            "10.78.0.0/16",
            "fd77::2/128",
            "fd78::/64",
            "10.78.0.0/16",
        ]);
        assert_eq!(
            routes_needed(&own, &allowed),
            nets(&["10.78.0.0/16", "fd78::/64"])
        );
    }

    #[test]
    fn the_pid_file_sits_beside_the_control_socket() {
        assert_eq!(
            pid_file(Path::new("/run/wice/wice0.sock")),
            PathBuf::from("/run/wice/wice0.pid")
        );
    }
}
