//! The state a session's parts share: the single flight, the refresher, the
//! store, the runtime, the configuration and the events. The public
//! [`Session`](super::Session), the refresh task ([`super::refresh`]) and the
//! refresh-ahead timer ([`super::ahead`]) each depend on this file only.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::coord::guard::{Terms, bounded};
use crate::coord::{clamp_lease_ttl, lease_ttl};
use crate::error::StoreError;
use crate::events::{Events, SessionEvent};
use crate::flight::{Cell, Published};
use crate::metrics as m;
use crate::policy::{RefreshAhead, RetryPolicy, is_expired};
use crate::refresher::Refresher;
use crate::runtime::Runtime;
use crate::store::TokenStore;
use crate::token::TokenSet;

/// Timeouts and policies of a session; see the `SessionBuilder` methods.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) refresh_ahead: RefreshAhead,
    pub(crate) retry: RetryPolicy,
    pub(crate) refresh_timeout: Duration,
    pub(crate) wait_timeout: Duration,
    pub(crate) expiry_leeway: Duration,
    pub(crate) store_attempts: u32,
    /// `None`: [`lease_ttl`] of the refresh timeout. Clamped by
    /// [`clamp_lease_ttl`] when the session is built.
    pub(crate) lease_ttl: Option<Duration>,
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
            lease_ttl: None,
        }
    }
}

impl Config {
    /// The lease terms derived from this configuration.
    pub(crate) fn lease_terms(&self) -> Terms {
        let ttl = self
            .lease_ttl
            .unwrap_or_else(|| lease_ttl(self.refresh_timeout));
        Terms::new(
            clamp_lease_ttl(ttl, self.refresh_timeout),
            self.refresh_timeout,
        )
    }
}

pub(crate) struct Inner {
    pub(crate) cell: Cell,
    pub(crate) refresher: Arc<dyn Refresher>,
    pub(crate) store: Arc<dyn TokenStore>,
    pub(crate) rt: Runtime,
    pub(crate) config: Config,
    pub(crate) events: Events,
}

impl Inner {
    /// `tokens` ready to publish: stamped with the session's clock, its
    /// usable-until instant precomputed for the fast path.
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

    /// A store operation bounded by the refresh timeout, so a store that
    /// hangs cannot hold a flight (or the persist lock) forever (C9): it
    /// fails like any other store error.
    pub(crate) async fn bounded<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        bounded(&self.rt, self.config.refresh_timeout, op).await
    }

    /// Logs, counts and reports a store failure (C13).
    pub(crate) fn report_store_failure(&self, e: StoreError) {
        tracing::error!(error = %e, "token store operation failed");
        m::store_failure();
        self.events
            .emit(SessionEvent::StoreFailed { error: Arc::new(e) });
    }

    /// The time since `since`, a reading of the runtime's monotonic clock.
    pub(crate) fn elapsed(&self, since: Duration) -> Duration {
        self.rt.mono().saturating_sub(since)
    }
}
