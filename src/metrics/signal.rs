//! `wice signal`'s metrics, from its counters.

use super::Exposition;
use crate::signaling::server::CounterSnapshot;

/// The signaling server's metrics in the text exposition format.
pub fn render_signal(c: &CounterSnapshot) -> String {
    let mut out = Exposition::default();
    out.build_info();
    let counters: [(&str, &str, u64); 4] = [
        (
            "wice_signal_envelopes_accepted_total",
            "Well-formed envelopes taken for fan-out.",
            c.accepted,
        ),
        (
            "wice_signal_envelopes_delivered_total",
            "Envelope copies queued to a subscriber.",
            c.delivered,
        ),
        (
            "wice_signal_connections_closed_handshake_timeout_total",
            "Connections closed for sending no request within the handshake timeout.",
            c.closed_handshake_timeout,
        ),
        (
            "wice_signal_connections_closed_idle_total",
            "Connections closed after the idle timeout without a call.",
            c.closed_idle,
        ),
    ];
    for (name, help, value) in counters {
        out.family(name, "counter", help);
        out.sample(name, &[], value as f64);
    }
    out.family(
        "wice_signal_refused_total",
        "counter",
        "Envelopes, subscriptions and connections refused or dropped, by reason.",
    );
    for (reason, value) in [
        ("no_subscriber", c.dropped_no_subscriber),
        ("queue_full", c.dropped_queue_full),
        ("oversized", c.rejected_oversized),
        ("malformed", c.rejected_malformed),
        ("auth_failed", c.auth_failed),
        ("rate_limited", c.rate_limited),
        ("capacity", c.refused_capacity),
        ("unauthenticated_publish", c.unauthenticated_publish),
        ("sender_not_proven", c.sender_not_proven),
        ("over_budget_source", c.over_budget_source),
        ("over_budget_global", c.over_budget_global),
    ] {
        out.sample(
            "wice_signal_refused_total",
            &[("reason", reason)],
            value as f64,
        );
    }
    for (name, help, value) in [
        (
            "wice_signal_subscriptions",
            "Subscriptions active now.",
            c.subscriptions,
        ),
        (
            "wice_signal_connections",
            "Connections open now.",
            c.connections,
        ),
        (
            "wice_signal_queued_bytes",
            "Bytes of envelopes queued now, over every subscriber.",
            c.queued_bytes,
        ),
    ] {
        out.family(name, "gauge", help);
        out.sample(name, &[], value as f64);
    }
    out.finish()
}
