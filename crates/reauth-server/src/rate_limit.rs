//! Failed-login limiter (DESIGN.md S9, S11): a token bucket per account,
//! read through the injected clock.
//!
//! An attempt is **reserved** before its password is checked — atomically,
//! under the limiter's lock — and given back only if the password was right
//! (or never checked: the hashing queue was full). So N parallel wrong
//! guesses evaluate at most the budget's worth of password checks, whichever
//! addresses they come from: the bucket belongs to the account, not to the
//! client address. When the bucket is empty every attempt for that account
//! (right password or not) is refused with `429` and `Retry-After` until it
//! refills.
//!
//! Memory is bounded whatever the usernames: a bucket is keyed by a keyed
//! 64-bit hash of the username (so a 10 KiB username costs 8 bytes), and at
//! most `max_keys` buckets are kept. A full bucket is the same as none, so
//! those are dropped first; if that is not enough, the half least recently
//! touched goes.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::clock::duration_millis;
use crate::config::RateLimit;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Attempts still allowed, in thousandths.
    milli_tokens: i64,
    updated_ms: i64,
}

/// A keyed token-bucket limiter of login attempts.
#[derive(Debug)]
pub(crate) struct LoginLimiter {
    limit: RateLimit,
    max_keys: usize,
    hasher: std::collections::hash_map::RandomState,
    buckets: Mutex<HashMap<u64, Bucket>>,
}

/// A reserved login attempt. Dropped without [`refund`](Attempt::refund) it
/// stays spent (a failed, abandoned or errored attempt).
#[derive(Debug)]
#[must_use = "an attempt is spent unless refunded"]
pub(crate) struct Attempt<'a> {
    limiter: &'a LoginLimiter,
    key: Option<u64>,
}

impl Attempt<'_> {
    /// Gives the attempt back: the password was right, or was never checked.
    pub(crate) fn refund(self) {
        let Some(key) = self.key else { return };
        let capacity = self.limiter.capacity();
        if let Some(bucket) = self.limiter.lock().get_mut(&key) {
            bucket.milli_tokens = (bucket.milli_tokens + 1000).min(capacity);
        }
    }
}

impl LoginLimiter {
    pub(crate) fn new(limit: RateLimit, max_keys: usize) -> Self {
        Self {
            limit,
            max_keys: max_keys.max(1),
            hasher: std::collections::hash_map::RandomState::new(),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Bucket>> {
        self.buckets.lock().unwrap_or_else(PoisonError::into_inner)
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

    /// Reserves one attempt for `account`, or `Err(retry_after)` when its
    /// budget is spent.
    pub(crate) fn reserve(&self, account: &str, now_ms: i64) -> Result<Attempt<'_>, Duration> {
        if self.limit.burst == 0 {
            return Ok(Attempt {
                limiter: self,
                key: None,
            });
        }
        let key = self.hasher.hash_one(account);
        let mut map = self.lock();
        let bucket = match map.get(&key) {
            Some(bucket) => self.refilled(*bucket, now_ms),
            None => {
                if map.len() >= self.max_keys {
                    self.evict(&mut map, now_ms);
                }
                Bucket {
                    milli_tokens: self.capacity(),
                    updated_ms: now_ms,
                }
            }
        };
        if bucket.milli_tokens < 1000 {
            map.insert(key, bucket);
            let missing = 1000 - bucket.milli_tokens;
            let wait_ms = (missing * self.refill_ms() + 999) / 1000;
            return Err(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(1)));
        }
        map.insert(
            key,
            Bucket {
                milli_tokens: bucket.milli_tokens - 1000,
                updated_ms: now_ms,
            },
        );
        Ok(Attempt {
            limiter: self,
            key: Some(key),
        })
    }

    /// Makes room: full buckets go first (they are the same as none); if
    /// that is not enough, only the half that matters most is kept — the
    /// emptiest buckets (accounts under attack), then the most recent.
    fn evict(&self, map: &mut HashMap<u64, Bucket>, now_ms: i64) {
        let capacity = self.capacity();
        map.retain(|_, b| self.refilled(*b, now_ms).milli_tokens < capacity);
        if map.len() >= self.max_keys {
            let mut entries: Vec<(u64, Bucket, i64)> = map
                .iter()
                .map(|(k, b)| (*k, *b, self.refilled(*b, now_ms).milli_tokens))
                .collect();
            entries
                .sort_unstable_by_key(|(_, b, tokens)| (*tokens, std::cmp::Reverse(b.updated_ms)));
            entries.truncate(self.max_keys / 2);
            *map = entries.into_iter().map(|(k, b, _)| (k, b)).collect();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(burst: u32, max_keys: usize) -> LoginLimiter {
        LoginLimiter::new(
            RateLimit {
                burst,
                refill_every: Duration::from_secs(10),
            },
            max_keys,
        )
    }

    #[test]
    fn burst_then_refill() {
        let limiter = limiter(3, 100);
        for _ in 0..3 {
            drop(limiter.reserve("k", 0).unwrap());
        }
        assert_eq!(
            limiter.reserve("k", 0).unwrap_err(),
            Duration::from_secs(10)
        );
        assert_eq!(
            limiter.reserve("k", 4_000).unwrap_err(),
            Duration::from_secs(6)
        );
        assert!(limiter.reserve("other", 0).is_ok());
        assert!(limiter.reserve("k", 10_000).is_ok());
    }

    #[test]
    fn s11_a_refunded_attempt_costs_nothing() {
        let limiter = limiter(2, 100);
        for _ in 0..10 {
            limiter.reserve("k", 0).unwrap().refund();
        }
        drop(limiter.reserve("k", 0).unwrap());
        drop(limiter.reserve("k", 0).unwrap());
        assert!(limiter.reserve("k", 0).is_err());
    }

    #[test]
    fn s11_reservations_are_atomic_across_threads() {
        let limiter = limiter(10, 100);
        let granted = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..50 {
                        if limiter.reserve("victim", 0).is_ok() {
                            granted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        assert_eq!(granted.into_inner(), 10);
    }

    #[test]
    fn s11_memory_is_bounded_by_key_count_not_key_length() {
        let limiter = limiter(3, 1_000);
        let long = "x".repeat(10_000);
        for i in 0..20_000 {
            drop(limiter.reserve(&format!("{long}{i}"), i64::from(i)));
            assert!(limiter.len() <= 1_000, "{} keys", limiter.len());
        }
        // An account whose budget is spent is not forgotten because others
        // spray fresh names.
        for _ in 0..3 {
            drop(limiter.reserve("victim", 30_000));
        }
        for i in 0..5_000 {
            drop(limiter.reserve(&format!("spray{i}"), 30_001));
        }
        assert!(limiter.reserve("victim", 30_002).is_err());
    }
}
