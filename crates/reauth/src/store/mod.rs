//! Where token sets are persisted: the `TokenStore` contract and built-in stores.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::token::TokenSet;

#[cfg(feature = "file-store")]
mod file;
mod memory;

use crate::coord::Coordinator;
#[cfg(feature = "file-store")]
pub use file::FileStore;
pub use memory::MemoryStore;

/// Persists the session's token set, generation included.
///
/// The session writes every rotated set here **before** any waiter sees it, so
/// that a crash right after a refresh never loses the one-time refresh token the
/// server just issued. `store` must be atomic: a reader sees the old set or the
/// new one, never a mix.
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
pub trait TokenStore: Send + Sync + 'static {
    /// The stored set, if any.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the backend fails or holds unreadable data.
    async fn load(&self) -> Result<Option<TokenSet>, StoreError>;

    /// Replaces the stored set atomically.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the write did not happen; the previous set is kept.
    async fn store(&self, tokens: &TokenSet) -> Result<(), StoreError>;

    /// Removes the stored set.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the backend fails.
    async fn clear(&self) -> Result<(), StoreError>;

    /// The store's cross-process coordination, if it has any (C15, C16).
    ///
    /// A store shared by several processes or replicas returns its
    /// [`Coordinator`] here; the session then takes a lease, re-reads the
    /// store and writes with compare-and-set around every refresh, so that one
    /// refresh happens across all of them. The default is `None`: the store is
    /// private to one session and the in-process single flight is enough.
    ///
    /// **A store that wraps another must forward this** (as the blanket
    /// implementation for `Arc<S>` does): a wrapper that keeps the default
    /// silently turns a shared store into a private one, and the processes
    /// sharing it then refresh — and spend one-time refresh tokens — each on
    /// their own. Answer the same way every time: the session asks on each
    /// refresh attempt.
    fn coordinator(&self) -> Option<&dyn Coordinator> {
        None
    }
}

/// A shared handle is a store too: `Arc<S>` and `Arc<dyn TokenStore>`
/// delegate every call, coordination included.
#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl<S: TokenStore + ?Sized> TokenStore for Arc<S> {
    async fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        (**self).load().await
    }

    async fn store(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        (**self).store(tokens).await
    }

    async fn clear(&self) -> Result<(), StoreError> {
        (**self).clear().await
    }

    fn coordinator(&self) -> Option<&dyn Coordinator> {
        (**self).coordinator()
    }
}
