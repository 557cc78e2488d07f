//! Test helpers: a virtual-time runtime, a fake authorization server that
//! rotates one-time refresh tokens like a strict real one, and a store that
//! can be told to fail. Enabled by the `test-util` feature.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{RefreshError, RefreshErrorKind, StoreError};
use crate::refresher::Refresher;
use crate::runtime::{Clock, NoJitter, Runtime, TokioClock, TokioSleep, TokioSpawn};
use crate::store::{MemoryStore, TokenStore};
use crate::token::TokenSet;

pub mod conformance;
pub mod procs;

/// A runtime on tokio's clock, without jitter. Under `tokio::time::pause` its
/// clock is virtual.
pub fn runtime() -> Runtime {
    Runtime::new(TokioClock::default(), TokioSleep, TokioSpawn, NoJitter)
}

/// How the [`FakeServer`] answers the next refresh.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Step {
    /// Fail with this class and optional `Retry-After`.
    Fail(RefreshErrorKind, Option<Duration>),
    /// Never answer.
    Hang,
    /// Answer after this (virtual) delay, then as usual.
    Delay(Duration),
    /// Rotate the access token but send no refresh token (the old one stays valid).
    OmitRefreshToken,
    /// Rotate at once, but answer only after this (virtual) delay: the
    /// response is in transit when something else happens.
    DelayAfterRotation(Duration),
}

#[derive(Debug, Default)]
struct ServerState {
    /// Number of rotations so far; tokens are `access-{n}` / `refresh-{n}`.
    rotation: u64,
    refresh_valid: Option<String>,
    script: VecDeque<Step>,
    delay: Duration,
    revoked: usize,
}

/// A fake authorization server acting as a [`Refresher`]: refresh tokens are
/// one-time (presenting a rotated one is `invalid_grant`, exactly the failure a
/// duplicate refresh causes), and it counts every call.
#[derive(Clone)]
pub struct FakeServer {
    clock: Arc<dyn Clock>,
    lifetime: Duration,
    calls: Arc<AtomicUsize>,
    state: Arc<Mutex<ServerState>>,
}

impl std::fmt::Debug for FakeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeServer")
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

impl FakeServer {
    /// A server issuing access tokens valid for `lifetime` by `runtime`'s clock.
    pub fn new(runtime: &Runtime, lifetime: Duration) -> Self {
        Self {
            clock: Arc::clone(&runtime.clock),
            lifetime,
            calls: Arc::default(),
            state: Arc::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ServerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn issue(&self, st: &mut ServerState, with_refresh: bool) -> TokenSet {
        let n = st.rotation;
        let mut t =
            TokenSet::new(format!("access-{n}")).with_expires_in(self.clock.now(), self.lifetime);
        if with_refresh {
            let rt = format!("refresh-{n}");
            st.refresh_valid = Some(rt.clone());
            t = t.with_refresh_token(rt);
        }
        t.obtained_at = None;
        t
    }

    /// Logs in: a fresh token set (rotation 0).
    pub fn login(&self) -> TokenSet {
        let mut st = self.state();
        st.rotation = 0;
        self.issue(&mut st, true)
    }

    /// Refresh calls received so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Revocations received so far.
    pub fn revocations(&self) -> usize {
        self.state().revoked
    }

    /// Successful rotations so far.
    pub fn rotations(&self) -> u64 {
        self.state().rotation
    }

    /// The access token the server currently accepts.
    pub fn valid_access_token(&self) -> String {
        format!("access-{}", self.state().rotation)
    }

    /// Scripts the next refresh.
    pub fn push(&self, step: Step) {
        self.state().script.push_back(step);
    }

    /// Delays every refresh answer by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.state().delay = delay;
    }

    /// Makes the server forget the current refresh token (as if it was revoked).
    pub fn revoke_all(&self) {
        self.state().refresh_valid = None;
    }

    /// Rotates as if another client had refreshed, returning what that client got.
    pub fn rotate_elsewhere(&self) -> TokenSet {
        let mut st = self.state();
        st.rotation += 1;
        self.issue(&mut st, true)
    }
}

#[async_trait]
impl Refresher for FakeServer {
    async fn refresh(&self, current: &TokenSet) -> Result<TokenSet, RefreshError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let (step, delay) = {
            let mut st = self.state();
            (st.script.pop_front(), st.delay)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut omit = false;
        let mut in_transit = Duration::ZERO;
        match step {
            Some(Step::Fail(kind, retry_after)) => {
                let mut e = RefreshError::new(kind, format!("scripted {kind:?}"));
                if let Some(ra) = retry_after {
                    e = e.with_retry_after(ra);
                }
                return Err(e);
            }
            Some(Step::Hang) => futures::future::pending::<()>().await,
            Some(Step::Delay(d)) => tokio::time::sleep(d).await,
            Some(Step::OmitRefreshToken) => omit = true,
            Some(Step::DelayAfterRotation(d)) => in_transit = d,
            None => {}
        }
        let issued = {
            let mut st = self.state();
            let presented = current
                .refresh_token
                .as_ref()
                .map(|r| r.secret().to_owned());
            if presented.is_none() || presented != st.refresh_valid {
                return Err(RefreshError::rejected("invalid_grant"));
            }
            st.rotation += 1;
            self.issue(&mut st, !omit)
        };
        if !in_transit.is_zero() {
            tokio::time::sleep(in_transit).await;
        }
        Ok(issued)
    }

    async fn revoke(&self, _tokens: &TokenSet) -> Result<(), RefreshError> {
        let mut st = self.state();
        st.revoked += 1;
        st.refresh_valid = None;
        Ok(())
    }
}

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

/// A [`TokioClock`] whose wall time can jump forward, as after a suspend or an
/// NTP correction, while tokio's timers do not move.
#[derive(Clone, Debug, Default)]
pub struct JumpClock {
    base: TokioClock,
    offset_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl JumpClock {
    /// A clock following tokio's (virtual) time.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves wall time forward by `by`.
    pub fn jump(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for JumpClock {
    fn now(&self) -> std::time::SystemTime {
        self.base.now() + Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }
}
