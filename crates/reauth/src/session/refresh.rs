//! The refresh task: one per flight, spawned, so no caller can cancel it.
//!
//! Attempt → on success persist, then publish (C13); on a transient failure
//! back off and retry within the budget (C5); on rejection adopt what another
//! process of this login stored, or end the session once (C6, C16); on
//! misconfiguration give up without ending the session (C7). Each attempt has
//! its own timeout (C9).
//!
//! When the store coordinates ([`Coordinator`]), each attempt runs the fenced
//! protocol of [`crate::coord`] under a renewed lease: re-read → adopt /
//! foreign / cleared / refresh → fenced compare-and-set. The persist lock is
//! taken after the lease and before any write (flight.rs, invariant 6).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::{Either, select};
use tracing::Instrument;

use super::inner::Inner;
use crate::coord::guard::{Held, acquire, coordinator};
use crate::error::{AttemptFailure, EndReason, Error, RefreshError, StoreError};
use crate::events::{SessionEvent, Trigger};
use crate::flight::{Finish, Persist, Ticket};
use crate::metrics as m;
use crate::policy::{backoff_base, backoff_delay};
use crate::token::{Stamp, TokenSet};

/// Spawns the refresh for `ticket` on the session's runtime.
///
/// The task owns a [`FailOnDrop`] for its flight: if the task never finishes
/// — the runtime shuts down, the spawner drops it — the flight is failed on
/// drop, so its waiters are answered and the next call starts a new refresh
/// instead of waiting on a flight that no one runs.
pub(crate) fn spawn(inner: &Arc<Inner>, ticket: Ticket, trigger: Trigger) {
    inner.events.emit(SessionEvent::RefreshStarted {
        generation: ticket.from.generation(),
        trigger,
    });
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
/// (`Cell::fail` only acts on the flight it names, once).
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
        let error = Arc::new(RefreshError::transient(AttemptFailure::Abandoned));
        let failure = Error::RefreshUnavailable {
            retry_after: None,
            source: error,
        };
        if let Some(wake) = self.inner.cell.fail(&self.ticket, failure, None) {
            wake.deliver(None, || {
                tracing::error!(
                    "the refresh task stopped before finishing; its waiters were failed"
                );
            });
        }
    }
}

/// A rotated set that exists nowhere but here: written under the next lease
/// if this one was lost before the write landed (it is the only copy of a
/// one-time refresh token), or published in memory if it never can be.
struct Pending {
    tokens: TokenSet,
    /// The stamp the store held when the refresh started.
    expected: Option<Stamp>,
}

