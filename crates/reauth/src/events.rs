//! What a session tells its observers: refreshes, retries, failures, the end.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use futures::task::AtomicWaker;

use crate::error::{EndReason, RefreshError, StoreError};
use crate::token::{Generation, Lineage};

/// Why a refresh started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Trigger {
    /// The refresh-ahead timer: the old token is still valid and stays in use.
    Ahead,
    /// The token expired by the clock.
    Expired,
    /// A request was refused with the token (`invalidate`).
    Rejected,
}

/// Something that happened to a session. Subscribe with
/// [`Session::events`](crate::Session::events).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum SessionEvent {
    /// A refresh of `generation` started, for `trigger`: this process calls
    /// the refresher (on a coordinating store, after taking the lease and
    /// re-reading the store, where it may adopt instead).
    RefreshStarted {
        /// The generation being refreshed.
        generation: Generation,
        /// What started it.
        trigger: Trigger,
    },
    /// The refresh-ahead timer fired for `generation`: it starts the refresh,
    /// or joins the one in flight.
    TimerFired {
        /// The generation the timer refreshes ahead of its expiry.
        generation: Generation,
    },
    /// A caller needed a refresh of `generation` and joined the one already
    /// in flight instead of starting another (C1, C2).
    JoinedFlight {
        /// The generation being refreshed.
        generation: Generation,
        /// Why this caller needed it.
        trigger: Trigger,
    },
    /// A session started (login) or was restored from the store.
    Started {
        /// The generation published.
        generation: Generation,
    },
    /// A refresh succeeded and its tokens were stored and published.
    Refreshed {
        /// The new generation.
        generation: Generation,
        /// What started the refresh.
        trigger: Trigger,
    },
    /// Another process or replica had already rotated the tokens; the stored set
    /// was adopted instead of ending the session.
    Adopted {
        /// The generation adopted.
        generation: Generation,
    },
    /// A set from **another login** (another lineage) was found in the shared
    /// store. It was not adopted; the session ends as
    /// [`EndReason::Superseded`] right after this event (C19).
    ForeignSet {
        /// The foreign set's generation.
        generation: Generation,
        /// The foreign set's lineage.
        lineage: Lineage,
    },
    /// A refresh attempt failed transiently and will be retried after `delay`.
    RefreshRetrying {
        /// The attempt that failed (1 = the first).
        attempt: u32,
        /// The delay before the next attempt.
        delay: Duration,
        /// The failure.
        error: Arc<RefreshError>,
    },
    /// A refresh gave up (transient budget spent, or misconfiguration). The
    /// session is kept; the next call tries again.
    RefreshFailed {
        /// The last failure.
        error: Arc<RefreshError>,
    },
    /// Persisting a rotated token set failed; it is retried, and the tokens stay
    /// in memory either way.
    StoreFailed {
        /// The failure.
        error: Arc<StoreError>,
    },
    /// A request replayed with a fresh token was refused again. It was returned
    /// to its caller as is; no further refresh was made for it.
    ReplayRejected {
        /// The generation the replay carried.
        generation: Generation,
    },
    /// The session ended. Sent exactly once per session.
    SessionEnded {
        /// Why.
        reason: EndReason,
    },
    /// This subscriber did not keep up: `missed` older events were dropped
    /// from its [`EventStream`] (which holds at most [`EVENT_BUFFER`]).
    Lagged {
        /// How many events were dropped.
        missed: u64,
    },
}

/// How many events one subscriber may have queued; beyond it the oldest are
/// dropped and the subscriber is told how many ([`SessionEvent::Lagged`]).
pub const EVENT_BUFFER: usize = 256;

/// A stream of [`SessionEvent`]s, from subscription on.
///
/// **Bounded** (C24): at most [`EVENT_BUFFER`] events wait in it. A
/// subscriber that does not keep up loses the oldest ones and next receives
/// [`SessionEvent::Lagged`] with how many it missed; the session never waits
/// for a subscriber, and a forgotten stream never grows without end. The
/// stream ends when the session is dropped.
#[derive(Debug)]
pub struct EventStream {
    queue: Arc<Queue>,
    live: Arc<AtomicUsize>,
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug, Default)]
struct Queue {
    state: Mutex<QueueState>,
    waker: AtomicWaker,
}

