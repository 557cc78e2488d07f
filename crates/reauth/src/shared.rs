//! Sessions whose store other owners share (browser tabs, processes): adopt
//! what another owner stored, and end when another owner ended the session —
//! both without asking the server.
//!
//! The refresh protocol already adopts a newer stored set whenever it looks
//! (C15, C16). These two calls let an owner that was *told* about a change
//! (a `BroadcastChannel` message or a `storage` event in a browser, a
//! notification in a service) act on it at once, so its next request goes out
//! with the new token instead of a doomed one.

use crate::ahead;
use crate::error::{EndReason, StoreError};
use crate::events::SessionEvent;
use crate::metrics as m;
use crate::session::Session;
use crate::token::Generation;

impl Session {
    /// Publishes the set in the store if it is newer than the session's, without
    /// calling the refresher: another owner of the shared store refreshed (the
    /// event is [`SessionEvent::Adopted`]) or logged in ([`SessionEvent::Started`]
    /// when this session was not active). Returns the generation published, or
    /// `None` when the store holds nothing newer.
    ///
    /// Waiters of a refresh in flight are woken and take the adopted token; the
    /// refresh itself re-reads the store before calling the refresher and adopts
    /// too, so it spends no refresh token.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use reauth::{refresh_fn, MemoryStore, Session, TokenSet, TokenStore};
    /// let store = MemoryStore::new();
    /// let session = Session::builder(refresh_fn(|t: TokenSet| async move { Ok(t) }))
    ///     .store(store.clone())
    ///     .build();
    /// let first = session.start(TokenSet::new("a").with_refresh_token("r1")).await?;
    ///
    /// // Another owner of the store rotated the tokens:
    /// let mut newer = TokenSet::new("b").with_refresh_token("r2");
    /// newer.generation = first.next();
    /// store.store(&newer).await?;
    ///
    /// assert_eq!(session.adopt_stored().await?, Some(first.next()));
    /// assert_eq!(session.try_access_token().unwrap().token().secret(), "b");
    /// assert_eq!(session.adopt_stored().await?, None);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the store could not be read; the session is unchanged.
    pub async fn adopt_stored(&self) -> Result<Option<Generation>, StoreError> {
        let inner = &self.inner;
        let guard = inner.persist.lock().await;
        let Some(tokens) = inner.store.load().await? else {
            return Ok(None);
        };
        if self.generation().is_some_and(|g| tokens.generation <= g) {
            return Ok(None);
        }
        let was_active = self.is_active();
        let p = inner.publishable(tokens);
        let generation = p.generation();
        let epoch = inner.cell.start(p);
        drop(guard);
        inner.events.emit(if was_active {
            SessionEvent::Adopted { generation }
        } else {
            SessionEvent::Started { generation }
        });
        ahead::spawn(inner, epoch);
        Ok(Some(generation))
    }

    /// Ends the session because another owner of the shared store ended it (a
    /// logout in another tab, or a refresh rejected there): wakes every waiter
    /// with [`Error::SessionEnded`](crate::Error::SessionEnded)`(`[`EndReason::EndedElsewhere`]`)`
    /// and emits [`SessionEvent::SessionEnded`] once, but neither clears the
    /// store nor revokes — the owner that ended the session did both, once.
    /// Returns whether an active session ended.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use reauth::{refresh_fn, EndReason, Error, Session, TokenSet};
    /// let session = Session::builder(refresh_fn(|t: TokenSet| async move { Ok(t) })).build();
    /// session.start(TokenSet::new("a")).await?;
    /// assert!(session.end_elsewhere());
    /// assert!(!session.end_elsewhere());
    /// assert!(matches!(session.access_token().await, Err(Error::SessionEnded(EndReason::EndedElsewhere))));
    /// # Ok(()) }
    /// ```
    pub fn end_elsewhere(&self) -> bool {
        let inner = &self.inner;
        let reason = EndReason::EndedElsewhere;
        let announce = || {
            m::session_ended(reason);
            inner.events.emit(SessionEvent::SessionEnded { reason });
        };
        inner.cell.end(reason, announce).is_some()
    }
}
