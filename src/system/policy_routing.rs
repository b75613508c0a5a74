//! Exit-node routing, the way wg-quick does it: a peer whose allowed IPs hold `0.0.0.0/0`
//! (or `::/0`) gets the default route, without the tunnel's own traffic looping into itself.
//!
//! For each address family with a default route through the tunnel:
//!
//! 1. `ip route add default dev IFNAME table T proto 119`: the default route, in a table of
//!    its own (51820 unless `[routing] table` says otherwise);
//! 2. `ip rule add not fwmark M table T proto 119`: every packet *not* marked `M` looks there;
//! 3. `ip rule add not fwmark M table main suppress_prefixlength 0 proto 119`, evaluated
//!    before rule 2: the main table still answers with anything more specific than a default
//!    route (the LAN, the underlay's own subnets, routes to other peers' allowed IPs).
//!
//! wice's UDP socket (WireGuard, ICE, STUN, TURN) and its signaling connections carry
//! `SO_MARK` `M`, so they skip both rules and follow the main table: the underlay. wg-quick
//! gives the suppress rule no selector; wice gives it `not fwmark M` too, so every rule it
//! adds names its own mark and table and a start can find exactly its own leftovers.
//!
//! Every rule and route is tagged with routing protocol [`PROTOCOL`] (119, unused in
//! iproute2's `rt_protos`): removal deletes by mark, table *and* tag, never an operator's
//! rule that happens to look alike. Routes through the TUN device vanish with it; the rules
//! outlive a crashed process, so the pid file records the mark and table (see
//! [`super::claim_interface`]) and the next start of the interface removes them.

use ipnet::IpNet;

use super::{SystemError, ip};

/// Routing table for the default route when the config names none (wg-quick's choice).
pub const DEFAULT_TABLE: u32 = 51820;
/// Firewall mark of wice's own sockets when the config names none (wg-quick's choice).
pub const DEFAULT_FWMARK: u32 = 51820;
/// The routing protocol number every rule and route of ours carries (`proto 119`).
pub const PROTOCOL: &str = "119";
/// Most copies of one rule a removal deletes: more than crashes could leave, and a bound
/// so a rule that keeps reappearing cannot keep us looping.
const MAX_DUPLICATES: usize = 16;

/// An IP address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    /// IPv4 (`ip -4`).
    V4,
    /// IPv6 (`ip -6`).
    V6,
}

impl Family {
    fn flag(self) -> &'static str {
        match self {
            Self::V4 => "-4",
            Self::V6 => "-6",
        }
    }

    fn default_route(self) -> &'static str {
        match self {
            Self::V4 => "0.0.0.0/0",
            Self::V6 => "::/0",
        }
    }
}

/// The families whose default route (`0.0.0.0/0`, `::/0`) is among `allowed_ips`, in order.
pub fn default_route_families<'a>(allowed_ips: impl IntoIterator<Item = &'a IpNet>) -> Vec<Family> {
    let mut families: Vec<Family> = allowed_ips
        .into_iter()
        .filter(|net| net.prefix_len() == 0)
        .map(|net| match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        })
        .collect();
    families.sort();
    families.dedup();
    families
}

/// The mark and table policy routing uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyRouting {
    /// Routing table holding the default route through the tunnel.
    pub table: u32,
    /// `SO_MARK` of wice's own sockets; marked packets bypass the table.
    pub fwmark: u32,
}

impl Default for PolicyRouting {
    fn default() -> Self {
        Self {
            table: DEFAULT_TABLE,
            fwmark: DEFAULT_FWMARK,
        }
    }
}

impl PolicyRouting {
    /// The `ip` commands that install the default route of `family` through `interface`, in
    /// order: the table rule goes in before the suppress rule so the kernel numbers the
    /// suppress rule lower, and it is evaluated first.
    pub fn install_commands(&self, interface: &str, family: Family) -> Vec<Vec<String>> {
        let (table, mark) = (self.table.to_string(), self.fwmark.to_string());
        let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
        let flag = family.flag();
        vec![
            args(&[
                flag,
                "route",
                "add",
                family.default_route(),
                "dev",
                interface,
                "table",
                &table,
                "proto",
                PROTOCOL,
            ]),
            args(&[
                flag, "rule", "add", "not", "fwmark", &mark, "table", &table, "protocol", PROTOCOL,
            ]),
            args(&[
                flag,
                "rule",
                "add",
                "not",
                "fwmark",
                &mark,
                "table",
                "main",
                "suppress_prefixlength",
                "0",
                "protocol",
                PROTOCOL,
            ]),
        ]
    }

    /// The `ip rule del` commands that remove one copy of each of our rules of `family`.
    pub fn rule_removal_commands(&self, family: Family) -> Vec<Vec<String>> {
        self.install_commands("-", family)
            .into_iter()
            .skip(1)
            .map(|mut command| {
                command[2] = "del".to_owned();
                command
            })
            .collect()
    }

