//! Coordinating one refresh across processes and replicas (C15, C16).
//!
//! The in-process single flight makes one refresh per generation *inside* a
//! process. Processes and replicas sharing a store need the same guarantee
//! among themselves; a store that can give it implements [`Coordinator`] and
//! returns it from [`TokenStore::coordinator`](crate::TokenStore::coordinator).
//!
//! # The protocol (run by the refresh task, behind the single flight)
//!
//! 1. **Lease.** [`Coordinator::try_acquire`] with a TTL of
//!    [`lease_ttl`]`(refresh_timeout)`, polled with bounded exponential backoff
//!    plus jitter while another holder has it. The lease carries a random owner
//!    token; only its owner can release it, and it lapses by itself after the
//!    TTL, so a holder that crashed or hangs blocks the others for at most one
//!    TTL.
//! 2. **Re-read.** Holding the lease, load the store. If it holds a newer
//!    generation than the one this flight refreshes, another process already
//!    refreshed: **adopt** it, without calling the refresher.
//! 3. **Refresh** with the tokens held, bounded by the refresh timeout (which
//!    the TTL exceeds, so the lease outlives any attempt).
//! 4. **Compare-and-set** the result on the generation read in step 2
//!    ([`Coordinator::compare_and_store`]): the generation is the fencing
//!    token, so a holder whose lease lapsed can never overwrite a newer set.
//!    If the CAS fails, adopt what is stored if it is newer.
//! 5. **Release** the lease, then publish.
//!
//! A rejected refresh (`invalid_grant`) re-reads the store under the lease and
//! adopts a newer stored generation ("rotated elsewhere") instead of ending
//! the session.
//!
//! Only one task per process ever asks for the lease for a given generation
//! (the single flight is in front of it), and waiters poll the *lease*, not the
//! tokens, so P processes waiting on one refresh cost P small lease requests
//! per poll interval and one store read each when they get it.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::token::{Generation, TokenSet};

/// Lets processes and replicas that share a [`TokenStore`](crate::TokenStore)
/// make one refresh between them: a lease with a TTL and an owner token, and a
/// compare-and-set write on the token set's generation.
///
/// Built-in: [`MemoryStore`](crate::MemoryStore) (sessions of one process
/// sharing it), [`FileStore`](crate::FileStore) (processes on one machine);
/// `reauth-redis` and `reauth-postgres` coordinate replicas. Every
/// implementation should pass the conformance suite in
/// `reauth::test_util::conformance` (feature `test-util`).
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait Coordinator: Send + Sync + 'static {
    /// Takes the refresh lease for `ttl` if nobody holds it (or the holder's
    /// lease has lapsed). Returns `None` at once if it is held; the session
    /// polls with backoff.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the backend could not be asked. The session treats
    /// this as a transient refresh failure and does **not** refresh without the
    /// lease.
    async fn try_acquire(&self, ttl: Duration) -> Result<Option<Lease>, StoreError>;

    /// Gives the lease back, if `lease` still owns it. Releasing a lease that
    /// has lapsed (and may now belong to someone else) must change nothing.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the backend failed; the lease then lapses by its TTL.
    async fn release(&self, lease: &Lease) -> Result<(), StoreError>;

    /// Stores `tokens` only if the stored set's generation is `expected`
    /// (`None`: only if nothing is stored). Returns whether it stored.
    /// Atomic with respect to every other write to the same store.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the backend failed; nothing was written.
    async fn compare_and_store(
        &self,
        expected: Option<Generation>,
        tokens: &TokenSet,
    ) -> Result<bool, StoreError>;
}

/// A refresh lease: proof of having been granted the right to refresh until
/// the TTL lapses. Hand it back to [`Coordinator::release`].
#[derive(Clone, PartialEq, Eq)]
pub struct Lease {
    owner: String,
    ttl: Duration,
}

impl Lease {
    /// A lease owned by `owner` (a unique random token) for `ttl`.
    pub fn new(owner: impl Into<String>, ttl: Duration) -> Self {
        Self {
            owner: owner.into(),
            ttl,
        }
    }

    /// A lease for `ttl` with a fresh random owner token.
    pub fn generate(ttl: Duration) -> Self {
        Self::new(new_owner_token(), ttl)
    }

    /// The owner token: only a release carrying it frees the lease.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// How long the lease was granted for.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("owner", &self.owner)
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

/// The lease TTL for a session whose refresh attempts time out after
/// `refresh_timeout`: the timeout plus half of it (at least one second) for
/// the re-read and the compare-and-set around the attempt. A holder's attempt
/// therefore always ends before its lease lapses, unless the holder itself
/// stalls (then the CAS on the generation still fences it off).
///
/// ```
/// use std::time::Duration;
/// assert_eq!(reauth::lease_ttl(Duration::from_secs(10)), Duration::from_secs(15));
/// assert_eq!(reauth::lease_ttl(Duration::from_secs(1)), Duration::from_secs(2));
/// ```
pub fn lease_ttl(refresh_timeout: Duration) -> Duration {
    refresh_timeout
        .saturating_add((refresh_timeout / 2).max(Duration::from_secs(1)))
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
    fn lease_polling_backs_off_and_is_bounded() {
        assert_eq!(lease_poll_delay(1), Duration::from_millis(10));
        assert_eq!(lease_poll_delay(2), Duration::from_millis(20));
        assert_eq!(lease_poll_delay(5), Duration::from_millis(160));
        assert_eq!(lease_poll_delay(6), Duration::from_millis(200));
        assert_eq!(lease_poll_delay(u32::MAX), Duration::from_millis(200));
    }

    #[test]
    fn owner_tokens_are_unique() {
        assert_ne!(new_owner_token(), new_owner_token());
    }
}
