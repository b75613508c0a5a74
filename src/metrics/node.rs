//! `wice up`'s metrics, from the same [`Status`] the control socket serves.

use super::Exposition;
use crate::status::Status;

/// The ICE/session states a peer can report (`PeerStatus::state`), a fixed set.
const STATES: [&str; 10] = [
    "unknown",
    "idle",
    "new",
    "connecting",
    "checking",
    "connected",
    "disconnected",
    "failed",
    "closed",
    "waiting",
];
/// The path types a peer can report (`PeerStatus::path`), a fixed set.
const PATHS: [&str; 6] = ["static", "host", "srflx", "prflx", "relay", "none"];

/// The node's metrics in the text exposition format.
pub fn render_node(status: &Status) -> String {
    let mut out = Exposition::default();
    out.build_info();
    let iface = status.interface.as_str();

    out.family("wice_peers", "gauge", "Configured peers.");
    out.sample(
        "wice_peers",
        &[("interface", iface)],
        status.peers.len() as f64,
    );
    out.family(
        "wice_peers_connected",
        "gauge",
        "Peers whose state is connected.",
    );
    let connected = status
        .peers
        .iter()
        .filter(|p| p.state == "connected")
        .count();
    out.sample(
        "wice_peers_connected",
        &[("interface", iface)],
        connected as f64,
    );

    super::community::render_community(&mut out, iface, status.community.as_ref());

    let peer_labels = |key: &str| -> [(&'static str, String); 2] {
        [
            ("interface", iface.to_owned()),
            ("public_key", key.to_owned()),
        ]
    };
    let per_peer = |out: &mut Exposition,
                    name: &str,
                    kind: &str,
                    help: &str,
                    value: &dyn Fn(&crate::status::PeerStatus) -> Option<f64>| {
        out.family(name, kind, help);
        for peer in &status.peers {
            if let Some(v) = value(peer) {
                let labels = peer_labels(&peer.public_key);
                let labels: Vec<(&str, &str)> =
                    labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                out.sample(name, &labels, v);
            }
        }
    };
    per_peer(
        &mut out,
        "wice_peer_receive_bytes_total",
        "counter",
        "Bytes received from the peer through WireGuard.",
        &|p| Some(p.rx_bytes as f64),
    );
    per_peer(
        &mut out,
        "wice_peer_transmit_bytes_total",
        "counter",
        "Bytes sent to the peer through WireGuard.",
        &|p| Some(p.tx_bytes as f64),
    );
    per_peer(
        &mut out,
        "wice_peer_receive_packets_total",
        "counter",
        "Packets received from the peer through WireGuard (decrypted).",
        &|p| Some(p.rx_packets as f64),
    );
    per_peer(
        &mut out,
        "wice_peer_transmit_packets_total",
        "counter",
        "Packets sent to the peer through WireGuard (sealed, or queued for a handshake).",
        &|p| Some(p.tx_packets as f64),
    );
    per_peer(
        &mut out,
        "wice_peer_last_handshake_age_seconds",
        "gauge",
        "Seconds since the last completed handshake (absent before the first).",
        &|p| p.last_handshake_secs.map(|s| s as f64),
    );
    per_peer(
        &mut out,
        "wice_peer_rtt_seconds",
        "gauge",
        "Round-trip time of the last handshake (absent before the first).",
        &|p| p.handshake_rtt_ms.map(|ms| f64::from(ms) / 1e3),
    );
    per_peer(
        &mut out,
        "wice_peer_dropped_source_not_allowed_total",
        "counter",
        "Decrypted packets dropped because their source is not in the peer's allowed IPs.",
        &|p| Some(p.dropped_source_not_allowed as f64),
    );
    per_peer(
        &mut out,
        "wice_peer_ice_restarts_total",
        "counter",
        "ICE restarts of the peer's session (ICE peers only).",
        &|p| p.restarts.map(|r| r as f64),
    );

    one_hot(
        &mut out,
        status,
        "wice_peer_state",
        "state",
        "1 for the peer's current state (ICE session state, or connected/waiting for static peers).",
        &STATES,
        |p| &p.state,
    );
    one_hot(
        &mut out,
        status,
        "wice_peer_path",
        "path",
        "1 for how the peer's current path was found: static, host, srflx, prflx, relay, none.",
        &PATHS,
        |p| &p.path,
    );

    out.family(
        "wice_dropped_total",
        "counter",
        "Datagrams and packets dropped, by reason.",
    );
    for (reason, count) in &status.drops {
        out.sample(
            "wice_dropped_total",
            &[("interface", iface), ("reason", reason)],
            *count as f64,
        );
    }
    out.finish()
}

/// One series per peer, labelled with the current value of a fixed-set field (values outside
/// the set are reported as `other`, so a new state never grows the label set unexpectedly).
fn one_hot(
    out: &mut Exposition,
    status: &Status,
    name: &str,
    label: &str,
    help: &str,
    allowed: &[&str],
    field: impl Fn(&crate::status::PeerStatus) -> &String,
) {
    out.family(name, "gauge", help);
    for peer in &status.peers {
        let value = field(peer).as_str();
        let value = if allowed.contains(&value) {
            value
        } else {
            "other"
        };
        out.sample(
            name,
            &[
                ("interface", status.interface.as_str()),
                ("public_key", peer.public_key.as_str()),
                (label, value),
            ],
            1u8,
        );
    }
}