    /// Whether some rule already sends traffic to our table: another interface's, or the
    /// operator's. Installing beside it would make two tunnels fight over one table.
    fn table_in_use(&self, family: Family) -> Result<bool, SystemError> {
        let table = self.table.to_string();
        let rules = super::ip_output(&[family.flag(), "rule", "show", "table", &table])?;
        Ok(!rules.trim().is_empty())
    }

    /// Installs the default route of each of `families` through `interface`. A failure part
    /// way removes what was added and names the command that failed.
    pub fn install(&self, interface: &str, families: &[Family]) -> Result<(), SystemError> {
        for &family in families {
            if self.table_in_use(family)? {
                return Err(SystemError::RoutingTableInUse {
                    table: self.table,
                    family: family.flag(),
                });
            }
        }
        if families.contains(&Family::V4) {
            // As wg-quick: the reverse-path filter then takes the mark into account.
            if let Err(err) = std::fs::write("/proc/sys/net/ipv4/conf/all/src_valid_mark", "1") {
                tracing::warn!(%err, "cannot set net.ipv4.conf.all.src_valid_mark=1");
            }
        }
        for &family in families {
            for command in self.install_commands(interface, family) {
                let args: Vec<&str> = command.iter().map(String::as_str).collect();
                if let Err(err) = ip(&args) {
                    self.remove(interface);
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    /// Removes every rule and route of ours, of both families; what is already gone is
    /// fine. Used on exit and, with the mark and table a crashed run recorded, on start.
    pub fn remove(&self, interface: &str) {
        let table = self.table.to_string();
        for family in [Family::V4, Family::V6] {
            for command in self.rule_removal_commands(family) {
                let args: Vec<&str> = command.iter().map(String::as_str).collect();
                // `ip rule del` deletes one matching rule per call and fails once none is left.
                for _ in 0..MAX_DUPLICATES {
                    if ip(&args).is_err() {
                        break;
                    }
                }
            }
            if super::interface_exists(interface) {
                let _ = ip(&[
                    family.flag(),
                    "route",
                    "flush",
                    "table",
                    &table,
                    "proto",
                    PROTOCOL,
                ]);
            }
        }
    }
}

/// Warns when the kernel does not forward a family that `routes` (the networks this node
/// routes for the mesh) holds: turning forwarding on is the operator's job, as with
/// wg-quick, and without it the routes are announced but lead nowhere.
pub fn warn_without_forwarding(routes: &[IpNet]) {
    let sysctls = [
        (Family::V4, "/proc/sys/net/ipv4/ip_forward"),
        (Family::V6, "/proc/sys/net/ipv6/conf/all/forwarding"),
    ];
    for (family, path) in sysctls {
        let routed = routes.iter().any(|route| match route {
            IpNet::V4(_) => family == Family::V4,
            IpNet::V6(_) => family == Family::V6,
        });
        let forwarding = std::fs::read_to_string(path).is_ok_and(|value| value.trim() != "0");
        if routed && !forwarding {
            tracing::warn!(
                sysctl = path,
                "interface.routes lists networks of a family this host does not forward; \
                 enable forwarding (and NAT if the network has no route back)"
            );
        }
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

    fn joined(commands: Vec<Vec<String>>) -> Vec<String> {
        commands.into_iter().map(|c| c.join(" ")).collect()
    }

    #[test]
    fn only_a_zero_length_prefix_asks_for_the_default_route() {
        assert_eq!(
            default_route_families(&nets(&["10.77.0.2/32", "0.0.0.0/1", "128.0.0.0/1"])),
            vec![]
        );
        assert_eq!(
            default_route_families(&nets(&["::/0", "10.77.0.2/32", "0.0.0.0/0", "::/0"])),
            vec![Family::V4, Family::V6]
        );
        assert_eq!(default_route_families(&nets(&["::/0"])), vec![Family::V6]);
    }

    #[test]
    fn the_default_route_goes_in_like_wg_quick_with_the_suppress_rule_last() {
        let routing = PolicyRouting {
            table: 1234,
            fwmark: 77,
        };
        assert_eq!(
            joined(routing.install_commands("wice0", Family::V4)),
            vec![
                "-4 route add 0.0.0.0/0 dev wice0 table 1234 proto 119",
                "-4 rule add not fwmark 77 table 1234 protocol 119",
                "-4 rule add not fwmark 77 table main suppress_prefixlength 0 protocol 119",
            ]
        );
        assert_eq!(
            joined(routing.install_commands("wice0", Family::V6))[0],
            "-6 route add ::/0 dev wice0 table 1234 proto 119"
        );
    }

    #[test]
    fn removal_deletes_only_rules_with_our_mark_table_and_tag() {
        assert_eq!(
            joined(PolicyRouting::default().rule_removal_commands(Family::V6)),
            vec![
                "-6 rule del not fwmark 51820 table 51820 protocol 119",
                "-6 rule del not fwmark 51820 table main suppress_prefixlength 0 protocol 119",
            ]
        );
    }
}
