//! The words of `wice netcheck`: text for people, JSON (stable keys) for scripts and tests.

use std::fmt::Write as _;

use serde_json::{Value, json};

use wice_core::netcheck::{Filtering, Mapping, ProbeResult, Verdict};

use super::{FamilyCheck, Ipv6Check, NetcheckOutput};

/// `no-nat`, `endpoint-independent`, … (JSON values).
pub(crate) fn mapping_code(mapping: Mapping) -> &'static str {
    match mapping {
        Mapping::NoNat => "no-nat",
        Mapping::EndpointIndependent => "endpoint-independent",
        Mapping::AddressDependent => "address-dependent",
        Mapping::AddressAndPortDependent => "address-and-port-dependent",
        Mapping::EndpointDependent => "endpoint-dependent",
        Mapping::Unknown => "unknown",
    }
}

/// `endpoint-independent`, … (JSON values).
pub(crate) fn filtering_code(filtering: Filtering) -> &'static str {
    match filtering {
        Filtering::EndpointIndependent => "endpoint-independent",
        Filtering::AddressDependent => "address-dependent",
        Filtering::AddressAndPortDependent => "address-and-port-dependent",
        Filtering::Unknown => "unknown",
    }
}

fn mapping_words(mapping: Mapping) -> &'static str {
    match mapping {
        Mapping::NoNat => "no NAT (the server saw this host's own address)",
        Mapping::EndpointIndependent => "endpoint-independent (one public port for every peer)",
        Mapping::AddressDependent => "address-dependent (a new public port per peer address)",
        Mapping::AddressAndPortDependent => {
            "address-and-port-dependent (\"symmetric\": a new public port per peer address and port)"
        }
        Mapping::EndpointDependent => {
            "endpoint-dependent (servers saw different ports: a symmetric NAT)"
        }
        Mapping::Unknown => "unknown",
    }
}

fn filtering_words(filtering: Filtering) -> &'static str {
    match filtering {
        Filtering::EndpointIndependent => "endpoint-independent (anyone may send in)",
        Filtering::AddressDependent => "address-dependent (only addresses we sent to)",
        Filtering::AddressAndPortDependent => {
            "address-and-port-dependent (only address and port pairs we sent to)"
        }
        Filtering::Unknown => "unknown (the server ignored CHANGE-REQUEST)",
    }
}

/// `open`, `direct-likely`, … (JSON values).
pub(crate) fn verdict_code(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::NoServers => "no-servers",
        Verdict::UdpBlocked => "udp-blocked",
        Verdict::Open => "open",
        Verdict::DirectLikely => "direct-likely",
        Verdict::RelayForSymmetricPeers { .. } => "relay-for-symmetric-peers",
        Verdict::Unknown => "unknown",
    }
}

/// The one line a person reads.
pub(crate) fn verdict_words(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::NoServers => "nothing checked: no STUN or TURN server of this address family",
        Verdict::UdpBlocked => {
            "UDP to every STUN/TURN server failed: no direct or relayed paths; check the firewall for outgoing UDP"
        }
        Verdict::Open => "direct connections likely: a public address without a filter",
        Verdict::DirectLikely => "direct connections likely",
        Verdict::RelayForSymmetricPeers {
            relay_answers: true,
        } => {
            "needs a relay for peers behind symmetric or port-restricted NATs (the configured TURN server answers)"
        }
        Verdict::RelayForSymmetricPeers {
            relay_answers: false,
        } => {
            "needs a relay for peers behind symmetric or port-restricted NATs, and no configured TURN server answers: add one"
        }
        Verdict::Unknown => {
            "NAT behaviour unknown: no server does RFC 5780 (coturn with two listening IPs does); list one, or two STUN servers at different addresses"
        }
    }
}

