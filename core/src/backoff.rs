//! Exponential back-off, the one kind wice uses everywhere: steps double from `initial` up to
//! `max`.
//!
//! A session's own resends and restarts take the steps as they are (`next_delay`, crate-internal):
//! they are already spread by each session's start. Reconnecting to a server takes them with
//! jitter ([`Backoff::next_jittered_delay`]): each delay is drawn uniformly from the upper half
//! of the current step ("equal jitter"), so a server that restarts is not hit by every client
//! at the same instant, yet no client waits less than half a step. Pure: the caller supplies
//! the randomness and does the sleeping.

use std::time::Duration;

use rand_core::RngCore;

/// First delay after a failure.
pub const DEFAULT_INITIAL: Duration = Duration::from_millis(100);
/// Longest delay between attempts.
pub const DEFAULT_MAX: Duration = Duration::from_secs(10);

/// The delay before each next attempt.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    step: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(DEFAULT_INITIAL, DEFAULT_MAX)
    }
}

impl Backoff {
    /// Delays from `initial` doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            step: initial,
        }
    }

    /// The current step as the delay before the next attempt; doubles the step for the one
    /// after.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (step * 2).min(self.max);
        step
    }

    /// A delay drawn from the upper half of the current step; doubles the step for the one
    /// after.
    pub fn next_jittered_delay(&mut self, rng: &mut impl RngCore) -> Duration {
        let step = self.next_delay();
        let half = step / 2;
        let jitter_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jitter = match jitter_nanos {
            0 => 0,
            n => rng.next_u64() % (n + 1),
        };
        half + Duration::from_nanos(jitter)
    }

    /// Starts over from `initial`, after an attempt succeeded.
    pub fn reset(&mut self) {
        self.step = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn delays_double_up_to_the_maximum_and_stay_in_the_upper_half_of_each_step() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let steps = [100, 200, 400, 800, 1000, 1000, 1000];
        for step in steps {
            let delay = backoff.next_jittered_delay(&mut OsRng);
            let step = Duration::from_millis(step);
            assert!(
                delay >= step / 2 && delay <= step,
                "{delay:?} not in [{:?}, {step:?}]",
                step / 2
            );
        }
    }

    #[test]
    fn reset_starts_again_from_the_initial_delay() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        for _ in 0..10 {
            backoff.next_jittered_delay(&mut OsRng);
        }
        backoff.reset();
        assert!(backoff.next_jittered_delay(&mut OsRng) <= Duration::from_millis(100));
    }

    #[test]
    fn delays_are_jittered() {
        let mut delays = std::collections::HashSet::new();
        for _ in 0..20 {
            delays.insert(Backoff::default().next_jittered_delay(&mut OsRng));
        }
        assert!(
            delays.len() > 1,
            "twenty clients would reconnect in lockstep"
        );
    }
}
