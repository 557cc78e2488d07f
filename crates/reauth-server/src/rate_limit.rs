//! Failed-login limiter: a token bucket per key, read through the injected clock.
//!
//! Only failures spend the budget; when it is empty every attempt for that key
//! (right password or not) is refused with `429` and `Retry-After` until the
//! bucket refills.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::clock::duration_millis;
use crate::config::RateLimit;

const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Failures still allowed, in thousandths.
    milli_tokens: i64,
    updated_ms: i64,
}

/// A keyed token-bucket limiter.
#[derive(Debug)]
pub(crate) struct LoginLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl LoginLimiter {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn capacity(&self) -> i64 {
        i64::from(self.limit.burst) * 1000
    }

    fn refill_ms(&self) -> i64 {
        duration_millis(self.limit.refill_every).max(1)
    }

    fn refilled(&self, bucket: Bucket, now_ms: i64) -> Bucket {
        let elapsed = (now_ms - bucket.updated_ms).max(0);
        let earned = elapsed.saturating_mul(1000) / self.refill_ms();
        Bucket {
            milli_tokens: bucket
                .milli_tokens
                .saturating_add(earned)
                .min(self.capacity()),
            updated_ms: now_ms,
        }
    }

    /// `Err(retry_after)` when `key` has no attempts left.
    pub(crate) fn check(&self, key: &str, now_ms: i64) -> Result<(), Duration> {
        if self.limit.burst == 0 {
            return Ok(());
        }
        let Ok(map) = self.buckets.lock() else {
            return Ok(());
        };
        let Some(bucket) = map.get(key).copied() else {
            return Ok(());
        };
        let bucket = self.refilled(bucket, now_ms);
        if bucket.milli_tokens >= 1000 {
            Ok(())
        } else {
            let missing = 1000 - bucket.milli_tokens;
            let wait_ms = (missing * self.refill_ms() + 999) / 1000;
            Err(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(1)))
        }
    }

    /// Spends one attempt of `key`.
    pub(crate) fn record_failure(&self, key: &str, now_ms: i64) {
        if self.limit.burst == 0 {
            return;
        }
        let Ok(mut map) = self.buckets.lock() else {
            return;
        };
        if map.len() >= MAX_KEYS {
            let capacity = self.capacity();
            let refill = self.refill_ms();
            map.retain(|_, b| b.milli_tokens + (now_ms - b.updated_ms) * 1000 / refill < capacity);
        }
        let fresh = Bucket {
            milli_tokens: self.capacity(),
            updated_ms: now_ms,
        };
        let bucket = map.get(key).map_or(fresh, |b| self.refilled(*b, now_ms));
        map.insert(
            key.to_owned(),
            Bucket {
                milli_tokens: (bucket.milli_tokens - 1000).max(0),
                updated_ms: now_ms,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let limiter = LoginLimiter::new(RateLimit {
            burst: 3,
            refill_every: Duration::from_secs(10),
        });
        for _ in 0..3 {
            assert!(limiter.check("k", 0).is_ok());
            limiter.record_failure("k", 0);
        }
        assert_eq!(limiter.check("k", 0), Err(Duration::from_secs(10)));
        assert_eq!(limiter.check("k", 4_000), Err(Duration::from_secs(6)));
        assert!(limiter.check("other", 0).is_ok());
        assert!(limiter.check("k", 10_000).is_ok());
    }
}
