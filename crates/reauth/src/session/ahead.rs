//! The refresh-ahead timer (C14).
//!
//! One task per session epoch. It sleeps until the refresh-ahead instant, but
//! never longer than `recheck` at a time, and looks at the clock again on each
//! wake-up, so a suspended machine or a clock jump is noticed. The refresh it
//! starts goes through the same single flight as the 401 path ([`Trigger::Ahead`]),
//! so a timer racing a burst of 401s still makes one refresh (C2), and readers
//! keep the still-valid token meanwhile (C4b).

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::inner::Inner;
use super::refresh;
use crate::events::{SessionEvent, Trigger};
use crate::flight::{Join, Outcome, Waiter};
use crate::policy::refresh_at;
use crate::token::Generation;

/// Starts the timer for `epoch` if refresh-ahead is enabled.
pub(crate) fn spawn(inner: &Arc<Inner>, epoch: u64) {
    if !inner.config.refresh_ahead.enabled {
        return;
    }
    let weak = Arc::downgrade(inner);
    inner.rt.spawn.spawn(Box::pin(run(weak, epoch)));
}

async fn run(weak: Weak<Inner>, epoch: u64) {
    // The jitter is drawn once per generation, so re-checks do not re-roll it.
    let mut jitter: Option<(Generation, Duration)> = None;
    // When the timer last started (or joined) a refresh: it never does so more
    // often than every `gap`, even if a new token is already due when it
    // arrives (a server answering `expires_in: 0`), so it cannot spin. On the
    // monotonic clock: a wall-clock jump back must not silence the timer.
    let mut last_fired: Option<Duration> = None;
    loop {
        // Hold the session only while deciding, never while sleeping: a dropped
        // session stops its timer.
        let Some(inner) = weak.upgrade() else { return };
        if inner.cell.epoch() != epoch {
            return;
        }
        let Ok(cur) = inner.cell.current() else {
            return;
        };
        let policy = inner.config.refresh_ahead;
        let generation = cur.generation();
        let j = match jitter {
            Some((g, j)) if g == generation => j,
            _ => {
                let j = inner.rt.jitter.jitter(policy.jitter);
                jitter = Some((generation, j));
                j
            }
        };
        let obtained = cur.tokens.obtained_at.unwrap_or_else(|| inner.rt.now());
        let now = inner.rt.now();
        let due = refresh_at(cur.tokens.expires_at, obtained, &policy, j);
        let gap = policy.recheck.min(Duration::from_secs(5));
        let mono = inner.rt.mono();
        let next_allowed = last_fired.map(|t| t.saturating_add(gap));
        let sleep_for = match due {
            Some(at) if now >= at && next_allowed.is_some_and(|t| mono < t) => {
                next_allowed.map_or(gap, |t| t.saturating_sub(mono))
            }
            Some(at) if now >= at => {
                last_fired = Some(mono);
                inner.events.emit(SessionEvent::TimerFired { generation });
                let next = match inner.cell.join(generation, None, Trigger::Ahead, mono) {
                    Err(e) if e.is_session_ended() => Next::Stop,
                    // In a `Retry-After` cool-down: try again after the gap.
                    Err(_) => Next::Sleep(gap),
                    Ok(Join::Newer) => Next::Again,
                    Ok(Join::Wait(w)) => {
                        inner.events.emit(SessionEvent::JoinedFlight {
                            generation,
                            trigger: Trigger::Ahead,
                        });
                        outcome(w, gap).await
                    }
                    Ok(Join::Start(ticket, w)) => {
                        refresh::spawn(&inner, ticket, Trigger::Ahead);
                        outcome(w, gap).await
                    }
                };
                match next {
                    Next::Again => continue,
                    Next::Stop => return,
                    Next::Sleep(d) => d,
                }
            }
            Some(at) => at
                .duration_since(now)
                .unwrap_or_default()
                .min(policy.recheck),
            None => policy.recheck,
        };
        drop(inner);
        if !sleep_then(&weak, sleep_for).await {
            return;
        }
    }
}

enum Next {
    Again,
    Sleep(Duration),
    Stop,
}

/// What the timer does after the refresh it joined: look again at once after a
/// success; after a failure (the refresh already retried within its budget)
/// wait `gap` — expiry and 401s still refresh meanwhile.
async fn outcome(waiter: Waiter, gap: Duration) -> Next {
    match waiter.await {
        Outcome::LookAgain => Next::Again,
        Outcome::Failed(e) if e.is_session_ended() => Next::Stop,
        Outcome::Failed(_) => Next::Sleep(gap),
    }
}

/// Sleeps on the session's timer without holding the session; `false` if the
/// session is gone.
async fn sleep_then(weak: &Weak<Inner>, d: Duration) -> bool {
    let Some(sleep) = weak
        .upgrade()
        .map(|inner| inner.rt.sleep.sleep(d.max(Duration::from_millis(1))))
    else {
        return false;
    };
    sleep.await;
    true
}
