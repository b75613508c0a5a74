//! WireGuard's cross-platform userspace API, so `wg` (and `wg-quick`)
//! configure and show wice interfaces like any userspace WireGuard.
//!
//! - `protocol`: the request/answer format, sans-IO (fuzzed in `fuzz/`);
//! - `handler`: requests against a running device, with the [`Policy`] for
//!   what `wg` may change;
//! - `server`: the unix socket in `/var/run/wireguard`.

pub mod handler;
pub mod protocol;
pub mod server;

pub use handler::{Handler, ManagedPeers, Policy, UapiDevice};
pub use server::{ServeError, UapiServer, socket_path};

use std::sync::Arc;

use wice_datapath::Device;

/// Serves `wice up`'s interface to `wg`: its peers found through ICE are
/// shown but not changed, nor are its key and port (signaling and ICE use
/// them). A socket that cannot be served (another process has it: two nodes
/// with one interface name in different namespaces) is logged, not fatal:
/// the node works without it.
pub fn serve_for_node(
    interface: &str,
    device: &Arc<Device>,
    managed_peers: ManagedPeers,
) -> Option<UapiServer> {
    let policy = Policy {
        managed_peers,
        fixed_identity: true,
    };
    let handler = Handler::new(Arc::clone(device), policy, true);
    match UapiServer::serve(&socket_path(interface), move |text| handler.handle(text)) {
        Ok(server) => Some(server),
        Err(error) => {
            tracing::warn!(%error, "not serving the WireGuard UAPI (wg show) for this interface");
            None
        }
    }
}

/// Whether `name` can be an interface name (and so a socket file name):
/// 1–15 bytes, none of them `/`, whitespace, `:` or NUL, and not `.` or `..`
/// — the kernel's own rule, checked before the name becomes a path.
pub fn valid_interface_name(name: &str) -> bool {
    (1..16).contains(&name.len())
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
}

#[cfg(test)]
mod tests;
