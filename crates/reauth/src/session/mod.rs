//! The session: the one object requests ask for a token.
//!
//! A folder because the concept has parts that share one state: the public
//! [`Session`] and its builder (here), the state they share ([`inner`]), the
//! spawned refresh task ([`refresh`]), the refresh-ahead timer ([`ahead`])
//! and what another owner of a shared store announced ([`shared`]). Each
//! part depends on `inner` only (and the timer on the refresh task it
//! starts): no cycle.

mod ahead;
mod inner;
mod refresh;
mod shared;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::{Either, select};
use tracing::Instrument;

use crate::error::{EndReason, Error, StoreError};
use crate::events::{EventStream, Events, SessionEvent, Trigger};
use crate::flight::{Cell, Join, Outcome, Waiter};
use crate::future::AccessTokenFuture;
use crate::metrics as m;
use crate::policy::{RefreshAhead, RetryPolicy};
use crate::refresher::Refresher;
use crate::runtime::Runtime;
use crate::store::{MemoryStore, TokenStore};
use crate::token::{Bearer, Generation, Lineage, TokenSet};
use inner::{Config, Inner};

/// Keeps one token set fresh for any number of concurrent callers.
///
/// Cheap to clone; clones share everything. Before a request, call
/// [`access_token`](Self::access_token); when the server refuses the token,
/// call [`invalidate`](Self::invalidate) with the bearer that was sent and
/// replay once with the bearer it returns. However many callers do that at
/// once, one refresh runs per token generation.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use reauth::{refresh_fn, Session, TokenSet};
///
/// let session = Session::builder(refresh_fn(|_current: TokenSet| async {
///     Ok(TokenSet::new("fresh-access").with_refresh_token("fresh-refresh"))
/// }))
/// .build();
/// session.start(TokenSet::new("first-access").with_refresh_token("first-refresh")).await?;
///
/// let bearer = session.access_token().await?;
/// // ... the server answered 401 for `bearer`:
/// let replay_with = session.invalidate(&bearer).await?;
/// assert_eq!(replay_with.token().secret(), "fresh-access");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Session {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Session`].
#[must_use]
pub struct SessionBuilder {
    refresher: Arc<dyn Refresher>,
    store: Arc<dyn TokenStore>,
    runtime: Option<Runtime>,
    config: Config,
    on_ended: Vec<Arc<dyn Fn(EndReason) + Send + Sync>>,
}

impl fmt::Debug for SessionBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SessionBuilder {
    /// Where token sets are persisted. Defaults to a [`MemoryStore`].
    ///
    /// To share one store handle with other owners, pass an
    /// `Arc<impl TokenStore>` or an `Arc<dyn TokenStore>`: both are stores.
    pub fn store(mut self, store: impl TokenStore) -> Self {
        self.store = Arc::new(store);
        self
    }

    /// The clock, sleep, spawner and jitter to use. Default (feature
    /// `tokio`): [`Runtime::tokio`]. Without that feature there is no
    /// default: set one.
    pub fn runtime(mut self, runtime: Runtime) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// The refresh-ahead timer (C14). Default: on, 30 s / 10 % ahead, 5 s jitter.
    pub fn refresh_ahead(mut self, policy: RefreshAhead) -> Self {
        self.config.refresh_ahead = policy;
        self
    }

