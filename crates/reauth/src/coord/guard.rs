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
            // Renewed, lost, or unknown (the store failed: try again until the
            // deadline). The checks above decide, the release first: a renewal
            // that was out when the lease was given back finds it gone, and
            // must not drop the work that goes on after the release.
            self.renew_once(terms, ttl, deadline).await;
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

#[cfg(test)]
#[cfg(feature = "tokio")] // TokioSleep: tokio's paused clock
mod tests {
    //! The lease a holder takes, keeps and gives back (C18), against a
    //! scripted store on tokio's paused clock: no test sleeps for real.

    use std::sync::atomic::AtomicUsize;

    use async_trait::async_trait;
    use tokio::time::Instant;

    use super::*;
    use crate::runtime::{Jitter, NoJitter, SystemClock, TokioSleep, TokioSpawn};
    use crate::token::{Stamp, TokenSet};

    const MS: Duration = Duration::from_millis(1);
    const SEC: Duration = Duration::from_secs(1);

    /// What the scripted store answers a renewal.
    #[derive(Clone, Copy)]
    enum Renew {
        /// Extends the lease if it is still this holder's.
        Yes,
        Lost,
        Fails,
    }

    /// A store whose lease lives on tokio's clock. It records every request.
    struct Scripted {
        /// `(owner, until)`; someone else's while `owner` is `"other"`.
        lease: Mutex<Option<(String, Instant)>>,
        /// How long a `try_acquire` takes to answer.
        acquire_takes: Duration,
        /// How long a `renew` takes to answer.
        renew_takes: Duration,
        renew: Renew,
        /// When each `try_acquire` was asked, since the test began.
        asked: Mutex<Vec<Duration>>,
        renewals: AtomicUsize,
        releases: AtomicUsize,
        began: Instant,
    }

    impl Scripted {
        fn new() -> Self {
            Self {
                lease: Mutex::new(None),
                acquire_takes: Duration::ZERO,
                renew_takes: Duration::ZERO,
                renew: Renew::Yes,
                asked: Mutex::new(Vec::new()),
                renewals: AtomicUsize::new(0),
                releases: AtomicUsize::new(0),
                began: Instant::now(),
            }
        }

        /// Another process holds the lease for `ttl`.
        fn held_by_another(self, ttl: Duration) -> Self {
            *self.lease.lock().unwrap() = Some(("other".into(), Instant::now() + ttl));
            self
        }

        fn is_free(&self) -> bool {
            self.lease
                .lock()
                .unwrap()
                .as_ref()
                .is_none_or(|(_, until)| *until <= Instant::now())
        }

        fn asked(&self) -> Vec<Duration> {
            self.asked.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl TokenStore for Scripted {
        async fn load(&self) -> Result<Option<TokenSet>, StoreError> {
            Ok(None)
        }
        async fn store(&self, _: &TokenSet) -> Result<(), StoreError> {
            Ok(())
        }
        async fn clear(&self) -> Result<(), StoreError> {
            Ok(())
        }
        fn coordinator(&self) -> Option<&dyn Coordinator> {
            Some(self)
        }
    }

    #[async_trait]
    impl Coordinator for Scripted {
        async fn try_acquire(&self, ttl: Duration) -> Result<Option<Lease>, StoreError> {
            {
                let mut asked = self.asked.lock().unwrap();
                asked.push(self.began.elapsed());
                // A waiter that does not back off floods the store (and, on
                // a paused clock, never lets time pass): fail, do not hang.
                assert!(asked.len() < 1000, "a waiter polls without backing off");
            }
            tokio::time::sleep(self.acquire_takes).await;
            if !self.is_free() {
                return Ok(None);
            }
            let lease = Lease::generate(ttl);
            *self.lease.lock().unwrap() = Some((lease.owner().into(), Instant::now() + ttl));
            Ok(Some(lease))
        }

        async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool, StoreError> {
            self.renewals.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.renew_takes).await;
            match self.renew {
                Renew::Yes => {
                    let mut slot = self.lease.lock().unwrap();
                    let now = Instant::now();
                    if !slot
                        .as_ref()
                        .is_some_and(|(owner, until)| owner == lease.owner() && *until > now)
                    {
                        return Ok(false);
                    }
                    *slot = Some((lease.owner().into(), now + ttl));
                    Ok(true)
                }
                Renew::Lost => Ok(false),
                Renew::Fails => Err(StoreError::Io(std::io::Error::other("store down"))),
            }
        }

        async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
            self.releases.fetch_add(1, Ordering::SeqCst);
            let mut slot = self.lease.lock().unwrap();
            if slot
                .as_ref()
                .is_some_and(|(owner, _)| owner == lease.owner())
            {
                *slot = None;
            }
            Ok(())
        }

