use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use crate::error::StoreError;
use crate::store::TokenStore;
use crate::token::TokenSet;

/// A [`TokenStore`] in memory: nothing survives the process. The default.
///
/// Clones share the same slot.
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
    slot: Arc<Mutex<Option<TokenSet>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl TokenStore for MemoryStore {
    async fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        Ok(self.slot.lock().unwrap_or_else(PoisonError::into_inner).clone())
    }

    async fn store(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(tokens.clone());
        Ok(())
    }

    async fn clear(&self) -> Result<(), StoreError> {
        *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = None;
        Ok(())
    }
}
