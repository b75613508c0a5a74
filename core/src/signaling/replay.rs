//! Replay protection for sealed content: a window per sender and boot over its counter.
//!
//! A sender's sealer draws a random boot id when it starts and numbers its envelopes 1, 2,
//! 3, ... (see [`Sealer`](super::Sealer)); the clock plays no part, so a clock that jumps
//! cannot wedge the counter. Backends may reorder, so a [`ReplayWindow`] does not demand
//! "greater than the last": it remembers which counters it has seen in the last
//! [`WINDOW_SPAN`] below the highest one and accepts any counter inside that span that it has
//! not seen. Below the span, or below the oldest counter it had to forget when more than
//! [`WINDOW_CAPACITY`] arrived within the span, everything is refused as too old.
//!
//! [`SenderWindows`] keeps one window per boot id of a sender (the last
//! [`MAX_BOOTS_PER_SENDER`] heard from), so a restarted sender is heard at once and a replay
//! of its previous run is still refused. What no window can refuse — a recording whose boot
//! the receiver has forgotten (or never knew, after its own restart) — is bounded by the
//! freshness check on the sealing time, in the [`Opener`](super::Opener).

use std::collections::BTreeSet;

/// How far below the highest counter seen a reordered counter is still accepted.
const WINDOW_SPAN: u64 = 1024;
/// Most counters remembered per window.
const WINDOW_CAPACITY: usize = 1024;
/// Boots of one sender whose windows are kept; the least recently heard is forgotten first.
const MAX_BOOTS_PER_SENDER: usize = 4;

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
pub(crate) struct ReplayWindow {
    /// Counters at or below this are refused. Starts at 0, which no sender uses.
    floor: u64,
    /// Counters accepted above the floor.
    seen: BTreeSet<u64>,
}

impl ReplayWindow {
    /// An empty window: the first counter above 0 is accepted.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Accepts `counter` if it is new and inside the window, and remembers it.
    ///
    /// Call it only for content that authenticated; a forged counter must not move the
    /// window.
    pub(crate) fn accept(&mut self, counter: u64) -> Result<(), ReplayError> {
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
        let span_floor = highest.saturating_sub(WINDOW_SPAN);
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
    pub(crate) fn highest(&self) -> u64 {
        self.seen.last().copied().unwrap_or(self.floor)
    }
}

/// The windows of one sender, one per boot id, least recently heard forgotten first.
#[derive(Debug, Clone, Default)]
pub(crate) struct SenderWindows {
    /// (boot id, its window, when it last accepted a counter in the caller's ticks).
    boots: Vec<(u64, ReplayWindow, u64)>,
    last_heard: u64,
}

impl SenderWindows {
    /// Accepts `counter` of boot `boot` if new in that boot's window. `tick` grows with every
    /// call across all senders (the caller's recency clock, not time).
    ///
    /// Call it only for content that authenticated and is fresh.
    pub(crate) fn accept(&mut self, boot: u64, counter: u64, tick: u64) -> Result<(), ReplayError> {
        let index = match self.boots.iter().position(|(b, _, _)| *b == boot) {
            Some(index) => index,
            None => {
                if self.boots.len() >= MAX_BOOTS_PER_SENDER
                    && let Some(oldest) = self
                        .boots
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, (_, _, heard))| *heard)
                        .map(|(i, _)| i)
                {
                    self.boots.swap_remove(oldest);
                }
                self.boots.push((boot, ReplayWindow::new(), tick));
                self.boots.len() - 1
            }
        };
        let (_, window, heard) = &mut self.boots[index];
        window.accept(counter)?;
        *heard = tick;
        self.last_heard = tick;
        Ok(())
    }

    /// The tick of the last accepted counter, for forgetting quiet senders first.
    pub(crate) fn last_heard(&self) -> u64 {
        self.last_heard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_000_000;

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
            assert_eq!(window.accept(T + i * 100), Ok(()), "counter {i}");
        }
        for i in order {
            assert_eq!(
                window.accept(T + i * 100),
                Err(ReplayError::Replayed(T + i * 100))
            );
        }
    }

    #[test]
    fn a_counter_older_than_the_span_is_refused_as_too_old() {
        let mut window = ReplayWindow::new();
        window.accept(T + WINDOW_SPAN + 10).unwrap();
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

    #[test]
    fn a_new_boot_gets_its_own_window_and_the_old_boot_is_still_refused_on_replay() {
        let mut windows = SenderWindows::default();
        windows.accept(7, 1, 1).unwrap();
        windows.accept(7, 2, 2).unwrap();
        // The sender restarted: counters start again at 1 under a new boot id.
        assert_eq!(windows.accept(8, 1, 3), Ok(()));
        assert_eq!(windows.accept(7, 2, 4), Err(ReplayError::Replayed(2)));
        assert_eq!(windows.accept(8, 1, 5), Err(ReplayError::Replayed(1)));
        assert_eq!(windows.boots.len(), 2);
    }

    #[test]
    fn at_most_the_allowed_boots_are_remembered_and_the_quietest_goes_first() {
        let mut windows = SenderWindows::default();
        for boot in 0..(MAX_BOOTS_PER_SENDER as u64 + 3) {
            windows.accept(boot, 1, boot).unwrap();
        }
        assert_eq!(windows.boots.len(), MAX_BOOTS_PER_SENDER);
        assert_eq!(windows.last_heard(), MAX_BOOTS_PER_SENDER as u64 + 2);
    }
}
