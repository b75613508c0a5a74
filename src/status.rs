//! What `wice status` shows. The JSON field names are a stable interface:
//! scripts and tests read them. Add fields; do not rename or remove them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use wice_datapath::{Engine, PeerStats};

use wice_core::ice::{
    ControllerCounters, NatEvidence, PathKind, PeerIceStatus, PeerReason, RelayFailure, RelayNote,
};
use wice_core::keys::PublicKey;
use wice_core::session::SessionState;

/// After this long without a handshake a WireGuard session is dead
/// (REJECT_AFTER_TIME, WireGuard paper §6.1).
pub(crate) const SESSION_LIFETIME: Duration = Duration::from_secs(180);

/// The whole node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// TUN interface name.
    pub interface: String,
    /// This node's public key, base64.
    pub public_key: String,
    /// UDP port in use.
    pub listen_port: u16,
    /// One entry per configured peer.
    pub peers: Vec<PeerStatus>,
    /// Device-wide drop counters by reason.
    pub drops: BTreeMap<String, u64>,
    /// Community membership, when the node is in a community.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community: Option<CommunityStatus>,
}

/// Community membership as the node sees it: current members and announcement counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CommunityStatus {
    /// Members now (discovered peers, static ones not included).
    pub members: u64,
    /// Members that joined since start (a member that comes back counts again).
    pub joined: u64,
    /// Members that said they leave.
    pub left: u64,
    /// Members that went silent for `expire_after`.
    pub expired: u64,
    /// Announcements received from the community's group delivery.
    pub announcements_received: u64,
    /// Announcements accepted (a join, a refresh, a new profile, a leave).
    pub announcements_accepted: u64,
    /// Announcements refused, by reason: `not_allowed` (allow/deny), `stale` (a replay or an
    /// old sequence), `bad_signature` (not a passphrase holder), `sender_mismatch`, `own`,
    /// `full`, `collision`, `not_a_member`. Every reason is listed, zero or not.
    pub announcements_rejected: BTreeMap<String, u64>,
}

impl CommunityStatus {
    /// From the membership's counters.
    pub fn from_counters(counters: &wice_core::community::MembershipCounters) -> Self {
        Self {
            members: counters.members,
            joined: counters.joined,
            left: counters.left,
            expired: counters.expired,
            announcements_received: counters.received,
            announcements_accepted: counters.accepted,
            announcements_rejected: counters
                .rejected_by_reason()
                .iter()
                .map(|(reason, n)| ((*reason).to_owned(), *n))
                .collect(),
        }
    }

    /// Refused announcements, all reasons together.
    pub fn rejected(&self) -> u64 {
        self.announcements_rejected.values().sum()
    }

    fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "  community:  {} members ({} joined, {} left, {} expired)",
            self.members, self.joined, self.left, self.expired
        );
        let refused: Vec<String> = self
            .announcements_rejected
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(reason, n)| format!("{reason}={n}"))
            .collect();
        let refused = if refused.is_empty() {
            String::new()
        } else {
            format!(": {}", refused.join(" "))
        };
        let _ = writeln!(
            out,
            "  announcements: {} received, {} accepted, {} refused{refused}",
            self.announcements_received,
            self.announcements_accepted,
            self.rejected()
        );
    }
}

