//! The [`Coordinator`] contract and the [`Lease`] it grants.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::token::{Stamp, TokenSet};

/// Lets processes and replicas that share a [`TokenStore`](crate::TokenStore)
/// make one refresh between them: an exclusive **lease** and a
/// **compare-and-swap** on the stored set's [`Stamp`], fenced by the lease.
/// The protocol the session runs on it is in the [module docs](crate::coord).
///
/// A lease may be timed (a TTL the store measures; the holder renews it while
/// it works) or held until released (a lock the platform releases when its
/// holder dies, such as a browser's Web Lock: [`Lease::until_released`]).
///
/// Built-in: [`MemoryStore`](crate::MemoryStore) (sessions of one process
/// sharing it), [`FileStore`](crate::FileStore) (processes on one machine);
/// `reauth-redis` and `reauth-postgres` coordinate replicas. Every
/// implementation should pass the conformance suite,
/// `reauth_testkit::conformance` (the dev-only `reauth-testkit` crate).
///
/// # Implementing it
///
/// Four operations, each atomic with respect to every other operation on the
/// same store by any process:
///
/// | operation | must |
/// |---|---|
/// | [`try_acquire`](Self::try_acquire) | grant the lease only if nobody holds it (a timed lease past its TTL counts as free), with a new owner token |
/// | [`renew`](Self::renew) | extend a timed lease by the TTL **only** if it is still held, unexpired, by this owner |
/// | [`release`](Self::release) | free it only if this owner holds it |
/// | [`compare_and_swap`](Self::compare_and_swap) | write (or remove) only if the stored stamp is the expected one and, with a fence, the fence lease is still held and unexpired |
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait Coordinator: Send + Sync + 'static {
    /// Takes the refresh lease for `ttl` if nobody holds it (or the holder's
    /// timed lease has lapsed). Returns `None` at once if it is held; the
    /// session polls with backoff. A store whose locks are held until
    /// released may ignore `ttl` and return [`Lease::until_released`].
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the backend could not be asked. The session treats
    /// this as a transient refresh failure and does **not** refresh without the
    /// lease.
    async fn try_acquire(&self, ttl: Duration) -> Result<Option<Lease>, StoreError>;

    /// Extends `lease` to `ttl` from now, if it is still held by its owner and
    /// has not lapsed. Returns whether it did; `false` means the lease is
    /// lost. Never called for a lease held until released.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the backend failed; the holder tries again until
    /// its deadline.
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool, StoreError>;

    /// Gives the lease back, if `lease` still owns it. Releasing a lease that
    /// has lapsed (and may now belong to someone else) must change nothing.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the backend failed; a timed lease then lapses by
    /// its TTL.
    async fn release(&self, lease: &Lease) -> Result<(), StoreError>;

    /// Replaces the stored set with `new` (removes it for `None`) only if
    /// the stored set's stamp is `expected` (`None`: only if nothing is
    /// stored), and — with a `fence` — only while that lease is still held
    /// and unexpired. Returns whether it wrote.
    ///
    /// The session fences every write made under the lease (a refresh, a
    /// rejected refresh's clear); `start` and `logout` write unfenced.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the backend failed; nothing was written.
    async fn compare_and_swap(
        &self,
        fence: Option<&Lease>,
        expected: Option<&Stamp>,
        new: Option<&TokenSet>,
    ) -> Result<bool, StoreError>;
}

/// A refresh lease: the right to refresh, until it is released or its TTL
/// lapses. Hand it back to [`Coordinator::release`].
#[derive(Clone, PartialEq, Eq)]
pub struct Lease {
    owner: String,
    ttl: Option<Duration>,
}

impl Lease {
    /// A lease owned by `owner` (a unique random token) that lapses after
    /// `ttl` unless renewed.
    pub fn expiring(owner: impl Into<String>, ttl: Duration) -> Self {
        Self {
            owner: owner.into(),
            ttl: Some(ttl),
        }
    }

    /// A lease held until released, or until the platform releases it when
    /// its holder dies (a browser's Web Lock): no TTL, no renewal.
    pub fn until_released(owner: impl Into<String>) -> Self {
        Self {
            owner: owner.into(),
            ttl: None,
        }
    }

    /// A timed lease for `ttl` with a fresh random owner token.
    pub fn generate(ttl: Duration) -> Self {
        Self::expiring(new_owner_token(), ttl)
    }

    /// The owner token: only a release (or a fenced write) carrying it counts.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// How long the lease was granted for; `None` if it is held until released.
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }
}

/// The owner token is redacted: whoever bears it can renew, release or write
/// through the lease (a lapsed holder's log line must not hand it to anyone).
/// Read it with [`Lease::owner`].
impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("owner", &format_args!("[redacted]"))
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// A 128-bit random owner token, hex, prefixed with the process id for
/// debugging (`web` in a browser, which has no process id).
pub fn new_owner_token() -> String {
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    let process = std::process::id();
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    let process = "web";
    format!(
        "{}-{:016x}{:016x}",
        process,
        fastrand::u64(..),
        fastrand::u64(..)
    )
}

