//! Failed-login limiter (DESIGN.md S9, S11): token buckets read through the
//! injected clock, two per login —
//!
//! - one per **(account, client address)**: the budget of one address
//!   against one account ([`ServerConfig::login_rate_limit`]). An attacker
//!   who spends it is refused, while the account's owner, from another
//!   address, still logs in.
//! - one per **account**, whatever the address: a ceiling
//!   ([`ServerConfig::login_account_limit`]) on what many addresses together
//!   may try against one account.
//!
//! An IPv6 client counts by its /64 network (one host holds a whole /64);
//! an IPv4 client by its address.
//!
//! An attempt is **reserved** from both buckets before its password is
//! checked — atomically, under the limiter's one lock, and only when both
//! have an attempt left (an address refused by its own budget spends nothing
//! of the account's) — and given back to both only if the password was right
//! (or never checked: the hashing queue was full). So N parallel wrong
//! guesses evaluate at most the account's ceiling of password checks,
//! whichever addresses they come from, and at most the pair budget from one
//! address.
//!
//! Memory is bounded whatever the usernames and addresses: a bucket is keyed
//! by a keyed 64-bit SipHash (a random key per process, so nobody can choose
//! names that collide) of the account and address (a 10 KiB username costs
//! 8 bytes), and each kind keeps at most `max_keys` buckets. When a map is
//! full it is cut down to a low-water mark of half its size: full buckets
//! (the same as none) go first, then the ones that matter least (fullest,
//! then least recently touched) — so an eviction, which scans the map,
//! happens at most once per `max_keys / 2` new keys.
//!
//! [`ServerConfig::login_rate_limit`]: crate::ServerConfig::login_rate_limit
//! [`ServerConfig::login_account_limit`]: crate::ServerConfig::login_account_limit

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
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

/// The buckets of one kind (pair or account), under one budget.
#[derive(Debug)]
struct Buckets {
    limit: RateLimit,
    max_keys: usize,
    map: HashMap<u64, Bucket>,
    /// Times the map was scanned to make room.
    evictions: u64,
}

impl Buckets {
    fn new(limit: RateLimit, max_keys: usize) -> Self {
        Self {
            limit,
            max_keys: max_keys.max(2),
            map: HashMap::new(),
            evictions: 0,
        }
    }

    fn unlimited(&self) -> bool {
        self.limit.burst == 0
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

    /// The bucket of `key` as of `now_ms` if it has an attempt left, else
    /// how long until it has one.
    fn check(&self, key: u64, now_ms: i64) -> Result<Bucket, Duration> {
        let bucket = match self.map.get(&key) {
            Some(bucket) => self.refilled(*bucket, now_ms),
            None => Bucket {
                milli_tokens: self.capacity(),
                updated_ms: now_ms,
            },
        };
        if bucket.milli_tokens >= 1000 {
            return Ok(bucket);
        }
        let missing = 1000 - bucket.milli_tokens;
        let wait_ms = (missing * self.refill_ms() + 999) / 1000;
        Err(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(1)))
    }

    /// Takes one attempt from `bucket` (as returned by [`check`](Self::check)).
    fn spend(&mut self, key: u64, bucket: Bucket, now_ms: i64) {
        if !self.map.contains_key(&key) && self.map.len() >= self.max_keys {
            self.evict(now_ms);
        }
        self.map.insert(
            key,
            Bucket {
                milli_tokens: bucket.milli_tokens - 1000,
                updated_ms: bucket.updated_ms,
            },
        );
    }

    fn refund(&mut self, key: u64) {
        let capacity = self.capacity();
        if let Some(bucket) = self.map.get_mut(&key) {
            bucket.milli_tokens = (bucket.milli_tokens + 1000).min(capacity);
        }
    }

    /// Cuts the map down to the low-water mark (half of `max_keys`): full
    /// buckets go first (they are the same as none); if that is not enough,
    /// only the ones that matter most are kept — the emptiest (accounts
    /// under attack), then the most recent.
    fn evict(&mut self, now_ms: i64) {
        self.evictions += 1;
        let low_water = self.max_keys / 2;
        let capacity = self.capacity();
        let mut entries: Vec<(u64, Bucket, i64)> = self
            .map
            .iter()
            .map(|(k, b)| (*k, *b, self.refilled(*b, now_ms).milli_tokens))
            .filter(|(_, _, tokens)| *tokens < capacity)
            .collect();
        if entries.len() > low_water {
            entries.select_nth_unstable_by_key(low_water, |(_, b, tokens)| {
                (*tokens, std::cmp::Reverse(b.updated_ms))
            });
            entries.truncate(low_water);
        }
        self.map = entries.into_iter().map(|(k, b, _)| (k, b)).collect();
    }
}

