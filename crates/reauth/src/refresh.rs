//! The refresh task: one per flight, spawned, so no caller can cancel it.
//!
//! Attempt → on success persist, then publish (C13); on a transient failure
//! back off and retry within the budget (C5); on rejection adopt what another
//! process stored, or end the session once (C6, C16); on misconfiguration give
//! up without ending the session (C7). Each attempt has its own timeout (C9).
//!
//! When the store can coordinate with other processes ([`Coordinator`]), each
//! attempt runs under its lease (C15, C16): acquire → re-read the store → adopt
//! a newer stored generation *without calling the refresher*, or refresh and
//! write with compare-and-set on the generation read → release. The protocol
//! and its guarantees are described in `store/lease.rs`.

use std::panic::AssertUnwindSafe;
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
use crate::store::{Coordinator, Lease, lease_poll_delay, lease_ttl};
use crate::token::{Generation, TokenSet};
use std::sync::atomic::{AtomicBool, Ordering};

/// Spawns the refresh for `ticket` on the session's runtime.
///
/// The task owns a [`FailOnDrop`] for its flight: if the task never finishes
/// — the refresher panics, the runtime shuts down, the spawner fails — the
/// flight is failed on drop, so its waiters are answered and the next call
/// starts a new refresh instead of waiting on a flight that no one runs.
pub(crate) fn spawn(inner: &Arc<Inner>, ticket: Ticket, trigger: Trigger) {
    let span = tracing::info_span!(
        "reauth.refresh",
        from_generation = %ticket.from.generation(),
        trigger = ?trigger,
    );
    let guard = FailOnDrop {
        inner: Arc::clone(inner),
        ticket: ticket.clone(),
    };
    let task = async move {
        run(Arc::clone(&guard.inner), ticket, trigger).await;
        drop(guard);
    };
    inner.rt.spawn.spawn(Box::pin(task.instrument(span)));
}

/// Fails its flight when dropped, unless the flight already finished
/// (`Cell::finish` only acts on the flight it names, once).
struct FailOnDrop {
    inner: Arc<Inner>,
    ticket: Ticket,
}

impl Drop for FailOnDrop {
    fn drop(&mut self) {
        // Under the model checker, shuttle drops the tasks still pending when an
        // execution ends (or unwinds through them on a failure) outside any
        // task, where its mutex cannot be taken. A runtime that drops a task
        // does so where `std`'s can: this guard then does its job.
        #[cfg(reauth_shuttle)]
        if std::thread::panicking() || shuttle::current::get_current_task().is_none() {
            return;
        }
        let error = Arc::new(RefreshError::transient(Abandoned));
        let failure = Error::RefreshUnavailable {
            retry_after: None,
            source: error,
        };
        if self.inner.cell.finish(&self.ticket, Finish::Fail(failure)) {
            tracing::error!("the refresh task stopped before finishing; its waiters were failed");
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the refresher panicked")]
struct RefresherPanicked;

#[derive(Debug, thiserror::Error)]
#[error("the refresh task stopped before finishing (panicked, or its runtime shut down)")]
struct Abandoned;

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
        let error = match coordinated_attempt(&inner, &ticket, trigger, started).await {
            Attempt::Done => return,
            Attempt::Failed(e) => e,
        };
        let error = Arc::new(error);
        if error.is_transient() {
            let jitter = inner.rt.jitter.jitter(backoff_base(&retry, attempt) / 2);
            let delay = backoff_delay(&retry, attempt, jitter, error.retry_after());
            let spent = elapsed(&inner, started);
            if attempt < retry.max_attempts && spent.saturating_add(delay) <= retry.budget {
                tracing::info!(attempt, delay_ms = delay.as_millis() as u64, error = %error, "token refresh failed; retrying");
                m::retry();
                inner.events.emit(SessionEvent::RefreshRetrying {
                    attempt,
                    delay,
                    error,
                });
                inner.rt.sleep.sleep(delay).await;
                if !inner.cell.is_current(&ticket) {
                    return; // logged out or restarted meanwhile
                }
                continue;
            }
            tracing::warn!(attempts = attempt, error = %error, "token refresh unavailable; giving up for now");
            m::refresh_outcome("unavailable", spent);
            let failure = Error::RefreshUnavailable {
                retry_after: error.retry_after(),
                source: Arc::clone(&error),
            };
            // Honour the server's Retry-After beyond this flight too: no new
            // refresh before it (C5), so a caller in a loop cannot hammer a
            // rate-limited token endpoint.
            let how = match error
                .retry_after()
                .and_then(|ra| inner.rt.now().checked_add(ra))
            {
                Some(until) => Finish::FailUntil(failure, until, Arc::clone(&error)),
                None => Finish::Fail(failure),
            };
            inner.cell.finish_announcing(&ticket, how, || {
                inner.events.emit(SessionEvent::RefreshFailed { error });
            });
            return;
        }
        tracing::error!(error = %error, "token refresh misconfigured");
        m::refresh_outcome("misconfigured", elapsed(&inner, started));
        let failure = Finish::Fail(Error::Misconfigured(Arc::clone(&error)));
        inner.cell.finish_announcing(&ticket, failure, || {
            inner.events.emit(SessionEvent::RefreshFailed { error });
        });
        return;
    }
}

/// How one attempt ended.
enum Attempt {
    /// Published, adopted, ended the session, or superseded: the flight is over.
    Done,
    /// A transient or misconfiguration failure; rejections are handled inside.
    Failed(RefreshError),
}

/// One attempt, under the store's lease if it coordinates (C15, C16).
async fn coordinated_attempt(
    inner: &Arc<Inner>,
    ticket: &Ticket,
    trigger: Trigger,
    started: SystemTime,
) -> Attempt {
    let Some(coord) = inner.store.coordinator() else {
        return refresh_and_publish(inner, ticket, trigger, started, None).await;
    };
    let lease = match acquire(inner, ticket, coord).await {
        Ok(Some(lease)) => lease,
        Ok(None) => return Attempt::Done, // superseded while waiting
        Err(e) => return Attempt::Failed(e),
    };
    let held = Held {
        coord,
        lease,
        released: AtomicBool::new(false),
    };
    let outcome = leased(inner, ticket, trigger, started, &held).await;
    held.release(inner).await; // if no path released it before waking the waiters
    outcome
}

/// The lease an attempt holds. Released once: before the flight's waiters are
/// woken (so that nobody in this process finds its own lease still held), or
/// when the attempt ends without finishing the flight.
struct Held<'a> {
    coord: &'a dyn Coordinator,
    lease: Lease,
    released: AtomicBool,
}