/// The default lease TTL for a session whose refresh attempts time out after
/// `refresh_timeout`: the timeout plus half of it (at least one second). The
/// holder renews the lease every third of it while it works, so the TTL is
/// not a bound on the work: it is how long a holder that died blocks the
/// others.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(reauth::coord::lease_ttl(Duration::from_secs(10)), Duration::from_secs(15));
/// assert_eq!(reauth::coord::lease_ttl(Duration::from_secs(1)), Duration::from_secs(2));
/// ```
pub fn lease_ttl(refresh_timeout: Duration) -> Duration {
    refresh_timeout
        .saturating_add((refresh_timeout / 2).max(Duration::from_secs(1)))
        .min(MAX_LEASE_TTL)
}

/// The lease TTL a session uses when `requested` was asked for: at least
/// 1.5 × `refresh_timeout` (so a refresher call, bounded by the timeout,
/// always fits in what is left of a freshly renewed lease), at most a day.
///
/// ```
/// use std::time::Duration;
/// let s = Duration::from_secs;
/// assert_eq!(reauth::coord::clamp_lease_ttl(s(2), s(10)), s(15));
/// assert_eq!(reauth::coord::clamp_lease_ttl(s(60), s(10)), s(60));
/// ```
pub fn clamp_lease_ttl(requested: Duration, refresh_timeout: Duration) -> Duration {
    requested
        .max(refresh_timeout.saturating_add(refresh_timeout / 2))
        .min(MAX_LEASE_TTL)
}

/// The longest lease: a day, however long the refresh timeout (a
/// `Duration::MAX` timeout means "none", not "block the others forever").
const MAX_LEASE_TTL: Duration = Duration::from_secs(24 * 3600);

/// The delay before poll `n` (1-based) for a lease held by someone else:
/// 10 ms doubling to at most 200 ms. The caller adds jitter of up to half.
pub(crate) fn lease_poll_delay(n: u32) -> Duration {
    let ms = 10u64.saturating_mul(1u64 << n.saturating_sub(1).min(5));
    Duration::from_millis(ms.min(200))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_ttl_exceeds_the_refresh_timeout() {
        for s in [0u64, 1, 2, 10, 60] {
            let t = Duration::from_secs(s);
            assert!(lease_ttl(t) > t);
        }
        assert_eq!(
            lease_ttl(Duration::from_millis(500)),
            Duration::from_millis(1500)
        );
        assert_eq!(lease_ttl(Duration::MAX), MAX_LEASE_TTL);
    }

    #[test]
    fn c18_lease_ttl_is_clamped_to_one_and_a_half_refresh_timeouts() {
        let s = Duration::from_secs;
        assert_eq!(clamp_lease_ttl(s(1), s(10)), s(15));
        assert_eq!(clamp_lease_ttl(s(15), s(10)), s(15));
        assert_eq!(clamp_lease_ttl(s(20), s(10)), s(20));
        assert_eq!(clamp_lease_ttl(s(1), Duration::MAX), MAX_LEASE_TTL);
        for t in [0u64, 1, 2, 10, 60] {
            assert!(lease_ttl(s(t)) >= s(t) + s(t) / 2);
        }
    }

    #[test]
    fn lease_polling_backs_off_and_is_bounded() {
        assert_eq!(lease_poll_delay(1), Duration::from_millis(10));
        assert_eq!(lease_poll_delay(2), Duration::from_millis(20));
        assert_eq!(lease_poll_delay(5), Duration::from_millis(160));
        assert_eq!(lease_poll_delay(6), Duration::from_millis(200));
        assert_eq!(lease_poll_delay(u32::MAX), Duration::from_millis(200));
    }

    #[test]
    fn lease_ttls_are_capped_at_a_day() {
        let day = Duration::from_secs(24 * 3600);
        assert_eq!(clamp_lease_ttl(day * 2, Duration::from_secs(10)), day);
        assert_eq!(
            clamp_lease_ttl(day - Duration::from_secs(1), Duration::from_secs(10)),
            day - Duration::from_secs(1)
        );
        assert_eq!(lease_ttl(Duration::from_secs(30 * 3600)), day);
    }

    #[test]
    fn lease_debug_shows_the_ttl_and_redacts_the_owner_token() {
        let owner = new_owner_token();
        let timed = format!(
            "{:?}",
            Lease::expiring(owner.clone(), Duration::from_secs(15))
        );
        assert_eq!(timed, "Lease { owner: [redacted], ttl: Some(15s) }");
        let held = format!("{:?}", Lease::until_released(owner.clone()));
        assert_eq!(held, "Lease { owner: [redacted], ttl: None }");
        assert!(!timed.contains(&owner) && !held.contains(&owner));
    }

    #[test]
    fn owner_tokens_are_unique() {
        assert_ne!(new_owner_token(), new_owner_token());
    }
}