/// One peer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerStatus {
    /// Peer public key, base64.
    pub public_key: String,
    /// Peers with a static endpoint: `connected` (a handshake in the last 180 s) or `waiting`
    /// (none yet, or it expired). ICE peers: the session state, one of `unknown`, `idle`,
    /// `new`, `connecting`, `checking`, `connected` (ICE `completed` included), `disconnected`,
    /// `failed`, `closed`.
    pub state: String,
    /// How the endpoint was found: `static` (configured or learned from the peer's packets);
    /// for ICE peers the nominated path's type, `host`, `srflx`, `prflx` or `relay`, and
    /// `none` before one is nominated.
    pub path: String,
    /// Where packets for the peer go now, `ip:port`.
    pub endpoint: Option<String>,
    /// Networks routed to the peer.
    pub allowed_ips: Vec<String>,
    /// Seconds since the last handshake, if any.
    pub last_handshake_secs: Option<u64>,
    /// Plaintext bytes received from the peer.
    pub rx_bytes: u64,
    /// Plaintext bytes sent to the peer.
    pub tx_bytes: u64,
    /// Packets received from the peer (decrypted).
    #[serde(default)]
    pub rx_packets: u64,
    /// Packets sent to the peer (sealed or queued for a handshake).
    #[serde(default)]
    pub tx_packets: u64,
    /// Round-trip time of the last handshake, milliseconds.
    pub handshake_rtt_ms: Option<u32>,
    /// Packets from the peer dropped because their source was not in its allowed IPs.
    pub dropped_source_not_allowed: u64,
    /// When not connected, or connected only through a relay: why, in words a person can
    /// act on.
    pub reason: Option<String>,
    /// ICE peers: our side of the nominated candidate pair, `ip:port`.
    #[serde(default)]
    pub local_candidate: Option<String>,
    /// ICE peers: the peer's side of the nominated candidate pair, `ip:port`.
    #[serde(default)]
    pub remote_candidate: Option<String>,
    /// ICE peers: our current session id.
    #[serde(default)]
    pub session_id: Option<u64>,
    /// ICE peers: the version of our latest offer in that session.
    #[serde(default)]
    pub session_version: Option<u64>,
    /// ICE peers: how many times a new local session replaced the first.
    #[serde(default)]
    pub restarts: Option<u64>,
    /// ICE peers: remote candidates the session's agent holds (bounded however many the
    /// peer signals).
    #[serde(default)]
    pub remote_candidates: Option<usize>,
}

impl Status {
    /// Snapshot of a running engine, with the ICE view of the peers that use ICE.
    pub fn collect(
        interface: &str,
        listen_port: u16,
        engine: &Engine,
        ice: &BTreeMap<PublicKey, PeerIceStatus>,
        ice_counters: ControllerCounters,
    ) -> Self {
        let mut drops: BTreeMap<String, u64> = engine
            .drops
            .snapshot()
            .fields()
            .iter()
            .map(|(name, value)| ((*name).to_owned(), *value))
            .collect();
        drops.insert("ice_unmatched_stun".to_owned(), ice_counters.unmatched_stun);
        drops.insert(
            "ice_relayed_wireguard_unbound".to_owned(),
            ice_counters.relayed_wireguard_unbound,
        );
        drops.insert(
            "ice_unexpected_datagrams".to_owned(),
            ice_counters.unexpected_datagrams,
        );
        drops.insert("ice_unknown_sender".to_owned(), ice_counters.unknown_sender);
        drops.insert("ice_rate_limited".to_owned(), ice_counters.rate_limited);
        for (name, value) in [
            (
                "ice_refused_candidates",
                ice_counters.refused_candidates.total(),
            ),
            ("ice_permissions_refused", ice_counters.permissions_refused),
            ("ice_channels_refused", ice_counters.channels_refused),
            (
                "ice_stale_source_transmits",
                ice_counters.stale_source_transmits,
            ),
            (
                "ice_relay_allocations_lost",
                ice_counters.relay_allocations_lost,
            ),
        ] {
            drops.insert(name.to_owned(), value);
        }
        Self {
            interface: interface.to_owned(),
            public_key: PublicKey::from_bytes(engine.public_key()).to_base64(),
            listen_port,
            peers: engine
                .peer_stats()
                .iter()
                .map(|stats| {
                    let key = PublicKey::from_bytes(stats.public_key);
                    let mut peer = PeerStatus::from_stats(stats);
                    if let Some(ice) = ice.get(&key) {
                        peer.apply_ice(ice);
                    }
                    peer
                })
                .collect(),
            drops,
            community: None,
        }
    }
}

/// A session state as status shows it; `completed` counts as `connected`.
fn state_word(state: SessionState) -> &'static str {
    match state {
        SessionState::Unknown => "unknown",
        SessionState::Idle => "idle",
        SessionState::New => "new",
        SessionState::Connecting => "connecting",
        SessionState::Checking => "checking",
        SessionState::Connected | SessionState::Completed => "connected",
        SessionState::Disconnected => "disconnected",
        SessionState::Failed => "failed",
        SessionState::Closed => "closed",
    }
}

/// A path kind as status and the logs show it: `host`, `srflx`, `prflx` or `relay`.
pub(crate) fn path_word(kind: PathKind) -> &'static str {
    match kind {
        PathKind::Host => "host",
        PathKind::Srflx => "srflx",
        PathKind::Prflx => "prflx",
        PathKind::Relay => "relay",
    }
}