impl Held<'_> {
    async fn release(&self, inner: &Inner) {
        if self.released.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Err(e) = bounded(inner, self.coord.release(&self.lease)).await {
            report_store_failure(inner, e); // it lapses by its TTL
        }
    }
}

async fn release(inner: &Inner, held: Option<&Held<'_>>) {
    if let Some(held) = held {
        held.release(inner).await;
    }
}

/// Waits for the lease, polling with bounded backoff plus jitter, for at most
/// two TTLs (a dead holder's lease lapses after one). `Ok(None)` if the flight
/// was superseded meanwhile.
async fn acquire(
    inner: &Inner,
    ticket: &Ticket,
    coord: &dyn Coordinator,
) -> Result<Option<Lease>, RefreshError> {
    let ttl = lease_ttl(inner.config.refresh_timeout);
    let limit = ttl.saturating_mul(2);
    let began = inner.rt.now();
    let mut polls = 0u32;
    loop {
        match bounded(inner, coord.try_acquire(ttl)).await {
            Ok(Some(lease)) => return Ok(Some(lease)),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "refresh lease unavailable");
                return Err(RefreshError::transient(e));
            }
        }
        if !inner.cell.is_current(ticket) {
            return Ok(None);
        }
        if elapsed(inner, began) >= limit {
            return Err(RefreshError::transient(LeaseBusy(limit)));
        }
        polls += 1;
        let base = lease_poll_delay(polls);
        inner
            .rt
            .sleep
            .sleep(base + inner.rt.jitter.jitter(base / 2))
            .await;
    }
}

#[derive(Debug, thiserror::Error)]
#[error("another process held the refresh lease for more than {0:?}")]
struct LeaseBusy(Duration);

/// Holding the lease: re-read, then adopt or refresh with compare-and-set.
async fn leased(
    inner: &Arc<Inner>,
    ticket: &Ticket,
    trigger: Trigger,
    started: SystemTime,
    held: &Held<'_>,
) -> Attempt {
    let mine = ticket.from.generation();
    let expected = match bounded(inner, inner.store.load()).await {
        Ok(Some(stored)) if stored.generation > mine => {
            // Another process refreshed while we waited: no refresh (C15).
            adopt(inner, ticket, stored, started, held).await;
            return Attempt::Done;
        }
        Ok(stored) => stored.map(|t| t.generation),
        Err(e) => {
            tracing::warn!(error = %e, "re-reading the store under the lease failed");
            return Attempt::Failed(RefreshError::transient(e));
        }
    };
    refresh_and_publish(inner, ticket, trigger, started, Some((held, expected))).await
}