        async fn compare_and_swap(
            &self,
            _: Option<&Lease>,
            _: Option<&Stamp>,
            _: Option<&TokenSet>,
        ) -> Result<bool, StoreError> {
            Ok(false)
        }
    }

    /// Always the most jitter allowed; records the allowance asked for.
    #[derive(Default)]
    struct MaxJitter(Arc<Mutex<Vec<Duration>>>);

    impl Jitter for MaxJitter {
        fn jitter(&self, max: Duration) -> Duration {
            self.0.lock().unwrap().push(max);
            max
        }
    }

    fn runtime(jitter: impl Jitter) -> Runtime {
        Runtime::new(SystemClock, TokioSleep, TokioSpawn, jitter)
    }

    /// A 15 s lease, for a 10 s refresh timeout.
    fn terms() -> Terms {
        Terms::new(15 * SEC, 10 * SEC)
    }

    async fn take(store: &Arc<Scripted>, rt: &Runtime) -> Held {
        let dyn_store: Arc<dyn TokenStore> = Arc::clone(store) as _;
        acquire(&dyn_store, rt, &terms(), || true)
            .await
            .expect("the store answers")
            .expect("the lease is free")
    }

    #[tokio::test(start_paused = true)]
    async fn c18_a_waiter_backs_off_from_10ms_doubling_to_200ms_plus_half_jitter_then_gives_up() {
        let store = Arc::new(Scripted::new().held_by_another(3600 * SEC));
        let asked_jitter = Arc::new(Mutex::new(Vec::new()));
        let rt = runtime(MaxJitter(Arc::clone(&asked_jitter)));
        let terms = Terms {
            wait: SEC,
            ..terms()
        };
        let dyn_store: Arc<dyn TokenStore> = Arc::clone(&store) as _;
        let began = Instant::now();

        let Err(e) = acquire(&dyn_store, &rt, &terms, || true).await else {
            panic!("a lease held for an hour is not granted");
        };

        assert!(e.is_transient());
        assert_eq!(e.attempt_failure(), Some(&AttemptFailure::LeaseBusy(SEC)));
        // Pauses of 10, 20, 40, 80, 160, 200, 200 ms, each plus half of it
        // (the most jitter allowed): 15, 30, 60, 120, 240, 300, 300 ms.
        let polls = [0, 15, 45, 105, 225, 465, 765, 1065].map(|ms| ms * MS);
        assert_eq!(store.asked(), polls);
        assert_eq!(
            *asked_jitter.lock().unwrap(),
            [5, 10, 20, 40, 80, 100, 100].map(|ms| ms * MS)
        );
        // It gave up at the first poll after the wait, not later.
        assert_eq!(began.elapsed(), 1065 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn c18_a_waiter_takes_the_lease_at_the_first_poll_after_it_is_freed() {
        let store = Arc::new(Scripted::new().held_by_another(50 * MS));
        let rt = runtime(NoJitter);
        let held = take(&store, &rt).await;
        // Polls at 0, 10, 30 (busy), 70 ms (free since 50 ms).
        assert_eq!(store.asked(), [0, 10, 30, 70].map(|ms| ms * MS));
        assert_eq!(held.lease().ttl(), Some(15 * SEC));
        held.release(SEC).await;
    }

    #[tokio::test(start_paused = true)]
    async fn c18_the_deadline_is_counted_from_before_the_acquire_request() {
        // The store takes 2 s to grant a 15 s lease: its expiry is 15 s after
        // the request reached it, so never earlier than 15 s after it was sent.
        let store = Arc::new(Scripted {
            acquire_takes: 2 * SEC,
            ..Scripted::new()
        });
        let rt = runtime(NoJitter);
        let sent = rt.mono();
        let held = take(&store, &rt).await;
        assert_eq!(held.deadline(), Some(sent + 15 * SEC));
        // 13 s are left, not 15: a 14 s call is not started on it unrenewed.
        assert!(held.ensure(&terms(), 13 * SEC).await);
        assert_eq!(store.renewals.load(Ordering::SeqCst), 0);
        assert!(held.ensure(&terms(), 14 * SEC).await);
        assert_eq!(store.renewals.load(Ordering::SeqCst), 1);
        held.release(SEC).await;
    }

    #[tokio::test(start_paused = true)]
    async fn c18_ensure_starts_a_call_on_a_lease_with_enough_left_without_asking_the_store() {
        // The store is down: only what is known of the lease counts.
        let store = Arc::new(Scripted {
            renew: Renew::Fails,
            ..Scripted::new()
        });
        let rt = runtime(NoJitter);
        let held = take(&store, &rt).await;
        assert!(held.ensure(&terms(), 10 * SEC).await);
        tokio::time::advance(5 * SEC).await;
        // Exactly the 10 s a call may take are left: enough.
        assert!(held.ensure(&terms(), 10 * SEC).await);
        assert_eq!(store.renewals.load(Ordering::SeqCst), 0);
        // Less is left, and the store cannot renew it: no call starts.
        tokio::time::advance(MS).await;
        assert!(!held.ensure(&terms(), 10 * SEC).await);
        assert_eq!(store.renewals.load(Ordering::SeqCst), 1);
        held.release(SEC).await;
    }

    #[tokio::test(start_paused = true)]
    async fn c18_ensure_renews_first_when_less_than_the_call_is_left() {
        let store = Arc::new(Scripted::new());
        let rt = runtime(NoJitter);
        let held = take(&store, &rt).await;
        tokio::time::advance(6 * SEC).await;
        let renewed_at = rt.mono();
        assert!(held.ensure(&terms(), 10 * SEC).await);
        assert_eq!(store.renewals.load(Ordering::SeqCst), 1);
        assert_eq!(held.deadline(), Some(renewed_at + 15 * SEC));
        // A renewal that still leaves too little is no licence either.
        assert!(!held.ensure(&terms(), 16 * SEC).await);
        held.release(SEC).await;
    }

    #[tokio::test(start_paused = true)]
    async fn c18_ensure_refuses_a_lease_the_store_says_is_gone() {
        let store = Arc::new(Scripted {
            renew: Renew::Lost,
            ..Scripted::new()
        });
        let rt = runtime(NoJitter);
        let held = take(&store, &rt).await;
        tokio::time::advance(6 * SEC).await;
        assert!(!held.ensure(&terms(), 10 * SEC).await);
        assert_eq!(store.renewals.load(Ordering::SeqCst), 1);
        // Lost for good: even a short call does not start, and the store is
        // not asked again.
        assert!(!held.ensure(&terms(), MS).await);
        assert_eq!(store.renewals.load(Ordering::SeqCst), 1);
        held.release(SEC).await;
    }

    #[tokio::test(start_paused = true)]
    async fn c18_ensure_refuses_a_lapsed_lease_without_renewing_it() {
        let store = Arc::new(Scripted::new());
        let rt = runtime(NoJitter);
        let held = take(&store, &rt).await;
        tokio::time::advance(15 * SEC).await;
        assert!(!held.ensure(&terms(), MS).await);
        assert_eq!(store.renewals.load(Ordering::SeqCst), 0);
        held.release(SEC).await;
    }

    #[tokio::test(start_paused = true)]
    async fn c18_the_holder_renews_every_third_of_the_ttl_while_it_works() {
        let store = Arc::new(Scripted::new());
        let rt = runtime(NoJitter);
        let held = take(&store, &rt).await;
        // 12 s of work under a 15 s lease: renewed at 5 s and 10 s.
        let done = held.hold(&terms(), tokio::time::sleep(12 * SEC)).await;
        assert!(done.is_ok());
        assert_eq!(store.renewals.load(Ordering::SeqCst), 2);
        assert_eq!(held.deadline(), Some(rt.mono() - 2 * SEC + 15 * SEC));
        held.release(SEC).await;
    }

    #[tokio::test(start_paused = true)]
    async fn c18_work_after_the_refresher_call_is_dropped_when_the_lease_is_lost() {
        let store = Arc::new(Scripted {
            renew: Renew::Lost,
            ..Scripted::new()
        });
        let rt = runtime(NoJitter);
        let held = take(&store, &rt).await;
        let began = Instant::now();
        // The call is back after 1 s; what follows it (a slow write) is not
        // a refresher call and stops when the renewal at 5 s finds the lease
        // gone.
        let work = async {
            held.call(tokio::time::sleep(SEC)).await;
            tokio::time::sleep(3600 * SEC).await;
        };
        assert_eq!(
            held.hold(&terms(), work).await,
            Err(AttemptFailure::LeaseLost)
        );
        assert_eq!(began.elapsed(), 5 * SEC);
        held.release(SEC).await;
    }

    #[tokio::test(start_paused = true)]
    async fn c18_a_store_that_cannot_renew_is_retried_until_the_deadline_then_the_work_stops() {
        let store = Arc::new(Scripted {
            renew: Renew::Fails,
            ..Scripted::new()
        });
        let rt = runtime(NoJitter);
        let held = take(&store, &rt).await;
        let began = Instant::now();
        let work = tokio::time::sleep(3600 * SEC);
        assert_eq!(
            held.hold(&terms(), work).await,
            Err(AttemptFailure::LeaseLost)
        );
        // Tried at 5 s and 10 s; a failed renewal is not a lost lease, but
        // nothing runs on past the 15 s deadline.
        assert_eq!(began.elapsed(), 15 * SEC);
        assert_eq!(store.renewals.load(Ordering::SeqCst), 2);
        held.release(SEC).await;
    }

    #[tokio::test(start_paused = true)]
    async fn c18_a_renewal_out_when_the_lease_is_released_does_not_drop_the_work_after_it() {
        // The renewal asked at 5 s answers at 6 s, after the release at 5.5 s:
        // the store says the lease is gone. The work after the release (a
        // revocation, say) is not the lease's and runs to its end.
        let store = Arc::new(Scripted {
            renew_takes: SEC,
            ..Scripted::new()
        });
        let rt = runtime(NoJitter);
        let held = take(&store, &rt).await;
        let work = async {
            tokio::time::sleep(5500 * MS).await;
            held.release(SEC).await;
            tokio::time::sleep(10 * SEC).await;
            "revoked"
        };
        assert_eq!(held.hold(&terms(), work).await, Ok("revoked"));
        assert_eq!(store.renewals.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn c18_the_lease_is_free_for_the_next_process_as_soon_as_it_is_released() {
        let store = Arc::new(Scripted::new());
        let rt = runtime(NoJitter);
        let held = take(&store, &rt).await;
        assert!(!store.is_free());
        held.release(SEC).await;
        // Given back by the time `release` returns, not after the TTL.
        assert!(store.is_free());
        drop(held);
        tokio::task::yield_now().await;
        assert_eq!(store.releases.load(Ordering::SeqCst), 1, "released once");
    }

    #[tokio::test(start_paused = true)]
    async fn c18_a_holder_dropped_midway_gives_the_lease_back_at_once() {
        let store = Arc::new(Scripted::new());
        let rt = runtime(NoJitter);
        let holder = {
            let (store, rt) = (Arc::clone(&store), rt.clone());
            tokio::spawn(async move {
                let held = take(&store, &rt).await;
                held.hold(&terms(), futures::future::pending::<()>()).await
            })
        };
        tokio::time::sleep(MS).await;
        assert!(!store.is_free());
        holder.abort();
        let _ = holder.await;
        // The release is spawned by the drop; no virtual time passes.
        tokio::task::yield_now().await;
        assert!(store.is_free());
        assert_eq!(store.releases.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn held_debug_shows_the_ttl_and_deadline_but_not_the_owner_token() {
        let store = Arc::new(Scripted::new());
        let rt = runtime(NoJitter);
        let held = take(&store, &rt).await;
        let shown = format!("{held:?}");
        let deadline = format!("{:?}", held.deadline().unwrap());
        assert_eq!(
            shown,
            format!(
                "Held {{ lease: Lease {{ owner: [redacted], ttl: Some(15s) }}, deadline: Some({deadline}), .. }}"
            )
        );
        assert!(!shown.contains(held.lease().owner()));
        held.release(SEC).await;
    }
}
