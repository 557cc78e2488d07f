//! A memory store that counts writes and fails on request.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use reauth::{MemoryStore, StoreError, TokenSet, TokenStore};

/// A [`MemoryStore`] that counts writes and can be told to fail.
#[derive(Clone, Debug, Default)]
pub struct FlakyStore {
    inner: MemoryStore,
    fail_writes: Arc<AtomicUsize>,
    writes: Arc<AtomicUsize>,
}

impl FlakyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next `n` writes fail.
    pub fn fail_next_writes(&self, n: usize) {
        self.fail_writes.store(n, Ordering::SeqCst);
    }

    /// Successful writes so far.
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    /// The stored set, read synchronously.
    pub fn peek(&self) -> Option<TokenSet> {
        futures::executor::block_on(self.inner.load())
            .ok()
            .flatten()
    }
}

#[async_trait]
impl TokenStore for FlakyStore {
    async fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        self.inner.load().await
    }

    async fn store(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        // A real store does I/O: let other tasks run before the write lands.
        tokio::task::yield_now().await;
        let failing = self
            .fail_writes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(StoreError::Io(std::io::Error::other(
                "disk full (scripted)",
            )));
        }
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.store(tokens).await
    }

    async fn clear(&self) -> Result<(), StoreError> {
        self.inner.clear().await
    }
}