async fn run(inner: Arc<Inner>, ticket: Ticket, trigger: Trigger) {
    let started = inner.rt.mono();
    let retry = inner.config.retry;
    let mut pending: Option<Pending> = None;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        m::attempt();
        let outcome = match inner.store.coordinator() {
            Some(_) => coordinated(&inner, &ticket, trigger, started, &mut pending).await,
            None => uncoordinated(&inner, &ticket, trigger, started).await,
        };
        let error = match outcome {
            Attempt::Done => return,
            Attempt::Failed(e) => Arc::new(e),
        };
        if error.is_transient() {
            let retry_after = retry.honoured_retry_after(error.retry_after());
            let jitter = inner.rt.jitter.jitter(backoff_base(&retry, attempt) / 2);
            let delay = backoff_delay(&retry, attempt, jitter, retry_after);
            let spent = inner.elapsed(started);
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
            if let Some(p) = pending.take() {
                // Never dropped (C13): the store could not take it, memory can.
                inner.report_store_failure(StoreError::Conflict);
                let persist = inner.cell.persist().await;
                return publish(&inner, persist, &ticket, p.tokens, trigger, started);
            }
            tracing::warn!(attempts = attempt, error = %error, "token refresh unavailable; giving up for now");
            m::refresh_outcome("unavailable", spent);
            let failure = Error::RefreshUnavailable {
                retry_after,
                source: Arc::clone(&error),
            };
            // Honour the server's Retry-After beyond this flight too: no new
            // refresh before it (C5), so a caller in a loop cannot hammer a
            // rate-limited token endpoint — within `max_retry_after` (C23).
            let cool_down =
                retry_after.map(|ra| (inner.rt.mono().saturating_add(ra), Arc::clone(&error)));
            if let Some(wake) = inner.cell.fail(&ticket, failure, cool_down) {
                wake.deliver(None, || {
                    inner.events.emit(SessionEvent::RefreshFailed { error });
                });
            }
            return;
        }
        tracing::error!(error = %error, "token refresh misconfigured");
        m::refresh_outcome("misconfigured", inner.elapsed(started));
        let failure = Error::Misconfigured(Arc::clone(&error));
        if let Some(wake) = inner.cell.fail(&ticket, failure, None) {
            wake.deliver(None, || {
                inner.events.emit(SessionEvent::RefreshFailed { error });
            });
        }
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

/// What the stored set means for a flight refreshing `mine` (module docs of
/// [`crate::coord`], step 2).
enum Decision {
    /// Another process of this login refreshed: take its set.
    Adopt(TokenSet),
    /// Another login replaced this one in the store.
    Foreign(TokenSet),
    /// Another process logged out.
    Cleared,
    /// Refresh, and write with compare-and-set from `expected`.
    Refresh { expected: Stamp },
}

fn decide(mine: &TokenSet, stored: Option<TokenSet>) -> Decision {
    match stored {
        None => Decision::Cleared,
        Some(s) if s.lineage != mine.lineage && !crate::mutant::on("lineage") => {
            Decision::Foreign(s)
        }
        Some(s) if s.generation > mine.generation => Decision::Adopt(s),
        Some(s) => Decision::Refresh {
            expected: s.stamp(),
        },
    }
}

// ---------------------------------------------------------------------------
// A store that does not coordinate: private to this session.

async fn uncoordinated(
    inner: &Arc<Inner>,
    ticket: &Ticket,
    trigger: Trigger,
    started: Duration,
) -> Attempt {
    match attempt_once(inner, &ticket.from.tokens).await {
        Ok(tokens) => {
            let tokens = successor(&ticket.from.tokens, tokens, None);
            let persist = inner.cell.persist().await;
            if !inner.cell.is_current(ticket) {
                drop(persist);
                revoke_orphan(inner, &tokens).await;
                return Attempt::Done;
            }
            store_retrying(inner, &tokens).await;
            publish(inner, persist, ticket, tokens, trigger, started);
            Attempt::Done
        }
        Err(e) if e.is_rejected() => {
            let persist = inner.cell.persist().await;
            if !inner.cell.is_current(ticket) {
                return Attempt::Done;
            }
            let stored = match inner.bounded(inner.store.load()).await {
                Ok(stored) => stored,
                Err(e) => {
                    inner.report_store_failure(e);
                    None
                }
            };
            match decide(&ticket.from.tokens, stored) {
                Decision::Adopt(s) => adopt(inner, persist, ticket, s, started),
                Decision::Foreign(s) => superseded(inner, persist, ticket, s, started),
                Decision::Cleared | Decision::Refresh { .. } => {
                    tracing::warn!(error = %e, "refresh token rejected; ending the session");
                    if let Err(e) = inner.bounded(inner.store.clear()).await {
                        inner.report_store_failure(e);
                    }
                    end(inner, persist, ticket, EndReason::RefreshRejected, started);
                }
            }
            Attempt::Done
        }
        Err(e) => Attempt::Failed(e),
    }
}

/// Writes `tokens`, retrying failures. A rotated refresh token exists nowhere
/// else, so it is never dropped: if every attempt fails, the set is still
/// published in memory and each failure was reported (C13).
async fn store_retrying(inner: &Inner, tokens: &TokenSet) {
    let attempts = inner.config.store_attempts.max(1);
    for attempt in 1..=attempts {
        match inner.bounded(inner.store.store(tokens)).await {
            Ok(()) => return,
            Err(e) => inner.report_store_failure(e),
        }
        if attempt < attempts {
            let delay = backoff_delay(&inner.config.retry, attempt, Duration::ZERO, None);
            inner.rt.sleep.sleep(delay).await;
        }
    }
}

// ---------------------------------------------------------------------------
// A coordinating store: the fenced protocol.

/// One attempt under the store's lease (C15, C16, C18–C20).
async fn coordinated(
    inner: &Arc<Inner>,
    ticket: &Ticket,
    trigger: Trigger,
    started: Duration,
    pending: &mut Option<Pending>,
) -> Attempt {
    let terms = inner.config.lease_terms();
    let held = match acquire(&inner.store, &inner.rt, &terms, || {
        inner.cell.is_current(ticket)
    })
    .await
    {
        Ok(Some(held)) => held,
        Ok(None) => return Attempt::Done, // superseded while waiting
        Err(e) => return Attempt::Failed(e),
    };
    let work = leased(inner, ticket, trigger, started, &held, pending);
    let outcome = match held.hold(&terms, work).await {
        Ok(outcome) => outcome,
        Err(lost) => Attempt::Failed(RefreshError::transient(lost)),
    };
    held.release(terms.step).await;
    outcome
}

/// Holding the lease: re-read, then write what is pending, adopt, end, or
/// refresh and write with a fenced compare-and-set.
async fn leased(
    inner: &Arc<Inner>,
    ticket: &Ticket,
    trigger: Trigger,
    started: Duration,
    held: &Held,
    pending: &mut Option<Pending>,
) -> Attempt {
    let mine = &ticket.from.tokens;
    let stored = match inner.bounded(inner.store.load()).await {
        Ok(stored) => stored,
        Err(e) => {
            tracing::warn!(error = %e, "re-reading the store under the lease failed");
            return Attempt::Failed(RefreshError::transient(e));
        }
    };
    // A rotation of ours that the last lease could not store comes first: it
    // is written if the store is still where it was.
    let mut orphan = None;
    if let Some(p) = pending.take() {
        if stored.as_ref().map(TokenSet::stamp) == p.expected {
            *pending = Some(p);
            return write(inner, ticket, trigger, started, held, pending).await;
        }
        orphan = Some(p.tokens);
    }
    let expected = match decide(mine, stored) {
        Decision::Refresh { expected } => expected,
        decision => {
            let persist = inner.cell.persist().await;
            if inner.cell.is_current(ticket) {
                held.release(inner.config.refresh_timeout).await;
                settle(inner, persist, ticket, decision, orphan, started).await;
            }
            return Attempt::Done;
        }
    };
    // Step 3: the refresh, only while the lease is ours for longer than the
    // call may take (C18): nobody else can take it while the call is out,
    // and a call that went out is never dropped (its answer is the only copy
    // of the rotated token).
    let terms = inner.config.lease_terms();
    let need = inner.config.refresh_timeout.min(terms.ttl - terms.ttl / 3);
    if !held.ensure(&terms, need).await {
        return Attempt::Failed(RefreshError::transient(AttemptFailure::LeaseLost));
    }
    match held.call(attempt_once(inner, mine)).await {
        Ok(tokens) => {
            *pending = Some(Pending {
                tokens: successor(mine, tokens, Some(&expected)),
                expected: Some(expected),
            });
            write(inner, ticket, trigger, started, held, pending).await
        }
        Err(e) if e.is_rejected() => rejected(inner, ticket, e, started, held).await,
        Err(e) => Attempt::Failed(e),
    }
}

/// Adopts, reports a foreign set, or ends after a logout elsewhere — for a
/// decision other than `Refresh`. `orphan` is a rotation of ours the store
/// never took: revoked — before the session's end is announced, without the
/// persist lock — if the store now belongs to another login or to nobody;
/// left alone if a set of our own login replaced it (with a grace window at
/// the server it may be the very same successor).
async fn settle<'a>(
    inner: &'a Arc<Inner>,
    mut persist: Persist<'a>,
    ticket: &Ticket,
    decision: Decision,
    orphan: Option<TokenSet>,
    started: Duration,
) {
    if let Decision::Adopt(s) = decision {
        return adopt(inner, persist, ticket, s, started);
    }
    if let Some(orphan) = orphan {
        drop(persist);
        revoke_orphan(inner, &orphan).await;
        persist = inner.cell.persist().await;
    }
    match decision {
        Decision::Foreign(s) => superseded(inner, persist, ticket, s, started),
        _ => {
            tracing::warn!("the shared store was cleared by another process; ending the session");
            end(inner, persist, ticket, EndReason::EndedElsewhere, started);
        }
    }
}

