//! Timing policy and the pure functions behind it: expiry, refresh-ahead, backoff.
//!
//! Everything here is a pure function of its inputs, so each is unit-tested on
//! its own (the smithy-rs `expired(expiration, buffer, now)` habit).

use std::time::{Duration, SystemTime};

/// When the refresh-ahead timer fires.
///
/// The timer refreshes at `expires_at − max(skew, fraction × lifetime)`, minus up
/// to `jitter`, but never earlier than halfway through the token's lifetime, so a
/// short-lived token cannot make it loop; and it starts at most one refresh per
/// `min(recheck, 5 s)`, even for tokens that arrive already expired.
///
/// ```
/// use std::time::Duration;
/// let ahead = reauth::RefreshAhead::default().with_skew(Duration::from_secs(60));
/// assert!(ahead.enabled());
/// assert_eq!(ahead.skew(), Duration::from_secs(60));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct RefreshAhead {
    /// Whether to refresh before expiry at all (otherwise only on expiry / 401).
    pub(crate) enabled: bool,
    /// The least time before expiry to refresh at.
    pub(crate) skew: Duration,
    /// The share of the token's lifetime to refresh ahead by, if more than `skew`.
    pub(crate) fraction: f64,
    /// Up to this much earlier, at random, so that many clients do not refresh in step.
    pub(crate) jitter: Duration,
    /// The longest the timer sleeps before looking at the clock again, so that a
    /// suspended machine or a clock jump is noticed.
    pub(crate) recheck: Duration,
}

impl Default for RefreshAhead {
    fn default() -> Self {
        Self {
            enabled: true,
            skew: Duration::from_secs(30),
            fraction: 0.1,
            jitter: Duration::from_secs(5),
            recheck: Duration::from_secs(60),
        }
    }
}

impl RefreshAhead {
    /// Refresh-ahead turned off.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// Whether the timer refreshes ahead of expiry at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The least time before expiry to refresh at. Default 30 s.
    pub fn skew(&self) -> Duration {
        self.skew
    }

    /// The share of the lifetime to refresh ahead by, if more than the skew. Default 10 %.
    pub fn fraction(&self) -> f64 {
        self.fraction
    }

    /// Up to this much earlier, at random. Default 5 s.
    pub fn jitter(&self) -> Duration {
        self.jitter
    }

    /// The longest the timer sleeps before looking at the clock again. Default 60 s.
    pub fn recheck(&self) -> Duration {
        self.recheck
    }

    /// Sets [`skew`](Self::skew).
    #[must_use]
    pub fn with_skew(mut self, skew: Duration) -> Self {
        self.skew = skew;
        self
    }

    /// Sets [`fraction`](Self::fraction).
    #[must_use]
    pub fn with_fraction(mut self, fraction: f64) -> Self {
        self.fraction = fraction;
        self
    }

    /// Sets [`jitter`](Self::jitter).
    #[must_use]
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets [`recheck`](Self::recheck).
    #[must_use]
    pub fn with_recheck(mut self, recheck: Duration) -> Self {
        self.recheck = recheck;
        self
    }
}

