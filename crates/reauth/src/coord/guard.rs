//! A held lease: its deadline, its renewal while work goes on, its release.
//!
//! [`acquire`] polls [`Coordinator::try_acquire`] until the lease is free,
//! recording a **deadline** (the instant before the request plus the TTL, so
//! never later than the store's own expiry), on the runtime's monotonic clock
//! ([`Sleep::monotonic`](crate::Sleep::monotonic)): a wall-clock jump moves it
//! neither way. [`Held::hold`] runs the holder's
//! work beside a keep-alive that renews the lease every third of the TTL
//! until the lease is released. If the deadline passes without a renewal
//! (the store says the lease is gone, or cannot be reached in time), the
//! lease counts as **lost** and the work is dropped where it stands — unless
//! it is inside the refresher call ([`Held::call`]): that call already sent
//! the one-time refresh token, so it runs to its own timeout and its answer
//! is kept (the fenced write then fails and the rotation is written under
//! the next lease). No refresher call starts unless the lease has at least
//! the refresh timeout left ([`Held::ensure`]), so nobody else can take the
//! lease while a call is out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::{Either, select};

use crate::coord::{Coordinator, Lease, lease_poll_delay};
use crate::error::{AttemptFailure, RefreshError, StoreError};
use crate::runtime::Runtime;
use crate::store::TokenStore;

/// How long leases last, are held and are waited for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Terms {
    /// The TTL asked for (and renewed to).
    pub(crate) ttl: Duration,
    /// The longest one holder works under one lease; it stops renewing after.
    pub(crate) hold: Duration,
    /// The longest a waiter polls for a lease someone else holds: a live
    /// holder's longest hold plus a dead holder's TTL.
    pub(crate) wait: Duration,
    /// The bound on each single store request (acquire, renew, release).
    pub(crate) step: Duration,
}

impl Terms {
    /// Terms for a session whose refresh attempts time out after
    /// `refresh_timeout`: one re-read, one refresh, one compare-and-set and
    /// one more re-read, each bounded by the timeout.
    pub(crate) fn new(ttl: Duration, refresh_timeout: Duration) -> Self {
        let hold = refresh_timeout.saturating_mul(4);
        Self {
            ttl,
            hold,
            wait: hold.saturating_add(ttl),
            step: refresh_timeout,
        }
    }
}

/// `op`, failing as a timed-out store error after `limit`.
pub(crate) async fn bounded<T>(
    rt: &Runtime,
    limit: Duration,
    op: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match select(std::pin::pin!(op), rt.sleep.sleep(limit)).await {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => Err(StoreError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the token store did not answer in time",
        ))),
    }
}

/// The store's coordinator. A lease is only taken on a coordinating store;
/// one that stops offering coordination midway is a store failure, not a
/// panic.
pub(crate) fn coordinator(store: &Arc<dyn TokenStore>) -> Result<&dyn Coordinator, StoreError> {
    store.coordinator().ok_or_else(|| {
        StoreError::Backend(Box::new(std::io::Error::other(
            "the token store stopped offering coordination",
        )))
    })
}

/// Waits for the lease, polling with bounded backoff plus jitter, for at most
/// `terms.wait`. `Ok(None)` if `still_wanted` turns false meanwhile (the
/// flight was superseded).
///
/// # Errors
///
/// A transient [`RefreshError`]: the store failed, or the lease stayed busy.
pub(crate) async fn acquire(
    store: &Arc<dyn TokenStore>,
    rt: &Runtime,
    terms: &Terms,
    still_wanted: impl Fn() -> bool,
) -> Result<Option<Held>, RefreshError> {
    let coord = coordinator(store).map_err(RefreshError::misconfigured)?;
    let began = rt.mono();
    let mut polls = 0u32;
    loop {
        let asked_at = rt.mono();
        match bounded(rt, terms.step, coord.try_acquire(terms.ttl)).await {
            Ok(Some(lease)) => {
                let deadline = lease.ttl().map(|ttl| asked_at.saturating_add(ttl));
                return Ok(Some(Held {
                    store: Arc::clone(store),
                    rt: rt.clone(),
                    lease,
                    deadline: Mutex::new(deadline),
                    released: AtomicBool::new(false),
                    lost: AtomicBool::new(false),
                    in_call: AtomicBool::new(false),
                }));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "refresh lease unavailable");
                return Err(RefreshError::transient(e));
            }
        }
        if !still_wanted() {
            return Ok(None);
        }
        if rt.mono().saturating_sub(began) >= terms.wait {
            return Err(RefreshError::transient(AttemptFailure::LeaseBusy(
                terms.wait,
            )));
        }
        polls += 1;
        let base = lease_poll_delay(polls);
        rt.sleep.sleep(base + rt.jitter.jitter(base / 2)).await;
    }
}