/// Writes `pending` with a compare-and-set fenced by the lease (C18), then
/// publishes it. A lost CAS re-reads and settles; a lease lost with the store
/// unchanged leaves `pending` for the next attempt.
async fn write(
    inner: &Arc<Inner>,
    ticket: &Ticket,
    trigger: Trigger,
    started: Duration,
    held: &Held,
    pending: &mut Option<Pending>,
) -> Attempt {
    let persist = inner.cell.persist().await;
    if !inner.cell.is_current(ticket) {
        // Logged out (or replaced by a new login) while the server rotated:
        // nobody will use these tokens, so do not leave them live.
        drop(persist);
        if let Some(p) = pending.take() {
            revoke_orphan(inner, &p.tokens).await;
        }
        return Attempt::Done;
    }
    #[cfg(reauth_sim_mutants)]
    let persist = if crate::mutant::on("persist_before_publish")
        && let Some(p) = pending.as_ref()
    {
        // SIM3 mutant: publish first, write after.
        publish(inner, persist, ticket, p.tokens.clone(), trigger, started);
        inner.cell.persist().await
    } else {
        persist
    };
    let attempts = inner.config.store_attempts.max(1);
    for attempt in 1..=attempts {
        let Some(p) = pending.as_ref() else {
            return Attempt::Done;
        };
        let cas = async {
            coordinator(&inner.store)?
                .compare_and_swap(Some(held.lease()), p.expected.as_ref(), Some(&p.tokens))
                .await
        };
        match inner.bounded(cas).await {
            Ok(true) => {
                held.release(inner.config.refresh_timeout).await;
                if let Some(p) = pending.take() {
                    publish(inner, persist, ticket, p.tokens, trigger, started);
                }
                return Attempt::Done;
            }
            Ok(false) => match inner.bounded(inner.store.load()).await {
                Ok(stored) if stored.as_ref().map(TokenSet::stamp) == p.expected => {
                    // The store did not move: the fence refused us, the lease
                    // is gone. Keep the rotation for the next lease.
                    return Attempt::Failed(RefreshError::transient(AttemptFailure::LeaseLost));
                }
                Ok(stored) => match decide(&ticket.from.tokens, stored) {
                    Decision::Refresh { expected } => {
                        // Still our login, not newer than ours: write over it.
                        if let Some(p) = pending.as_mut() {
                            p.expected = Some(expected);
                        }
                        continue;
                    }
                    decision => {
                        tracing::warn!("the store moved on during the refresh");
                        let orphan = pending.take().map(|p| p.tokens);
                        held.release(inner.config.refresh_timeout).await;
                        settle(inner, persist, ticket, decision, orphan, started).await;
                        return Attempt::Done;
                    }
                },
                Err(e) => inner.report_store_failure(e),
            },
            Err(e) => inner.report_store_failure(e),
        }
        if attempt < attempts {
            let delay = backoff_delay(&inner.config.retry, attempt, Duration::ZERO, None);
            inner.rt.sleep.sleep(delay).await;
        }
    }
    // Never dropped silently (C13): the store kept failing, so the set is
    // published in memory, and each failure was reported.
    held.release(inner.config.refresh_timeout).await;
    if let Some(p) = pending.take() {
        publish(inner, persist, ticket, p.tokens, trigger, started);
    }
    Attempt::Done
}

