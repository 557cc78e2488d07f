//! The session: the one object requests ask for a token.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::channel::oneshot;
use futures::future::{Either, select};
use futures::lock::Mutex as AsyncMutex;
use tracing::Instrument;

use crate::error::{EndReason, Error, StoreError};
use crate::events::{EventStream, Events, SessionEvent, Trigger};
use crate::flight::{Cell, Join, Outcome, Published, Waiter};
use crate::future::AccessTokenFuture;
use crate::policy::{RefreshAhead, RetryPolicy, is_expired};
use crate::refresher::Refresher;
use crate::runtime::Runtime;
use crate::store::{MemoryStore, TokenStore};
use crate::token::{Bearer, Generation, TokenSet};
use crate::{ahead, metrics as m, refresh};

/// Timeouts and policies of a session; see the [`SessionBuilder`] methods.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) refresh_ahead: RefreshAhead,
    pub(crate) retry: RetryPolicy,
    pub(crate) refresh_timeout: Duration,
    pub(crate) wait_timeout: Duration,
    pub(crate) expiry_leeway: Duration,
    pub(crate) store_attempts: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            refresh_ahead: RefreshAhead::default(),
            retry: RetryPolicy::default(),
            refresh_timeout: Duration::from_secs(10),
            wait_timeout: Duration::from_secs(30),
            expiry_leeway: Duration::from_secs(5),
            store_attempts: 3,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) cell: Cell,
    pub(crate) refresher: Arc<dyn Refresher>,
    pub(crate) store: Arc<dyn TokenStore>,
    pub(crate) rt: Runtime,
    pub(crate) config: Config,
    pub(crate) events: Events,
    /// Serialises store writes with publication: a refresh holds it from its
    /// "still current?" check through persist and publish; `start` and `logout`
    /// take it for their writes. So the store never ends up holding a set older
    /// than, or from another session than, what was published last.
    pub(crate) persist: AsyncMutex<()>,
}

impl Inner {
    pub(crate) fn publishable(&self, mut tokens: TokenSet) -> Arc<Published> {
        if tokens.obtained_at.is_none() {
            tokens.obtained_at = Some(self.rt.now());
        }
        let usable_until = tokens.expires_at.map(|exp| {
            // The first instant `is_expired` says yes.
            let leeway = self.config.expiry_leeway;
            let capped = match tokens.obtained_at {
                Some(o) => leeway.min(exp.duration_since(o).unwrap_or(Duration::ZERO) / 4),
                None => leeway,
            };
            exp.checked_sub(capped).unwrap_or(SystemTime::UNIX_EPOCH)
        });
        debug_assert!(usable_until.is_none_or(|u| is_expired(
            tokens.expires_at,
            tokens.obtained_at,
            self.config.expiry_leeway,
            u
        )));
        Arc::new(Published::new(tokens, usable_until))
    }
}

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
    runtime: Runtime,
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
    pub fn store(mut self, store: impl TokenStore) -> Self {
        self.store = Arc::new(store);
        self
    }

    /// A store shared with other owners.
    pub fn shared_store(mut self, store: Arc<dyn TokenStore>) -> Self {
        self.store = store;
        self
    }

    /// The clock, sleep, spawner and jitter to use.
    pub fn runtime(mut self, runtime: Runtime) -> Self {
        self.runtime = runtime;
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

    /// Called once when the session ends (rejected refresh or logout), before
    /// the [`SessionEvent::SessionEnded`] event is delivered.
    pub fn on_session_ended(mut self, f: impl Fn(EndReason) + Send + Sync + 'static) -> Self {
        self.on_ended.push(Arc::new(f));
        self
    }

    /// The session, with no tokens yet: call [`Session::start`] or [`Session::restore`].
    pub fn build(self) -> Session {
        let events = Events::default();
        for cb in self.on_ended {
            events.on_ended(cb);
        }
        Session {
            inner: Arc::new(Inner {
                cell: Cell::new(),
                refresher: self.refresher,
                store: self.store,
                rt: self.runtime,
                config: self.config,
                events,
                persist: AsyncMutex::new(()),
            }),
        }
    }
}

impl Session {
    /// A builder on the tokio runtime.
    #[cfg(feature = "tokio")]
    pub fn builder(refresher: impl Refresher) -> SessionBuilder {
        Self::builder_with_runtime(refresher, Runtime::tokio())
    }

    /// A builder on the given runtime (for other executors and wasm32).
    pub fn builder_with_runtime(refresher: impl Refresher, runtime: Runtime) -> SessionBuilder {
        SessionBuilder {
            refresher: Arc::new(refresher),
            store: Arc::new(MemoryStore::new()),
            runtime,
            config: Config::default(),
            on_ended: Vec::new(),
        }
    }

