//! Routes: the networks this node routes for the mesh (`[interface] routes`), which routes
//! and which exit node it takes from others (`[routing]`), and the one rule that decides
//! what of a peer's announced routes this node installs ([`accepted_routes`]).
//!
//! ```toml
//! [interface]
//! routes = ["192.168.50.0/24"]       # networks behind this node (a subnet router)
//!
//! [routing]
//! advertise_exit_node = true         # offer this node's default route to the community
//! accept_routes = ["192.168.0.0/16"] # take announced routes inside these prefixes only
//! use_exit_node = "<key or name>"    # send everything else through this peer
//! table = 51820                      # routing table of the default route (wg-quick's)
//! fwmark = 51820                     # SO_MARK of wice's own sockets
//! ```
//!
//! Forwarding and NAT on a router or exit node are the operator's job, as with wg-quick
//! (`sysctl net.ipv4.ip_forward=1`, a masquerade rule): wice does not change the host's
//! firewall.

use super::parser::Parser;
use super::values::parse_allowed_ip;
use super::*;

/// Most routes [`accepted_routes`] takes from one peer: a peer that announces more gets the
/// first ones, so one peer cannot grow our routing table without bound.
pub const MAX_ROUTES_PER_PEER: usize = 256;
/// Longest exit-node name accepted (a DNS name's limit).
const MAX_NAME_LEN: usize = 253;

/// The `[routing]` section; its default when the file has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingConfig {
    /// Announced routes are installed only when inside one of these prefixes.
    pub accept_routes: Vec<IpNet>,
    /// The peer whose default route to use, if any.
    pub use_exit_node: Option<ExitNodeChoice>,
    /// Whether this node offers itself as an exit node in its announcements.
    pub advertise_exit_node: bool,
    /// Routing table for the default route through the tunnel.
    pub table: u32,
    /// `SO_MARK` of wice's own sockets while a default route goes through the tunnel.
    pub fwmark: u32,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            accept_routes: Vec::new(),
            use_exit_node: None,
            advertise_exit_node: false,
            table: crate::system::policy_routing::DEFAULT_TABLE,
            fwmark: crate::system::policy_routing::DEFAULT_FWMARK,
        }
    }
}

impl RoutingConfig {
    /// The mark and table the daemon's policy routing uses.
    pub fn policy_routing(&self) -> crate::system::policy_routing::PolicyRouting {
        crate::system::policy_routing::PolicyRouting {
            table: self.table,
            fwmark: self.fwmark,
        }
    }
}

/// Which peer `use_exit_node` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitNodeChoice {
    /// By public key (the value parsed as one).
    Key(PublicKey),
    /// By the name the peer announces.
    Name(String),
}

/// What one peer offers to route, as its announcement carries it.
#[derive(Debug, Clone, Copy)]
pub struct RouteOffer<'a> {
    /// The announcing peer (the envelope's proven sender).
    pub public_key: &'a PublicKey,
    /// The name it announces, if any.
    pub name: Option<&'a str>,
    /// The networks it routes (its `[interface] routes`).
    pub routes: &'a [IpNet],
    /// Whether it offers itself as an exit node.
    pub exit_node: bool,
}

/// The routes of `offer` this node installs (as allowed IPs of that peer and routes through
/// the tunnel), sorted, each once:
/// - an announced network inside one of `policy.accept_routes` (host bits cleared); a
///   default route is never taken this way, whatever `accept_routes` says;
/// - `0.0.0.0/0` and `::/0` when the peer offers an exit and `policy.use_exit_node` names it
///   by key or by name.
///
/// Judges one peer. Two peers announcing the same prefix is for the caller to settle (one
/// prefix routes to one peer); different prefixes may overlap, and the longest wins.
pub fn accepted_routes(offer: &RouteOffer<'_>, policy: &RoutingConfig) -> Vec<IpNet> {
    let mut accepted: Vec<IpNet> = offer
        .routes
        .iter()
        .take(MAX_ROUTES_PER_PEER)
        .map(IpNet::trunc)
        .filter(|route| route.prefix_len() > 0)
        .filter(|route| policy.accept_routes.iter().any(|a| a.contains(route)))
        .collect();
    let chosen = match &policy.use_exit_node {
        Some(ExitNodeChoice::Key(key)) => key == offer.public_key,
        Some(ExitNodeChoice::Name(name)) => offer.name == Some(name.as_str()),
        None => false,
    };
    if offer.exit_node && chosen {
        accepted.extend(DEFAULT_ROUTES.iter().map(|text| {
            text.parse::<IpNet>()
                .unwrap_or_else(|_| unreachable!("{text} is a valid prefix"))
        }));
    }
    accepted.sort();
    accepted.dedup();
    accepted
}