fn family_text(out: &mut String, name: &str, family: &FamilyCheck) {
    let socket = &family.socket;
    let _ = match socket.node_port_taken {
        Some(port) => writeln!(
            out,
            "{name}: from UDP {} (the node is up and holds port {port}: a fresh socket, which the NAT treats alike)",
            socket.bound
        ),
        None => writeln!(out, "{name}: from UDP {}", socket.bound),
    };
    for (server, answer) in family.servers.iter().zip(&family.report.servers) {
        let label = if server.turn && !server.label.starts_with("turn:") {
            format!("{} (TURN too)", server.label)
        } else {
            server.label.clone()
        };
        let _ = match answer.result {
            ProbeResult::Answered(a) => writeln!(
                out,
                "  {label:<32} answered in {:.1} ms, saw us at {}",
                a.rtt.as_secs_f64() * 1000.0,
                a.answer.mapped
            ),
            _ => writeln!(
                out,
                "  {label:<32} no answer over UDP in {:.1} s",
                wice_core::netcheck::GIVE_UP_AFTER.as_secs_f64()
            ),
        };
    }
    let public: Vec<String> = family
        .report
        .public_addresses
        .iter()
        .map(ToString::to_string)
        .collect();
    if !public.is_empty() {
        let _ = writeln!(out, "  public addresses: {}", public.join(", "));
    }
    match family.report.behaviour {
        Some(b) => {
            let _ = writeln!(
                out,
                "  NAT (RFC 5780 with {}, other address {}):",
                b.server, b.other
            );
            let _ = writeln!(out, "    mapping:   {}", mapping_words(b.mapping));
            let _ = writeln!(out, "    filtering: {}", filtering_words(b.filtering));
        }
        None if family.report.udp_works() => {
            let _ = writeln!(
                out,
                "  NAT: no server does RFC 5780; mapping {}",
                mapping_words(family.report.mapping)
            );
        }
        None => {}
    }
}

/// The text form.
pub fn render(output: &NetcheckOutput) -> String {
    let mut out = String::new();
    if let Some(v4) = &output.ipv4 {
        family_text(&mut out, "IPv4", v4);
    }
    match &output.ipv6 {
        Ipv6Check::Checked(v6) => {
            family_text(&mut out, "IPv6", v6);
            let _ = writeln!(
                out,
                "  IPv6 verdict: {}",
                if v6.report.udp_works() {
                    verdict_words(v6.verdict)
                } else {
                    "no IPv6 server answered"
                }
            );
        }
        Ipv6Check::NoServer { global_address } => {
            let _ = writeln!(
                out,
                "IPv6: not checked, no IPv6 STUN/TURN server configured; {}",
                match global_address {
                    Some(a) => format!("this host has the global address {a}"),
                    None => "this host has no global IPv6 address".to_owned(),
                }
            );
        }
        Ipv6Check::NoSocket(why) => {
            let _ = writeln!(out, "IPv6: not checked, {why}");
        }
    }
    let _ = writeln!(out, "verdict: {}", verdict_words(output.verdict));
    out
}

fn family_json(family: &FamilyCheck) -> Value {
    let servers: Vec<Value> = family
        .servers
        .iter()
        .zip(&family.report.servers)
        .map(|(server, answer)| {
            json!({
                "server": server.label,
                "address": server.address.to_string(),
                "turn": server.turn,
                "answered": answer.mapped().is_some(),
                "rtt_ms": answer.rtt().map(|d| d.as_secs_f64() * 1000.0),
                "mapped": answer.mapped().map(|m| m.to_string()),
            })
        })
        .collect();
    let behaviour = family.report.behaviour.map(|b| {
        json!({
            "server": b.server.to_string(),
            "other_address": b.other.to_string(),
            "mapped": b.mapped.to_string(),
            "mapping": mapping_code(b.mapping),
            "filtering": filtering_code(b.filtering),
        })
    });
    json!({
        "socket": family.socket.bound.to_string(),
        "node_port_taken": family.socket.node_port_taken,
        "servers": servers,
        "public_addresses": family.report.public_addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "rfc5780": behaviour,
        "mapping": mapping_code(family.report.mapping),
        "filtering": family.report.behaviour.map(|b| filtering_code(b.filtering)),
        "verdict": verdict_code(family.verdict),
    })
}

/// The JSON form (stable keys: add, do not rename).
pub fn to_json(output: &NetcheckOutput) -> Value {
    let ipv6 = match &output.ipv6 {
        Ipv6Check::Checked(v6) => family_json(v6),
        Ipv6Check::NoServer { global_address } => json!({
            "checked": false,
            "global_address": global_address.map(|a| a.to_string()),
        }),
        Ipv6Check::NoSocket(why) => json!({ "checked": false, "error": why }),
    };
    json!({
        "ipv4": output.ipv4.as_ref().map(family_json),
        "ipv6": ipv6,
        "verdict": verdict_code(output.verdict),
        "verdict_text": verdict_words(output.verdict),
    })
}
