//! Simulated time: an origin and how far the simulation has run from it.
//!
//! `std::time::Instant` cannot be built from a number, so the origin is read from the OS once;
//! nothing depends on its value, only on offsets from it, so runs are repeatable.

use std::time::{Duration, Instant, SystemTime};

/// The wall-clock time the simulation says it is at its start (sealed into envelopes).
const WALL_ORIGIN: Duration = Duration::from_secs(1_800_000_000);

/// See the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct SimClock {
    origin: Instant,
    elapsed: Duration,
}

impl SimClock {
    /// A clock at zero.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            elapsed: Duration::ZERO,
        }
    }

    /// The simulated now.
    pub fn now(&self) -> Instant {
        self.origin + self.elapsed
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// `at` as simulated time since the start.
    pub fn since_start(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.origin)
    }

    /// The instant `offset` after the start.
    pub fn at(&self, offset: Duration) -> Instant {
        self.origin + offset
    }

    /// The simulated wall clock, for envelope freshness.
    pub fn system_now(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + WALL_ORIGIN + self.elapsed
    }

    /// Jumps forward to `at` (never back).
    pub fn advance_to(&mut self, at: Instant) {
        let offset = self.since_start(at);
        if offset > self.elapsed {
            self.elapsed = offset;
        }
    }
}

impl Default for SimClock {
    fn default() -> Self {
        Self::new()
    }
}