#[derive(Debug)]
struct State {
    pairs: Buckets,
    accounts: Buckets,
}

/// A keyed token-bucket limiter of login attempts.
#[derive(Debug)]
pub(crate) struct LoginLimiter {
    hasher: std::collections::hash_map::RandomState,
    state: Mutex<State>,
}

/// A reserved login attempt. Dropped without [`refund`](Attempt::refund) it
/// stays spent (a failed, abandoned or errored attempt).
#[derive(Debug)]
#[must_use = "an attempt is spent unless refunded"]
pub(crate) struct Attempt<'a> {
    limiter: &'a LoginLimiter,
    pair: Option<u64>,
    account: Option<u64>,
}

impl Attempt<'_> {
    /// Gives the attempt back: the password was right, or was never checked.
    pub(crate) fn refund(self) {
        let mut state = self.limiter.lock();
        if let Some(key) = self.pair {
            state.pairs.refund(key);
        }
        if let Some(key) = self.account {
            state.accounts.refund(key);
        }
    }
}

/// The part of a client address that counts: an IPv4 address, or the /64
/// network of an IPv6 one.
fn address_key(address: Option<IpAddr>) -> Option<[u8; 16]> {
    match address? {
        IpAddr::V4(v4) => Some(v4.to_ipv6_mapped().octets()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Some(v4.to_ipv6_mapped().octets()),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                Some(octets)
            }
        },
    }
}