    /// How transient refresh failures are retried (C5). Default: 4 attempts
    /// within 30 s, backoff from 200 ms.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.config.retry = policy;
        self
    }

    /// The time one refresh attempt may take before it counts as a transient
    /// failure (C9). Default 10 s.
    pub fn refresh_timeout(mut self, timeout: Duration) -> Self {
        self.config.refresh_timeout = timeout;
        self
    }

    /// The longest one caller waits for a refresh before it gets
    /// [`Error::Timeout`] (C9). The refresh itself goes on. Default 30 s.
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.config.wait_timeout = timeout;
        self
    }

    /// How long before `expires_at` a token stops being handed out (capped at a
    /// quarter of its lifetime). Default 5 s.
    pub fn expiry_leeway(mut self, leeway: Duration) -> Self {
        self.config.expiry_leeway = leeway;
        self
    }

    /// The TTL of the refresh lease on a coordinating store (C15, C16, C18):
    /// how long a holder that died blocks the others. A live holder renews
    /// it every third of the TTL while it works. Default
    /// [`lease_ttl`](crate::coord::lease_ttl)`(refresh_timeout)`: 15 s with the
    /// default 10 s timeout.
    ///
    /// Clamped when the session is built to at least 1.5 × the
    /// [`refresh_timeout`](Self::refresh_timeout) (and at most a day;
    /// [`clamp_lease_ttl`](crate::coord::clamp_lease_ttl)): a refresher call
    /// only starts while the lease has a whole refresh timeout left, so a
    /// shorter TTL would leave no room for one between renewals.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.config.lease_ttl = Some(ttl);
        self
    }

    /// Called once when the session ends (rejected refresh or logout), before
    /// the [`SessionEvent::SessionEnded`] event is delivered; after a logout,
    /// once the store was cleared. Runs after every lock of the session is
    /// released, so it may call back into the session. A callback that
    /// panics is caught and logged: the other callbacks, the event and the
    /// waiters still get their turn.
    pub fn on_session_ended(mut self, f: impl Fn(EndReason) + Send + Sync + 'static) -> Self {
        self.on_ended.push(Arc::new(f));
        self
    }

    /// The session, with no tokens yet: call [`Session::start`] or [`Session::restore`].
    ///
    /// # Panics
    ///
    /// If no [`runtime`](Self::runtime) was set and the `tokio` feature is off.
    pub fn build(self) -> Session {
        let events = Events::default();
        for cb in self.on_ended {
            events.on_ended(cb);
        }
        let rt = self.runtime.unwrap_or_else(default_runtime);
        let mut config = self.config;
        config.lease_ttl = Some(config.lease_terms().ttl);
        Session {
            inner: Arc::new(Inner {
                cell: Cell::new(),
                refresher: self.refresher,
                store: self.store,
                rt,
                config,
                events,
            }),
        }
    }
}

#[cfg(feature = "tokio")]
fn default_runtime() -> Runtime {
    Runtime::tokio()
}

#[cfg(not(feature = "tokio"))]
fn default_runtime() -> Runtime {
    panic!("reauth: no runtime; call SessionBuilder::runtime (the `tokio` feature is off)")
}

impl Session {
    /// A builder for a session refreshing with `refresher`. Every other knob
    /// has a default: see the [`SessionBuilder`] methods.
    pub fn builder(refresher: impl Refresher) -> SessionBuilder {
        SessionBuilder {
            refresher: Arc::new(refresher),
            store: Arc::new(MemoryStore::new()),
            runtime: None,
            config: Config::default(),
            on_ended: Vec::new(),
        }
    }

    /// Starts a session from a login result — a new **lineage** — and
    /// replaces any previous session.
    ///
    /// Writes `tokens` with a compare-and-set on what the store held when it
    /// read it (C20), with a fresh [`Lineage`] and a generation above any seen
    /// before, then publishes them and arms the refresh-ahead timer. On a
    /// shared store the other processes see a set of another lineage and
    /// report it ([`SessionEvent::ForeignSet`]) instead of adopting it. To
    /// resume the session another process stored, use
    /// [`restore`](Self::restore), not `start`.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the store could not be read or refused the write
    /// ([`StoreError::Conflict`] if other writers kept winning); the session
    /// is then not started, and `tokens` are not lost (retry, or use another
    /// store). A store that holds data it cannot understand
    /// ([`StoreError::Corrupt`]) is not an error here: the login replaces
    /// it, and the corruption is reported as [`SessionEvent::StoreFailed`].
    pub async fn start(&self, mut tokens: TokenSet) -> Result<Generation, StoreError> {
        let inner = &self.inner;
        tokens.lineage = Lineage::generate();
        let persist = inner.cell.persist().await;
        let attempts = inner.config.store_attempts.max(1);
        let mut written = None;
        for _ in 0..attempts {
            // A failed read is an error, never "empty" (C20). Data that was
            // read but cannot be understood is nobody's session: a login
            // replaces it (reported as a store failure).
            let stored = match inner.bounded(inner.store.load()).await {
                Ok(stored) => Some(stored),
                Err(StoreError::Corrupt(e)) => {
                    inner.report_store_failure(StoreError::Corrupt(e));
                    None
                }
                Err(e) => return Err(e),
            };
            let above = stored
                .as_ref()
                .and_then(|s| s.as_ref().map(|t| t.generation))
                .unwrap_or_default();
            tokens.generation = inner.cell.last_generation().max(above).next();
            let p = inner.publishable(tokens.clone());
            let wrote = match (inner.store.coordinator(), &stored) {
                (Some(coord), Some(stored)) => {
                    let expected = stored.as_ref().map(TokenSet::stamp);
                    let cas = coord.compare_and_swap(None, expected.as_ref(), Some(&p.tokens));
                    inner.bounded(cas).await?
                }
                _ => inner
                    .bounded(inner.store.store(&p.tokens))
                    .await
                    .map(|()| true)?,
            };
            if wrote {
                written = Some(p);
                break;
            }
        }
        let Some(p) = written else {
            return Err(StoreError::Conflict);
        };
        let generation = p.generation();
        let (epoch, wake) = inner.cell.start(&persist, p);
        wake.deliver(Some(persist), || {
            inner.events.emit(SessionEvent::Started { generation });
        });
        ahead::spawn(inner, epoch);
        Ok(generation)
    }

