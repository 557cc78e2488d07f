//! Synchronisation primitives, swapped for shuttle's when model checking.
//!
//! Build with `RUSTFLAGS="--cfg reauth_shuttle"` to run the single flight under
//! the shuttle model checker (see `tests/shuttle_single_flight.rs`); normal
//! builds use `std`. [`AsyncMutex`] is built on these primitives, so shuttle
//! explores the persist lock's interleavings too.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[cfg(not(reauth_shuttle))]
pub(crate) use std::sync::atomic::AtomicBool;
#[cfg(not(reauth_shuttle))]
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(reauth_shuttle)]
pub(crate) use shuttle::sync::atomic::AtomicBool;
#[cfg(reauth_shuttle)]
pub(crate) use shuttle::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning: every critical section in this crate leaves
/// the state consistent before anything that could panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A small async mutex without data: one holder at a time, waiters parked.
///
/// Unlocking wakes every parked waiter and they race for it again: no waker
/// can be lost to a cancelled waiter, and the lock is contended by a handful
/// of tasks at most (a refresh, a `start`, a `logout`).
#[derive(Debug, Default)]
pub(crate) struct AsyncMutex {
    state: Mutex<AsyncState>,
}

#[derive(Debug, Default)]
struct AsyncState {
    locked: bool,
    waiters: Vec<Waker>,
}

/// Holding an [`AsyncMutex`]; dropping it unlocks.
#[derive(Debug)]
pub(crate) struct AsyncMutexGuard<'a> {
    mutex: &'a AsyncMutex,
}

impl AsyncMutex {
    /// Waits for the lock.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a dropped waiter holds nothing, and unlocking wakes every
    /// waiter, so none is left parked by it.
    pub(crate) fn lock(&self) -> Lock<'_> {
        Lock { mutex: self }
    }
}

/// The future of [`AsyncMutex::lock`].
pub(crate) struct Lock<'a> {
    mutex: &'a AsyncMutex,
}

impl<'a> Future for Lock<'a> {
    type Output = AsyncMutexGuard<'a>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<AsyncMutexGuard<'a>> {
        let mut st = lock(&self.mutex.state);
        if st.locked {
            if !st.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                st.waiters.push(cx.waker().clone());
            }
            return Poll::Pending;
        }
        st.locked = true;
        Poll::Ready(AsyncMutexGuard { mutex: self.mutex })
    }
}

impl Drop for AsyncMutexGuard<'_> {
    fn drop(&mut self) {
        // Under the model checker, tasks still pending when an execution ends
        // are dropped outside any task, where shuttle's mutex cannot be taken
        // (and nobody is left to wake).
        #[cfg(reauth_shuttle)]
        if std::thread::panicking() || shuttle::current::get_current_task().is_none() {
            return;
        }
        let waiters = {
            let mut st = lock(&self.mutex.state);
            st.locked = false;
            std::mem::take(&mut st.waiters)
        };
        for w in waiters {
            w.wake();
        }
    }
}

#[cfg(all(test, not(reauth_shuttle)))]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn one_holder_and_waiters_get_it_after_unlock() {
        let m = AsyncMutex::default();
        let g = m.lock().now_or_never().expect("free");
        assert!(m.lock().now_or_never().is_none(), "held");
        drop(g);
        let g2 = m.lock().now_or_never().expect("free again");
        drop(g2);
    }

    #[test]
    fn a_cancelled_waiter_does_not_strand_the_others() {
        let m = std::sync::Arc::new(AsyncMutex::default());
        let g = m.lock().now_or_never().unwrap();
        let mut a = Box::pin(m.lock());
        let mut b = Box::pin(m.lock());
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(a.as_mut().poll(&mut cx).is_pending());
        assert!(b.as_mut().poll(&mut cx).is_pending());
        drop(a);
        drop(g);
        assert!(b.as_mut().poll(&mut cx).is_ready());
    }
}