/// The server refused the refresh token, under the lease. Re-read: if the
/// store holds a newer set of this login, another process rotated it: adopt
/// (C16). If it holds the rejected set, remove it with a fenced clear — a
/// successor written meanwhile is never wiped (C20) — and end the session
/// once (C6).
async fn rejected(
    inner: &Arc<Inner>,
    ticket: &Ticket,
    error: RefreshError,
    started: Duration,
    held: &Held,
) -> Attempt {
    let persist = inner.cell.persist().await;
    if !inner.cell.is_current(ticket) {
        return Attempt::Done;
    }
    let attempts = inner.config.store_attempts.max(1);
    for _ in 0..attempts {
        let stored = match inner.bounded(inner.store.load()).await {
            Ok(stored) => stored,
            Err(e) => {
                // Without the store we cannot tell a rotation elsewhere from
                // a real rejection: no logout on a guess.
                tracing::warn!(error = %e, "refresh rejected and the store unreadable");
                return Attempt::Failed(RefreshError::transient(e));
            }
        };
        let expected = match decide(&ticket.from.tokens, stored) {
            Decision::Refresh { expected } => expected,
            decision => {
                tracing::info!("refresh token rotated or replaced elsewhere");
                held.release(inner.config.refresh_timeout).await;
                settle(inner, persist, ticket, decision, None, started).await;
                return Attempt::Done;
            }
        };
        let clear = async {
            coordinator(&inner.store)?
                .compare_and_swap(Some(held.lease()), Some(&expected), None)
                .await
        };
        match inner.bounded(clear).await {
            Ok(true) => break,
            Ok(false) => continue, // the store moved: decide again
            Err(e) => {
                inner.report_store_failure(e);
                break;
            }
        }
    }
    tracing::warn!(error = %error, "refresh token rejected; ending the session");
    held.release(inner.config.refresh_timeout).await;
    end(inner, persist, ticket, EndReason::RefreshRejected, started);
    Attempt::Done
}

// ---------------------------------------------------------------------------
// Completing the flight. Each takes the persist lock by value and hands it to
// `Wake::deliver`, which releases it before anything is announced.