/// How transient refresh failures are retried.
///
/// Delays grow exponentially from `initial_backoff` up to `max_backoff`, with
/// "equal jitter" (half fixed, half random), and are stretched to a server's
/// `Retry-After`. The refresh gives up after `max_attempts` or when the next
/// attempt would start after `budget`. A server's `Retry-After` counts for at
/// most `max_retry_after` (C23): a hostile or broken endpoint answering
/// `Retry-After: 4000000000` holds refreshes off for minutes, not years.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub(crate) max_attempts: u32,
    /// The first delay.
    pub(crate) initial_backoff: Duration,
    /// The largest delay.
    pub(crate) max_backoff: Duration,
    /// The total time a refresh may spend retrying.
    pub(crate) budget: Duration,
    /// The longest `Retry-After` honoured; longer ones are cut to it.
    pub(crate) max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            budget: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retries.
    pub fn never() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Attempts in all, the first included. Default 4.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The first delay. Default 200 ms.
    pub fn initial_backoff(&self) -> Duration {
        self.initial_backoff
    }

    /// The largest delay. Default 10 s.
    pub fn max_backoff(&self) -> Duration {
        self.max_backoff
    }

    /// The total time a refresh may spend retrying. Default 30 s.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// The longest `Retry-After` honoured. Default 5 minutes.
    pub fn max_retry_after(&self) -> Duration {
        self.max_retry_after
    }

    /// Sets [`max_attempts`](Self::max_attempts).
    ///
    /// ```
    /// use std::time::Duration;
    /// let retry = reauth::RetryPolicy::default().with_max_attempts(6).with_budget(Duration::from_secs(60));
    /// assert_eq!(retry.max_attempts(), 6);
    /// ```
    #[must_use]
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// Sets [`initial_backoff`](Self::initial_backoff).
    #[must_use]
    pub fn with_initial_backoff(mut self, d: Duration) -> Self {
        self.initial_backoff = d;
        self
    }

    /// Sets [`max_backoff`](Self::max_backoff).
    #[must_use]
    pub fn with_max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }

    /// Sets [`budget`](Self::budget).
    #[must_use]
    pub fn with_budget(mut self, d: Duration) -> Self {
        self.budget = d;
        self
    }

    /// Sets [`max_retry_after`](Self::max_retry_after) (default 5 minutes).
    #[must_use]
    pub fn with_max_retry_after(mut self, d: Duration) -> Self {
        self.max_retry_after = d;
        self
    }

    /// A server's `Retry-After`, cut to [`max_retry_after`](Self::max_retry_after).
    ///
    /// ```
    /// use std::time::Duration;
    /// let retry = reauth::RetryPolicy::default();
    /// let years = Duration::from_secs(4_000_000_000);
    /// assert_eq!(retry.honoured_retry_after(Some(years)), Some(Duration::from_secs(300)));
    /// assert_eq!(retry.honoured_retry_after(Some(Duration::from_secs(2))), Some(Duration::from_secs(2)));
    /// ```
    pub fn honoured_retry_after(&self, retry_after: Option<Duration>) -> Option<Duration> {
        retry_after.map(|ra| ra.min(self.max_retry_after))
    }
}

/// The lifetime of a token obtained at `obtained_at` that expires at `expires_at`.
fn lifetime(obtained_at: SystemTime, expires_at: SystemTime) -> Duration {
    expires_at
        .duration_since(obtained_at)
        .unwrap_or(Duration::ZERO)
}

/// Whether a token must no longer be used at `now`.
///
/// A token counts as expired `leeway` before `expires_at` (to absorb clock skew
/// and transit time), but the leeway is capped at a quarter of the token's
/// lifetime, so a token that is short-lived by design is still usable when new.
/// A token without an expiry never expires by time (only by a 401).
pub fn is_expired(
    expires_at: Option<SystemTime>,
    obtained_at: Option<SystemTime>,
    leeway: Duration,
    now: SystemTime,
) -> bool {
    let Some(expires_at) = expires_at else {
        return false;
    };
    let leeway = match obtained_at {
        Some(obtained) => leeway.min(lifetime(obtained, expires_at) / 4),
        None => leeway,
    };
    match expires_at.checked_sub(leeway) {
        Some(limit) => now >= limit,
        None => true,
    }
}

/// When the refresh-ahead timer should refresh a token, given a jitter already
/// drawn from `[0, policy.jitter]`. `None` when the token has no expiry.
pub fn refresh_at(
    expires_at: Option<SystemTime>,
    obtained_at: SystemTime,
    policy: &RefreshAhead,
    jitter: Duration,
) -> Option<SystemTime> {
    let expires_at = expires_at?;
    let life = lifetime(obtained_at, expires_at);
    let fraction = if policy.fraction.is_nan() {
        0.0
    } else {
        policy.fraction.clamp(0.0, 1.0)
    };
    let by_fraction = life.mul_f64(fraction);
    let lead = policy
        .skew
        .max(by_fraction)
        .saturating_add(jitter.min(policy.jitter));
    let lead = lead.min(life / 2);
    Some(expires_at.checked_sub(lead).unwrap_or(obtained_at))
}

