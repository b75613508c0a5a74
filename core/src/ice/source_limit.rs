//! A per-source rate limit for datagrams to the control plane: token buckets keyed by the
//! sender's IP address, in a table of bounded size.
//!
//! Whoever floods us from one address gets [`SourceLimit::rate`] datagrams a second past this
//! point and the rest are dropped before anything looks beyond their STUN header. The table
//! holds at most [`MAX_SOURCES`] addresses; when it is full, addresses whose bucket has refilled
//! (idle long enough to be forgotten without effect) are evicted, at most once a second, and
//! newcomers that still find no room share one overflow bucket — so spoofing many addresses
//! cannot grow memory, and costs legitimate newcomers only while the table stays full.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Sources remembered at once.
pub(crate) const MAX_SOURCES: usize = 1024;
/// How often a full table is swept for idle sources.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// A token bucket's rate and depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SourceLimit {
    /// Datagrams per second, sustained.
    pub rate: u32,
    /// Datagrams at once after a quiet spell.
    pub burst: u32,
}

impl SourceLimit {
    /// For any sender: checks from every peer behind one NAT address (each agent paces its
    /// checks at 20/s while checking), with room to spare.
    pub(crate) const PEER: Self = Self {
        rate: 400,
        burst: 800,
    };
    /// For configured STUN/TURN servers: a TURN server carries every relayed peer's checks.
    pub(crate) const SERVER: Self = Self {
        rate: 4000,
        burst: 8000,
    };
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(limit: SourceLimit, now: Instant) -> Self {
        Self {
            tokens: f64::from(limit.burst),
            updated: now,
        }
    }

    fn take(&mut self, limit: SourceLimit, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(limit.rate)).min(f64::from(limit.burst));
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn refilled(&self, limit: SourceLimit, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens + elapsed * f64::from(limit.rate) >= f64::from(limit.burst)
    }
}

/// The table of buckets. See the [module documentation](self).
#[derive(Debug)]
pub(crate) struct SourceLimiter {
    buckets: HashMap<IpAddr, (SourceLimit, Bucket)>,
    overflow: Option<Bucket>,
    last_sweep: Option<Instant>,
}

impl SourceLimiter {
    /// An empty table.
    pub(crate) fn new() -> Self {
        Self {
            buckets: HashMap::with_capacity(MAX_SOURCES),
            overflow: None,
            last_sweep: None,
        }
    }

    /// Whether one more datagram from `source` may pass at `now`, under `limit`.
    pub(crate) fn allow(&mut self, now: Instant, source: IpAddr, limit: SourceLimit) -> bool {
        if let Some((known, bucket)) = self.buckets.get_mut(&source) {
            *known = limit;
            return bucket.take(limit, now);
        }
        if self.buckets.len() >= MAX_SOURCES {
            self.sweep(now);
        }
        if self.buckets.len() < MAX_SOURCES {
            let mut bucket = Bucket::full(limit, now);
            let allowed = bucket.take(limit, now);
            self.buckets.insert(source, (limit, bucket));
            return allowed;
        }
        self.overflow
            .get_or_insert_with(|| Bucket::full(SourceLimit::PEER, now))
            .take(SourceLimit::PEER, now)
    }

    /// How many sources are remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.len()
    }

    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|at| now.saturating_duration_since(at) < SWEEP_INTERVAL)
        {
            return;
        }
        self.last_sweep = Some(now);
        self.buckets
            .retain(|_, (limit, bucket)| !bucket.refilled(*limit, now));
    }
}

impl Default for SourceLimiter {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: SourceLimit = SourceLimit {
        rate: 10,
        burst: 20,
    };

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000u32 + n))
    }

    #[test]
    fn a_flooding_source_gets_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut limiter = SourceLimiter::new();
        let passed = (0..1000)
            .filter(|_| limiter.allow(t0, ip(1), LIMIT))
            .count();
        assert_eq!(passed, 20);
        let later = t0 + Duration::from_secs(1);
        let passed = (0..1000)
            .filter(|_| limiter.allow(later, ip(1), LIMIT))
            .count();
        assert_eq!(passed, 10);
        // Another source is not affected.
        assert!(limiter.allow(later, ip(2), LIMIT));
    }

    #[test]
    fn spoofed_sources_cannot_grow_the_table_and_idle_ones_are_forgotten() {
        let t0 = Instant::now();
        let mut limiter = SourceLimiter::new();
        for n in 0..MAX_SOURCES as u32 {
            assert!(limiter.allow(t0, ip(n), LIMIT));
        }
        assert_eq!(limiter.len(), MAX_SOURCES);
        // Newcomers share one overflow bucket while the table is full of busy sources.
        let passed = (0..10_000)
            .filter(|n| limiter.allow(t0, ip(100_000 + n), LIMIT))
            .count();
        assert_eq!(passed, SourceLimit::PEER.burst as usize);
        assert_eq!(limiter.len(), MAX_SOURCES);
        // Once the old ones are idle, a newcomer gets a bucket of its own.
        let later = t0 + Duration::from_secs(10);
        assert!(limiter.allow(later, ip(200_000), LIMIT));
        assert_eq!(limiter.len(), 1);
    }
}
