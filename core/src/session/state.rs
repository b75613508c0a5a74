//! The session's connection state (`wice status` words it).
//!
//! The ICE agent (`is`) knows only New, Checking, Connected, Completed and Disconnected; the
//! session adds what happens around the agent: Unknown (no agent yet), Idle (waiting for the
//! remote's credentials), Connecting (remote candidates arrived), Failed (our give-up timer
//! fired before a path worked) and Closed (agent dropped, a restart is pending).

/// Where one peer's session is.
///
/// ```text
/// Unknown → Idle → New → Connecting → Checking → Connected ⇄ Completed
///            ↑                           │            ↓          ↓
///            │                         Failed → Closed ← Disconnected
///            └───────────────────────────────────┘ (after the restart back-off)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// No ICE agent exists.
    Unknown,
    /// An agent exists and our credentials are published (and resent with back-off); the
    /// remote's credentials are not known yet.
    Idle,
    /// The remote's credentials are known; local candidates are being gathered.
    New,
    /// The first remote candidate arrived; connectivity checks are about to start.
    Connecting,
    /// The agent is checking candidate pairs.
    Checking,
    /// A pair works and is nominated; checks for better pairs may go on.
    Connected,
    /// A pair works and no better one is being checked.
    Completed,
    /// The nominated pair stopped answering; it may come back before the give-up timer fires.
    Disconnected,
    /// No pair worked before the give-up timer fired.
    Failed,
    /// The agent was dropped; a new session starts after the restart back-off.
    Closed,
}

impl SessionState {
    /// Whether a nominated path carries traffic in this state.
    pub fn is_connected(self) -> bool {
        matches!(self, Self::Connected | Self::Completed)
    }

    /// The session state an agent state change moves to, if any (the agent's New is the
    /// session's Idle/New/Connecting, which the session tracks itself).
    pub(super) fn from_agent(state: is::IceConnectionState) -> Option<Self> {
        match state {
            is::IceConnectionState::New => None,
            is::IceConnectionState::Checking => Some(Self::Checking),
            is::IceConnectionState::Connected => Some(Self::Connected),
            is::IceConnectionState::Completed => Some(Self::Completed),
            is::IceConnectionState::Disconnected => Some(Self::Disconnected),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_states_map_onto_session_states_and_new_is_left_to_the_session() {
        use is::IceConnectionState as Ice;
        assert_eq!(SessionState::from_agent(Ice::New), None);
        assert_eq!(
            SessionState::from_agent(Ice::Checking),
            Some(SessionState::Checking)
        );
        assert_eq!(
            SessionState::from_agent(Ice::Connected),
            Some(SessionState::Connected)
        );
        assert_eq!(
            SessionState::from_agent(Ice::Completed),
            Some(SessionState::Completed)
        );
        assert_eq!(
            SessionState::from_agent(Ice::Disconnected),
            Some(SessionState::Disconnected)
        );
    }

    #[test]
    fn only_connected_and_completed_carry_traffic() {
        assert!(SessionState::Connected.is_connected());
        assert!(SessionState::Completed.is_connected());
        assert!(!SessionState::Disconnected.is_connected());
    }
}
