//! The network log: every request that went over the wire and every refresh,
//! with times relative to the start of a burst.
//!
//! [`Recorder`] sits *inside* [`reauth_reqwest::AuthMiddleware`] in the
//! middleware stack, so it sees each attempt (the first send and the replay)
//! separately; [`RecordingRefresher`] wraps the session's refresher, so it
//! sees each refresh call the session makes.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::header::AUTHORIZATION;
use reauth::{RefreshError, Refresher, TokenSet};
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};
use tokio::sync::watch;

/// What a log entry is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A request to the protected resource.
    Resource,
    /// A refresh-token grant.
    Refresh,
    /// The client gave up and logged the user out.
    Logout,
}

/// One thing that happened on the wire. Its `Debug` never shows the bearer.
#[derive(Clone)]
pub(crate) struct Entry {
    /// When it finished, since the log's start.
    pub(crate) at: Duration,
    /// How long it took.
    pub(crate) took: Duration,
    pub(crate) kind: Kind,
    /// The HTTP status; `None` for a transport error or a refresh that failed.
    pub(crate) status: Option<u16>,
    /// The bearer token sent (resource requests; never printed).
    pub(crate) bearer: Option<String>,
    /// A short human note (`invalid_grant`, an error).
    pub(crate) note: String,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("at", &self.at)
            .field("took", &self.took)
            .field("kind", &self.kind)
            .field("status", &self.status)
            .field("bearer", &self.bearer.as_ref().map(|_| "[redacted]"))
            .field("note", &self.note)
            .finish()
    }
}

/// A shared, append-only log with a resettable start instant.
#[derive(Debug)]
pub(crate) struct NetLog {
    start: Mutex<Instant>,
    entries: Mutex<Vec<Entry>>,
}

impl NetLog {
    /// An empty log starting now.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Mutex::new(Instant::now()),
            entries: Mutex::new(Vec::new()),
        })
    }

    /// Clears the log and starts the clock again.
    pub(crate) fn restart(&self) {
        *self.start.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Records something that started at `started` and has just finished.
    pub(crate) fn record(
        &self,
        started: Instant,
        kind: Kind,
        status: Option<u16>,
        bearer: Option<String>,
        note: String,
    ) {
        let now = Instant::now();
        let start = *self.start.lock().unwrap_or_else(PoisonError::into_inner);
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Entry {
                at: now.saturating_duration_since(start),
                took: now.saturating_duration_since(started),
                kind,
                status,
                bearer,
                note,
            });
    }

    /// The entries, in the order they finished.
    pub(crate) fn entries(&self) -> Vec<Entry> {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        entries.sort_by_key(|e| e.at);
        entries
    }

    /// How many entries of `kind` with `status` there are.
    pub(crate) fn count(&self, kind: Kind, status: Option<u16>) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|e| e.kind == kind && e.status == status)
            .count()
    }
}

/// Middleware that logs each request it passes on, with its status.
#[derive(Clone, Debug)]
pub(crate) struct Recorder {
    log: Arc<NetLog>,
}

impl Recorder {
    /// Logs into `log`.
    pub(crate) fn new(log: Arc<NetLog>) -> Self {
        Self { log }
    }
}

#[async_trait]
impl Middleware for Recorder {
    async fn handle(
        &self,
        req: Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let started = Instant::now();
        let bearer = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        let result = next.run(req, extensions).await;
        let (status, note) = match &result {
            Ok(r) => (Some(r.status().as_u16()), String::new()),
            Err(e) => (None, e.to_string()),
        };
        self.log
            .record(started, Kind::Resource, status, bearer, note);
        result
    }
}

/// Runs after each successful refresh, before the session sees its result
/// (the lab uses it to revoke the fresh tokens for C10).
pub(crate) type AfterRefresh =
    Arc<dyn Fn(TokenSet) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A [`Refresher`] that counts and logs the calls of the one it wraps, and
/// announces each call as it starts.
pub(crate) struct RecordingRefresher<R> {
    inner: R,
    log: Arc<NetLog>,
    started: watch::Sender<u64>,
    after: Option<AfterRefresh>,
}

impl<R: Refresher> RecordingRefresher<R> {
    /// Wraps `inner`, logging into `log`.
    pub(crate) fn new(inner: R, log: Arc<NetLog>) -> Self {
        Self {
            inner,
            log,
            started: watch::Sender::new(0),
            after: None,
        }
    }

    /// Runs `after` on every successful refresh result.
    pub(crate) fn after_refresh(mut self, after: AfterRefresh) -> Self {
        self.after = Some(after);
        self
    }

    /// A receiver of the number of refresh calls started so far.
    pub(crate) fn calls(&self) -> watch::Receiver<u64> {
        self.started.subscribe()
    }
}

#[async_trait]
impl<R: Refresher> Refresher for RecordingRefresher<R> {
    async fn refresh(&self, current: &TokenSet) -> Result<TokenSet, RefreshError> {
        self.started.send_modify(|n| *n += 1);
        let started = Instant::now();
        let result = self.inner.refresh(current).await;
        if let (Ok(tokens), Some(after)) = (&result, &self.after) {
            after(tokens.clone()).await;
        }
        let (status, note) = match &result {
            Ok(_) => (Some(200), String::new()),
            Err(e) => (None, format!("{:?}: {e}", e.kind())),
        };
        self.log.record(started, Kind::Refresh, status, None, note);
        result
    }

    async fn revoke(&self, tokens: &TokenSet) -> Result<(), RefreshError> {
        self.inner.revoke(tokens).await
    }
}

/// Middleware that holds the answers to the first `n` requests until all `n`
/// have been sent, then releases them together: the burst of a page that
/// fires its requests at once, on a network slower than the scheduler. Later
/// requests (the replays) pass straight through.
#[derive(Debug)]
pub(crate) struct Together {
    first: usize,
    seen: std::sync::atomic::AtomicUsize,
    barrier: tokio::sync::Barrier,
}

impl Together {
    /// Holds the first `n` answers.
    pub(crate) fn new(n: usize) -> Self {
        Self {
            first: n,
            seen: std::sync::atomic::AtomicUsize::new(0),
            barrier: tokio::sync::Barrier::new(n),
        }
    }
}

#[async_trait]
impl Middleware for Together {
    async fn handle(
        &self,
        req: Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let index = self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let result = next.run(req, extensions).await;
        if index < self.first {
            self.barrier.wait().await;
        }
        result
    }
}