    /// Resumes the session persisted in the store, if any (a restart, or
    /// another process's login): returns whether one was found.
    ///
    /// If a session of the same lineage is already active and the store
    /// holds nothing newer, it is left alone (a refresh in flight is not
    /// thrown away). A stored set of another lineage replaces the active
    /// session, as an explicit choice of the caller.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the store could not be read.
    pub async fn restore(&self) -> Result<bool, StoreError> {
        let inner = &self.inner;
        let persist = inner.cell.persist().await;
        let Some(tokens) = inner.bounded(inner.store.load()).await? else {
            return Ok(false);
        };
        let active = inner.cell.load().as_ref().map(|p| p.tokens.stamp());
        if active.is_some_and(|a| a.lineage == tokens.lineage && tokens.generation <= a.generation)
        {
            return Ok(true);
        }
        let p = inner.publishable(tokens);
        let generation = p.generation();
        let (epoch, wake) = inner.cell.start(&persist, p);
        wake.deliver(Some(persist), || {
            inner.events.emit(SessionEvent::Started { generation });
        });
        ahead::spawn(inner, epoch);
        Ok(true)
    }

    /// The token to send now.
    ///
    /// Returns at once while the current token is valid — also while a
    /// refresh-ahead is running (C4b). Waits for the refresh when the token has
    /// expired or a request was refused with it (C4a), starting that refresh if
    /// nobody has.
    ///
    /// # Errors
    ///
    /// See [`Error`]: no session, session ended, refresh unavailable or
    /// misconfigured, or this caller's wait timed out.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe. Dropping the future never cancels a refresh: refreshes run
    /// on their own spawned task, and other waiters still get the result (C8).
    pub fn access_token(&self) -> AccessTokenFuture {
        if let Some(bearer) = self.try_access_token() {
            return AccessTokenFuture::ready(Ok(bearer));
        }
        let this = self.clone();
        AccessTokenFuture::waiting(Box::pin(async move { this.slow_path(None).await }))
    }

    /// The token to send now, if one can be used without waiting: the fast path
    /// of [`access_token`](Self::access_token) on its own, for synchronous code.
    /// `None` when the token has expired, was refused, or there is no session;
    /// then call `access_token().await` to wait for (or start) the refresh.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use reauth::{refresh_fn, Session, TokenSet};
    /// let session = Session::builder(refresh_fn(|t: TokenSet| async move { Ok(t) })).build();
    /// assert!(session.try_access_token().is_none());
    /// session.start(TokenSet::new("access")).await?;
    /// assert_eq!(session.try_access_token().unwrap().token().secret(), "access");
    /// # Ok(()) }
    /// ```
    #[inline]
    #[must_use]
    pub fn try_access_token(&self) -> Option<Bearer> {
        let now = self.inner.rt.now();
        self.inner.cell.load().as_ref()?.usable(now)
    }

