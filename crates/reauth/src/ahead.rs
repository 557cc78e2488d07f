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

use futures::FutureExt;

use crate::events::Trigger;
use crate::flight::{Join, Outcome};
use crate::policy::refresh_at;
use crate::refresh;
use crate::session::Inner;
use crate::token::Generation;

/// Starts the timer for `epoch` if refresh-ahead is enabled.
pub(crate) fn spawn(inner: &Arc<Inner>, epoch: u64) {
    if !inner.config.refresh_ahead.enabled {
        return;
    }
    let weak = Arc::downgrade(inner);
    inner.rt.spawn.spawn(run(weak, epoch).boxed());
}

async fn run(weak: Weak<Inner>, epoch: u64) {
    // The jitter is drawn once per generation, so re-checks do not re-roll it.
    let mut jitter: Option<(Generation, Duration)> = None;
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
        let sleep_for = match due {
            Some(at) if now >= at => {
                let waiter = match inner.cell.join(generation, Trigger::Ahead) {
                    Err(_) => return,
                    Ok(Join::Newer) => continue,
                    Ok(Join::Wait(w)) => w,
                    Ok(Join::Start(ticket, w)) => {
                        refresh::spawn(&inner, ticket, Trigger::Ahead);
                        w
                    }
                };
                drop(inner);
                match waiter.await {
                    Outcome::LookAgain => continue,
                    // Failed: the refresh already retried within its budget. Wait a
                    // little before trying again; expiry and 401s still refresh meanwhile.
                    Outcome::Failed(e) if e.is_session_ended() => return,
                    Outcome::Failed(_) => policy.recheck.min(Duration::from_secs(5)),
                }
            }
            Some(at) => at
                .duration_since(now)
                .unwrap_or_default()
                .min(policy.recheck),
            None => policy.recheck,
        };
        let sleep = weak.upgrade().map(|inner| {
            inner
                .rt
                .sleep
                .sleep(sleep_for.max(Duration::from_millis(1)))
        });
        match sleep {
            Some(sleep) => sleep.await,
            None => return,
        }
    }
}