fn relay_failure_words(why: RelayFailure) -> &'static str {
    match why {
        RelayFailure::LostAfterUnansweredChecks => {
            "the server lost the allocation (437 to a Refresh after relayed checks went unanswered)"
        }
        RelayFailure::AllocationMismatch => {
            "the server lost the allocation (437 Allocation Mismatch)"
        }
        RelayFailure::StoppedAnswering => {
            "the server stopped answering (relayed checks and a Refresh unanswered)"
        }
        RelayFailure::NoAnswerToAllocate => {
            "no answer to Allocate (server unreachable, or wrong credentials)"
        }
        RelayFailure::Closed => {
            "allocation closed by the server or refused (check the credentials)"
        }
        RelayFailure::Refused => "the server refused the allocation",
    }
}

impl PeerStatus {
    fn from_stats(stats: &PeerStats) -> Self {
        let connected = stats
            .last_handshake
            .is_some_and(|age| age < SESSION_LIFETIME);
        let reason = match (connected, stats.endpoint, stats.last_handshake) {
            (true, _, _) => None,
            (false, None, _) => Some(
                "no endpoint known: set peer.endpoint or wait for the peer to contact us"
                    .to_owned(),
            ),
            (false, Some(_), None) => Some(
                "no handshake yet: check that the peer runs and the endpoint is reachable over UDP"
                    .to_owned(),
            ),
            (false, Some(_), Some(_)) => {
                Some("last handshake expired: the peer stopped answering".to_owned())
            }
        };
        Self {
            public_key: PublicKey::from_bytes(stats.public_key).to_base64(),
            state: if connected { "connected" } else { "waiting" }.to_owned(),
            path: "static".to_owned(),
            endpoint: stats.endpoint.map(|e| e.to_string()),
            allowed_ips: stats.allowed_ips.iter().map(ToString::to_string).collect(),
            last_handshake_secs: stats.last_handshake.map(|d| d.as_secs()),
            rx_bytes: stats.rx_bytes,
            tx_bytes: stats.tx_bytes,
            rx_packets: stats.rx_packets,
            tx_packets: stats.tx_packets,
            handshake_rtt_ms: stats.handshake_rtt_ms,
            dropped_source_not_allowed: stats.dropped_source_not_allowed,
            reason,
            local_candidate: None,
            remote_candidate: None,
            session_id: None,
            session_version: None,
            restarts: None,
            remote_candidates: None,
        }
    }

    /// Overlays the ICE session's view on a peer without a static endpoint.
    fn apply_ice(&mut self, ice: &PeerIceStatus) {
        let handshake_current = self.reason.is_none();
        self.state = state_word(ice.state).to_owned();
        self.path = ice.path.map_or("none", path_word).to_owned();
        self.local_candidate = ice.local_candidate.map(|a| a.to_string());
        self.remote_candidate = ice.remote_candidate.map(|a| a.to_string());
        self.session_id = Some(ice.session_id);
        self.session_version = Some(ice.session_version);
        self.restarts = Some(ice.restarts);
        self.remote_candidates = Some(ice.remote_candidates);
        self.reason = match (&ice.reason, handshake_current) {
            (Some(reason), _) => Some(reason_words(reason)),
            (None, true) => None,
            (None, false) => {
                Some("path found; waiting for the WireGuard handshake over it".to_owned())
            }
        };
    }

    /// The human-readable form used by `wice status` without `--json`.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(out, "peer {}", self.public_key);
        let _ = writeln!(out, "  state:          {} ({})", self.state, self.path);
        let _ = writeln!(
            out,
            "  endpoint:       {}",
            self.endpoint.as_deref().unwrap_or("(none)")
        );
        if let (Some(local), Some(remote)) = (&self.local_candidate, &self.remote_candidate) {
            let _ = writeln!(out, "  candidates:     {local} -> {remote}");
        }
        if let (Some(id), Some(version)) = (self.session_id, self.session_version) {
            let restarts = self.restarts.unwrap_or(0);
            let _ = writeln!(
                out,
                "  session:        {id:016x} version {version}, {restarts} restarts"
            );
        }
        let _ = writeln!(out, "  allowed ips:    {}", self.allowed_ips.join(", "));
        let handshake = self
            .last_handshake_secs
            .map_or("never".to_owned(), |s| format!("{s} s ago"));
        let _ = writeln!(out, "  last handshake: {handshake}");
        let _ = writeln!(
            out,
            "  transfer:       {} B received, {} B sent",
            self.rx_bytes, self.tx_bytes
        );
        if self.dropped_source_not_allowed > 0 {
            let _ = writeln!(
                out,
                "  dropped:        {} packets from sources outside allowed ips",
                self.dropped_source_not_allowed
            );
        }
        if let Some(reason) = &self.reason {
            let label = if self.path == "relay" && self.state == "connected" {
                "why relayed"
            } else {
                "why not connected"
            };
            let _ = writeln!(out, "  {label}: {reason}");
        }
    }
}