    /// Reports that the server refused `sent` (a 401) and returns the bearer to
    /// replay the request with.
    ///
    /// If `sent` is from the current generation, a refresh starts (or the one
    /// in flight is joined) and this waits for it. If a newer generation was
    /// published meanwhile, no refresh happens and the newer token is returned
    /// (C3). Replay once; if the replay is refused too, return that response to
    /// the caller (C10) and call [`replay_rejected`](Self::replay_rejected).
    ///
    /// # Errors
    ///
    /// As [`access_token`](Self::access_token).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`access_token`](Self::access_token).
    pub async fn invalidate(&self, sent: &Bearer) -> Result<Bearer, Error> {
        self.slow_path(Some(sent)).await
    }

    /// Reports that the server refused `sent`, without waiting for the
    /// refresh: marks the token refused and starts the refresh unless one is
    /// running. For a request that cannot be replayed (a streamed body, C11):
    /// its caller gets the `401`, and the next call finds the new token. Does
    /// nothing if `sent` is older than the current generation (C3).
    ///
    /// Starting the refresh uses the session's spawner, so call it where that
    /// works (with [`Runtime::tokio`], inside a tokio runtime).
    pub fn refused(&self, sent: &Bearer) {
        if let Ok(Join::Start(ticket, _)) = self.inner.cell.join(
            sent.generation(),
            Some(sent.lineage()),
            Trigger::Rejected,
            self.inner.rt.mono(),
        ) {
            refresh::spawn(&self.inner, ticket, Trigger::Rejected);
        }
    }

    /// Records that a request replayed with `bearer` was refused again: emits
    /// [`SessionEvent::ReplayRejected`]. Starts no refresh.
    pub fn replay_rejected(&self, bearer: &Bearer) {
        m::replay_rejected();
        self.inner.events.emit(SessionEvent::ReplayRejected {
            generation: bearer.generation(),
        });
    }

    async fn slow_path(&self, mut refused: Option<&Bearer>) -> Result<Bearer, Error> {
        let inner = &self.inner;
        let started = inner.rt.mono();
        let mut deadline = inner.rt.sleep.sleep(inner.config.wait_timeout);
        // The generation of the last refresh this caller waited for.
        let mut waited_on: Option<Generation> = None;
        let result = loop {
            let cur = match inner.cell.current() {
                Ok(cur) => cur,
                Err(e) => break Err(e),
            };
            // A refused token asks for a refresh of *its* generation; the cell
            // answers `Newer` if that generation was already replaced, and the
            // request is replayed with the newer token, no refresh (C3).
            let (seen, of, trigger) = match refused.take() {
                Some(b) => (b.generation(), b.lineage().clone(), Trigger::Rejected),
                None => match cur.usable(inner.rt.now()) {
                    Some(bearer) => break Ok(bearer),
                    None => {
                        // A set that the refresh we waited for just published is
                        // handed out even if the clock already calls it expired
                        // (`expires_in: 0`, an adopted set that is already old):
                        // refreshing again at once would loop (C14).
                        if waited_on.is_some_and(|g| cur.generation() > g)
                            && let Some(bearer) = cur.unless_refused()
                        {
                            break Ok(bearer);
                        }
                        (
                            cur.generation(),
                            cur.tokens.lineage.clone(),
                            Trigger::Expired,
                        )
                    }
                },
            };
            let waiter: Waiter = match inner.cell.join(seen, Some(&of), trigger, inner.rt.mono()) {
                Err(e) => break Err(e),
                Ok(Join::Newer) => continue,
                Ok(Join::Wait(w)) => {
                    m::joined();
                    inner.events.emit(SessionEvent::JoinedFlight {
                        generation: seen,
                        trigger,
                    });
                    w
                }
                Ok(Join::Start(ticket, w)) => {
                    refresh::spawn(inner, ticket, trigger);
                    w
                }
            };
            waited_on = Some(seen);
            let wait = waiter
                .instrument(tracing::debug_span!("reauth.wait", generation = %cur.generation()));
            match select(wait, &mut deadline).await {
                Either::Left((Outcome::LookAgain, _)) => {}
                Either::Left((Outcome::Failed(e), _)) => break Err(e),
                Either::Right(((), _)) => break Err(Error::Timeout),
            }
        };
        if waited_on.is_some() {
            m::waited(inner.elapsed(started));
        }
        result
    }