    /// Starts a session from a login result: persists `tokens` with a
    /// generation above any seen before, then publishes them and arms the
    /// refresh-ahead timer. Replaces any previous session.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the store refused the write; the session is then not
    /// started, and `tokens` are not lost (retry, or use another store).
    pub async fn start(&self, mut tokens: TokenSet) -> Result<Generation, StoreError> {
        let inner = &self.inner;
        let _guard = inner.persist.lock().await;
        let stored = inner
            .store
            .load()
            .await
            .ok()
            .flatten()
            .map(|t| t.generation)
            .unwrap_or_default();
        tokens.generation = inner.cell.last_generation().max(stored).next();
        let p = inner.publishable(tokens);
        inner.store.store(&p.tokens).await?;
        let generation = p.generation();
        let epoch = inner.cell.start(p);
        drop(_guard);
        inner.events.emit(SessionEvent::Started { generation });
        ahead::spawn(inner, epoch);
        Ok(generation)
    }

    /// Resumes the session persisted in the store, if any (a restart). Returns
    /// whether one was found.
    ///
    /// If a session is already active and the store holds nothing newer, it
    /// is left alone (a refresh in flight is not thrown away).
    ///
    /// # Errors
    ///
    /// [`StoreError`] if the store could not be read.
    pub async fn restore(&self) -> Result<bool, StoreError> {
        let inner = &self.inner;
        let _guard = inner.persist.lock().await;
        let Some(tokens) = inner.store.load().await? else {
            return Ok(false);
        };
        if self.generation().is_some_and(|g| tokens.generation <= g) {
            return Ok(true);
        }
        let p = inner.publishable(tokens);
        let generation = p.generation();
        let epoch = inner.cell.start(p);
        drop(_guard);
        inner.events.emit(SessionEvent::Started { generation });
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
        self.slow_path(Some(sent.generation())).await
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
        if let Ok(Join::Start(ticket, _)) =
            self.inner
                .cell
                .join(sent.generation(), Trigger::Rejected, self.inner.rt.now())
        {
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

    async fn slow_path(&self, mut refused: Option<Generation>) -> Result<Bearer, Error> {
        let inner = &self.inner;
        let started = inner.rt.now();
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
            let (seen, trigger) = match refused.take() {
                Some(g) => (g, Trigger::Rejected),
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
                        (cur.generation(), Trigger::Expired)
                    }
                },
            };
            let waiter: Waiter = match inner.cell.join(seen, trigger, inner.rt.now()) {
                Err(e) => break Err(e),
                Ok(Join::Newer) => continue,
                Ok(Join::Wait(w)) => {
                    m::joined();
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
            m::waited(inner.rt.now().duration_since(started).unwrap_or_default());
        }
        result
    }

    /// Ends the session (C17): wakes every waiter with
    /// [`Error::SessionEnded`], emits the end event once, clears the store, and
    /// asks the server to revoke the tokens (RFC 7009, best effort). Does
    /// nothing if no session is active.
    ///
    /// # Errors
    ///
    /// [`StoreError`] if clearing the store failed. The session has ended regardless.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the session ends at the first poll, and clearing the store
    /// and revoking run on their own task, so a caller that stops waiting
    /// cannot leave the ended session's tokens in the store.
    pub async fn logout(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        let announce = || {
            m::session_ended(EndReason::LoggedOut);
            inner.events.emit(SessionEvent::SessionEnded {
                reason: EndReason::LoggedOut,
            });
        };
        let Some((old, epoch)) = inner.cell.end(EndReason::LoggedOut, announce) else {
            return Ok(());
        };
        let (tx, rx) = oneshot::channel();
        let task_inner = Arc::clone(inner);
        inner.rt.spawn.spawn(Box::pin(async move {
            let _ = tx.send(finish_logout(&task_inner, &old.tokens, epoch).await);
        }));
        rx.await.unwrap_or(Ok(()))
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

/// The part of [`Session::logout`] that outlives its caller: clear the store
/// (unless a new session started meanwhile — its tokens are not ours to
/// clear), then revoke the newest tokens this session had: a refresh that
/// finished while logout began may have stored a set newer than `published`.
async fn finish_logout(inner: &Inner, published: &TokenSet, epoch: u64) -> Result<(), StoreError> {
    let (cleared, newest) = {
        let _guard = inner.persist.lock().await;
        if inner.cell.epoch() == epoch {
            let stored = inner.store.load().await.ok().flatten();
            (inner.store.clear().await, stored)
        } else {
            (Ok(()), None)
        }
    };
    let revoke = match &newest {
        Some(stored) if stored.generation > published.generation => stored,
        _ => published,
    };
    refresh::revoke_best_effort(inner, revoke).await;
    cleared
}