/// The words for a peer's [`PeerReason`]: what it means and what to try.
pub fn reason_words(reason: &PeerReason) -> String {
    match reason {
        PeerReason::NoOfferFromPeer => {
            "no offer from peer: is it up, and on the same signaling server?".to_owned()
        }
        PeerReason::GatheringCandidates => "gathering local candidates".to_owned(),
        PeerReason::WaitingForPeerCandidates { local } => {
            format!("{local} local candidates sent; waiting for the peer's candidates")
        }
        PeerReason::Checking { pairs } => format!("checking {pairs} candidate pairs"),
        PeerReason::PathStoppedAnswering => {
            "the path stopped answering; checking again before giving up".to_owned()
        }
        PeerReason::BindingTurnChannel => "path found; binding a TURN channel for it".to_owned(),
        PeerReason::ChecksFailed { pairs, relay } => {
            let relay = relay_words(relay);
            if *pairs == 0 {
                format!(
                    "offers arrive but no candidate pair formed: the two sides share no usable address family or candidate type (check interfaces, STUN/TURN servers and ice.candidate_types); {relay}; retrying with back-off"
                )
            } else {
                format!(
                    "offers arrive but checks fail: UDP blocked? {pairs} candidate pairs failed; {relay}; retrying with back-off"
                )
            }
        }
        PeerReason::Relayed(evidence) => relayed_words(evidence),
    }
}

fn relay_words(note: &RelayNote) -> String {
    match note {
        RelayNote::TurnedOff => "relay candidates are turned off (ice.candidate_types)".to_owned(),
        RelayNote::NoTurnServer => "no TURN server configured".to_owned(),
        RelayNote::ServersFailed(failed) => failed
            .iter()
            .map(|(server, why)| format!("TURN {server}: {}", relay_failure_words(*why)))
            .collect::<Vec<_>>()
            .join("; "),
        RelayNote::DidNotWork => "the relay candidate did not work either".to_owned(),
    }
}

fn relayed_words(evidence: &NatEvidence) -> String {
    match (evidence.local_symmetric, evidence.peer_symmetric) {
        (Some(true), Some(true)) => {
            return "relayed because both sides are behind symmetric NATs (their public port changes per destination)".to_owned();
        }
        (Some(true), _) => {
            return "relayed because this node is behind a symmetric NAT (its public port changes per destination) and the peer's NAT does not let a new port in".to_owned();
        }
        (_, Some(true)) => {
            return "relayed because the peer is behind a symmetric NAT (its public port changes per destination) and this node's NAT does not let a new port in".to_owned();
        }
        _ => {}
    }
    if !evidence.local_srflx {
        return "relayed: no STUN server answered this node, so it has no public address to offer; check [[ice.servers]] and outgoing UDP".to_owned();
    }
    if !evidence.peer_srflx {
        return "relayed: the peer offered no public (srflx) address; its STUN server does not answer it".to_owned();
    }
    "relayed: direct checks between the two public addresses failed, so at least one NAT is symmetric or filters; `wice netcheck` on each side tells which".to_owned()
}