    /// Ends the session (C17): stops handing out its tokens at once, removes
    /// this login's set from the store, **then** wakes every waiter with
    /// [`Error::SessionEnded`] and announces the end once (callbacks, then
    /// the event) — an observer of the end never finds the logged-out set in
    /// the store — and asks the server to revoke the tokens (RFC 7009, best
    /// effort). Does nothing if no session is active.
    ///
    /// The store is cleared with a compare-and-set on the stored set's stamp,
    /// and only if the stored set is of this session's lineage: a newer set
    /// of this login that another process wrote meanwhile is cleared too (no
    /// logout is undone by a refresh elsewhere), another login's set is left
    /// alone (C20).
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the store could not be read or cleared, or if the
    /// runtime shut down before it was ([`StoreError::Abandoned`]). `Ok`
    /// means that no set of this login is left in the store. The session has
    /// ended regardless.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the session ends at the first poll, and clearing the store
    /// and revoking run on their own task, so a caller that stops waiting
    /// cannot leave the ended session's tokens in the store.
    pub async fn logout(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        // The session stops handing out tokens at once; the end is
        // announced (callbacks, event, waiters) only once the store was
        // cleared, so an observer of the end never finds the logged-out set
        // in the store (and cannot restore it).
        let Some((old, epoch, wake)) = inner.cell.end(EndReason::LoggedOut) else {
            return Ok(());
        };
        let (tx, rx) = oneshot::channel();
        let task_inner = Arc::clone(inner);
        inner.rt.spawn.spawn(Box::pin(async move {
            let inner = &task_inner;
            let (cleared, newest) = finish_logout(inner, &old.tokens, epoch).await;
            wake.deliver(None, || {
                m::session_ended(EndReason::LoggedOut);
                inner.events.emit(SessionEvent::SessionEnded {
                    reason: EndReason::LoggedOut,
                });
            });
            refresh::revoke_best_effort(inner, newest.as_ref().unwrap_or(&old.tokens)).await;
            let _ = tx.send(cleared);
        }));
        // A task that never ran (the runtime is shutting down) cleared nothing.
        rx.await.unwrap_or(Err(StoreError::Abandoned))
    }

    /// Subscribes to the session's events from now on.
    pub fn events(&self) -> EventStream {
        self.inner.events.subscribe()
    }

    /// The generation of the published token set, if a session is active.
    pub fn generation(&self) -> Option<Generation> {
        self.inner.cell.load().as_ref().map(|p| p.generation())
    }

    /// A copy of the published token set, if a session is active.
    pub fn tokens(&self) -> Option<TokenSet> {
        self.inner.cell.load().as_ref().map(|p| p.tokens.clone())
    }

    /// Whether a session is active.
    pub fn is_active(&self) -> bool {
        self.inner.cell.load().is_some()
    }
}

/// The part of [`Session::logout`] that outlives its caller: remove this
/// login's set from the store (unless a new session started meanwhile — its
/// tokens are not ours to clear). Returns whether that worked and the newest
/// set of this login the store held, to revoke: a refresh that finished
/// while logout began may have stored a set newer than `published`.
async fn finish_logout(
    inner: &Inner,
    published: &TokenSet,
    epoch: u64,
) -> (Result<(), StoreError>, Option<TokenSet>) {
    let persist = inner.cell.persist().await;
    let mut newest: Option<TokenSet> = None;
    let mut cleared = Ok(());
    if inner.cell.epoch() == epoch {
        cleared = Err(StoreError::Conflict);
        for _ in 0..inner.config.store_attempts.max(1) {
            let stored = match inner.bounded(inner.store.load()).await {
                Ok(Some(stored)) if stored.lineage == published.lineage => stored,
                // Nothing, or another login's set: nothing of ours is left.
                Ok(_) => {
                    cleared = Ok(());
                    break;
                }
                Err(e) => {
                    cleared = Err(e);
                    break;
                }
            };
            let expected = stored.stamp();
            if stored.generation > published.generation {
                newest = Some(stored);
            }
            let Some(coord) = inner.store.coordinator() else {
                cleared = inner.bounded(inner.store.clear()).await;
                break;
            };
            match inner
                .bounded(coord.compare_and_swap(None, Some(&expected), None))
                .await
            {
                Ok(true) => {
                    cleared = Ok(());
                    break;
                }
                Ok(false) => {} // rotated meanwhile: read and clear again
                Err(e) => {
                    cleared = Err(e);
                    break;
                }
            }
        }
    }
    drop(persist);
    (cleared, newest)
}
