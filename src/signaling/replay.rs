//! Replay protection for sealed content: a window per sender over its counter.
//!
//! A sender's counter is microseconds since the Unix epoch, pushed past the last value it
//! used (see [`Sealer`](super::Sealer)), so it only grows, also across restarts. Backends may
//! reorder, so the window does not demand "greater than the last"; it remembers which
//! counters it has seen in the last [`WINDOW_SPAN_MICROS`] below the highest one and accepts
//! any counter inside that span that it has not seen. Below the span, or below the oldest
//! counter it had to forget when more than [`WINDOW_CAPACITY`] arrived within the span,
//! everything is refused as too old: it might be a replay the window can no longer tell.

use std::collections::BTreeSet;

/// How far below the highest counter seen a reordered counter is still accepted: two
/// minutes, far longer than any backend delays an envelope.
pub const WINDOW_SPAN_MICROS: u64 = 120_000_000;
/// Most counters remembered per sender. A peer sends a handful of descriptions per ICE
/// session; more than this within the span means everything older is refused.
pub const WINDOW_CAPACITY: usize = 1024;

/// Why a counter was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// This exact counter was accepted before.
    #[error("counter {0} was already seen")]
    Replayed(u64),
    /// The counter is below what the window still remembers.
    #[error("counter {counter} is older than the replay window (floor {floor})")]
    TooOld {
        /// The refused counter.
        counter: u64,
        /// Counters at or below this are refused.
        floor: u64,
    },
}

/// The counters seen from one sender.
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    /// Counters at or below this are refused. Starts at 0, which no sender uses.
    floor: u64,
    /// Counters accepted above the floor.
    seen: BTreeSet<u64>,
}

impl ReplayWindow {
    /// An empty window: the first counter above 0 is accepted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts `counter` if it is new and inside the window, and remembers it.
    ///
    /// Call it only for content that authenticated; a forged counter must not move the
    /// window.
    pub fn accept(&mut self, counter: u64) -> Result<(), ReplayError> {
        if counter <= self.floor {
            return Err(ReplayError::TooOld {
                counter,
                floor: self.floor,
            });
        }
        if !self.seen.insert(counter) {
            return Err(ReplayError::Replayed(counter));
        }
        let highest = self.highest();
        let span_floor = highest.saturating_sub(WINDOW_SPAN_MICROS);
        if span_floor > self.floor {
            self.floor = span_floor;
            self.seen = self.seen.split_off(&(span_floor + 1));
        }
        while self.seen.len() > WINDOW_CAPACITY {
            if let Some(oldest) = self.seen.pop_first() {
                self.floor = oldest;
            }
        }
        if counter <= self.floor {
            // It was accepted and immediately fell out: it is older than everything kept.
            return Err(ReplayError::TooOld {
                counter,
                floor: self.floor,
            });
        }
        Ok(())
    }

    /// The highest counter accepted, or 0 before the first.
    pub fn highest(&self) -> u64 {
        self.seen.last().copied().unwrap_or(self.floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_800_000_000_000_000; // some time in 2027, in microseconds

    #[test]
    fn increasing_counters_are_all_accepted() {
        let mut window = ReplayWindow::new();
        for i in 0..100 {
            assert_eq!(window.accept(T + i), Ok(()));
        }
        assert_eq!(window.highest(), T + 99);
    }

    #[test]
    fn a_counter_seen_before_is_refused_as_replayed() {
        let mut window = ReplayWindow::new();
        window.accept(T).unwrap();
        window.accept(T + 5).unwrap();
        assert_eq!(window.accept(T), Err(ReplayError::Replayed(T)));
        assert_eq!(window.accept(T + 5), Err(ReplayError::Replayed(T + 5)));
    }

    #[test]
    fn reordered_counters_inside_the_span_are_accepted_once() {
        let mut window = ReplayWindow::new();
        let order = [7, 3, 9, 1, 2, 8, 4, 6, 5, 0];
        for i in order {
            assert_eq!(window.accept(T + i * 1_000_000), Ok(()), "counter {i}");
        }
        for i in order {
            assert_eq!(
                window.accept(T + i * 1_000_000),
                Err(ReplayError::Replayed(T + i * 1_000_000))
            );
        }
    }

    #[test]
    fn a_counter_older_than_the_span_is_refused_as_too_old() {
        let mut window = ReplayWindow::new();
        window.accept(T + WINDOW_SPAN_MICROS + 10).unwrap();
        assert_eq!(
            window.accept(T + 10),
            Err(ReplayError::TooOld {
                counter: T + 10,
                floor: T + 10
            })
        );
        assert_eq!(window.accept(T + 11), Ok(()), "just inside the span");
    }

    #[test]
    fn overflowing_the_capacity_forgets_the_oldest_and_refuses_below_it() {
        let mut window = ReplayWindow::new();
        for i in 1..=(WINDOW_CAPACITY as u64 + 1) {
            window.accept(T + i).unwrap();
        }
        // T + 1 was forgotten: it must now be refused, not accepted again.
        assert!(matches!(
            window.accept(T + 1),
            Err(ReplayError::TooOld { .. })
        ));
        assert_eq!(
            window.accept(T + 2),
            Err(ReplayError::Replayed(T + 2)),
            "still remembered"
        );
    }

    #[test]
    fn zero_is_never_accepted() {
        assert!(matches!(
            ReplayWindow::new().accept(0),
            Err(ReplayError::TooOld { .. })
        ));
    }
}
