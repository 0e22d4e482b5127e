//! Per-identity request rate limits: a token bucket per identity, refilled at the configured
//! rate and holding at most two seconds' worth, so short bursts (a backup opening with a dozen
//! listings) pass and a runaway client is slowed to the rate with 429s.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// The most buckets kept; beyond, full ones are forgotten, and while none is full, newcomers
/// wait.
const MAX_BUCKETS: usize = 100_000;

/// The buckets of every identity seen.
#[derive(Debug)]
pub struct RateLimits {
    per_second: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimits {
    /// `per_second` requests a second for each identity (0: no limit).
    pub fn new(per_second: u32) -> Self {
        RateLimits { per_second: f64::from(per_second), buckets: Mutex::new(HashMap::new()) }
    }

    /// Whether `identity` may make a request now (and takes a token if so).
    pub fn admit(&self, identity: &str) -> bool {
        self.admit_at(identity, Instant::now())
    }

    fn admit_at(&self, identity: &str, now: Instant) -> bool {
        if self.per_second <= 0.0 {
            return true;
        }
        let capacity = 2.0 * self.per_second;
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_BUCKETS {
            // Buckets full again are no different from new ones: forget them, so clients with
            // ever new names (addresses) cannot grow the table.
            let per_second = self.per_second;
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * per_second < capacity
            });
            if buckets.len() >= MAX_BUCKETS {
                return false;
            }
        }
        let (tokens, at) = buckets.entry(identity.to_string()).or_insert((capacity, now));
        let elapsed = now.saturating_duration_since(*at).as_secs_f64();
        *tokens = (*tokens + elapsed * self.per_second).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_of_two_seconds_passes_then_the_rate_holds_per_identity() {
        let limits = RateLimits::new(5);
        let t0 = Instant::now();
        assert_eq!((0..20).filter(|_| limits.admit_at("a", t0)).count(), 10);
        assert!(limits.admit_at("b", t0), "another identity has its own bucket");
        let t1 = t0 + Duration::from_millis(400);
        assert_eq!((0..20).filter(|_| limits.admit_at("a", t1)).count(), 2);
        assert!((0..1000).all(|_| RateLimits::new(0).admit_at("a", t0)));
    }
}
