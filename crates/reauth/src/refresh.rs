//! The refresh task: one per flight, spawned, so no caller can cancel it.
//!
//! Attempt → on success persist, then publish (C13); on a transient failure
//! back off and retry within the budget (C5); on rejection adopt what another
//! process stored, or end the session once (C6, C16); on misconfiguration give
//! up without ending the session (C7). Each attempt has its own timeout (C9).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use futures::future::{Either, select};
use tracing::Instrument;

use crate::error::{EndReason, Error, RefreshError, StoreError};
use crate::events::{SessionEvent, Trigger};
use crate::flight::{Finish, Ticket};
use crate::metrics as m;
use crate::policy::{backoff_base, backoff_delay};
use crate::session::Inner;
use crate::token::TokenSet;

/// Spawns the refresh for `ticket` on the session's runtime.
pub(crate) fn spawn(inner: &Arc<Inner>, ticket: Ticket, trigger: Trigger) {
    let span = tracing::info_span!(
        "reauth.refresh",
        from_generation = %ticket.from.generation(),
        trigger = ?trigger,
    );
    let task = run(Arc::clone(inner), ticket, trigger).instrument(span);
    inner.rt.spawn.spawn(task.boxed());
}

fn elapsed(inner: &Inner, since: SystemTime) -> Duration {
    inner.rt.now().duration_since(since).unwrap_or_default()
}

async fn run(inner: Arc<Inner>, ticket: Ticket, trigger: Trigger) {
    let started = inner.rt.now();
    let retry = inner.config.retry;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        m::attempt();
        let error = match attempt_once(&inner, &ticket.from.tokens).await {
            Ok(tokens) => return publish(&inner, &ticket, tokens, trigger, started).await,
            Err(e) => e,
        };
        if error.is_rejected() {
            return rejected(&inner, &ticket, error, started).await;
        }
        let error = Arc::new(error);
        if error.is_transient() {
            let jitter = inner.rt.jitter.jitter(backoff_base(&retry, attempt) / 2);
            let delay = backoff_delay(&retry, attempt, jitter, error.retry_after());
            let spent = elapsed(&inner, started);
            if attempt < retry.max_attempts && spent + delay <= retry.budget {
                tracing::info!(attempt, delay_ms = delay.as_millis() as u64, error = %error, "token refresh failed; retrying");
                m::retry();
                inner.events.emit(SessionEvent::RefreshRetrying { attempt, delay, error });
                inner.rt.sleep.sleep(delay).await;
                if !inner.cell.is_current(&ticket) {
                    return; // logged out or restarted meanwhile
                }
                continue;
            }
            tracing::warn!(attempts = attempt, error = %error, "token refresh unavailable; giving up for now");
            m::refresh_outcome("unavailable", spent);
            let failure = Error::RefreshUnavailable { retry_after: error.retry_after(), source: Arc::clone(&error) };
            if inner.cell.finish(&ticket, Finish::Fail(failure)) {
                inner.events.emit(SessionEvent::RefreshFailed { error });
            }
            return;
        }
        tracing::error!(error = %error, "token refresh misconfigured");
        m::refresh_outcome("misconfigured", elapsed(&inner, started));
        if inner.cell.finish(&ticket, Finish::Fail(Error::Misconfigured(Arc::clone(&error)))) {
            inner.events.emit(SessionEvent::RefreshFailed { error });
        }
        return;
    }
}

/// One call to the refresher, bounded by the refresh timeout (C9).
async fn attempt_once(inner: &Inner, current: &TokenSet) -> Result<TokenSet, RefreshError> {
    let call = inner.refresher.refresh(current);
    let timeout = inner.rt.sleep.sleep(inner.config.refresh_timeout);
    match select(call, timeout).await {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => Err(RefreshError::transient(TimedOut(inner.config.refresh_timeout))),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the refresh did not answer within {0:?}")]
struct TimedOut(Duration);

/// Persists `tokens` and only then publishes them (C13).
async fn publish(inner: &Arc<Inner>, ticket: &Ticket, mut tokens: TokenSet, trigger: Trigger, started: SystemTime) {
    let from = &ticket.from.tokens;
    tokens.generation = from.generation.next();
    if tokens.refresh_token.is_none() {
        tokens.refresh_token = from.refresh_token.clone(); // C12
    }
    tokens.obtained_at = None; // the session stamps its own clock
    let p = inner.publishable(tokens);
    let _guard = inner.persist.lock().await;
    if !inner.cell.is_current(ticket) {
        return;
    }
    persist(inner, &p.tokens).await;
    let generation = p.generation();
    if inner.cell.finish(ticket, Finish::Publish(p)) {
        m::refresh_outcome("ok", elapsed(inner, started));
        tracing::info!(generation = %generation, "token refreshed");
        inner.events.emit(SessionEvent::Refreshed { generation, trigger });
    }
}

/// Writes `tokens`, retrying failures. A rotated refresh token exists nowhere
/// else, so it is never dropped: if every attempt fails, the set is still
/// published in memory and each failure was reported (C13).
async fn persist(inner: &Inner, tokens: &TokenSet) {
    let attempts = inner.config.store_attempts.max(1);
    for attempt in 1..=attempts {
        match inner.store.store(tokens).await {
            Ok(()) => return,
            Err(e) => report_store_failure(inner, e),
        }
        if attempt < attempts {
            let delay = backoff_delay(&inner.config.retry, attempt, Duration::ZERO, None);
            inner.rt.sleep.sleep(delay).await;
        }
    }
}

fn report_store_failure(inner: &Inner, e: StoreError) {
    tracing::error!(error = %e, "persisting tokens failed");
    m::store_failure();
    inner.events.emit(SessionEvent::StoreFailed { error: Arc::new(e) });
}

/// The server refused the refresh token. If the store holds a newer generation,
/// another process rotated it: adopt that (C16). Otherwise end the session,
/// once (C6).
async fn rejected(inner: &Arc<Inner>, ticket: &Ticket, error: RefreshError, started: SystemTime) {
    let _guard = inner.persist.lock().await;
    if !inner.cell.is_current(ticket) {
        return;
    }
    let mine = ticket.from.generation();
    match inner.store.load().await {
        Ok(Some(stored)) if stored.generation > mine => {
            let p = inner.publishable(stored);
            let generation = p.generation();
            if inner.cell.finish(ticket, Finish::Publish(p)) {
                m::refresh_outcome("adopted", elapsed(inner, started));
                tracing::info!(generation = %generation, "refresh token rotated elsewhere; adopted the stored tokens");
                inner.events.emit(SessionEvent::Adopted { generation });
            }
            return;
        }
        Ok(_) => {}
        Err(e) => report_store_failure(inner, e),
    }
    tracing::warn!(error = %error, "refresh token rejected; ending the session");
    if let Err(e) = inner.store.clear().await {
        report_store_failure(inner, e);
    }
    let reason = EndReason::RefreshRejected;
    if inner.cell.finish(ticket, Finish::End(reason)) {
        m::refresh_outcome("rejected", elapsed(inner, started));
        m::session_ended(reason);
        inner.events.emit(SessionEvent::SessionEnded { reason });
    }
}
