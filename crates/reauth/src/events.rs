//! What a session tells its observers: refreshes, retries, failures, the end.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use futures::channel::mpsc;

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
}

/// A stream of [`SessionEvent`]s, from subscription on. Unbounded: drain it or drop it.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::UnboundedReceiver<SessionEvent>,
}

impl Stream for EventStream {
    type Item = SessionEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SessionEvent>> {
        Pin::new(&mut self.rx).poll_next(cx)
    }
}

impl EventStream {
    /// The next event already queued, without waiting.
    pub fn try_next(&mut self) -> Option<SessionEvent> {
        self.rx.try_recv().ok()
    }
}

type EndedCallback = Arc<dyn Fn(EndReason) + Send + Sync>;

#[derive(Default)]
pub(crate) struct Events {
    subscribers: Mutex<Vec<mpsc::UnboundedSender<SessionEvent>>>,
    on_ended: Mutex<Vec<EndedCallback>>,
}

impl Events {
    pub(crate) fn subscribe(&self) -> EventStream {
        let (tx, rx) = mpsc::unbounded();
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(tx);
        EventStream { rx }
    }

    pub(crate) fn on_ended(&self, f: EndedCallback) {
        self.on_ended
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(f);
    }

    pub(crate) fn emit(&self, event: SessionEvent) {
        if let SessionEvent::SessionEnded { reason } = &event {
            let callbacks = self
                .on_ended
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            for cb in callbacks {
                cb(*reason);
            }
        }
        let mut subs = self
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        subs.retain(|tx| tx.unbounded_send(event.clone()).is_ok());
    }
}
