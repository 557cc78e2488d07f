//! A fault turmoil 0.7 does not have: a **process pause** — a stop-the-world
//! garbage collection, a suspended VM, a laptop lid closed — during which a
//! client process runs nothing while the rest of the world goes on.
//!
//! A paused process's timers do not fire (its runtime's [`Sleep`] waits out
//! the pause after its duration), its store calls and requests neither go
//! out nor come back, and its monotonic clock goes on (a real one does).
//! Code that runs without waiting on any of those — a few instructions
//! between two awaits — is not frozen, which is the same as the pause
//! starting just after it.
//!
//! The schedule **arms** a pause for a process; it starts the next time the
//! process's store answers a read while the process holds the store's lease
//! and has no refresh out: exactly between the re-read under the lease and
//! the refresh (C18 step 2 → 3), the spot where a holder that does not check
//! its lease deadline refreshes without the lease.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use reauth::Sleep;

use crate::monitor::{self, Shared};
use crate::net::StoreData;

/// One client host's pause state; shared by its incarnations and the driver.
#[derive(Clone, Debug, Default)]
pub(crate) struct Pause {
    /// Simulated time (ms) until which the process is paused.
    until_ms: Arc<AtomicI64>,
    /// An armed pause (ms; 0: none).
    armed_ms: Arc<AtomicI64>,
    /// All the pausing so far (ms), ongoing pauses counted in full.
    total_ms: Arc<AtomicI64>,
    /// Refresh calls of this process that are out.
    calls: Arc<AtomicI64>,
    /// The simulation's clock (ms), set by the driver every step.
    now_ms: Arc<AtomicI64>,
}

impl Pause {
    pub(crate) fn new(now_ms: &Arc<AtomicI64>) -> Self {
        Self {
            now_ms: Arc::clone(now_ms),
            ..Self::default()
        }
    }

    fn now(&self) -> i64 {
        self.now_ms.load(Ordering::Relaxed)
    }

    fn left(&self) -> i64 {
        (self.until_ms.load(Ordering::Relaxed) - self.now()).max(0)
    }

    /// Waits out the pause, if the process is paused.
    pub(crate) async fn gate(&self) {
        loop {
            let left = self.left();
            if left == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(left.unsigned_abs())).await;
        }
    }

    /// Arms a pause of `ms`; `false` if one is armed already.
    pub(crate) fn arm(&self, ms: i64) -> bool {
        self.armed_ms
            .compare_exchange(0, ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// Disarms the armed pause, if any (the faults heal); a pause under way
    /// goes on.
    pub(crate) fn disarm(&self) {
        self.armed_ms.store(0, Ordering::Relaxed);
    }

    /// Disarms and ends any pause (the process restarts).
    pub(crate) fn clear(&self) {
        self.disarm();
        let left = self.left();
        self.total_ms.fetch_sub(left, Ordering::Relaxed);
        self.until_ms.store(0, Ordering::Relaxed);
    }

    /// The store answered a read of process `who`: starts the armed pause if
    /// `who` holds the store's lease and has no refresh out.
    pub(crate) fn store_read(&self, who: &str, store: &Mutex<StoreData>, m: &Shared) {
        if self.armed_ms.load(Ordering::Relaxed) == 0 || self.calls.load(Ordering::Relaxed) > 0 {
            return;
        }
        let now = self.now();
        let holds = store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .lease_holder(now)
            == Some(who);
        if !holds {
            return;
        }
        let ms = self.armed_ms.swap(0, Ordering::Relaxed);
        if ms == 0 {
            return;
        }
        self.until_ms.store(now + ms, Ordering::Relaxed);
        self.total_ms.fetch_add(ms, Ordering::Relaxed);
        monitor::with(m, |m| {
            m.note(format!(
                "fault: {who} pauses for {ms}ms (after reading the store under its lease)"
            ));
        });
    }

    /// How much of the pausing so far is in the past (ms): the difference of
    /// two readings is how long the process was paused between them.
    pub(crate) fn paused_so_far(&self) -> i64 {
        self.total_ms.load(Ordering::Relaxed) - self.left()
    }

    /// Marks a refresh call out until the guard drops.
    pub(crate) fn calling(&self) -> Calling {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Calling(Arc::clone(&self.calls))
    }
}

/// A refresh call of the process is out.
pub(crate) struct Calling(Arc<AtomicI64>);

impl Drop for Calling {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The runtime timer of a client process: tokio's (turmoil's simulated
/// time), whose sleeps also wait out a pause.
#[derive(Clone, Debug)]
pub(crate) struct PausableSleep(pub(crate) Pause);

impl Sleep for PausableSleep {
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        let pause = self.0.clone();
        Box::pin(async move {
            tokio::time::sleep(duration).await;
            pause.gate().await;
        })
    }

    fn monotonic(&self) -> Duration {
        reauth::TokioSleep.monotonic()
    }
}
