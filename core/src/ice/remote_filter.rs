//! Which remote candidates a session may use at all.
//!
//! A peer chooses the addresses it signals, so it could make us send checks (and later
//! WireGuard) to our own loopback, to a multicast group, or into the mesh itself: an address
//! inside a tunnel prefix would be routed back into the TUN device, a loop that costs us a
//! packet per packet. Such candidates are refused before any session sees them, and counted.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// Why a remote candidate was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedCandidate {
    /// `0.0.0.0`, `::` or port 0.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// Multicast or the IPv4 broadcast address.
    Multicast,
    /// Inside the mesh's own tunnel addresses or a peer's allowed IPs.
    InsideMesh,
}

/// How many remote candidates were refused, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefusedCounters {
    /// Unspecified address or port 0.
    pub unspecified: u64,
    /// Loopback.
    pub loopback: u64,
    /// Multicast or broadcast.
    pub multicast: u64,
    /// Inside the mesh's prefixes.
    pub inside_mesh: u64,
}

impl RefusedCounters {
    /// Counts one refusal.
    pub fn count(&mut self, reason: RefusedCandidate) {
        let slot = match reason {
            RefusedCandidate::Unspecified => &mut self.unspecified,
            RefusedCandidate::Loopback => &mut self.loopback,
            RefusedCandidate::Multicast => &mut self.multicast,
            RefusedCandidate::InsideMesh => &mut self.inside_mesh,
        };
        *slot += 1;
    }

    /// All refusals.
    pub fn total(&self) -> u64 {
        self.unspecified + self.loopback + self.multicast + self.inside_mesh
    }
}

/// The test every remote candidate passes before a session sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteFilter {
    /// The mesh's tunnel addresses and every peer's allowed IPs.
    mesh: Vec<IpNet>,
}

/// Prefixes shorter than this (IPv4) are routes to the internet through a peer (an exit
/// node's `0.0.0.0/0`, wg-quick's `0.0.0.0/1` halves), not mesh space: peers' real endpoints
/// live there, so they cannot be refused.
const MIN_MESH_PREFIX_V4: u8 = 8;
/// The same for IPv6.
const MIN_MESH_PREFIX_V6: u8 = 16;

impl RemoteFilter {
    /// A filter that also refuses addresses inside `mesh` (tunnel addresses, allowed IPs).
    pub fn new(mesh: Vec<IpNet>) -> Self {
        Self { mesh }
    }

    /// The mesh's prefixes from the interface's own addresses and the peers' allowed IPs,
    /// leaving out routes too broad to be mesh space.
    pub fn mesh_prefixes<'a>(prefixes: impl IntoIterator<Item = &'a IpNet>) -> Vec<IpNet> {
        let mut mesh: Vec<IpNet> = prefixes
            .into_iter()
            .filter(|net| match net {
                IpNet::V4(v4) => v4.prefix_len() >= MIN_MESH_PREFIX_V4,
                IpNet::V6(v6) => v6.prefix_len() >= MIN_MESH_PREFIX_V6,
            })
            .map(IpNet::trunc)
            .collect();
        mesh.sort_unstable();
        mesh.dedup();
        mesh
    }

    /// Whether a session may use `address` as a remote candidate.
    pub fn check(&self, address: SocketAddr) -> Result<(), RefusedCandidate> {
        let ip = canonical(address.ip());
        if ip.is_unspecified() || address.port() == 0 {
            return Err(RefusedCandidate::Unspecified);
        }
        if ip.is_loopback() {
            return Err(RefusedCandidate::Loopback);
        }
        let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
        if ip.is_multicast() || broadcast {
            return Err(RefusedCandidate::Multicast);
        }
        if self.mesh.iter().any(|net| net.contains(&ip)) {
            return Err(RefusedCandidate::InsideMesh);
        }
        Ok(())
    }
}

/// An IPv4-mapped IPv6 address is judged as the IPv4 address it carries.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(filter: &RemoteFilter, address: &str) -> Result<(), RefusedCandidate> {
        filter.check(address.parse().unwrap())
    }

    #[test]
    fn loopback_multicast_unspecified_and_mesh_addresses_are_refused_by_name() {
        let filter = RemoteFilter::new(vec![
            "10.77.0.0/24".parse().unwrap(),
            "fd77::/64".parse().unwrap(),
        ]);
        assert_eq!(
            check(&filter, "0.0.0.0:51820"),
            Err(RefusedCandidate::Unspecified)
        );
        assert_eq!(
            check(&filter, "[::]:51820"),
            Err(RefusedCandidate::Unspecified)
        );
        assert_eq!(
            check(&filter, "192.0.2.1:0"),
            Err(RefusedCandidate::Unspecified)
        );
        assert_eq!(
            check(&filter, "127.0.0.1:51820"),
            Err(RefusedCandidate::Loopback)
        );
        assert_eq!(
            check(&filter, "[::1]:51820"),
            Err(RefusedCandidate::Loopback)
        );
        assert_eq!(
            check(&filter, "[::ffff:127.0.0.1]:51820"),
            Err(RefusedCandidate::Loopback)
        );
        assert_eq!(
            check(&filter, "224.0.0.1:51820"),
            Err(RefusedCandidate::Multicast)
        );
        assert_eq!(
            check(&filter, "[ff02::1]:51820"),
            Err(RefusedCandidate::Multicast)
        );
        assert_eq!(
            check(&filter, "255.255.255.255:51820"),
            Err(RefusedCandidate::Multicast)
        );
        assert_eq!(
            check(&filter, "10.77.0.9:51820"),
            Err(RefusedCandidate::InsideMesh)
        );
        assert_eq!(
            check(&filter, "[fd77::9]:51820"),
            Err(RefusedCandidate::InsideMesh)
        );
        assert_eq!(check(&filter, "10.78.0.9:51820"), Ok(()));
        assert_eq!(check(&filter, "[2001:db8::1]:51820"), Ok(()));
    }

    #[test]
    fn exit_node_routes_are_not_mesh_space_but_tunnel_subnets_are() {
        let prefixes: Vec<IpNet> = [
            "10.77.0.1/24",
            "0.0.0.0/0",
            "128.0.0.0/1",
            "::/0",
            "fd77::1/64",
        ]
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
        let filter = RemoteFilter::new(RemoteFilter::mesh_prefixes(&prefixes));
        assert_eq!(
            check(&filter, "10.77.0.200:1"),
            Err(RefusedCandidate::InsideMesh)
        );
        assert_eq!(check(&filter, "198.51.100.1:1"), Ok(()));
        assert_eq!(check(&filter, "[2001:db8::1]:1"), Ok(()));
    }
}