/// The set that succeeds `from`: the next generation (above what the store
/// held, too), the same lineage, the old refresh token if none came back (C12).
fn successor(from: &TokenSet, mut tokens: TokenSet, stored: Option<&Stamp>) -> TokenSet {
    let base = stored.map_or(from.generation, |s| s.generation.max(from.generation));
    tokens.generation = base.next();
    tokens.lineage = from.lineage.clone();
    if tokens.refresh_token.is_none() {
        tokens.refresh_token = from.refresh_token.clone(); // C12
    }
    tokens.obtained_at = None; // the session stamps its own clock
    tokens
}

fn publish(
    inner: &Arc<Inner>,
    persist: Persist<'_>,
    ticket: &Ticket,
    tokens: TokenSet,
    trigger: Trigger,
    started: Duration,
) {
    let p = inner.publishable(tokens);
    let generation = p.generation();
    if let Some(wake) = inner.cell.finish(&persist, ticket, Finish::Publish(p)) {
        wake.deliver(Some(persist), || {
            m::refresh_outcome("ok", inner.elapsed(started));
            tracing::info!(generation = %generation, "token refreshed");
            inner.events.emit(SessionEvent::Refreshed {
                generation,
                trigger,
            });
        });
    }
}

/// Publishes a set another process of this login stored, without refreshing
/// (C15, C16).
fn adopt(
    inner: &Arc<Inner>,
    persist: Persist<'_>,
    ticket: &Ticket,
    stored: TokenSet,
    started: Duration,
) {
    let p = inner.publishable(stored);
    let generation = p.generation();
    if let Some(wake) = inner.cell.finish(&persist, ticket, Finish::Publish(p)) {
        wake.deliver(Some(persist), || {
            m::refresh_outcome("adopted", inner.elapsed(started));
            tracing::info!(generation = %generation, "adopted the tokens another process stored");
            inner.events.emit(SessionEvent::Adopted { generation });
        });
    }
}

fn end(
    inner: &Arc<Inner>,
    persist: Persist<'_>,
    ticket: &Ticket,
    reason: EndReason,
    started: Duration,
) {
    end_after(inner, persist, ticket, reason, started, None);
}

/// As [`end`], announcing `first` ahead of the end.
fn end_after(
    inner: &Arc<Inner>,
    persist: Persist<'_>,
    ticket: &Ticket,
    reason: EndReason,
    started: Duration,
    first: Option<SessionEvent>,
) {
    if let Some(wake) = inner.cell.finish(&persist, ticket, Finish::End(reason)) {
        wake.deliver(Some(persist), || {
            if let Some(first) = first {
                inner.events.emit(first);
            }
            m::refresh_outcome(m::ended_outcome(reason), inner.elapsed(started));
            m::session_ended(reason);
            inner.events.emit(SessionEvent::SessionEnded { reason });
        });
    }
}

/// Another login's set is in the store (C19): report it, never adopt it, and
/// end this session as superseded.
fn superseded(
    inner: &Arc<Inner>,
    persist: Persist<'_>,
    ticket: &Ticket,
    foreign: TokenSet,
    started: Duration,
) {
    tracing::warn!(lineage = %foreign.lineage, generation = %foreign.generation, "another login replaced this session in the shared store; not adopting it");
    let report = SessionEvent::ForeignSet {
        generation: foreign.generation,
        lineage: foreign.lineage,
    };
    end_after(
        inner,
        persist,
        ticket,
        EndReason::Superseded,
        started,
        Some(report),
    );
}

/// One call to the refresher, bounded by the refresh timeout (C9).
///
/// A refresher that panics is a bug in it, not a network failure: it is
/// reported as a misconfiguration (no retry loop, the session is kept).
async fn attempt_once(inner: &Inner, current: &TokenSet) -> Result<TokenSet, RefreshError> {
    let call = AssertUnwindSafe(inner.refresher.refresh(current)).catch_unwind();
    let timeout = inner.rt.sleep.sleep(inner.config.refresh_timeout);
    match select(call, timeout).await {
        Either::Left((Ok(result), _)) => result,
        Either::Left((Err(_panic), _)) => Err(RefreshError::misconfigured(
            AttemptFailure::RefresherPanicked,
        )),
        Either::Right(((), _)) => Err(RefreshError::transient(AttemptFailure::TimedOut(
            inner.config.refresh_timeout,
        ))),
    }
}

/// A rotation nobody will use (its session ended, or the store went to
/// another login or to nobody): revoked at the server, not left live.
async fn revoke_orphan(inner: &Inner, tokens: &TokenSet) {
    tracing::info!(generation = %tokens.generation, "revoking a rotation nobody will use");
    revoke_best_effort(inner, tokens).await;
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
