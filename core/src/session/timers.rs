//! The session's named deadlines and their back-off schedules.
//!
//! Three deadlines belong to the session itself and one to the ICE agent; [`Timers::earliest`]
//! takes the earliest of them, ties going to the order of [`TimeoutReason`]. Back-off doubles
//! without jitter so tests can assert exact instants; peers desynchronise anyway because
//! their restarts are triggered by different events.

use std::time::{Duration, Instant};

use crate::backoff::Backoff;

/// First resend of our credentials while the remote has not answered.
pub(crate) const RESEND_INITIAL: Duration = Duration::from_secs(1);
/// Longest gap between two resends while Idle.
pub const RESEND_MAX: Duration = Duration::from_secs(32);
/// How long a session may go without a working path (from learning the remote's
/// credentials, or from losing the nominated pair) before it is given up.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(30);
/// Wait after the first give-up before starting a new session.
pub(crate) const RESTART_INITIAL: Duration = Duration::from_secs(1);
/// Longest wait between a give-up and the next session.
pub const RESTART_MAX: Duration = Duration::from_secs(64);

/// How often the agent checks each pair while looking for a path (the agent's own default:
/// a failed pair is noticed within ~20 s).
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_secs(3);
/// How often a connected session checks its pairs (consent and NAT keepalive): below the
/// 30 s NAT timeout for unanswered UDP even if one check is lost, and slow enough that a
/// dozen idle peers cost a few wake-ups per second. A dead path is then noticed within
/// ~40 s instead of ~20 s: the agent retries from 250 ms as soon as a check goes
/// unanswered for half this interval.
pub(crate) const CONSENT_INTERVAL: Duration = Duration::from_secs(10);
/// Retransmissions of a check before its pair fails, while checking (the agent's default).
pub(crate) const CHECK_RETRANSMITS: usize = 9;
/// Retransmissions of a consent check before the pair fails, once connected: with 9 the
/// retries alone would reach the 10 s interval several times over.
pub(crate) const CONSENT_RETRANSMITS: usize = 7;
/// How often a connected session checks its path once no WireGuard traffic has crossed it for
/// [`PATH_IDLE_AFTER`]: still below the 30 s NAT timeout for UDP, at 40 % of the active cost.
/// A dead idle path is noticed within about a minute; traffic puts the path back on
/// [`CONSENT_INTERVAL`] at once.
pub(crate) const IDLE_CONSENT_INTERVAL: Duration = Duration::from_secs(25);
/// Retransmissions on the idle schedule: the agent spaces checks by its retransmission
/// back-off (250 ms doubling) capped at the interval, so 8 are needed to reach 25 s.
pub(crate) const IDLE_CONSENT_RETRANSMITS: usize = 8;
/// How long a path carries no traffic before it counts as idle (Tailscale's figure).
pub(crate) const PATH_IDLE_AFTER: Duration = Duration::from_secs(45);

/// Why the session wants [`super::Session::handle_timeout`] called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeoutReason {
    /// Publish our latest offer again: the remote has not answered yet (state Idle).
    ResendOffer,
    /// No path worked in time: fail, close and schedule a restart.
    GiveUp,
    /// The restart back-off after a give-up is over: start a new session.
    Restart,
    /// The ICE agent's own deadline (connectivity checks, keepalives, pair timeouts).
    Agent,
}

/// The session's own deadlines.
#[derive(Debug, Clone)]
pub(super) struct Timers {
    resend: Option<Instant>,
    resend_backoff: Backoff,
    give_up: Option<Instant>,
    restart: Option<Instant>,
    restart_backoff: Backoff,
}

impl Timers {
    pub(super) fn new() -> Self {
        Self {
            resend: None,
            resend_backoff: Backoff::new(RESEND_INITIAL, RESEND_MAX),
            give_up: None,
            restart: None,
            restart_backoff: Backoff::new(RESTART_INITIAL, RESTART_MAX),
        }
    }

    /// A new local session: nothing pending, resends start from [`RESEND_INITIAL`].
    pub(super) fn new_session(&mut self) {
        self.resend = None;
        self.resend_backoff.reset();
        self.give_up = None;
        self.restart = None;
    }

    /// Schedules the next resend, each one twice as far as the last.
    pub(super) fn arm_resend(&mut self, now: Instant) {
        self.resend = Some(now + self.resend_backoff.next_delay());
    }

    pub(super) fn stop_resend(&mut self) {
        self.resend = None;
    }

    pub(super) fn arm_give_up(&mut self, now: Instant) {
        self.give_up = Some(now + GIVE_UP_AFTER);
    }

    /// A path works: no give-up, and the next restart back-off starts from the beginning.
    pub(super) fn path_works(&mut self) {
        self.give_up = None;
        self.restart_backoff.reset();
    }

    /// After a give-up: only the restart is pending, each one twice as far as the last.
    pub(super) fn arm_restart(&mut self, now: Instant) {
        self.resend = None;
        self.give_up = None;
        self.restart = Some(now + self.restart_backoff.next_delay());
    }

    /// Clears and reports the deadline for `reason` if it is due at `now`.
    pub(super) fn take_due(&mut self, reason: TimeoutReason, now: Instant) -> bool {
        let slot = match reason {
            TimeoutReason::ResendOffer => &mut self.resend,
            TimeoutReason::GiveUp => &mut self.give_up,
            TimeoutReason::Restart => &mut self.restart,
            TimeoutReason::Agent => return false,
        };
        if slot.is_some_and(|at| at <= now) {
            *slot = None;
            true
        } else {
            false
        }
    }

    /// The earliest of our deadlines and the agent's.
    pub(super) fn earliest(&self, agent: Option<Instant>) -> Option<(Instant, TimeoutReason)> {
        [
            (self.resend, TimeoutReason::ResendOffer),
            (self.give_up, TimeoutReason::GiveUp),
            (self.restart, TimeoutReason::Restart),
            (agent, TimeoutReason::Agent),
        ]
        .into_iter()
        .filter_map(|(at, reason)| at.map(|at| (at, reason)))
        .min_by_key(|&(at, _)| at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_delays_double_up_to_the_maximum_and_reset_to_the_start() {
        let mut d = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<_> = (0..4).map(|_| d.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
        d.reset();
        assert_eq!(d.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn the_earliest_deadline_wins_and_ties_go_to_the_session_before_the_agent() {
        let now = Instant::now();
        let mut timers = Timers::new();
        assert_eq!(timers.earliest(None), None);
        timers.arm_resend(now);
        timers.arm_give_up(now);
        assert_eq!(
            timers.earliest(Some(now + Duration::from_millis(50))),
            Some((now + Duration::from_millis(50), TimeoutReason::Agent))
        );
        assert_eq!(
            timers.earliest(Some(now + RESEND_INITIAL)),
            Some((now + RESEND_INITIAL, TimeoutReason::ResendOffer))
        );
    }

    #[test]
    fn a_deadline_is_taken_only_once_and_only_when_due() {
        let now = Instant::now();
        let mut timers = Timers::new();
        timers.arm_give_up(now);
        assert!(!timers.take_due(TimeoutReason::GiveUp, now));
        assert!(timers.take_due(TimeoutReason::GiveUp, now + GIVE_UP_AFTER));
        assert!(!timers.take_due(TimeoutReason::GiveUp, now + GIVE_UP_AFTER));
    }
}