const DEFAULT_ROUTES: [&str; 2] = ["0.0.0.0/0", "::/0"];

/// The `[routing]` section as TOML gives it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(super) struct RawRouting {
    #[serde(default)]
    accept_routes: Vec<Spanned<String>>,
    use_exit_node: Option<Spanned<String>>,
    advertise_exit_node: Option<Spanned<bool>>,
    table: Option<Spanned<i64>>,
    fwmark: Option<Spanned<i64>>,
}

impl Parser<'_> {
    /// `[interface] routes`: networks, host bits cleared, each once; never a default route.
    pub(super) fn interface_routes(
        &self,
        raw: &[Spanned<String>],
    ) -> Result<Vec<IpNet>, ConfigError> {
        let mut routes = Vec::with_capacity(raw.len());
        for (index, text) in raw.iter().enumerate() {
            let error =
                |reason| self.error(&text.span(), format!("interface.routes[{index}]"), reason);
            let route = parse_allowed_ip(text.get_ref()).map_err(error)?;
            if route.prefix_len() == 0 {
                return Err(error(ConfigErrorKind::DefaultRouteInRoutes));
            }
            if !routes.contains(&route) {
                routes.push(route);
            }
        }
        Ok(routes)
    }

    /// The `[routing]` section.
    pub(super) fn routing(
        &self,
        raw: RawRouting,
        own_key: &PublicKey,
    ) -> Result<RoutingConfig, ConfigError> {
        let mut config = RoutingConfig::default();
        for (index, text) in raw.accept_routes.iter().enumerate() {
            let prefix = parse_allowed_ip(text.get_ref()).map_err(|reason| {
                self.error(
                    &text.span(),
                    format!("routing.accept_routes[{index}]"),
                    reason,
                )
            })?;
            if !config.accept_routes.contains(&prefix) {
                config.accept_routes.push(prefix);
            }
        }
        if let Some(text) = raw.use_exit_node {
            let error =
                |reason| self.error(&text.span(), "routing.use_exit_node".to_owned(), reason);
            let value = text.get_ref().trim();
            let choice = match PublicKey::from_base64(value) {
                Ok(key) if key == *own_key => return Err(error(ConfigErrorKind::OwnExitNode)),
                Ok(key) => ExitNodeChoice::Key(key),
                Err(_) if value.is_empty() || value.len() > MAX_NAME_LEN => {
                    return Err(error(ConfigErrorKind::InvalidExitNode));
                }
                Err(_) if value.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                    return Err(error(ConfigErrorKind::InvalidExitNode));
                }
                Err(_) => ExitNodeChoice::Name(value.to_owned()),
            };
            config.use_exit_node = Some(choice);
        }
        if let Some(advertise) = raw.advertise_exit_node {
            config.advertise_exit_node = advertise.into_inner();
        }
        if let Some(table) = raw.table {
            config.table = self.routing_number(&table, "routing.table", true)?;
        }
        if let Some(fwmark) = raw.fwmark {
            config.fwmark = self.routing_number(&fwmark, "routing.fwmark", false)?;
        }
        Ok(config)
    }

    /// A table number or mark: 1 to 2^32-1; a table must not be one the kernel reserves.
    fn routing_number(
        &self,
        value: &Spanned<i64>,
        key: &str,
        is_table: bool,
    ) -> Result<u32, ConfigError> {
        let error = |reason| self.error(&value.span(), key.to_owned(), reason);
        let number = u32::try_from(*value.get_ref())
            .ok()
            .filter(|n| *n != 0)
            .ok_or_else(|| {
                error(ConfigErrorKind::OutOfRange {
                    value: *value.get_ref(),
                    min: 1,
                    max: u32::MAX.into(),
                })
            })?;
        if is_table && (253..=255).contains(&number) {
            return Err(error(ConfigErrorKind::ReservedTable(number)));
        }
        Ok(number)
    }
}
