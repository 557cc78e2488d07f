use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use crate::error::StoreError;
use crate::store::TokenStore;
use crate::token::TokenSet;

/// A [`TokenStore`] in memory: nothing survives the process. The default.
///
/// Clones share the same slot, and coordinate refreshes through it (a
/// [`Coordinator`](crate::coord::Coordinator) lease and compare-and-set), so several
/// sessions of one process sharing a clone make one refresh between them.
///
/// ```
/// # futures::executor::block_on(async {
/// use reauth::{MemoryStore, TokenSet, TokenStore};
/// let store = MemoryStore::new();
/// store.store(&TokenSet::new("a")).await.unwrap();
/// assert!(store.load().await.unwrap().is_some());
/// store.clear().await.unwrap();
/// assert!(store.load().await.unwrap().is_none());
/// # });
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    slot: Arc<Mutex<Slot>>,
}

#[derive(Debug, Default)]
struct Slot {
    tokens: Option<TokenSet>,
    #[cfg_attr(all(target_arch = "wasm32", target_os = "unknown"), allow(dead_code))]
    lease: Option<(String, LeaseClock)>,
}

#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
type LeaseClock = std::time::Instant;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
type LeaseClock = ();

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl TokenStore for MemoryStore {
    async fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        Ok(self.slot().tokens.clone())
    }

    async fn store(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        self.slot().tokens = Some(tokens.clone());
        Ok(())
    }

    async fn clear(&self) -> Result<(), StoreError> {
        self.slot().tokens = None;
        Ok(())
    }

    // `Instant::now` is unavailable in a browser: there, a memory store is
    // private to one session and does not coordinate.
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    fn coordinator(&self) -> Option<&dyn crate::coord::Coordinator> {
        Some(self)
    }
}

#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
mod coordinate {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::coord::{Coordinator, Lease};
    use crate::token::Stamp;

    fn held_by(slot: &Slot, lease: &Lease, now: Instant) -> bool {
        slot.lease
            .as_ref()
            .is_some_and(|(owner, until)| owner == lease.owner() && *until > now)
    }

    fn until(now: Instant, ttl: Duration) -> Instant {
        now.checked_add(ttl)
            .unwrap_or(now + Duration::from_secs(24 * 3600))
    }

    #[cfg_attr(not(target_arch = "wasm32"), async_trait)]
    #[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
    impl Coordinator for MemoryStore {
        async fn try_acquire(&self, ttl: Duration) -> Result<Option<Lease>, StoreError> {
            let mut slot = self.slot();
            let now = Instant::now();
            if slot.lease.as_ref().is_some_and(|(_, until)| *until > now) {
                return Ok(None);
            }
            let lease = Lease::generate(ttl);
            slot.lease = Some((lease.owner().to_owned(), until(now, ttl)));
            Ok(Some(lease))
        }

        async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool, StoreError> {
            let mut slot = self.slot();
            let now = Instant::now();
            if !held_by(&slot, lease, now) {
                return Ok(false);
            }
            slot.lease = Some((lease.owner().to_owned(), until(now, ttl)));
            Ok(true)
        }

        async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
            let mut slot = self.slot();
            if slot
                .lease
                .as_ref()
                .is_some_and(|(owner, _)| owner == lease.owner())
            {
                slot.lease = None;
            }
            Ok(())
        }

        async fn compare_and_swap(
            &self,
            fence: Option<&Lease>,
            expected: Option<&Stamp>,
            new: Option<&TokenSet>,
        ) -> Result<bool, StoreError> {
            let mut slot = self.slot();
            if fence.is_some_and(|lease| !held_by(&slot, lease, Instant::now())) {
                return Ok(false);
            }
            if slot.tokens.as_ref().map(TokenSet::stamp).as_ref() != expected {
                return Ok(false);
            }
            slot.tokens = new.cloned();
            Ok(true)
        }
    }
}
