//! Sessions whose store other owners share (browser tabs, processes): adopt
//! what another owner stored, and end when another owner ended the session —
//! both without asking the server.
//!
//! The refresh protocol already adopts a newer stored set whenever it looks
//! (C15, C16). These two calls let an owner that was *told* about a change
//! (a `BroadcastChannel` message or a `storage` event in a browser, a
//! notification in a service) act on it at once, so its next request goes out
//! with the new token instead of a doomed one.

use super::{Session, ahead};
use crate::error::{EndReason, StoreError};
use crate::events::SessionEvent;
use crate::metrics as m;
use crate::token::Generation;

impl Session {
    /// Publishes the set in the store if it is newer than the session's, without
    /// calling the refresher: another owner of the shared store refreshed (the
    /// event is [`SessionEvent::Adopted`]) or logged in ([`SessionEvent::Started`]
    /// when this session was not active). Returns the generation published, or
    /// `None` when the store holds nothing newer.
    ///
    /// A stored set of **another lineage** while this session is active is
    /// another login (C19): it is reported ([`SessionEvent::ForeignSet`]),
    /// not adopted, and this session ends as [`EndReason::Superseded`] —
    /// call [`restore`](Self::restore) to switch to it deliberately.
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
    /// // Another owner of the store rotated the tokens of this login:
    /// let lineage = session.tokens().unwrap().lineage;
    /// let newer = TokenSet::new("b")
    ///     .with_refresh_token("r2")
    ///     .with_generation(first.next())
    ///     .with_lineage(lineage);
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
        let persist = inner.cell.persist().await;
        let Some(tokens) = inner.bounded(inner.store.load()).await? else {
            return Ok(None);
        };
        let active = inner.cell.load().as_ref().map(|p| p.tokens.stamp());
        if let Some(active) = &active {
            if active.lineage != tokens.lineage {
                let report = SessionEvent::ForeignSet {
                    generation: tokens.generation,
                    lineage: tokens.lineage,
                };
                drop(persist);
                self.end_with(EndReason::Superseded, Some(report));
                return Ok(None);
            }
            if tokens.generation <= active.generation {
                return Ok(None);
            }
        }
        let p = inner.publishable(tokens);
        let generation = p.generation();
        let (epoch, wake) = inner.cell.start(&persist, p);
        wake.deliver(Some(persist), || {
            inner.events.emit(if active.is_some() {
                SessionEvent::Adopted { generation }
            } else {
                SessionEvent::Started { generation }
            });
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
        self.end_with(EndReason::EndedElsewhere, None)
    }

    /// Ends an active session for `reason` without touching the store,
    /// announcing `first` ahead of the end. Whether it ended one.
    fn end_with(&self, reason: EndReason, first: Option<SessionEvent>) -> bool {
        let inner = &self.inner;
        let Some((_, _, wake)) = inner.cell.end(reason) else {
            return false;
        };
        wake.deliver(None, || {
            if let Some(first) = first {
                inner.events.emit(first);
            }
            m::session_ended(reason);
            inner.events.emit(SessionEvent::SessionEnded { reason });
        });
        true
    }
}
