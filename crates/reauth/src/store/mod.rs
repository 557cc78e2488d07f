//! Where token sets are persisted: the `TokenStore` contract and built-in stores.

use async_trait::async_trait;

use crate::error::StoreError;
use crate::token::TokenSet;

#[cfg(feature = "file-store")]
mod file;
mod memory;

#[cfg(feature = "file-store")]
pub use file::FileStore;
pub use memory::MemoryStore;

/// Persists the session's token set, generation included.
///
/// The session writes every rotated set here **before** any waiter sees it, so
/// that a crash right after a refresh never loses the one-time refresh token the
/// server just issued. `store` must be atomic: a reader sees the old set or the
/// new one, never a mix.
#[async_trait]
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
}