/// The delay before retry number `attempt` (1 = the first retry), before jitter
/// is added: `initial × 2^(attempt−1)`, capped at `max_backoff`.
pub fn backoff_base(policy: &RetryPolicy, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
    policy
        .initial_backoff
        .saturating_mul(factor)
        .min(policy.max_backoff)
}

/// The delay before retry `attempt`: half of [`backoff_base`] fixed, plus
/// `jitter` (drawn from `[0, base/2]`), stretched to `retry_after` if the server
/// asked for longer.
pub fn backoff_delay(
    policy: &RetryPolicy,
    attempt: u32,
    jitter: Duration,
    retry_after: Option<Duration>,
) -> Duration {
    let base = backoff_base(policy, attempt);
    let delay = base / 2 + jitter.min(base / 2);
    match retry_after {
        Some(ra) => delay.max(ra),
        None => delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    #[test]
    fn expiry_respects_leeway() {
        let leeway = Duration::from_secs(5);
        assert!(!is_expired(Some(t(300)), Some(t(0)), leeway, t(294)));
        assert!(is_expired(Some(t(300)), Some(t(0)), leeway, t(295)));
        assert!(is_expired(Some(t(300)), Some(t(0)), leeway, t(400)));
        assert!(!is_expired(None, None, leeway, t(1_000_000)));
    }

    #[test]
    fn leeway_is_capped_for_short_lived_tokens() {
        // A 4 s token with a 5 s leeway would be born expired; the cap makes it usable.
        let leeway = Duration::from_secs(5);
        assert!(!is_expired(Some(t(4)), Some(t(0)), leeway, t(0)));
        assert!(is_expired(Some(t(4)), Some(t(0)), leeway, t(3)));
    }

    #[test]
    fn c14_refresh_at_uses_the_larger_of_skew_and_fraction() {
        let p = RefreshAhead {
            skew: Duration::from_secs(30),
            fraction: 0.1,
            ..Default::default()
        };
        // 5 min token: max(30 s, 30 s) = 30 s early.
        assert_eq!(
            refresh_at(Some(t(300)), t(0), &p, Duration::ZERO),
            Some(t(270))
        );
        // 1 h token: 10 % = 6 min early.
        assert_eq!(
            refresh_at(Some(t(3600)), t(0), &p, Duration::ZERO),
            Some(t(3240))
        );
        // Jitter moves it earlier, within its bound.
        assert_eq!(
            refresh_at(Some(t(300)), t(0), &p, Duration::from_secs(5)),
            Some(t(265))
        );
        assert_eq!(
            refresh_at(Some(t(300)), t(0), &p, Duration::from_secs(50)),
            Some(t(265))
        );
        assert_eq!(refresh_at(None, t(0), &p, Duration::ZERO), None);
    }

    #[test]
    fn c14_short_token_refreshes_at_half_life_not_immediately() {
        let p = RefreshAhead::default();
        // 10 s token, 30 s skew: without the cap it would refresh at once, forever.
        assert_eq!(
            refresh_at(Some(t(10)), t(0), &p, Duration::from_secs(5)),
            Some(t(5))
        );
    }

    #[test]
    fn c5_backoff_grows_exponentially_and_is_capped() {
        let p = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..Default::default()
        };
        assert_eq!(backoff_base(&p, 1), Duration::from_millis(100));
        assert_eq!(backoff_base(&p, 2), Duration::from_millis(200));
        assert_eq!(backoff_base(&p, 4), Duration::from_millis(800));
        assert_eq!(backoff_base(&p, 5), Duration::from_secs(1));
        assert_eq!(backoff_base(&p, 60), Duration::from_secs(1));
        assert_eq!(
            backoff_delay(&p, 2, Duration::ZERO, None),
            Duration::from_millis(100)
        );
        assert_eq!(
            backoff_delay(&p, 2, Duration::from_secs(9), None),
            Duration::from_millis(200)
        );
        assert_eq!(
            backoff_delay(&p, 1, Duration::ZERO, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
    }
}
