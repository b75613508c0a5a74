//! Who sits where: sites (a LAN behind a NAT, or public addresses), their links, and the
//! address plan.
//!
//! - The TURN/STUN server is `192.0.2.1:3478`; its relayed addresses share the IP.
//! - A NAT site `s` has the LAN `10.0.s.0/24` (nodes from `.2`) and the public `198.18.0.s`.
//! - A public site `s` gives its nodes `198.19.s.2`, `.3`, … directly.
//!
//! Private addresses are routed only inside their own LAN; there is no hairpinning.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::nat::{Nat, NatBehaviour};

/// The port every node listens on.
pub const LISTEN_PORT: u16 = 51820;
/// The TURN/STUN server.
pub const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 3478);
/// Most sites a simulation can have (one octet of the address plan).
pub const MAX_SITES: usize = 250;

/// One direction of a site's uplink, applied to every datagram that crosses it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkProfile {
    /// One-way delay.
    pub delay: Duration,
    /// Up to this much more per datagram: datagrams can overtake each other (reordering).
    pub jitter: Duration,
    /// Probability a datagram is lost.
    pub loss: f64,
}

impl Default for LinkProfile {
    fn default() -> Self {
        Self {
            delay: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss: 0.0,
        }
    }
}

/// What kind of site.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SiteKind {
    /// Nodes have public addresses.
    Public,
    /// Nodes sit on a LAN behind a NAT.
    Nat(NatBehaviour),
}

/// A site.
#[derive(Debug)]
pub struct Site {
    /// Its kind.
    pub kind: SiteKind,
    /// Its uplink.
    pub link: LinkProfile,
    /// The NAT, for NAT sites.
    pub nat: Option<Nat>,
    /// Nodes placed so far (for addresses).
    pub(crate) placed: u8,
    /// Whether the site is offline: its nodes' datagrams are lost before they reach the NAT
    /// (so its mappings go idle), and datagrams to it are lost.
    pub cut: bool,
}

/// The LAN address of the `n`th node of NAT site `site`.
pub fn lan_address(site: usize, n: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, site as u8, n)), LISTEN_PORT)
}

/// The public address of the `n`th node of public site `site`.
pub fn public_address(site: usize, n: u8) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(198, 19, site as u8, n)),
        LISTEN_PORT,
    )
}

/// The NAT's public address of site `site`.
pub fn nat_public(site: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, site as u8)
}

/// Where an IP belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// The server.
    Server,
    /// A NAT site's public address.
    Nat(usize),
    /// A NAT site's LAN.
    Lan(usize),
    /// A public site's node.
    Public(usize),
    /// Nothing.
    Nowhere,
}

pub(crate) fn owner(ip: IpAddr) -> Owner {
    let IpAddr::V4(v4) = ip else {
        return Owner::Nowhere;
    };
    if ip == SERVER.ip() {
        return Owner::Server;
    }
    match v4.octets() {
        [10, 0, site, _] => Owner::Lan(usize::from(site)),
        [198, 18, 0, site] => Owner::Nat(usize::from(site)),
        [198, 19, site, _] => Owner::Public(usize::from(site)),
        _ => Owner::Nowhere,
    }
}
