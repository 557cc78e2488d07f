//! A fake authorization server with one-time refresh tokens, as a [`Refresher`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use reauth::{Clock, RefreshError, RefreshErrorKind, Refresher, Runtime, TokenSet};

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
    revoke_delay: Duration,
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
            clock: runtime.clock(),
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

    /// Delays every revocation by `delay`: it counts (and takes effect) only
    /// once the delay is over, so a revocation cancelled meanwhile never lands.
    pub fn set_revoke_delay(&self, delay: Duration) {
        self.state().revoke_delay = delay;
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
        let delay = self.state().revoke_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut st = self.state();
        st.revoked += 1;
        st.refresh_valid = None;
        Ok(())
    }
}