impl LoginLimiter {
    /// `pair`: the budget of one address against one account; `account`:
    /// the ceiling of all addresses together. Each remembers at most
    /// `max_keys` buckets.
    pub(crate) fn new(pair: RateLimit, account: RateLimit, max_keys: usize) -> Self {
        Self {
            hasher: std::collections::hash_map::RandomState::new(),
            state: Mutex::new(State {
                pairs: Buckets::new(pair, max_keys),
                accounts: Buckets::new(account, max_keys),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves one attempt for `account` from `address` (`None` when the
    /// server does not know it), or `Err(retry_after)` when the pair's
    /// budget or the account's ceiling is spent.
    pub(crate) fn reserve(
        &self,
        account: &str,
        address: Option<IpAddr>,
        now_ms: i64,
    ) -> Result<Attempt<'_>, Duration> {
        let pair_key = self.hasher.hash_one((1_u8, account, address_key(address)));
        let account_key = self.hasher.hash_one((2_u8, account));
        let mut state = self.lock();
        let pair = (!state.pairs.unlimited()).then(|| state.pairs.check(pair_key, now_ms));
        let ceiling =
            (!state.accounts.unlimited()).then(|| state.accounts.check(account_key, now_ms));
        match (pair, ceiling) {
            (Some(Err(wait)), Some(Err(other))) => return Err(wait.max(other)),
            (Some(Err(wait)), _) | (_, Some(Err(wait))) => return Err(wait),
            _ => {}
        }
        let mut attempt = Attempt {
            limiter: self,
            pair: None,
            account: None,
        };
        if let Some(Ok(bucket)) = pair {
            state.pairs.spend(pair_key, bucket, now_ms);
            attempt.pair = Some(pair_key);
        }
        if let Some(Ok(bucket)) = ceiling {
            state.accounts.spend(account_key, bucket, now_ms);
            attempt.account = Some(account_key);
        }
        Ok(attempt)
    }

    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        let state = self.lock();
        (state.pairs.map.len(), state.accounts.map.len())
    }

    #[cfg(test)]
    fn evictions(&self) -> u64 {
        let state = self.lock();
        state.pairs.evictions + state.accounts.evictions
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn rate(burst: u32, refill_secs: u64) -> RateLimit {
        RateLimit {
            burst,
            refill_every: Duration::from_secs(refill_secs),
        }
    }

    /// A pair budget of `burst`, a ceiling too high to matter.
    fn limiter(burst: u32, max_keys: usize) -> LoginLimiter {
        LoginLimiter::new(rate(burst, 10), rate(0, 1), max_keys)
    }

    const HOME: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    const AWAY: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)));

    #[test]
    fn burst_then_refill() {
        let limiter = limiter(3, 100);
        for _ in 0..3 {
            drop(limiter.reserve("k", HOME, 0).unwrap());
        }
        assert_eq!(
            limiter.reserve("k", HOME, 0).unwrap_err(),
            Duration::from_secs(10)
        );
        assert_eq!(
            limiter.reserve("k", HOME, 4_000).unwrap_err(),
            Duration::from_secs(6)
        );
        assert!(limiter.reserve("other", HOME, 0).is_ok());
        assert!(limiter.reserve("k", HOME, 10_000).is_ok());
    }

    #[test]
    fn s11_a_refunded_attempt_costs_nothing() {
        let limiter = LoginLimiter::new(rate(2, 10), rate(3, 10), 100);
        for _ in 0..10 {
            limiter.reserve("k", HOME, 0).unwrap().refund();
        }
        drop(limiter.reserve("k", HOME, 0).unwrap());
        drop(limiter.reserve("k", HOME, 0).unwrap());
        assert!(limiter.reserve("k", HOME, 0).is_err());
        // The ceiling was refunded too: one attempt is left for others.
        drop(limiter.reserve("k", AWAY, 0).unwrap());
        assert!(limiter.reserve("k", None, 0).is_err());
    }

    #[test]
    fn s11_one_address_spending_its_budget_leaves_the_account_to_others() {
        let limiter = LoginLimiter::new(rate(3, 10), rate(10, 10), 100);
        for _ in 0..3 {
            drop(limiter.reserve("victim", AWAY, 0).unwrap());
        }
        // The attacker keeps trying: refused, and it costs the account nothing.
        for _ in 0..100 {
            assert!(limiter.reserve("victim", AWAY, 0).is_err());
        }
        // The owner, elsewhere, has their own budget.
        for _ in 0..3 {
            drop(limiter.reserve("victim", HOME, 0).unwrap());
        }
        // A host's whole IPv6 /64 is one address.
        let net = |host: u16| {
            Some(IpAddr::V6(Ipv6Addr::new(
                0x2001, 0xdb8, 0, 1, 0, 0, 0, host,
            )))
        };
        for host in 0..3 {
            drop(limiter.reserve("victim", net(host), 0).unwrap());
        }
        assert!(limiter.reserve("victim", net(99), 0).is_err());
    }

    #[test]
    fn s11_many_addresses_together_stop_at_the_account_ceiling() {
        let limiter = LoginLimiter::new(rate(3, 10), rate(10, 10), 1_000);
        let granted = (0..100_u8)
            .filter(|i| {
                let from = Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, *i)));
                limiter.reserve("victim", from, 0).is_ok()
            })
            .count();
        assert_eq!(granted, 10);
    }

    #[test]
    fn s11_reservations_are_atomic_across_threads() {
        let limiter = LoginLimiter::new(rate(10, 10), rate(10, 10), 100);
        let granted = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for t in 0..8_u8 {
                let limiter = &limiter;
                let granted = &granted;
                s.spawn(move || {
                    for _ in 0..50 {
                        let from = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, t)));
                        if limiter.reserve("victim", from, 0).is_ok() {
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
            drop(limiter.reserve(&format!("{long}{i}"), HOME, i64::from(i)));
            assert!(limiter.len().0 <= 1_000, "{:?} keys", limiter.len());
        }
        // An account whose budget is spent is not forgotten because others
        // spray fresh names.
        for _ in 0..3 {
            drop(limiter.reserve("victim", HOME, 30_000));
        }
        for i in 0..5_000 {
            drop(limiter.reserve(&format!("spray{i}"), HOME, 30_001));
        }
        assert!(limiter.reserve("victim", HOME, 30_002).is_err());
    }

    #[test]
    fn s12_eviction_scans_at_most_once_per_half_a_map_of_new_keys() {
        // A steady spray: one new key per millisecond, each full again a
        // second later. At every eviction only the oldest few are full;
        // without a low-water mark the map would be scanned at every insert.
        let limiter = LoginLimiter::new(rate(1, 1), rate(0, 1), 1_000);
        let inserts = 20_000;
        for i in 0..inserts {
            drop(limiter.reserve(&format!("spray{i}"), HOME, i64::from(i)));
            assert!(limiter.len().0 <= 1_000);
        }
        let evictions = limiter.evictions();
        assert!(
            evictions <= u64::from(inserts as u32) / 500 + 1,
            "{evictions} scans of the map for {inserts} new keys"
        );
    }
}
