//! A token bucket: the per-connection rate limit of `wice signal`. Pure: `now` is passed in.

use std::time::Instant;

/// Refills at `rate` tokens a second up to `burst`; each envelope published (and each
/// subscription attempt) takes one.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_second: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: f64::from(rate_per_second),
            burst,
            tokens: burst,
            last: None,
        }
    }

    /// Takes `n` tokens if there are enough, else takes none and returns false.
    pub fn try_take(&mut self, n: u32, now: Instant) -> bool {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        }
        self.last = Some(now);
        let n = f64::from(n);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_is_allowed_then_refused_until_tokens_refill() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 5);
        assert!(bucket.try_take(5, start));
        assert!(!bucket.try_take(1, start));
        assert!(!bucket.try_take(1, start + Duration::from_millis(50)));
        assert!(bucket.try_take(1, start + Duration::from_millis(150)));
    }

    #[test]
    fn the_bucket_never_holds_more_than_the_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1000, 3);
        assert!(bucket.try_take(1, start));
        let later = start + Duration::from_secs(3600);
        assert!(!bucket.try_take(4, later));
        assert!(bucket.try_take(3, later));
    }

    #[test]
    fn a_request_larger_than_the_burst_never_passes() {
        let mut bucket = TokenBucket::new(1000, 10);
        assert!(!bucket.try_take(11, Instant::now()));
    }
}