impl Status {
    /// The human-readable form of the whole node.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(out, "interface {}", self.interface);
        let _ = writeln!(out, "  public key: {}", self.public_key);
        let _ = writeln!(out, "  listening:  UDP {}", self.listen_port);
        let dropped: Vec<String> = self
            .drops
            .iter()
            .filter(|(_, v)| **v > 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !dropped.is_empty() {
            let _ = writeln!(out, "  dropped:    {}", dropped.join(" "));
        }
        if let Some(community) = &self.community {
            community.render(&mut out);
        }
        for peer in &self.peers {
            out.push('\n');
            peer.render(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn community_counters_show_in_json_and_in_words_and_a_node_outside_one_shows_none() {
        let counters = wice_core::community::MembershipCounters {
            received: 12,
            accepted: 9,
            not_allowed: 2,
            stale: 1,
            joined: 6,
            left: 1,
            expired: 1,
            members: 4,
            ..Default::default()
        };
        let mut status = Status {
            interface: "wg0".to_owned(),
            public_key: "k".to_owned(),
            listen_port: 51820,
            peers: Vec::new(),
            drops: BTreeMap::new(),
            community: None,
        };
        let json = serde_json::to_value(&status).unwrap();
        assert!(json.get("community").is_none(), "no community, no field");
        status.community = Some(CommunityStatus::from_counters(&counters));
        let json = serde_json::to_value(&status).unwrap();
        let community = &json["community"];
        assert_eq!(community["members"], 4);
        assert_eq!(community["joined"], 6);
        assert_eq!(community["left"], 1);
        assert_eq!(community["expired"], 1);
        assert_eq!(community["announcements_received"], 12);
        assert_eq!(community["announcements_accepted"], 9);
        assert_eq!(community["announcements_rejected"]["not_allowed"], 2);
        assert_eq!(community["announcements_rejected"]["stale"], 1);
        assert_eq!(community["announcements_rejected"]["bad_signature"], 0);
        assert_eq!(
            serde_json::from_value::<Status>(json).unwrap(),
            status,
            "round-trips"
        );
        let text = status.render();
        assert!(
            text.contains("  community:  4 members (6 joined, 1 left, 1 expired)\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "  announcements: 12 received, 9 accepted, 3 refused: not_allowed=2 stale=1\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn ice_states_read_as_status_words_with_completed_shown_as_connected() {
        assert_eq!(state_word(SessionState::Completed), "connected");
        assert_eq!(state_word(SessionState::Idle), "idle");
        assert_eq!(path_word(PathKind::Srflx), "srflx");
    }

    fn evidence(local: Option<bool>, peer: Option<bool>) -> PeerReason {
        PeerReason::Relayed(NatEvidence {
            local_srflx: true,
            peer_srflx: true,
            local_symmetric: local,
            peer_symmetric: peer,
        })
    }

    #[test]
    fn a_relayed_peer_is_told_which_side_is_symmetric() {
        assert_eq!(
            reason_words(&evidence(Some(true), Some(true))),
            "relayed because both sides are behind symmetric NATs (their public port changes per destination)"
        );
        assert!(
            reason_words(&evidence(Some(true), Some(false)))
                .starts_with("relayed because this node is behind a symmetric NAT")
        );
        assert!(
            reason_words(&evidence(None, Some(true)))
                .starts_with("relayed because the peer is behind a symmetric NAT")
        );
        assert!(reason_words(&evidence(None, None)).contains("`wice netcheck` on each side"));
        let no_stun = PeerReason::Relayed(NatEvidence::default());
        assert!(reason_words(&no_stun).starts_with("relayed: no STUN server answered this node"));
    }

    #[test]
    fn a_failing_peer_is_told_what_to_check() {
        assert_eq!(
            reason_words(&PeerReason::NoOfferFromPeer),
            "no offer from peer: is it up, and on the same signaling server?"
        );
        let failed = |pairs| PeerReason::ChecksFailed {
            pairs,
            relay: RelayNote::NoTurnServer,
        };
        assert_eq!(
            reason_words(&failed(4)),
            "offers arrive but checks fail: UDP blocked? 4 candidate pairs failed; no TURN server configured; retrying with back-off"
        );
        assert!(reason_words(&failed(0)).starts_with("offers arrive but no candidate pair formed"));
        let turn_failed = PeerReason::ChecksFailed {
            pairs: 1,
            relay: RelayNote::ServersFailed(vec![
                (
                    "203.0.113.1:3478".parse().unwrap(),
                    RelayFailure::NoAnswerToAllocate,
                ),
                ("203.0.113.2:3478".parse().unwrap(), RelayFailure::Refused),
            ]),
        };
        assert!(
            reason_words(&turn_failed).contains(
                "TURN 203.0.113.1:3478: no answer to Allocate (server unreachable, or wrong credentials); \
                 TURN 203.0.113.2:3478: the server refused the allocation; retrying with back-off"
            ),
            "{}",
            reason_words(&turn_failed)
        );
    }
}
