//! Community membership metrics: current members, joins, leaves, expiries and announcements
//! accepted or refused by reason. Reasons are a fixed set, so the label set is bounded.

use super::Exposition;
use crate::status::CommunityStatus;

/// Appends the community families for `interface` (nothing when the node is in none).
pub(super) fn render_community(
    out: &mut Exposition,
    interface: &str,
    community: Option<&CommunityStatus>,
) {
    let Some(community) = community else {
        return;
    };
    let labels = [("interface", interface)];
    let mut one = |name: &str, kind: &str, help: &str, value: u64| {
        out.family(name, kind, help);
        out.sample(name, &labels, value as f64);
    };
    one(
        "wice_community_members",
        "gauge",
        "Community members now (discovered peers).",
        community.members,
    );
    one(
        "wice_community_members_joined_total",
        "counter",
        "Community members that joined (again, after leaving or expiring).",
        community.joined,
    );
    one(
        "wice_community_members_left_total",
        "counter",
        "Community members that said they leave.",
        community.left,
    );
    one(
        "wice_community_members_expired_total",
        "counter",
        "Community members that went silent for expire_after.",
        community.expired,
    );
    one(
        "wice_community_announcements_received_total",
        "counter",
        "Community announcements received.",
        community.announcements_received,
    );
    one(
        "wice_community_announcements_accepted_total",
        "counter",
        "Community announcements accepted (a join, a refresh, a new profile, a leave).",
        community.announcements_accepted,
    );
    let name = "wice_community_announcements_rejected_total";
    out.family(
        name,
        "counter",
        "Community announcements refused, by reason.",
    );
    for (reason, count) in &community.announcements_rejected {
        out.sample(
            name,
            &[("interface", interface), ("reason", reason)],
            *count as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wice_core::community::MembershipCounters;

    #[test]
    fn community_counters_are_exposed_with_every_refusal_reason_and_nothing_without_a_community() {
        let mut none = Exposition::default();
        render_community(&mut none, "wg0", None);
        assert_eq!(none.finish(), "");

        let counters = MembershipCounters {
            received: 10,
            accepted: 7,
            not_allowed: 2,
            bad_signature: 1,
            joined: 5,
            left: 1,
            expired: 2,
            members: 2,
            ..Default::default()
        };
        let mut out = Exposition::default();
        render_community(
            &mut out,
            "wg0",
            Some(&CommunityStatus::from_counters(&counters)),
        );
        let text = out.finish();
        for line in [
            "# TYPE wice_community_members gauge",
            "wice_community_members{interface=\"wg0\"} 2",
            "wice_community_members_joined_total{interface=\"wg0\"} 5",
            "wice_community_members_left_total{interface=\"wg0\"} 1",
            "wice_community_members_expired_total{interface=\"wg0\"} 2",
            "wice_community_announcements_received_total{interface=\"wg0\"} 10",
            "wice_community_announcements_accepted_total{interface=\"wg0\"} 7",
            "wice_community_announcements_rejected_total{interface=\"wg0\",reason=\"not_allowed\"} 2",
            "wice_community_announcements_rejected_total{interface=\"wg0\",reason=\"bad_signature\"} 1",
            "wice_community_announcements_rejected_total{interface=\"wg0\",reason=\"stale\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        let reasons = text
            .lines()
            .filter(|l| l.starts_with("wice_community_announcements_rejected_total{"))
            .count();
        assert_eq!(reasons, counters.rejected_by_reason().len());
    }
}
