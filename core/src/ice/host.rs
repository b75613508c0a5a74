//! Host candidates: which interface addresses are worth offering.
//!
//! Every address of an up interface except loopback and wice's own TUN (a path through the
//! tunnel to build the tunnel would never work), and except addresses ICE cannot use
//! (link-local IPv6 needs a scope the signaled address lacks; unspecified, multicast).
//! IPv4 first, then IPv6, capped: each host candidate multiplies the pairs both sides check
//! (design notes §4).

use std::net::{IpAddr, SocketAddr};

/// Most host candidates offered.
pub(crate) const MAX_HOST_CANDIDATES: usize = 8;

/// One address of one interface, as the OS lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddress {
    /// Interface name.
    pub interface: String,
    /// The address.
    pub ip: IpAddr,
    /// Whether the interface is up.
    pub up: bool,
    /// Whether it is a loopback interface.
    pub loopback: bool,
}

/// The host candidates for a socket on `port`, leaving out `own_interface`.
pub fn host_candidates(
    addresses: &[InterfaceAddress],
    own_interface: &str,
    port: u16,
) -> Vec<SocketAddr> {
    let usable = |a: &&InterfaceAddress| {
        a.up && !a.loopback
            && a.interface != own_interface
            && !a.ip.is_loopback()
            && !a.ip.is_unspecified()
            && !a.ip.is_multicast()
            && match a.ip {
                IpAddr::V4(ip) => !ip.is_link_local() && !ip.is_broadcast(),
                IpAddr::V6(ip) => !ip.is_unicast_link_local(),
            }
    };
    let v4 = addresses.iter().filter(usable).filter(|a| a.ip.is_ipv4());
    let v6 = addresses.iter().filter(usable).filter(|a| a.ip.is_ipv6());
    let mut out: Vec<SocketAddr> = Vec::new();
    for address in v4.chain(v6) {
        let candidate = SocketAddr::new(address.ip, port);
        if !out.contains(&candidate) && out.len() < MAX_HOST_CANDIDATES {
            out.push(candidate);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(interface: &str, ip: &str, up: bool) -> InterfaceAddress {
        InterfaceAddress {
            interface: interface.to_owned(),
            ip: ip.parse().unwrap(),
            up,
            loopback: interface == "lo",
        }
    }

    #[test]
    fn loopback_our_own_tun_down_and_link_local_addresses_are_left_out() {
        let list = [
            addr("lo", "127.0.0.1", true),
            addr("wg0", "10.77.0.1", true),
            addr("eth0", "fe80::1", true),
            addr("eth0", "169.254.1.1", true),
            addr("eth1", "192.0.2.7", false),
            addr("eth0", "2001:db8::5", true),
            addr("eth0", "10.0.0.2", true),
        ];
        assert_eq!(
            host_candidates(&list, "wg0", 51820),
            [
                "10.0.0.2:51820".parse::<SocketAddr>().unwrap(),
                "[2001:db8::5]:51820".parse().unwrap()
            ]
        );
    }

    #[test]
    fn ipv4_comes_first_and_the_list_is_capped() {
        let mut list: Vec<InterfaceAddress> = (0..10)
            .map(|i| addr("eth0", &format!("2001:db8::{i}"), true))
            .collect();
        list.push(addr("eth1", "10.0.0.9", true));
        let out = host_candidates(&list, "wg0", 1);
        assert_eq!(out.len(), MAX_HOST_CANDIDATES);
        assert_eq!(out[0], "10.0.0.9:1".parse().unwrap());
    }
}
