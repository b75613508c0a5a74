//! NAT routers with nftables (`nft -f -` inside the router's namespace).
//!
//! Both NAT kinds filter the way home routers do: from the WAN side only replies to what the
//! LAN sent (conntrack `established,related`) get in, to the LAN or to the router itself, so
//! filtering is address- and port-dependent. Dropping unsolicited WAN input matters for the
//! mapping too: a packet that arrives for an unmapped port would otherwise create a conntrack
//! entry that later clashes with a LAN host's mapping and moves its port.
//!
//! - [`NatKind::EndpointIndependent`]: `masquerade` keeps a LAN socket's external port for
//!   every destination (port preserving when the port is free).
//! - [`NatKind::Symmetric`]: `masquerade fully-random` picks a fresh external port per
//!   destination.
//!
//! There are no DNAT rules, so there is no hairpinning: a LAN host that sends to its own
//! router's public address reaches the router, where nothing listens.

/// How a site's router connects its LAN to the internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NatKind {
    /// No NAT and no filter: the LAN's addresses are public and routed.
    Public,
    /// Endpoint-independent mapping, address- and port-dependent filtering.
    EndpointIndependent,
    /// Endpoint-dependent ("symmetric") mapping, address- and port-dependent filtering.
    Symmetric,
}

impl NatKind {
    /// A short label: `public`, `eim`, `symmetric`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::EndpointIndependent => "eim",
            Self::Symmetric => "symmetric",
        }
    }

    /// Whether this kind needs `nft`.
    pub fn needs_nft(self) -> bool {
        self != Self::Public
    }
}

impl std::fmt::Display for NatKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// The nftables ruleset for a router whose WAN interface is `wan`; `None` for a public site.
pub fn ruleset(kind: NatKind, wan: &str) -> Option<String> {
    let masquerade = match kind {
        NatKind::Public => return None,
        NatKind::EndpointIndependent => "masquerade",
        NatKind::Symmetric => "masquerade fully-random",
    };
    Some(format!(
        r#"table ip wicelab_nat {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "{wan}" {masquerade}
    }}
}}
table inet wicelab_filter {{
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname "{wan}" ct state established,related accept
        iifname "{wan}" drop
    }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        iifname "{wan}" ct state established,related accept
        iifname "{wan}" drop
    }}
}}
"#
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_site_has_no_rules_and_the_nat_kinds_differ_only_in_port_choice() {
        assert_eq!(ruleset(NatKind::Public, "wan0"), None);
        let eim = ruleset(NatKind::EndpointIndependent, "wan0").expect("rules");
        let sym = ruleset(NatKind::Symmetric, "wan0").expect("rules");
        assert!(eim.contains("oifname \"wan0\" masquerade\n"));
        assert!(sym.contains("oifname \"wan0\" masquerade fully-random\n"));
        assert_eq!(
            eim.replace(" masquerade\n", " masquerade fully-random\n"),
            sym
        );
        assert_eq!(eim.matches("iifname \"wan0\" drop").count(), 2);
    }
}