/// A lease this process holds. Released once, by [`Held::release`]; if it is
/// dropped unreleased (its task was dropped), the release is spawned.
pub(crate) struct Held {
    store: Arc<dyn TokenStore>,
    rt: Runtime,
    lease: Lease,
    /// On the runtime's monotonic clock ([`Runtime::mono`]); `None`: held
    /// until released.
    deadline: Mutex<Option<Duration>>,
    released: AtomicBool,
    /// The keep-alive gave up: the deadline passed, or the store said the
    /// lease is gone.
    lost: AtomicBool,
    /// A refresher call is out under this lease ([`Held::call`]).
    in_call: AtomicBool,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("lease", &self.lease)
            .field("deadline", &self.deadline())
            .finish_non_exhaustive()
    }
}

impl Held {
    /// The lease, to fence writes with.
    pub(crate) fn lease(&self) -> &Lease {
        &self.lease
    }

    fn deadline(&self) -> Option<Duration> {
        *self.deadline.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the lease is ours for at least `need` more: if it has less
    /// left, it is renewed once first (bounded by what is left). A refresher
    /// call bounded by `need` that starts after a `true` ends before anyone
    /// else can take the lease.
    pub(crate) async fn ensure(&self, terms: &Terms, need: Duration) -> bool {
        if crate::mutant::on("lease_fence") {
            return true;
        }
        if self.lost.load(Ordering::Acquire) {
            return false;
        }
        let (Some(ttl), Some(deadline)) = (self.lease.ttl(), self.deadline()) else {
            return true; // held until released
        };
        let left = deadline.saturating_sub(self.rt.mono());
        if left >= need {
            return true;
        }
        if left.is_zero() || !self.renew_once(terms, ttl, deadline).await {
            return false;
        }
        self.deadline()
            .is_some_and(|d| d.saturating_sub(self.rt.mono()) >= need)
    }

    /// Runs the refresher call `call` under the lease: if the lease is lost
    /// meanwhile, [`hold`](Self::hold) does not drop it — it already sent the
    /// one-time refresh token, and its answer is the only copy of the
    /// rotation. `call` must be bounded (the refresh timeout).
    pub(crate) async fn call<T>(&self, call: impl std::future::Future<Output = T>) -> T {
        struct Out<'a>(&'a AtomicBool);
        impl Drop for Out<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        self.in_call.store(true, Ordering::Release);
        let _out = Out(&self.in_call);
        call.await
    }

