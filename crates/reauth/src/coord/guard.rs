//! A held lease: its deadline, its renewal while work goes on, its release.
//!
//! [`acquire`] polls [`Coordinator::try_acquire`] until the lease is free,
//! recording a **deadline** (the instant before the request plus the TTL, so
//! never later than the store's own expiry). [`Held::hold`] runs the holder's
//! work beside a keep-alive that renews the lease every third of the TTL: if
//! the deadline passes without a renewal (the store says the lease is gone,
//! or cannot be reached in time), the work is **dropped** where it stands,
//! so nothing of it — no refresher call — runs past the deadline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

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

fn coordinator(store: &Arc<dyn TokenStore>) -> &dyn Coordinator {
    store
        .coordinator()
        .expect("a lease is only taken on a coordinating store")
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
    let coord = coordinator(store);
    let began = rt.now();
    let mut polls = 0u32;
    loop {
        let asked_at = rt.now();
        match bounded(rt, terms.step, coord.try_acquire(terms.ttl)).await {
            Ok(Some(lease)) => {
                let deadline = lease.ttl().map(|ttl| {
                    asked_at
                        .checked_add(ttl)
                        .unwrap_or(asked_at + Duration::from_secs(24 * 3600))
                });
                return Ok(Some(Held {
                    store: Arc::clone(store),
                    rt: rt.clone(),
                    lease,
                    deadline: Mutex::new(deadline),
                    released: AtomicBool::new(false),
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
        if rt.now().duration_since(began).unwrap_or_default() >= terms.wait {
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
    /// `None`: held until released.
    deadline: Mutex<Option<SystemTime>>,
    released: AtomicBool,
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

    fn deadline(&self) -> Option<SystemTime> {
        *self.deadline.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the lease is still ours at `now` by our own (conservative) reckoning.
    pub(crate) fn live(&self, now: SystemTime) -> bool {
        crate::mutant::on("lease_fence") || self.deadline().is_none_or(|d| now < d)
    }

    /// Runs `work` while keeping the lease: renews it every third of the TTL,
    /// and drops `work` (answering an [`AttemptFailure`]) when the deadline passes
    /// without a renewal, when the store says the lease is gone, or after
    /// `terms.hold`.
    pub(crate) async fn hold<T>(
        &self,
        terms: &Terms,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, AttemptFailure> {
        let keep = std::pin::pin!(self.keep_alive(terms));
        let limit = self.rt.sleep.sleep(terms.hold);
        let stop = select(keep, limit);
        match select(std::pin::pin!(work), stop).await {
            Either::Left((done, _)) => Ok(done),
            Either::Right((Either::Left((lost, _)), _)) => {
                tracing::warn!(lease = ?self.lease, "{lost}");
                Err(lost)
            }
            Either::Right((Either::Right(((), _)), _)) => {
                Err(AttemptFailure::HeldTooLong(terms.hold))
            }
        }
    }

    /// Renews until the lease is lost; never returns for a lease held until
    /// released.
    async fn keep_alive(&self, terms: &Terms) -> AttemptFailure {
        let Some(ttl) = self.lease.ttl() else {
            return futures::future::pending().await;
        };
        if crate::mutant::on("lease_fence") {
            return futures::future::pending().await;
        }
        let coord = coordinator(&self.store);
        let every = (ttl / 3).max(Duration::from_millis(1));
        loop {
            let Some(deadline) = self.deadline() else {
                return futures::future::pending().await;
            };
            let now = self.rt.now();
            let Ok(left) = deadline.duration_since(now) else {
                return AttemptFailure::LeaseLost;
            };
            if left.is_zero() {
                return AttemptFailure::LeaseLost;
            }
            self.rt.sleep.sleep(every.min(left)).await;
            let asked_at = self.rt.now();
            let Ok(left) = deadline.duration_since(asked_at) else {
                return AttemptFailure::LeaseLost;
            };
            if left.is_zero() {
                return AttemptFailure::LeaseLost;
            }
            let step = terms.step.min(left);
            match bounded(&self.rt, step, coord.renew(&self.lease, ttl)).await {
                Ok(true) => {
                    if let Some(next) = asked_at.checked_add(ttl) {
                        *self.deadline.lock().unwrap_or_else(PoisonError::into_inner) = Some(next);
                    }
                }
                Ok(false) => return AttemptFailure::LeaseLost,
                // Unknown: try again until the deadline.
                Err(e) => tracing::warn!(error = %e, "renewing the refresh lease failed"),
            }
        }
    }

    /// Gives the lease back (once), bounded by `step`. A failure is logged:
    /// a timed lease lapses by itself.
    pub(crate) async fn release(&self, step: Duration) {
        if self.released.swap(true, Ordering::AcqRel) {
            return;
        }
        let coord = coordinator(&self.store);
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
            let _ = coordinator(&store).release(&lease).await;
        }));
    }
}
