//! The client contract, DESIGN.md §3.2: one test per row, on virtual time.
//!
//! Every test runs on a paused tokio clock; the session's clock follows it, so
//! expiry, backoff and timeouts happen without waiting. The refresher is
//! `FakeServer`, whose refresh tokens are one-time: a duplicate refresh is
//! answered `invalid_grant` and would end the session, exactly as on a strict
//! real server — so "one refresh" is checked by the count *and* by the session
//! surviving.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::FutureExt;
use reauth::coord::{Coordinator, Lease};
use reauth::{
    Bearer, EndReason, Error, EventStream, Generation, NoJitter, RefreshAhead, RefreshErrorKind,
    Runtime, Session, SessionEvent, TokioSleep, TokioSpawn,
};
use reauth_testkit::{FakeServer, FlakyStore, JumpClock, Step, runtime};
use tokio::time::Instant;

const LIFETIME: Duration = Duration::from_secs(300);

struct Harness {
    session: Session,
    server: FakeServer,
    store: FlakyStore,
    events: EventStream,
    ended_callbacks: Arc<AtomicUsize>,
}

fn harness_with(
    rt: Runtime,
    configure: impl FnOnce(reauth::SessionBuilder) -> reauth::SessionBuilder,
) -> Harness {
    let server = FakeServer::new(&rt, LIFETIME);
    let store = FlakyStore::new();
    let ended_callbacks = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&ended_callbacks);
    let builder = Session::builder(server.clone())
        .runtime(rt)
        .store(store.clone())
        .on_session_ended(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
    let session = configure(builder).build();
    let events = session.events();
    Harness {
        session,
        server,
        store,
        events,
        ended_callbacks,
    }
}

/// A started session with refresh-ahead off (rows that are not about the timer).
async fn started() -> Harness {
    started_with(|b| b.refresh_ahead(RefreshAhead::disabled())).await
}

async fn started_with(
    configure: impl FnOnce(reauth::SessionBuilder) -> reauth::SessionBuilder,
) -> Harness {
    let h = harness_with(runtime(), configure);
    h.session.start(h.server.login()).await.expect("start");
    h
}

fn drain(events: &mut EventStream) -> Vec<SessionEvent> {
    std::iter::from_fn(|| events.try_next()).collect()
}

fn ended_count(events: &[SessionEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, SessionEvent::SessionEnded { .. }))
        .count()
}

/// `n` concurrent requests refused with `sent`, each asking for the token to replay with.
fn invalidations(
    session: &Session,
    sent: &Bearer,
    n: usize,
) -> Vec<tokio::task::JoinHandle<Result<Bearer, Error>>> {
    (0..n)
        .map(|_| {
            let (s, sent) = (session.clone(), sent.clone());
            tokio::spawn(async move { s.invalidate(&sent).await })
        })
        .collect()
}

/// Lets spawned tasks run without letting virtual time move.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if cond() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("never happened: {what}");
}

#[tokio::test(start_paused = true)]
async fn c1_burst_of_401s_refreshes_once() {
    const N: usize = 10_000;
    let h = started().await;
    h.server.set_delay(Duration::from_millis(50));
    let sent = h.session.access_token().await.unwrap();
    let tasks: Vec<_> = invalidations(&h.session, &sent, N);
    for t in tasks {
        let replay = t
            .await
            .unwrap()
            .expect("every request gets a token to replay with");
        assert_eq!(replay.generation(), sent.generation().next());
        assert_eq!(replay.token().secret(), "access-1");
    }
    assert_eq!(
        h.server.calls(),
        1,
        "exactly one refresh for {N} concurrent 401s"
    );
    assert!(h.session.is_active());
}

#[tokio::test(start_paused = true)]
async fn c2_refresh_ahead_racing_401s_refreshes_once() {
    let mut h = started_with(|b| b).await; // refresh-ahead on: 300 s token refreshes at 270 s
    h.server.set_delay(Duration::from_secs(1));
    let old = h.session.access_token().await.unwrap();
    tokio::time::advance(Duration::from_secs(270)).await;
    wait_until("the timer starts a refresh", || h.server.calls() == 1).await;
    // The server now refuses the old token (say it was revoked early) while
    // the timer's refresh is in flight.
    let tasks: Vec<_> = invalidations(&h.session, &old, 50);
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().token().secret(), "access-1");
    }
    assert_eq!(h.server.calls(), 1);
    let events = drain(&mut h.events);
    assert_eq!(ended_count(&events), 0, "no logout: {events:?}");
    assert!(events.iter().any(|e| matches!(
        e,
        SessionEvent::Refreshed {
            trigger: reauth::Trigger::Ahead,
            ..
        }
    )));
}

#[tokio::test(start_paused = true)]
async fn c3_late_401_for_older_generation_replays_without_refresh() {
    let h = started().await;
    let g1 = h.session.access_token().await.unwrap();
    let g2 = h.session.invalidate(&g1).await.unwrap();
    assert_eq!(h.server.calls(), 1);
    // A request that went out with g1 comes back 401 after g2 was published.
    let late = h.session.invalidate(&g1).await.unwrap();
    assert_eq!(late, g2, "replayed with the newer token");
    assert_eq!(h.server.calls(), 1, "a late 401 must not refresh again");
}