    /// Runs `work` while keeping the lease: renews it every third of the TTL
    /// until it is released, and drops `work` (answering an
    /// [`AttemptFailure`]) when the deadline passes without a renewal, when
    /// the store says the lease is gone, or after `terms.hold` — except
    /// while `work` is inside [`call`](Self::call): then the lease is marked
    /// lost (nothing else starts under it, its fenced writes fail) and `work`
    /// runs on to its end.
    pub(crate) async fn hold<T>(
        &self,
        terms: &Terms,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, AttemptFailure> {
        let mut work = std::pin::pin!(work);
        let keep = std::pin::pin!(self.keep_alive(terms));
        let limit = self.rt.sleep.sleep(terms.hold);
        let stop = select(keep, limit);
        let why = match select(work.as_mut(), stop).await {
            Either::Left((done, _)) => return Ok(done),
            Either::Right((Either::Left((lost, _)), _)) => lost,
            Either::Right((Either::Right(((), _)), _)) => AttemptFailure::HeldTooLong(terms.hold),
        };
        self.lost.store(true, Ordering::Release);
        tracing::warn!(lease = ?self.lease, "{why}");
        if self.in_call.load(Ordering::Acquire) {
            tracing::warn!("a refresh is in flight under the lost lease; keeping its answer");
            return Ok(work.await);
        }
        Err(why)
    }

    /// Renews the lease once, bounded by the step and by what is left before
    /// `deadline`; moves the deadline on success. `false` if the lease is
    /// lost or the store could not confirm it.
    async fn renew_once(&self, terms: &Terms, ttl: Duration, deadline: Duration) -> bool {
        let asked_at = self.rt.mono();
        let left = deadline.saturating_sub(asked_at);
        if left.is_zero() {
            return false;
        }
        let Ok(coord) = coordinator(&self.store) else {
            self.lost.store(true, Ordering::Release);
            return false;
        };
        match bounded(
            &self.rt,
            terms.step.min(left),
            coord.renew(&self.lease, ttl),
        )
        .await
        {
            Ok(true) => {
                let next = asked_at.saturating_add(ttl);
                *self.deadline.lock().unwrap_or_else(PoisonError::into_inner) = Some(next);
                true
            }
            Ok(false) => {
                self.lost.store(true, Ordering::Release);
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "renewing the refresh lease failed");
                false
            }
        }
    }

    /// Renews until the lease is lost; never returns for a lease held until
    /// released, nor once the lease was given back ([`release`](Self::release)):
    /// work that goes on after the release is not the lease's any more.
    async fn keep_alive(&self, terms: &Terms) -> AttemptFailure {
        let Some(ttl) = self.lease.ttl() else {
            return futures::future::pending().await;
        };
        if crate::mutant::on("lease_fence") {
            return futures::future::pending().await;
        }
        let every = (ttl / 3).max(Duration::from_millis(1));
        loop {
            if self.released.load(Ordering::Acquire) {
                return futures::future::pending().await;
            }
            let Some(deadline) = self.deadline() else {
                return futures::future::pending().await;
            };
            let left = deadline.saturating_sub(self.rt.mono());
            if left.is_zero() || self.lost.load(Ordering::Acquire) {
                return AttemptFailure::LeaseLost;
            }
            self.rt.sleep.sleep(every.min(left)).await;
            if self.released.load(Ordering::Acquire) {
                return futures::future::pending().await;
            }
            if !self.renew_once(terms, ttl, deadline).await && self.lost.load(Ordering::Acquire) {
                return AttemptFailure::LeaseLost;
            }
            // Renewed, or unknown (the store failed): try again until the deadline.
        }
    }

    /// Gives the lease back (once), bounded by `step`. A failure is logged:
    /// a timed lease lapses by itself.
    pub(crate) async fn release(&self, step: Duration) {
        if self.released.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(coord) = coordinator(&self.store) else {
            return; // nothing to release on: a timed lease lapses by its TTL
        };
        if let Err(e) = bounded(&self.rt, step, coord.release(&self.lease)).await {
            tracing::warn!(error = %e, "releasing the refresh lease failed; it lapses by its TTL");
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.released.swap(true, Ordering::AcqRel) {
            return;
        }
        // Under the model checker, tasks still pending when an execution ends
        // are dropped outside any task, where nothing can be spawned.
        #[cfg(reauth_shuttle)]
        if std::thread::panicking() || shuttle::current::get_current_task().is_none() {
            return;
        }
        let store = Arc::clone(&self.store);
        let lease = self.lease.clone();
        self.rt.spawn.spawn(Box::pin(async move {
            if let Ok(coord) = coordinator(&store) {
                let _ = coord.release(&lease).await;
            }
        }));
    }
}
