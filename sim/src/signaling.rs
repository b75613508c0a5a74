//! An in-memory signaling backend: real sealed envelopes (the product's [`Sealer`] and
//! [`Opener`]) carried with configurable delay, jitter (which reorders), loss, duplication and
//! outage windows. Like a real backend in an outage, a publish during one is lost: the
//! sessions' own resends must recover.

use std::ops::Range;
use std::time::{Duration, Instant};

use crate::clock::SimClock;
use crate::product::{PublicKey, Sealer, SignalingMessage};
use crate::rng::{SealRng, SimRng};

/// How the backend treats messages.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalingProfile {
    /// Least time from publish to delivery.
    pub delay: Duration,
    /// Up to this much more, drawn per message: later messages can overtake earlier ones.
    pub jitter: Duration,
    /// Probability a message is lost.
    pub loss: f64,
    /// Probability a message is delivered twice.
    pub duplicate: f64,
    /// Simulated time ranges (since the start) in which the backend is down.
    pub outages: Vec<Range<Duration>>,
}

impl Default for SignalingProfile {
    fn default() -> Self {
        Self {
            delay: Duration::from_millis(20),
            jitter: Duration::from_millis(10),
            loss: 0.0,
            duplicate: 0.0,
            outages: Vec::new(),
        }
    }
}

/// What the backend did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignalingCounters {
    /// Envelopes sealed and handed to the backend.
    pub published: u64,
    /// Lost to an outage.
    pub outage_dropped: u64,
    /// Lost at random.
    pub lost: u64,
    /// Delivered twice.
    pub duplicated: u64,
    /// Envelopes a recipient's opener refused (replays of duplicates, stale ones).
    pub refused: u64,
    /// Envelopes opened and handed to a controller.
    pub delivered: u64,
}

/// The backend. See the module documentation.
#[derive(Debug)]
pub struct SignalingNet {
    profile: SignalingProfile,
    rng: SimRng,
    seal_rng: SealRng,
    /// What happened so far.
    pub counters: SignalingCounters,
}

impl std::fmt::Debug for SealRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealRng")
    }
}

impl SignalingNet {
    /// A backend behaving as `profile`, drawing from `rng` (delays, losses) and `seal` (nonces).
    pub fn new(profile: SignalingProfile, rng: SimRng, seal: SimRng) -> Self {
        Self {
            profile,
            rng,
            seal_rng: SealRng(seal),
            counters: SignalingCounters::default(),
        }
    }

    /// Whether the backend is down at `clock`'s now.
    pub fn in_outage(&self, clock: &SimClock) -> bool {
        let now = clock.elapsed();
        self.profile.outages.iter().any(|o| o.contains(&now))
    }

    /// Adds an outage window.
    pub fn add_outage(&mut self, window: Range<Duration>) {
        self.profile.outages.push(window);
    }

    /// Seals `message` from `sealer` to `recipient` and returns when each copy arrives, with
    /// its bytes (none when lost or in an outage).
    pub fn publish(
        &mut self,
        clock: &SimClock,
        sealer: &mut Sealer,
        recipient: &PublicKey,
        message: &SignalingMessage,
    ) -> Vec<(Instant, Vec<u8>)> {
        if self.in_outage(clock) {
            self.counters.outage_dropped += 1;
            return Vec::new();
        }
        let envelope = match sealer.seal(recipient, message, clock.system_now(), &mut self.seal_rng)
        {
            Ok(envelope) => envelope,
            Err(error) => panic!("the product produced an offer it cannot seal: {error}"),
        };
        self.counters.published += 1;
        if self.rng.chance(self.profile.loss) {
            self.counters.lost += 1;
            return Vec::new();
        }
        let bytes = envelope.encode().to_vec();
        let mut copies = 1;
        if self.rng.chance(self.profile.duplicate) {
            self.counters.duplicated += 1;
            copies = 2;
        }
        (0..copies)
            .map(|_| (clock.now() + self.delay(), bytes.clone()))
            .collect()
    }

    fn delay(&mut self) -> Duration {
        let jitter = self.profile.jitter.as_micros() as u64;
        let extra = if jitter == 0 {
            0
        } else {
            self.rng.below(jitter)
        };
        self.profile.delay + Duration::from_micros(extra)
    }
}
