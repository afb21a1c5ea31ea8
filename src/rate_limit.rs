//! Per-partner rate limits: a token bucket per partner, refilled continuously.
//!
//! The buckets are keyed by configured partners only (an unauthenticated caller never gets
//! here), so their number is bounded by the partners file.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::ids::PartnerId;

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// A token bucket's settings: `rate_limit = { per_second, burst }` of a partner.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

/// The buckets of every partner that has sent something.
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<PartnerId, Bucket>>,
}

impl RateLimiter {
    /// Takes one token for `partner`, or returns the whole seconds until one is available.
    pub fn take(&self, partner: &PartnerId, limit: &RateLimit) -> Result<(), u64> {
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else { return Ok(()) };
        let bucket = buckets.entry(partner.clone()).or_insert(Bucket { tokens: limit.burst, last: now });
        let elapsed = now.duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.per_second).min(limit.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / limit.per_second).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let limiter = RateLimiter::default();
        let p: PartnerId = "p".into();
        let limit = RateLimit { per_second: 1.0, burst: 3.0 };
        for _ in 0..3 {
            assert_eq!(limiter.take(&p, &limit), Ok(()));
        }
        assert_eq!(limiter.take(&p, &limit), Err(1));
        // Another partner has its own bucket.
        assert_eq!(limiter.take(&"q".into(), &limit), Ok(()));
    }
}
