//! A coordinating memory store whose lease runs on tokio's (virtual) clock,
//! with scripted slowness, failing renewals and lost leases (C18 on virtual time).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use reauth::coord::{Coordinator, Lease};
use reauth::{Stamp, StoreError, TokenSet, TokenStore};
use tokio::time::Instant;

#[derive(Debug, Default)]
struct State {
    tokens: Option<TokenSet>,
    lease: Option<(String, Instant)>,
}

/// A [`TokenStore`] + [`Coordinator`] in memory whose leases lapse by tokio's
/// clock (virtual under `tokio::time::pause`). Clones share the same slot.
///
/// Knobs: every `load` can take a while ([`set_load_delay`](Self::set_load_delay)),
/// renewals can fail ([`fail_renewals`](Self::fail_renewals)), the lease can
/// vanish ([`lose_lease`](Self::lose_lease)).
#[derive(Clone, Debug, Default)]
pub struct TimedStore {
    state: Arc<Mutex<State>>,
    load_delay_ms: Arc<AtomicU64>,
    fail_renewals: Arc<AtomicBool>,
    renewals: Arc<AtomicUsize>,
    renew_calls: Arc<AtomicUsize>,
}

impl TimedStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every `load` from now on takes `delay` (of tokio time).
    pub fn set_load_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.load_delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Renewals fail (the store cannot be reached for them) from now on.
    pub fn fail_renewals(&self) {
        self.fail_renewals.store(true, Ordering::SeqCst);
    }

    /// Forgets the current lease, as a store that evicted or expired it early
    /// would: the holder's next renewal answers `false`.
    pub fn lose_lease(&self) {
        self.state().lease = None;
    }

    /// Renewal requests so far, answered or not.
    pub fn renew_calls(&self) -> usize {
        self.renew_calls.load(Ordering::SeqCst)
    }

    /// Successful renewals so far.
    pub fn renewals(&self) -> usize {
        self.renewals.load(Ordering::SeqCst)
    }

    /// Whether someone holds an unexpired lease now.
    pub fn lease_held(&self) -> bool {
        self.state()
            .lease
            .as_ref()
            .is_some_and(|(_, until)| *until > Instant::now())
    }

    /// The stored set, read synchronously.
    pub fn peek(&self) -> Option<TokenSet> {
        self.state().tokens.clone()
    }

    fn held_by(&self, lease: &Lease) -> bool {
        self.state()
            .lease
            .as_ref()
            .is_some_and(|(owner, until)| owner == lease.owner() && *until > Instant::now())
    }
}

#[async_trait]
impl TokenStore for TimedStore {
    async fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        let delay = self.load_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        Ok(self.state().tokens.clone())
    }

    async fn store(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        self.state().tokens = Some(tokens.clone());
        Ok(())
    }

    async fn clear(&self) -> Result<(), StoreError> {
        self.state().tokens = None;
        Ok(())
    }

    fn coordinator(&self) -> Option<&dyn Coordinator> {
        Some(self)
    }
}

#[async_trait]
impl Coordinator for TimedStore {
    async fn try_acquire(&self, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let mut st = self.state();
        let now = Instant::now();
        if st.lease.as_ref().is_some_and(|(_, until)| *until > now) {
            return Ok(None);
        }
        let lease = Lease::generate(ttl);
        st.lease = Some((lease.owner().to_owned(), now + ttl));
        Ok(Some(lease))
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool, StoreError> {
        self.renew_calls.fetch_add(1, Ordering::SeqCst);
        if self.fail_renewals.load(Ordering::SeqCst) {
            return Err(StoreError::Io(std::io::Error::other(
                "the store is unreachable (scripted)",
            )));
        }
        if !self.held_by(lease) {
            return Ok(false);
        }
        self.state().lease = Some((lease.owner().to_owned(), Instant::now() + ttl));
        self.renewals.fetch_add(1, Ordering::SeqCst);
        Ok(true)
    }

    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let mut st = self.state();
        if st
            .lease
            .as_ref()
            .is_some_and(|(owner, _)| owner == lease.owner())
        {
            st.lease = None;
        }
        Ok(())
    }

    async fn compare_and_swap(
        &self,
        fence: Option<&Lease>,
        expected: Option<&Stamp>,
        new: Option<&TokenSet>,
    ) -> Result<bool, StoreError> {
        if fence.is_some_and(|lease| !self.held_by(lease)) {
            return Ok(false);
        }
        let mut st = self.state();
        if st.tokens.as_ref().map(TokenSet::stamp).as_ref() != expected {
            return Ok(false);
        }
        st.tokens = new.cloned();
        Ok(true)
    }
}