async fn refresh_and_publish(
    inner: &Arc<Inner>,
    ticket: &Ticket,
    trigger: Trigger,
    started: SystemTime,
    cas: Option<(&Held<'_>, Option<Generation>)>,
) -> Attempt {
    match attempt_once(inner, &ticket.from.tokens).await {
        Ok(tokens) => {
            publish(inner, ticket, tokens, trigger, started, cas).await;
            Attempt::Done
        }
        Err(e) if e.is_rejected() => {
            rejected(inner, ticket, e, started, cas.map(|(held, _)| held)).await;
            Attempt::Done
        }
        Err(e) => Attempt::Failed(e),
    }
}

/// One call to the refresher, bounded by the refresh timeout (C9).
///
/// A refresher that panics is a bug in it, not a network failure: it is
/// reported as a misconfiguration (no retry loop, the session is kept), and
/// the lease, if held, is released as after any other failure.
async fn attempt_once(inner: &Inner, current: &TokenSet) -> Result<TokenSet, RefreshError> {
    let call = AssertUnwindSafe(inner.refresher.refresh(current)).catch_unwind();
    let timeout = inner.rt.sleep.sleep(inner.config.refresh_timeout);
    match select(call, timeout).await {
        Either::Left((Ok(result), _)) => result,
        Either::Left((Err(_panic), _)) => Err(RefreshError::misconfigured(RefresherPanicked)),
        Either::Right(((), _)) => Err(RefreshError::transient(TimedOut(
            inner.config.refresh_timeout,
        ))),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the refresh did not answer within {0:?}")]
struct TimedOut(Duration);

/// Persists `tokens` and only then publishes them (C13). With `cas`, the write
/// is a compare-and-set on the generation read under the lease; if another
/// holder wrote meanwhile, its set is adopted instead.
async fn publish(
    inner: &Arc<Inner>,
    ticket: &Ticket,
    mut tokens: TokenSet,
    trigger: Trigger,
    started: SystemTime,
    cas: Option<(&Held<'_>, Option<Generation>)>,
) {
    let from = &ticket.from.tokens;
    tokens.generation = from.generation.next();
    if tokens.refresh_token.is_none() {
        tokens.refresh_token = from.refresh_token.clone(); // C12
    }
    tokens.obtained_at = None; // the session stamps its own clock
    let p = inner.publishable(tokens);
    let guard = inner.persist.lock().await;
    if !inner.cell.is_current(ticket) {
        // Logged out (or replaced by a new login) while the server rotated:
        // nobody will use these tokens, so do not leave them live.
        drop(guard);
        revoke_best_effort(inner, &p.tokens).await;
        return;
    }
    match cas {
        None => persist(inner, &p.tokens).await,
        Some((held, expected)) => {
            let newer = persist_cas(inner, held.coord, expected, &p.tokens).await;
            held.release(inner).await;
            if let Some(stored) = newer {
                return finish_adopted(inner, ticket, stored, started);
            }
        }
    }
    let generation = p.generation();
    inner
        .cell
        .finish_announcing(ticket, Finish::Publish(p), || {
            m::refresh_outcome("ok", elapsed(inner, started));
            tracing::info!(generation = %generation, "token refreshed");
            inner.events.emit(SessionEvent::Refreshed {
                generation,
                trigger,
            });
        });
}

/// Writes `tokens`, retrying failures. A rotated refresh token exists nowhere
/// else, so it is never dropped: if every attempt fails, the set is still
/// published in memory and each failure was reported (C13).
async fn persist(inner: &Inner, tokens: &TokenSet) {
    let attempts = inner.config.store_attempts.max(1);
    for attempt in 1..=attempts {
        match bounded(inner, inner.store.store(tokens)).await {
            Ok(()) => return,
            Err(e) => report_store_failure(inner, e),
        }
        if attempt < attempts {
            let delay = backoff_delay(&inner.config.retry, attempt, Duration::ZERO, None);
            inner.rt.sleep.sleep(delay).await;
        }
    }
}

/// Writes `tokens` with compare-and-set from `expected`, retrying failures as
/// [`persist`] does. Returns the stored set to adopt instead if another holder
/// wrote a set at least as new (its lease and ours overlapped: our lease
/// lapsed, or a writer ignored it).
async fn persist_cas(
    inner: &Inner,
    coord: &dyn Coordinator,
    mut expected: Option<Generation>,
    tokens: &TokenSet,
) -> Option<TokenSet> {
    let attempts = inner.config.store_attempts.max(1);
    let mut lost_last = false;
    for attempt in 1..=attempts {
        lost_last = false;
        match bounded(inner, coord.compare_and_store(expected, tokens)).await {
            Ok(true) => return None,
            Ok(false) => match bounded(inner, inner.store.load()).await {
                Ok(Some(stored)) if stored.generation >= tokens.generation => {
                    tracing::warn!(generation = %stored.generation, "the store moved on during the refresh; adopting the stored tokens");
                    return Some(stored);
                }
                // Older, or cleared: write ours over what is there now.
                Ok(stored) => {
                    lost_last = true;
                    expected = stored.map(|t| t.generation);
                }
                Err(e) => report_store_failure(inner, e),
            },
            Err(e) => report_store_failure(inner, e),
        }
        if attempt < attempts {
            let delay = backoff_delay(&inner.config.retry, attempt, Duration::ZERO, None);
            inner.rt.sleep.sleep(delay).await;
        }
    }
    // Never dropped silently (C13): the set stays published in memory, and
    // the lost race is reported like any other failed write.
    if lost_last {
        report_store_failure(inner, StoreError::Conflict);
    }
    None
}

fn report_store_failure(inner: &Inner, e: StoreError) {
    tracing::error!(error = %e, "persisting tokens failed");
    m::store_failure();
    inner
        .events
        .emit(SessionEvent::StoreFailed { error: Arc::new(e) });
}

/// The server refused the refresh token. If the store holds a newer generation,
/// another process rotated it: adopt that (C16). Otherwise end the session,
/// once (C6).
async fn rejected(
    inner: &Arc<Inner>,
    ticket: &Ticket,
    error: RefreshError,
    started: SystemTime,
    held: Option<&Held<'_>>,
) {
    let _guard = inner.persist.lock().await;
    if !inner.cell.is_current(ticket) {
        return;
    }
    let mine = ticket.from.generation();
    match bounded(inner, inner.store.load()).await {
        Ok(Some(stored)) if stored.generation > mine => {
            tracing::info!(generation = %stored.generation, "refresh token rotated elsewhere");
            release(inner, held).await;
            return finish_adopted(inner, ticket, stored, started);
        }
        Ok(_) => {}
        Err(e) => report_store_failure(inner, e),
    }
    tracing::warn!(error = %error, "refresh token rejected; ending the session");
    if let Err(e) = bounded(inner, inner.store.clear()).await {
        report_store_failure(inner, e);
    }
    release(inner, held).await;
    let reason = EndReason::RefreshRejected;
    inner
        .cell
        .finish_announcing(ticket, Finish::End(reason), || {
            m::refresh_outcome("rejected", elapsed(inner, started));
            m::session_ended(reason);
            inner.events.emit(SessionEvent::SessionEnded { reason });
        });
}

/// Publishes a set another process stored, without refreshing (C15, C16).
async fn adopt(
    inner: &Arc<Inner>,
    ticket: &Ticket,
    stored: TokenSet,
    started: SystemTime,
    held: &Held<'_>,
) {
    let _guard = inner.persist.lock().await;
    held.release(inner).await;
    if inner.cell.is_current(ticket) {
        finish_adopted(inner, ticket, stored, started);
    }
}

/// Completes the flight with `stored`. The caller holds `inner.persist`.
fn finish_adopted(inner: &Inner, ticket: &Ticket, stored: TokenSet, started: SystemTime) {
    let p = inner.publishable(stored);
    let generation = p.generation();
    inner
        .cell
        .finish_announcing(ticket, Finish::Publish(p), || {
            m::refresh_outcome("adopted", elapsed(inner, started));
            tracing::info!(generation = %generation, "adopted the tokens another process stored");
            inner.events.emit(SessionEvent::Adopted { generation });
        });
}

/// Asks the server to revoke `tokens` (RFC 7009), bounded by the refresh
/// timeout; a failure is logged, never fatal.
pub(crate) async fn revoke_best_effort(inner: &Inner, tokens: &TokenSet) {
    let revoking = inner.refresher.revoke(tokens);
    let timeout = inner.rt.sleep.sleep(inner.config.refresh_timeout);
    match select(revoking, timeout).await {
        Either::Left((Ok(()), _)) => {}
        Either::Left((Err(e), _)) => tracing::warn!(error = %e, "token revocation failed"),
        Either::Right(_) => tracing::warn!("token revocation timed out"),
    }
}

/// A store operation bounded by the refresh timeout, so a store that hangs
/// cannot hold the flight (and the persist lock) forever (C9): it fails like
/// any other store error, and is reported and retried as such.
async fn bounded<T>(
    inner: &Inner,
    op: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let timeout = inner.rt.sleep.sleep(inner.config.refresh_timeout);
    match select(std::pin::pin!(op), timeout).await {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => Err(StoreError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the token store did not answer within the refresh timeout",
        ))),
    }
}