#[derive(Debug, Default)]
struct QueueState {
    events: VecDeque<SessionEvent>,
    missed: u64,
    closed: bool,
}

impl Queue {
    fn state(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, event: SessionEvent) {
        {
            let mut st = self.state();
            if st.events.len() >= EVENT_BUFFER {
                st.events.pop_front();
                st.missed = st.missed.saturating_add(1);
            }
            st.events.push_back(event);
        }
        self.waker.wake();
    }

    fn close(&self) {
        self.state().closed = true;
        self.waker.wake();
    }

    /// The next event: the lag first if events were dropped.
    fn pop(&self) -> Option<SessionEvent> {
        let mut st = self.state();
        if st.missed > 0 {
            let missed = std::mem::take(&mut st.missed);
            return Some(SessionEvent::Lagged { missed });
        }
        st.events.pop_front()
    }
}

impl Stream for EventStream {
    type Item = SessionEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SessionEvent>> {
        if let Some(event) = self.queue.pop() {
            return Poll::Ready(Some(event));
        }
        self.queue.waker.register(cx.waker());
        // Re-check after registering, so an event pushed in between is not missed.
        if let Some(event) = self.queue.pop() {
            return Poll::Ready(Some(event));
        }
        if self.queue.state().closed {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

impl EventStream {
    /// The next event already queued, without waiting.
    pub fn try_next(&mut self) -> Option<SessionEvent> {
        self.queue.pop()
    }
}

type EndedCallback = Arc<dyn Fn(EndReason) + Send + Sync>;

#[derive(Default)]
pub(crate) struct Events {
    subscribers: Mutex<Vec<Weak<Queue>>>,
    /// Streams alive, so that emitting to nobody costs one atomic load (a
    /// burst of 10 000 joiners emits 10 000 `JoinedFlight`).
    live: Arc<AtomicUsize>,
    on_ended: Mutex<Vec<EndedCallback>>,
}

impl Drop for Events {
    fn drop(&mut self) {
        let subs = std::mem::take(
            &mut *self
                .subscribers
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for q in subs.iter().filter_map(Weak::upgrade) {
            q.close();
        }
    }
}

impl Events {
    pub(crate) fn subscribe(&self) -> EventStream {
        let queue = Arc::new(Queue::default());
        let mut subs = self
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Dropped subscribers go here too, not only when an event is sent:
        // subscribing and dropping in a loop must not grow the list.
        subs.retain(|w| w.strong_count() > 0);
        subs.push(Arc::downgrade(&queue));
        drop(subs);
        self.live.fetch_add(1, Ordering::AcqRel);
        EventStream {
            queue,
            live: Arc::clone(&self.live),
        }
    }

    pub(crate) fn on_ended(&self, f: EndedCallback) {
        self.on_ended
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(f);
    }

    /// Delivers `event` to every subscriber (never waiting for one), and for
    /// [`SessionEvent::SessionEnded`] runs the on-ended callbacks first. The
    /// callers run this after every lock of the session is released
    /// (`Wake::deliver`), so a callback may call back into the session.
    pub(crate) fn emit(&self, event: SessionEvent) {
        let ended = matches!(event, SessionEvent::SessionEnded { .. });
        if !ended && self.live.load(Ordering::Acquire) == 0 {
            return;
        }
        if let SessionEvent::SessionEnded { reason } = &event {
            let callbacks = self
                .on_ended
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            for cb in callbacks {
                // A subscriber's bug must not break the session: the other
                // callbacks, the event and the waiters still get their turn.
                let reason = *reason;
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(reason))).is_err() {
                    tracing::error!("an on_session_ended callback panicked; ignored");
                }
            }
        }
        let live: Vec<Arc<Queue>> = {
            let mut subs = self
                .subscribers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            subs.retain(|w| w.strong_count() > 0);
            subs.iter().filter_map(Weak::upgrade).collect()
        };
        for q in live {
            q.push(event.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c24_dropped_subscribers_are_pruned_without_any_event() {
        let events = Events::default();
        let kept = events.subscribe();
        for _ in 0..1000 {
            drop(events.subscribe());
        }
        let listed = events
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        assert!(listed <= 2, "{listed} subscribers listed for 1 live");
        drop(kept);
    }
}