#[tokio::test(start_paused = true)]
async fn c4a_request_during_reactive_refresh_waits_for_new_token() {
    let h = started().await;
    h.server.set_delay(Duration::from_secs(1));
    let old = h.session.access_token().await.unwrap();
    let s = h.session.clone();
    let refusing = tokio::spawn(async move { s.invalidate(&old).await });
    wait_until("refresh in flight", || h.server.calls() == 1).await;
    // The token is known bad: a new request must not go out with it.
    let fresh = h.session.access_token().await.unwrap();
    assert_eq!(fresh.token().secret(), "access-1");
    assert_eq!(refusing.await.unwrap().unwrap(), fresh);
    assert_eq!(h.server.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn c4b_request_during_refresh_ahead_goes_out_at_once_with_old_token() {
    let h = started_with(|b| b).await;
    h.server.set_delay(Duration::from_secs(1));
    tokio::time::advance(Duration::from_secs(270)).await;
    wait_until("the timer starts a refresh", || h.server.calls() == 1).await;
    let now = h
        .session
        .access_token()
        .now_or_never()
        .expect("readers never block on refresh-ahead");
    assert_eq!(
        now.unwrap().token().secret(),
        "access-0",
        "old token, still valid"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    wait_until("refresh-ahead published", || {
        h.session.generation() == Some(Generation::new(2))
    })
    .await;
    assert_eq!(
        h.session.access_token().await.unwrap().token().secret(),
        "access-1"
    );
}

#[tokio::test(start_paused = true)]
async fn c5_transient_failures_retry_with_backoff_honouring_retry_after() {
    let mut h = started().await;
    h.server.push(Step::Fail(
        RefreshErrorKind::Transient,
        Some(Duration::from_secs(3)),
    ));
    h.server.push(Step::Fail(RefreshErrorKind::Transient, None));
    let old = h.session.access_token().await.unwrap();
    let t0 = Instant::now();
    let fresh = h
        .session
        .invalidate(&old)
        .await
        .expect("recovered after retries");
    assert_eq!(fresh.token().secret(), "access-1");
    assert_eq!(h.server.calls(), 3);
    assert!(
        t0.elapsed() >= Duration::from_secs(3),
        "Retry-After honoured: {:?}",
        t0.elapsed()
    );
    let events = drain(&mut h.events);
    let delays: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::RefreshRetrying { delay, .. } => Some(*delay),
            _ => None,
        })
        .collect();
    assert_eq!(delays.len(), 2, "{events:?}");
    assert!(delays[0] >= Duration::from_secs(3));
    assert_eq!(ended_count(&events), 0);
}

#[tokio::test(start_paused = true)]
async fn c5_exhausted_budget_reports_unavailable_keeps_session_and_next_call_retries() {
    let h = started().await;
    for _ in 0..4 {
        h.server.push(Step::Fail(RefreshErrorKind::Transient, None));
    }
    let old = h.session.access_token().await.unwrap();
    let waiters: Vec<_> = invalidations(&h.session, &old, 20);
    for w in waiters {
        assert!(matches!(
            w.await.unwrap(),
            Err(Error::RefreshUnavailable { .. })
        ));
    }
    assert_eq!(
        h.server.calls(),
        4,
        "default budget: 4 attempts, shared by all waiters"
    );
    assert!(h.session.is_active(), "a transient failure never logs out");
    assert_eq!(h.ended_callbacks.load(Ordering::SeqCst), 0);
    let next = h
        .session
        .access_token()
        .await
        .expect("the next call tries again");
    assert_eq!(next.token().secret(), "access-1");
    assert_eq!(h.server.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn c5_absurd_retry_after_gives_up_without_panicking() {
    let h = started().await;
    h.server
        .push(Step::Fail(RefreshErrorKind::Transient, Some(Duration::MAX)));
    let old = h.session.access_token().await.unwrap();
    let err = h.session.invalidate(&old).await.unwrap_err();
    assert!(
        matches!(err, Error::RefreshUnavailable { retry_after: Some(d), .. } if d == Duration::from_secs(300)),
        "{err:?}"
    );
    assert_eq!(
        h.server.calls(),
        1,
        "a Retry-After past the budget is not waited for"
    );
    assert!(h.session.is_active());
}

#[tokio::test(start_paused = true)]
async fn c23_retry_after_of_years_is_capped_and_refreshes_resume_within_minutes() {
    let h = started().await;
    let years = Duration::from_secs(4_000_000_000); // ~126 years
    h.server
        .push(Step::Fail(RefreshErrorKind::Transient, Some(years)));
    let old = h.session.access_token().await.unwrap();
    let err = h.session.invalidate(&old).await.unwrap_err();
    assert!(
        matches!(err, Error::RefreshUnavailable { retry_after: Some(d), .. } if d == Duration::from_secs(300)),
        "capped at the default 5 minutes: {err:?}"
    );
    // Held off meanwhile (C5), without calling the server…
    tokio::time::advance(Duration::from_secs(290)).await;
    let held = h.session.invalidate(&old).await.unwrap_err();
    assert!(matches!(held, Error::RefreshUnavailable { .. }), "{held:?}");
    assert_eq!(h.server.calls(), 1);
    // …and after the capped wait, refreshing works again.
    tokio::time::advance(Duration::from_secs(11)).await;
    let fresh = h.session.invalidate(&old).await.expect("refreshes resume");
    assert_eq!(fresh.token().secret(), "access-1");
    assert_eq!(h.server.calls(), 2);
    assert!(h.session.is_active());
}

#[tokio::test(start_paused = true)]
async fn c5_retry_after_holds_off_new_refreshes_until_it_passes() {
    let h = started().await;
    h.server.push(Step::Fail(
        RefreshErrorKind::Transient,
        Some(Duration::from_secs(120)),
    ));
    let old = h.session.access_token().await.unwrap();
    assert!(matches!(
        h.session.invalidate(&old).await,
        Err(Error::RefreshUnavailable { .. })
    ));
    // A caller in a loop: every call fails fast, none reaches the server.
    for _ in 0..50 {
        let err = h
            .session
            .access_token()
            .now_or_never()
            .expect("fails fast")
            .unwrap_err();
        assert!(
            matches!(err, Error::RefreshUnavailable { retry_after: Some(d), .. } if d <= Duration::from_secs(120)),
            "{err:?}"
        );
    }
    assert_eq!(h.server.calls(), 1);
    tokio::time::advance(Duration::from_secs(120)).await;
    let fresh = h
        .session
        .access_token()
        .await
        .expect("refreshes once Retry-After has passed");
    assert_eq!(fresh.token().secret(), "access-1");
    assert_eq!(h.server.calls(), 2);
    assert!(h.session.is_active());
}

#[tokio::test(start_paused = true)]
async fn c6_rejected_refresh_ends_session_exactly_once() {
    let mut h = started().await;
    h.server.revoke_all();
    let old = h.session.access_token().await.unwrap();
    let waiters: Vec<_> = invalidations(&h.session, &old, 100);
    for w in waiters {
        assert!(matches!(
            w.await.unwrap(),
            Err(Error::SessionEnded(EndReason::RefreshRejected))
        ));
    }
    assert_eq!(h.server.calls(), 1, "no loop");
    assert_eq!(h.ended_callbacks.load(Ordering::SeqCst), 1);
    assert_eq!(ended_count(&drain(&mut h.events)), 1);
    assert!(h.store.peek().is_none(), "store cleared");
    // Later calls fail fast, without the network.
    let later = h.session.access_token().now_or_never().expect("fails fast");
    assert!(matches!(
        later,
        Err(Error::SessionEnded(EndReason::RefreshRejected))
    ));
    assert!(h.session.invalidate(&old).await.is_err());
    assert_eq!(h.server.calls(), 1);
    // A new login starts a new session.
    h.session.start(h.server.login()).await.unwrap();
    assert!(h.session.access_token().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn c7_misconfiguration_is_reported_not_a_logout() {
    let mut h = started().await;
    h.server
        .push(Step::Fail(RefreshErrorKind::Misconfigured, None));
    let old = h.session.access_token().await.unwrap();
    let err = h.session.invalidate(&old).await.unwrap_err();
    assert!(matches!(err, Error::Misconfigured(_)), "{err:?}");
    assert_eq!(h.server.calls(), 1, "misconfiguration is not retried");
    assert!(h.session.is_active());
    assert_eq!(ended_count(&drain(&mut h.events)), 0);
    assert_eq!(h.ended_callbacks.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn c8_cancelled_starter_does_not_cancel_the_refresh() {
    let h = started().await;
    h.server.set_delay(Duration::from_secs(1));
    let old = h.session.access_token().await.unwrap();
    let s = h.session.clone();
    let old2 = old.clone();
    let starter = tokio::spawn(async move { s.invalidate(&old2).await });
    wait_until("refresh in flight", || h.server.calls() == 1).await;
    starter.abort();
    assert!(starter.await.unwrap_err().is_cancelled());
    let s = h.session.clone();
    let other = tokio::spawn(async move { s.invalidate(&old).await });
    let got = other
        .await
        .unwrap()
        .expect("the other waiter gets the refreshed token");
    assert_eq!(got.token().secret(), "access-1");
    assert_eq!(h.server.calls(), 1);
    assert_eq!(
        h.store.peek().unwrap().generation,
        got.generation(),
        "persisted"
    );
}

#[tokio::test(start_paused = true)]
async fn c8_refresh_task_that_never_runs_fails_its_waiters_and_the_next_call_refreshes() {
    /// A spawner whose runtime is shutting down: the first task is dropped unrun.
    struct DropFirst(AtomicUsize);
    impl reauth::Spawn for DropFirst {
        fn spawn(&self, task: futures::future::BoxFuture<'static, ()>) {
            if self.0.fetch_add(1, Ordering::SeqCst) > 0 {
                drop(tokio::spawn(task));
            }
        }
    }
    let rt = Runtime::new(
        reauth::TokioClock::default(),
        TokioSleep,
        DropFirst(AtomicUsize::new(0)),
        NoJitter,
    );
    let server = FakeServer::new(&rt, LIFETIME);
    let session = Session::builder(server.clone())
        .runtime(rt)
        .refresh_ahead(RefreshAhead::disabled())
        .build();
    session.start(server.login()).await.unwrap();
    let old = session.access_token().await.unwrap();
    let err = session
        .invalidate(&old)
        .now_or_never()
        .expect("answered at once, not left waiting")
        .unwrap_err();
    assert!(matches!(err, Error::RefreshUnavailable { .. }), "{err:?}");
    // The dead flight was cleared: the next call refreshes instead of waiting on it.
    let fresh = session.invalidate(&old).await.expect("a new refresh runs");
    assert_eq!(fresh.token().secret(), "access-1");
    assert_eq!(server.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn c7_panicking_refresher_is_a_misconfiguration_and_the_next_call_refreshes() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let refresher = reauth::refresh_fn(move |_t: reauth::TokenSet| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        async move {
            assert!(
                n > 0,
                "the first refresh panics (a bug in a user's refresher)"
            );
            Ok(reauth::TokenSet::new("access-1").with_refresh_token("refresh-1"))
        }
    });
    let session = Session::builder(refresher)
        .runtime(runtime())
        .refresh_ahead(RefreshAhead::disabled())
        .build();
    session
        .start(reauth::TokenSet::new("access-0").with_refresh_token("refresh-0"))
        .await
        .unwrap();
    let old = session.access_token().await.unwrap();
    let err = session.invalidate(&old).await.unwrap_err();
    assert!(matches!(err, Error::Misconfigured(_)), "{err:?}");
    assert!(session.is_active());
    let fresh = session
        .invalidate(&old)
        .await
        .expect("the next call refreshes");
    assert_eq!(fresh.token().secret(), "access-1");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn c9_hanging_refresh_times_out_and_no_waiter_waits_forever() {
    let h = started_with(|b| {
        b.refresh_ahead(RefreshAhead::disabled())
            .wait_timeout(Duration::from_secs(5))
            .refresh_timeout(Duration::from_secs(10))
    })
    .await;
    h.server.push(Step::Hang);
    let old = h.session.access_token().await.unwrap();
    let t0 = Instant::now();
    let err = h.session.invalidate(&old).await.unwrap_err();
    assert!(matches!(err, Error::Timeout), "{err:?}");
    assert_eq!(
        t0.elapsed(),
        Duration::from_secs(5),
        "the waiter's own deadline"
    );
    // The refresh has its own timeout: the hung attempt is abandoned at 10 s
    // and retried; by 11 s the new token is there.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(h.server.calls(), 2);
    let fresh = h
        .session
        .access_token()
        .await
        .expect("refresh completes after the timeout");
    assert_eq!(fresh.token().secret(), "access-1");
    assert_eq!(h.server.calls(), 2);
    assert!(t0.elapsed() >= Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn c9_store_that_hangs_does_not_strand_the_refresh() {
    /// A store whose next write never answers, once armed.
    #[derive(Clone, Default)]
    struct HangOnce(reauth::MemoryStore, Arc<std::sync::atomic::AtomicBool>);
    #[async_trait::async_trait]
    impl reauth::TokenStore for HangOnce {
        async fn load(&self) -> Result<Option<reauth::TokenSet>, reauth::StoreError> {
            self.0.load().await
        }
        async fn store(&self, t: &reauth::TokenSet) -> Result<(), reauth::StoreError> {
            if self.1.swap(false, Ordering::SeqCst) {
                futures::future::pending::<()>().await;
            }
            self.0.store(t).await
        }
        async fn clear(&self) -> Result<(), reauth::StoreError> {
            self.0.clear().await
        }
    }
    let rt = runtime();
    let server = FakeServer::new(&rt, LIFETIME);
    let store = HangOnce::default();
    let session = Session::builder(server.clone())
        .runtime(rt)
        .store(store.clone())
        .refresh_ahead(RefreshAhead::disabled())
        .refresh_timeout(Duration::from_secs(5))
        .build();
    let mut events = session.events();
    session.start(server.login()).await.unwrap();
    store.1.store(true, Ordering::SeqCst);
    let old = session.access_token().await.unwrap();
    let fresh = session
        .invalidate(&old)
        .await
        .expect("the refresh completes");
    assert_eq!(fresh.token().secret(), "access-1");
    let failures = drain(&mut events)
        .iter()
        .filter(|e| matches!(e, SessionEvent::StoreFailed { .. }))
        .count();
    assert_eq!(failures, 1, "the hung write is reported, then retried");
    assert_eq!(
        reauth::TokenStore::load(&store.0)
            .await
            .unwrap()
            .unwrap()
            .generation,
        fresh.generation()
    );
}

#[tokio::test(start_paused = true)]
async fn c10_replay_refused_again_is_reported_without_second_refresh() {
    let mut h = started().await;
    let old = h.session.access_token().await.unwrap();
    let replay = h.session.invalidate(&old).await.unwrap();
    h.session.replay_rejected(&replay);
    assert_eq!(h.server.calls(), 1);
    let events = drain(&mut h.events);
    assert!(
        events.iter().any(|e| matches!(e, SessionEvent::ReplayRejected { generation } if *generation == replay.generation())),
        "{events:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn c11_refused_without_waiting_refreshes_for_the_next_call() {
    let h = started().await;
    h.server.set_delay(Duration::from_secs(1));
    let old = h.session.access_token().await.unwrap();
    // The request's body was a stream: no replay, but the session is told.
    h.session.refused(&old);
    h.session.refused(&old);
    wait_until("one refresh started", || h.server.calls() == 1).await;
    let next = h.session.access_token().await.unwrap();
    assert_eq!(next.token().secret(), "access-1");
    // A stale report for the replaced token does nothing.
    h.session.refused(&old);
    settle().await;
    assert_eq!(h.server.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn c12_response_without_refresh_token_keeps_the_old_one() {
    let h = started().await;
    h.server.push(Step::OmitRefreshToken);
    let old = h.session.access_token().await.unwrap();
    let fresh = h.session.invalidate(&old).await.unwrap();
    assert_eq!(fresh.token().secret(), "access-1");
    let kept = h.session.tokens().unwrap().refresh_token.unwrap();
    assert_eq!(kept.secret(), "refresh-0");
    assert_eq!(
        h.store.peek().unwrap().refresh_token.unwrap().secret(),
        "refresh-0"
    );
    // And the kept refresh token still works for the next rotation.
    let again = h.session.invalidate(&fresh).await.unwrap();
    assert_eq!(again.token().secret(), "access-2");
    assert!(h.session.is_active());
}

#[tokio::test(start_paused = true)]
async fn c13_rotated_tokens_are_stored_before_any_waiter_resumes() {
    let h = started().await;
    h.server.set_delay(Duration::from_millis(10));
    let old = h.session.access_token().await.unwrap();
    let waiters: Vec<_> = (0..100)
        .map(|_| {
            let s = h.session.clone();
            let store = h.store.clone();
            let old = old.clone();
            tokio::spawn(async move {
                let got = s.invalidate(&old).await.unwrap();
                // At the moment this waiter resumes, the store must already hold it.
                let stored = store.peek().expect("stored");
                (got, stored.generation, stored.access_token)
            })
        })
        .collect();
    for w in waiters {
        let (got, stored_gen, stored_access) = w.await.unwrap();
        assert_eq!(stored_gen, got.generation());
        assert_eq!(&stored_access, got.token());
    }
}

#[tokio::test(start_paused = true)]
async fn c13_store_failure_is_reported_and_retried_never_dropped() {
    let mut h = started().await;
    h.store.fail_next_writes(2);
    let old = h.session.access_token().await.unwrap();
    let fresh = h.session.invalidate(&old).await.unwrap();
    let failures = drain(&mut h.events)
        .iter()
        .filter(|e| matches!(e, SessionEvent::StoreFailed { .. }))
        .count();
    assert_eq!(failures, 2, "each failed write is reported");
    assert_eq!(
        h.store.peek().unwrap().generation,
        fresh.generation(),
        "third write landed"
    );

    // Every write failing: the rotated token is still kept in memory, and reported.
    h.store.fail_next_writes(100);
    let fresher = h.session.invalidate(&fresh).await.unwrap();
    assert_eq!(fresher.token().secret(), "access-2");
    let failures = drain(&mut h.events)
        .iter()
        .filter(|e| matches!(e, SessionEvent::StoreFailed { .. }))
        .count();
    assert_eq!(failures, 3);
    assert!(h.session.is_active());
}

#[tokio::test(start_paused = true)]
async fn c13_compare_and_set_that_keeps_losing_is_reported_and_tokens_kept() {
    /// A shared store whose fenced compare-and-set (a refresh's write) always
    /// loses, as if the lease were always lost just before the write.
    #[derive(Clone, Default)]
    struct Contended(reauth::MemoryStore);
    #[async_trait::async_trait]
    impl reauth::TokenStore for Contended {
        async fn load(&self) -> Result<Option<reauth::TokenSet>, reauth::StoreError> {
            self.0.load().await
        }
        async fn store(&self, t: &reauth::TokenSet) -> Result<(), reauth::StoreError> {
            self.0.store(t).await
        }
        async fn clear(&self) -> Result<(), reauth::StoreError> {
            self.0.clear().await
        }
        fn coordinator(&self) -> Option<&dyn Coordinator> {
            Some(self)
        }
    }
    #[async_trait::async_trait]
    impl Coordinator for Contended {
        async fn try_acquire(&self, ttl: Duration) -> Result<Option<Lease>, reauth::StoreError> {
            Ok(Some(Lease::generate(ttl)))
        }
        async fn renew(&self, _lease: &Lease, _ttl: Duration) -> Result<bool, reauth::StoreError> {
            Ok(true)
        }
        async fn release(&self, _lease: &Lease) -> Result<(), reauth::StoreError> {
            Ok(())
        }
        async fn compare_and_swap(
            &self,
            fence: Option<&Lease>,
            expected: Option<&reauth::Stamp>,
            new: Option<&reauth::TokenSet>,
        ) -> Result<bool, reauth::StoreError> {
            if fence.is_some() {
                return Ok(false);
            }
            self.0.compare_and_swap(None, expected, new).await
        }
    }
    let rt = runtime();
    let server = FakeServer::new(&rt, LIFETIME);
    let session = Session::builder(server.clone())
        .runtime(rt)
        .store(Contended::default())
        .refresh_ahead(RefreshAhead::disabled())
        .build();
    let mut events = session.events();
    session.start(server.login()).await.unwrap();
    let old = session.access_token().await.unwrap();
    let fresh = session
        .invalidate(&old)
        .await
        .expect("published in memory all the same");
    assert_eq!(fresh.token().secret(), "access-1");
    let conflicts = drain(&mut events)
        .iter()
        .filter(|e| matches!(e, SessionEvent::StoreFailed { error } if matches!(**error, reauth::StoreError::Conflict)))
        .count();
    assert_eq!(conflicts, 1, "the lost write is reported once");
}

#[tokio::test(start_paused = true)]
async fn c14_refresh_ahead_fires_before_expiry_not_earlier() {
    let h = started_with(|b| b).await;
    tokio::time::advance(Duration::from_secs(269)).await;
    settle().await;
    assert_eq!(h.server.calls(), 0, "too early");
    tokio::time::advance(Duration::from_secs(1)).await;
    wait_until("refresh at expires_at − 30 s", || h.server.calls() == 1).await;
    wait_until("published", || {
        h.session.generation() == Some(Generation::new(2))
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn c14_short_lived_token_does_not_loop() {
    let rt = runtime();
    let server = FakeServer::new(&rt, Duration::from_secs(10));
    let session = Session::builder(server.clone()).runtime(rt).build();
    session.start(server.login()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(100)).await;
    // Refreshing at half-life: one refresh per 5 s, about 20 in 100 s — not thousands.
    let calls = server.calls();
    assert!(
        (19..=21).contains(&calls),
        "{calls} refreshes in 100 s of a 10 s token"
    );
    assert!(session.is_active());
}

#[tokio::test(start_paused = true)]
async fn c14_token_born_expired_does_not_loop() {
    // A server that answers `expires_in: 0`: every new token is expired on arrival.
    let rt = runtime();
    let server = FakeServer::new(&rt, Duration::ZERO);
    let session = Session::builder(server.clone())
        .runtime(rt)
        .wait_timeout(Duration::from_secs(2))
        .build();
    session.start(server.login()).await.unwrap();
    // A caller gets the token the refresh it waited for produced, not a timeout.
    let got = session
        .access_token()
        .await
        .expect("the fresh token, expired or not");
    assert_eq!(got.generation(), Generation::new(2));
    // And the refresh-ahead timer does not spin: at most one refresh per 5 s.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let calls = server.calls();
    assert!(calls <= 14, "{calls} refreshes in 60 s");
    assert!(session.is_active());
}

#[tokio::test(start_paused = true)]
async fn c14_clock_jump_is_noticed_by_the_timer() {
    let clock = JumpClock::new();
    let rt = Runtime::new(clock.clone(), TokioSleep, TokioSpawn, NoJitter);
    let server = FakeServer::new(&rt, Duration::from_secs(3600));
    let session = Session::builder(server.clone()).runtime(rt).build();
    session.start(server.login()).await.unwrap();
    settle().await;
    // The machine sleeps for an hour: wall time jumps, tokio's timers do not.
    clock.jump(Duration::from_secs(3600));
    tokio::time::advance(Duration::from_secs(60)).await; // one re-check period
    wait_until("the timer re-checks and refreshes", || server.calls() == 1).await;
    wait_until("published", || {
        session.generation() == Some(Generation::new(2))
    })
    .await;
    assert_eq!(
        session.access_token().await.unwrap().token().secret(),
        "access-1"
    );
}

#[tokio::test(start_paused = true)]
async fn c17_logout_revokes_clears_ends_and_wakes_waiters() {
    let mut h = started().await;
    h.server.push(Step::Hang);
    let old = h.session.access_token().await.unwrap();
    let s = h.session.clone();
    let waiter = tokio::spawn(async move { s.invalidate(&old).await });
    wait_until("refresh in flight", || h.server.calls() == 1).await;
    h.session.logout().await.unwrap();
    settle().await;
    let woken = waiter.now_or_never().expect("woken at once").unwrap();
    assert!(matches!(
        woken,
        Err(Error::SessionEnded(EndReason::LoggedOut))
    ));
    assert_eq!(h.server.revocations(), 1, "RFC 7009 revocation attempted");
    assert!(h.store.peek().is_none(), "store cleared");
    assert_eq!(ended_count(&drain(&mut h.events)), 1);
    assert_eq!(h.ended_callbacks.load(Ordering::SeqCst), 1);
    assert!(!h.session.is_active());
    // Logging out again does nothing more.
    h.session.logout().await.unwrap();
    assert_eq!(h.ended_callbacks.load(Ordering::SeqCst), 1);
    assert!(matches!(
        h.session.access_token().await,
        Err(Error::SessionEnded(EndReason::LoggedOut))
    ));
}

#[tokio::test(start_paused = true)]
async fn restore_resumes_the_persisted_session() {
    let h = started().await;
    let old = h.session.access_token().await.unwrap();
    h.session.invalidate(&old).await.unwrap();
    // A new process on the same store.
    let again = Session::builder(h.server.clone())
        .runtime(runtime())
        .store(h.store.clone())
        .build();
    assert!(again.restore().await.unwrap());
    let bearer: Bearer = again.access_token().await.unwrap();
    assert_eq!(bearer.token().secret(), "access-1");
    assert_eq!(bearer.generation(), Generation::new(2));
}

#[tokio::test(start_paused = true)]
async fn c17_logout_finishes_even_if_its_caller_stops_waiting() {
    let h = started().await;
    // The caller gives up on logout at once (a timeout, a dropped task).
    drop(h.session.logout().now_or_never());
    assert!(!h.session.is_active());
    settle().await;
    assert!(h.store.peek().is_none(), "store cleared all the same");
    assert_eq!(h.server.revocations(), 1);
    assert_eq!(h.ended_callbacks.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn c17_rotation_that_lands_after_logout_is_revoked_not_kept() {
    let h = started().await;
    h.server
        .push(Step::DelayAfterRotation(Duration::from_secs(1)));
    let old = h.session.access_token().await.unwrap();
    let s = h.session.clone();
    let waiter = tokio::spawn(async move { s.invalidate(&old).await });
    wait_until("the server rotated", || h.server.rotations() == 1).await;
    h.session.logout().await.unwrap();
    assert!(matches!(
        waiter.await.unwrap(),
        Err(Error::SessionEnded(EndReason::LoggedOut))
    ));
    assert_eq!(h.server.revocations(), 1, "logout revoked what it had");
    // The rotated tokens arrive after the session ended: revoked, not stored.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        h.server.revocations(),
        2,
        "the orphaned rotation is revoked too"
    );
    assert!(h.store.peek().is_none());
    assert!(!h.session.is_active());
}

#[tokio::test(start_paused = true)]
async fn restore_on_an_active_session_keeps_the_refresh_in_flight() {
    let h = started().await;
    h.server.set_delay(Duration::from_secs(1));
    let old = h.session.access_token().await.unwrap();
    let s = h.session.clone();
    let waiter = tokio::spawn(async move { s.invalidate(&old).await });
    wait_until("refresh in flight", || h.server.calls() == 1).await;
    assert!(h.session.restore().await.unwrap());
    let got = waiter
        .await
        .unwrap()
        .expect("the refresh in flight still lands");
    assert_eq!(got.token().secret(), "access-1");
    assert_eq!(h.server.calls(), 1);
    assert!(h.session.is_active());
}

#[test]
fn session_and_its_futures_are_send_and_sync() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let h = harness_with(runtime(), |b| b);
        send_sync(&h.session);
        send(&h.session.access_token());
        send(&h.session.logout());
    });
}

#[tokio::test(start_paused = true)]
async fn c24_logout_while_the_runtime_shuts_down_never_answers_ok() {
    /// A spawner whose runtime is shutting down: every task is dropped unrun.
    struct DropAll;
    impl reauth::Spawn for DropAll {
        fn spawn(&self, task: futures::future::BoxFuture<'static, ()>) {
            drop(task);
        }
    }
    let rt = Runtime::new(reauth::TokioClock::default(), TokioSleep, DropAll, NoJitter);
    let server = FakeServer::new(&rt, LIFETIME);
    let store = reauth::MemoryStore::new();
    let session = Session::builder(server.clone())
        .runtime(rt)
        .store(store.clone())
        .refresh_ahead(RefreshAhead::disabled())
        .build();
    session.start(server.login()).await.unwrap();
    let out = session.logout().await;
    assert!(
        matches!(out, Err(reauth::StoreError::Abandoned)),
        "the store was not cleared, so logout must not answer Ok: {out:?}"
    );
    assert!(!session.is_active(), "the session ended regardless");
    assert!(
        reauth::TokenStore::load(&store).await.unwrap().is_some(),
        "indeed not cleared"
    );
}

#[tokio::test(start_paused = true)]
async fn c24_a_callback_may_call_back_into_the_session_without_deadlock() {
    let slot: Arc<std::sync::Mutex<Option<Session>>> = Arc::default();
    let outcomes: Arc<std::sync::Mutex<Vec<bool>>> = Arc::default();
    let h = started_with(|b| {
        let (slot, outcomes) = (Arc::clone(&slot), Arc::clone(&outcomes));
        b.refresh_ahead(RefreshAhead::disabled())
            .on_session_ended(move |_| {
                let session = slot.lock().unwrap().clone();
                if let Some(session) = session {
                    // Polled once: it completes only if no lock of the
                    // session is held while callbacks run.
                    let done = session.restore().now_or_never().is_some();
                    outcomes.lock().unwrap().push(done);
                }
            })
    })
    .await;
    *slot.lock().unwrap() = Some(h.session.clone());
    h.server.revoke_all(); // the refresh is rejected: the session ends
    let old = h.session.access_token().await.unwrap();
    let err = h.session.invalidate(&old).await.unwrap_err();
    assert!(matches!(
        err,
        Error::SessionEnded(EndReason::RefreshRejected)
    ));
    assert_eq!(
        *outcomes.lock().unwrap(),
        [true],
        "the callback ran under the persist lock"
    );
    slot.lock().unwrap().take();
}

#[tokio::test(start_paused = true)]
async fn c24_a_subscriber_that_never_reads_lags_and_memory_stays_bounded() {
    let mut h = started().await;
    let bearer = h.session.access_token().await.unwrap();
    drain(&mut h.events);
    let forgotten = h.session.events(); // never read
    let n = 10 * reauth::EVENT_BUFFER;
    for _ in 0..n {
        h.session.replay_rejected(&bearer);
    }
    let queued = drain(&mut h.events);
    assert_eq!(
        queued.len(),
        reauth::EVENT_BUFFER + 1,
        "bounded: the newest events plus one lag report"
    );
    assert!(
        matches!(queued[0], SessionEvent::Lagged { missed } if missed == (n - reauth::EVENT_BUFFER) as u64),
        "{:?}",
        queued[0]
    );
    assert!(
        queued[1..]
            .iter()
            .all(|e| matches!(e, SessionEvent::ReplayRejected { .. }))
    );
    drop(forgotten);
    // The session goes on regardless.
    assert_eq!(
        h.session.access_token().await.unwrap().token().secret(),
        "access-0"
    );
}

#[tokio::test(start_paused = true)]
async fn events_say_what_started_a_refresh_when_the_timer_fired_and_who_joined() {
    use reauth::Trigger;
    let mut h = started_with(|b| b).await; // refresh-ahead on: fires at 270 s
    h.server.set_delay(Duration::from_secs(1));
    let old = h.session.access_token().await.unwrap();
    drain(&mut h.events);
    tokio::time::advance(Duration::from_secs(270)).await;
    wait_until("the timer starts a refresh", || h.server.calls() == 1).await;
    let tasks: Vec<_> = invalidations(&h.session, &old, 3);
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let events = drain(&mut h.events);
    let g = old.generation();
    let position = |f: &dyn Fn(&SessionEvent) -> bool| events.iter().position(f);
    let fired =
        position(&|e| matches!(e, SessionEvent::TimerFired { generation } if *generation == g));
    let started = position(
        &|e| matches!(e, SessionEvent::RefreshStarted { generation, trigger: Trigger::Ahead } if *generation == g),
    );
    assert!(
        fired.is_some() && started.is_some() && fired < started,
        "{events:?}"
    );
    let joined = events
        .iter()
        .filter(|e| {
            matches!(e, SessionEvent::JoinedFlight { generation, trigger: Trigger::Rejected } if *generation == g)
        })
        .count();
    assert_eq!(joined, 3, "each 401 joined the timer's flight: {events:?}");
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, SessionEvent::RefreshStarted { .. }))
            .count(),
        1,
        "{events:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn refresh_path_errors_are_matched_by_type_not_by_message() {
    use reauth::AttemptFailure;
    let h = started_with(|b| {
        b.refresh_ahead(RefreshAhead::disabled())
            .retry(reauth::RetryPolicy::never())
    })
    .await;
    h.server.push(Step::Hang);
    let old = h.session.access_token().await.unwrap();
    let err = h.session.invalidate(&old).await.unwrap_err();
    let cause = err.refresh_error().and_then(|e| e.attempt_failure());
    assert_eq!(
        cause,
        Some(&AttemptFailure::TimedOut(Duration::from_secs(10))),
        "{err:?}"
    );
    // A failure the refresher reported carries no session cause.
    h.server
        .push(Step::Fail(RefreshErrorKind::Misconfigured, None));
    let err = h.session.invalidate(&old).await.unwrap_err();
    assert!(matches!(err, Error::Misconfigured(_)), "{err:?}");
    assert!(err.refresh_error().unwrap().attempt_failure().is_none());
}

#[tokio::test(start_paused = true)]
async fn c17_the_store_is_cleared_before_the_end_is_announced() {
    // What an observer of the end sees in the store: a handler that sends
    // the user to the login page and restores "whatever is stored" must not
    // find the logged-out set there.
    let seen: Arc<std::sync::Mutex<Vec<bool>>> = Arc::default();
    let rt = runtime();
    let server = FakeServer::new(&rt, LIFETIME);
    let store = FlakyStore::new();
    let session = Session::builder(server.clone())
        .runtime(rt)
        .store(store.clone())
        .refresh_ahead(RefreshAhead::disabled())
        .on_session_ended({
            let (seen, store) = (Arc::clone(&seen), store.clone());
            move |_| seen.lock().unwrap().push(store.peek().is_some())
        })
        .build();
    session.start(server.login()).await.unwrap();
    session.logout().await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [false],
        "announced once, with the store already cleared"
    );
}

#[tokio::test(start_paused = true)]
async fn c24_a_panicking_callback_breaks_neither_logout_nor_other_observers() {
    let later = Arc::new(AtomicUsize::new(0));
    let h = started_with(|b| {
        let later = Arc::clone(&later);
        b.refresh_ahead(RefreshAhead::disabled())
            .on_session_ended(|_| panic!("a subscriber's bug"))
            .on_session_ended(move |_| {
                later.fetch_add(1, Ordering::SeqCst);
            })
    })
    .await;
    let mut h = h;
    let s = h.session.clone();
    let out = tokio::spawn(async move { s.logout().await }).await;
    assert!(
        matches!(out, Ok(Ok(()))),
        "logout finished: {:?}",
        out.map_err(|e| e.is_panic())
    );
    assert!(h.store.peek().is_none(), "the store was cleared");
    assert_eq!(h.ended_callbacks.load(Ordering::SeqCst), 1);
    assert_eq!(later.load(Ordering::SeqCst), 1, "later callbacks still ran");
    assert_eq!(
        ended_count(&drain(&mut h.events)),
        1,
        "the event was delivered"
    );
}
