//! Rate-limited logging: for log lines that someone outside can trigger at will.
//!
//! A line an unauthenticated sender can cause must not cost more than the datagram that
//! caused it: each call site owns a [`LogLimit`], asks it before logging, and reports how many
//! lines it held back since the last one it let through.
//!
//! ```text
//! let mut limit = LogLimit::per_second(2);
//! let now = Instant::now();
//! for _ in 0..10 {
//!     if let Some(suppressed) = limit.allow(now) {
//!         tracing::debug!(suppressed, "dropped a datagram");
//!     }
//! }
//! ```

use std::time::{Duration, Instant};

/// A budget of log lines per second for one call site. Sans-IO: the caller passes `now`.
#[derive(Debug, Clone)]
pub struct LogLimit {
    per_second: u32,
    window_start: Option<Instant>,
    emitted: u32,
    suppressed: u64,
}

impl LogLimit {
    /// At most `per_second` lines in any one-second window.
    pub const fn per_second(per_second: u32) -> Self {
        Self {
            per_second,
            window_start: None,
            emitted: 0,
            suppressed: 0,
        }
    }

    /// Whether to log now: `Some(n)` with the number of lines held back since the last one
    /// allowed, or `None` to stay quiet (counted).
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        let fresh = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= Duration::from_secs(1));
        if fresh {
            self.window_start = Some(now);
            self.emitted = 0;
        }
        if self.emitted < self.per_second {
            self.emitted += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_gets_the_budget_and_the_next_window_reports_what_was_held_back() {
        let t0 = Instant::now();
        let mut limit = LogLimit::per_second(3);
        let allowed: Vec<Option<u64>> = (0..10).map(|_| limit.allow(t0)).collect();
        assert_eq!(allowed[..3], [Some(0), Some(0), Some(0)]);
        assert!(allowed[3..].iter().all(Option::is_none));
        assert_eq!(limit.allow(t0 + Duration::from_millis(999)), None);
        assert_eq!(limit.allow(t0 + Duration::from_secs(1)), Some(8));
        assert_eq!(limit.allow(t0 + Duration::from_secs(1)), Some(0));
    }
}
