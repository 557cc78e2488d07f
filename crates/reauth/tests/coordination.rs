//! DESIGN.md §3.4 C18–C20 inside one process, on virtual time: sessions
//! sharing one coordinating store. (The same rows run through real processes
//! on the file store, Redis and Postgres in `processes.rs` and the backends'
//! `replicas.rs`.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use reauth::coord::Coordinator;
use reauth::{
    EndReason, Error, MemoryStore, RefreshAhead, RetryPolicy, Session, SessionEvent, StoreError,
    TokenSet, TokenStore,
};
use reauth_testkit::{FakeServer, TimedStore, runtime};

const LIFETIME: Duration = Duration::from_secs(300);

fn session_on(server: &FakeServer, store: impl TokenStore) -> Session {
    Session::builder(server.clone())
        .runtime(runtime())
        .store(store)
        .refresh_ahead(RefreshAhead::disabled())
        .build()
}

fn drain(session_events: &mut reauth::EventStream) -> Vec<SessionEvent> {
    std::iter::from_fn(|| session_events.try_next()).collect()
}

#[tokio::test(start_paused = true)]
async fn c18_holder_renews_its_lease_while_the_store_is_slow() {
    let rt = runtime();
    let server = FakeServer::new(&rt, LIFETIME);
    let store = TimedStore::new();
    // Lease TTL 15 s (the least a 10 s refresh timeout allows); a re-read
    // under it takes 9 s and the refresh 8 s: the work outlasts the TTL.
    let build = || {
        Session::builder(server.clone())
            .runtime(runtime())
            .store(store.clone())
            .refresh_ahead(RefreshAhead::disabled())
            .refresh_timeout(Duration::from_secs(10))
            .lease_ttl(Duration::from_secs(15))
            .build()
    };
    let a = build();
    let b = build();
    a.start(server.login()).await.unwrap();
    assert!(b.restore().await.unwrap());
    store.set_load_delay(Duration::from_secs(9));
    server.set_delay(Duration::from_secs(8));
    let sent_a = a.access_token().await.unwrap();
    let sent_b = b.access_token().await.unwrap();
    let (ra, rb) = tokio::join!(a.invalidate(&sent_a), b.invalidate(&sent_b));
    let (ra, rb) = (ra.expect("a"), rb.expect("b"));
    assert_eq!(server.calls(), 1, "one refresh for both sessions");
    assert_eq!(ra.token().secret(), "access-1");
    assert_eq!(rb.token().secret(), "access-1");
    assert!(a.is_active() && b.is_active());
    assert!(store.renewals() >= 1, "the holder renewed its lease");
}

#[tokio::test(start_paused = true)]
async fn c18_no_refresher_call_starts_after_the_lease_deadline() {
    let rt = runtime();
    let server = FakeServer::new(&rt, LIFETIME);
    let store = TimedStore::new();
    let session = Session::builder(server.clone())
        .runtime(runtime())
        .store(store.clone())
        .refresh_ahead(RefreshAhead::disabled())
        .refresh_timeout(Duration::from_secs(10))
        .lease_ttl(Duration::from_secs(15))
        .retry(RetryPolicy::default().with_max_attempts(2))
        .build();
    session.start(server.login()).await.unwrap();
    // Renewals fail and the re-read leaves less of the lease than a refresh
    // may take (6 s of 15 s for a 10 s call): the refresher is not called.
    store.fail_renewals();
    store.set_load_delay(Duration::from_secs(9));
    let sent = session.access_token().await.unwrap();
    let got = session.invalidate(&sent).await;
    let err = got.unwrap_err();
    assert!(matches!(err, Error::RefreshUnavailable { .. }), "{err:?}");
    assert_eq!(
        err.refresh_error().and_then(|e| e.attempt_failure()),
        Some(&reauth::AttemptFailure::LeaseLost),
        "{err:?}"
    );
    assert_eq!(server.calls(), 0, "no refresher call after the deadline");
    assert!(session.is_active(), "no logout");
}

#[tokio::test(start_paused = true)]
async fn c19_another_login_in_the_shared_store_is_reported_not_adopted() {
    let rt = runtime();
    let mine = FakeServer::new(&rt, LIFETIME);
    let theirs = FakeServer::new(&rt, LIFETIME);
    let store = MemoryStore::new();
    let a = session_on(&mine, store.clone());
    let b = session_on(&theirs, store.clone());
    let mut events = a.events();
    a.start(mine.login()).await.unwrap();
    let sent = a.access_token().await.unwrap();
    // Another login (another user) lands in the shared store.
    b.start(TokenSet::new("other-user-access").with_refresh_token("other-user-refresh"))
        .await
        .unwrap();
    let got = a.invalidate(&sent).await;
    assert!(
        matches!(got, Err(Error::SessionEnded(EndReason::Superseded))),
        "not adopted: {got:?}"
    );
    let events = drain(&mut events);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SessionEvent::ForeignSet { .. })),
        "reported: {events:?}"
    );
    assert_eq!(mine.calls(), 0, "its own refresh token was not spent");
    let stored = store.load().await.unwrap().unwrap();
    assert_eq!(stored.access_token.secret(), "other-user-access");
    assert!(b.is_active());
}

/// A store whose `load` fails.
#[derive(Clone, Default)]
struct Unreadable(MemoryStore);

#[async_trait]
impl TokenStore for Unreadable {
    async fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        Err(StoreError::Io(std::io::Error::other(
            "unreadable (scripted)",
        )))
    }
    async fn store(&self, t: &TokenSet) -> Result<(), StoreError> {
        self.0.store(t).await
    }
    async fn clear(&self) -> Result<(), StoreError> {
        self.0.clear().await
    }
}

#[tokio::test(start_paused = true)]
async fn c20_a_failed_store_read_at_start_is_an_error_not_empty() {
    let rt = runtime();
    let server = FakeServer::new(&rt, LIFETIME);
    let store = Unreadable::default();
    let session = session_on(&server, store.clone());
    let started = session.start(server.login()).await;
    assert!(matches!(started, Err(StoreError::Io(_))), "{started:?}");
    assert!(!session.is_active());
    assert!(store.0.load().await.unwrap().is_none(), "nothing written");
}

/// A store whose first two loads wait for each other: two logins read the
/// same (empty) store before either writes.
#[derive(Clone)]
struct Gate {
    inner: MemoryStore,
    barrier: Arc<tokio::sync::Barrier>,
    loads: Arc<AtomicUsize>,
}

#[async_trait]
impl TokenStore for Gate {
    async fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        let got = self.inner.load().await;
        if self.loads.fetch_add(1, Ordering::SeqCst) < 2 {
            self.barrier.wait().await;
        }
        got
    }
    async fn store(&self, t: &TokenSet) -> Result<(), StoreError> {
        self.inner.store(t).await
    }
    async fn clear(&self) -> Result<(), StoreError> {
        self.inner.clear().await
    }
    fn coordinator(&self) -> Option<&dyn Coordinator> {
        self.inner.coordinator()
    }
}

#[tokio::test(start_paused = true)]
async fn c20_concurrent_logins_are_compare_and_set_never_the_same_generation() {
    let rt = runtime();
    let server = FakeServer::new(&rt, LIFETIME);
    let store = Gate {
        inner: MemoryStore::new(),
        barrier: Arc::new(tokio::sync::Barrier::new(2)),
        loads: Arc::default(),
    };
    let a = session_on(&server, store.clone());
    let b = session_on(&server, store.clone());
    let (ga, gb) = tokio::join!(
        a.start(TokenSet::new("login-a").with_refresh_token("ra")),
        b.start(TokenSet::new("login-b").with_refresh_token("rb")),
    );
    let (ga, gb) = (ga.unwrap(), gb.unwrap());
    assert_ne!(ga, gb, "two logins never share a generation");
    let stored = store.inner.load().await.unwrap().unwrap();
    let (winner, generation) = if ga > gb { (&a, ga) } else { (&b, gb) };
    assert_eq!(stored.generation, generation, "the later write is stored");
    assert_eq!(Some(stored.stamp()), winner.tokens().map(|t| t.stamp()));
}

/// A store that, right after the `nth` load (the re-read of a rejected
/// refresh), lands a successor of the same login — as another process that
/// refreshed meanwhile would.
#[derive(Clone)]
struct SuccessorAfterLoad {
    inner: MemoryStore,
    nth: usize,
    loads: Arc<AtomicUsize>,
}

#[async_trait]
impl TokenStore for SuccessorAfterLoad {
    async fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        let got = self.inner.load().await?;
        if self.loads.fetch_add(1, Ordering::SeqCst) + 1 == self.nth
            && let Some(read) = &got
        {
            let successor = TokenSet::new("access-elsewhere")
                .with_refresh_token("refresh-elsewhere")
                .with_generation(read.generation.next())
                .with_lineage(read.lineage.clone());
            self.inner.store(&successor).await?;
        }
        Ok(got)
    }
    async fn store(&self, t: &TokenSet) -> Result<(), StoreError> {
        self.inner.store(t).await
    }
    async fn clear(&self) -> Result<(), StoreError> {
        self.inner.clear().await
    }
    fn coordinator(&self) -> Option<&dyn Coordinator> {
        self.inner.coordinator()
    }
}

#[tokio::test(start_paused = true)]
async fn c20_rejected_refresh_never_wipes_a_successor_written_meanwhile() {
    let rt = runtime();
    let server = FakeServer::new(&rt, LIFETIME);
    // Load 1: `start`; 2: the re-read under the lease; 3: the re-read after
    // the rejection — right after it, another process stores a successor.
    let store = SuccessorAfterLoad {
        inner: MemoryStore::new(),
        nth: 3,
        loads: Arc::default(),
    };
    let session = session_on(&server, store.clone());
    session.start(server.login()).await.unwrap();
    server.revoke_all(); // the refresh is rejected
    let sent = session.access_token().await.unwrap();
    let got = session
        .invalidate(&sent)
        .await
        .expect("the successor is adopted, not wiped");
    assert_eq!(got.token().secret(), "access-elsewhere");
    let stored = store.inner.load().await.unwrap().expect("not wiped");
    assert_eq!(stored.access_token.secret(), "access-elsewhere");
    assert!(session.is_active());
}

#[tokio::test(start_paused = true)]
async fn c20_logout_clears_its_own_login_only() {
    let rt = runtime();
    let server = FakeServer::new(&rt, LIFETIME);
    let store = MemoryStore::new();
    let a = session_on(&server, store.clone());
    let b = session_on(&server, store.clone());
    a.start(server.login()).await.unwrap();
    b.start(TokenSet::new("other-login").with_refresh_token("r2"))
        .await
        .unwrap();
    a.logout().await.expect("nothing of a's login is left");
    let stored = store.load().await.unwrap().expect("b's login is not wiped");
    assert_eq!(stored.access_token.secret(), "other-login");
    b.logout().await.unwrap();
    assert!(
        store.load().await.unwrap().is_none(),
        "b's own logout clears"
    );
}

#[tokio::test(start_paused = true)]
async fn c20_a_login_replaces_unreadable_data_but_not_an_unreadable_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    std::fs::write(&path, b"{\"access_token\": 42").unwrap();
    let rt = runtime();
    let server = FakeServer::new(&rt, LIFETIME);
    let session = session_on(&server, reauth::FileStore::new(&path));
    let mut events = session.events();
    session
        .start(server.login())
        .await
        .expect("garbage in the store is replaced by a login");
    let stored = reauth::FileStore::new(&path).load().await.unwrap().unwrap();
    assert_eq!(stored.access_token.secret(), "access-0");
    assert!(
        drain(&mut events).iter().any(|e| matches!(
            e,
            SessionEvent::StoreFailed { error } if matches!(**error, StoreError::Corrupt(_))
        )),
        "the corruption is reported"
    );
}

/// A refresher call that already went out spent the one-time refresh token:
/// the store losing the lease meanwhile (evicted, expired early) must neither
/// cancel it — its answer is the only copy of the rotated token — nor let a
/// second refresh spend the old token again.
#[tokio::test(start_paused = true)]
async fn c18_a_lease_lost_mid_refresh_never_cancels_the_sent_refresh() {
    let rt = runtime();
    let server = FakeServer::new(&rt, LIFETIME);
    let store = TimedStore::new();
    let session = Session::builder(server.clone())
        .runtime(runtime())
        .store(store.clone())
        .refresh_ahead(RefreshAhead::disabled())
        .refresh_timeout(Duration::from_secs(10))
        .build();
    session.start(server.login()).await.unwrap();
    // The server rotates at once and answers 6 s later; at 1 s the store
    // forgets the lease, so the renewal at 5 s (a third of 15 s) says "lost".
    server.push(reauth_testkit::Step::DelayAfterRotation(
        Duration::from_secs(6),
    ));
    let sent = session.access_token().await.unwrap();
    let waiting = tokio::spawn({
        let session = session.clone();
        async move { session.invalidate(&sent).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    store.lose_lease();
    let got = waiting
        .await
        .unwrap()
        .expect("the rotated set is kept and stored under the next lease");
    assert_eq!(got.token().secret(), "access-1");
    assert_eq!(server.calls(), 1, "the old refresh token was spent once");
    assert!(session.is_active(), "no logout");
    let stored = store.peek().expect("stored");
    assert_eq!(stored.access_token.secret(), "access-1");
}

/// The keep-alive stops when the lease is given back: work that goes on
/// after the release (revoking a rotation nobody will use) is not dropped by
/// a renewal of the lease it no longer holds.
#[tokio::test(start_paused = true)]
async fn c18_renewal_stops_at_release_and_an_orphan_is_still_revoked() {
    let rt = runtime();
    let server = FakeServer::new(&rt, LIFETIME);
    let store = TimedStore::new();
    let build = |server: &FakeServer| {
        Session::builder(server.clone())
            .runtime(runtime())
            .store(store.clone())
            .refresh_ahead(RefreshAhead::disabled())
            .refresh_timeout(Duration::from_secs(10))
            .build()
    };
    let a = build(&server);
    let other = FakeServer::new(&rt, LIFETIME);
    let b = build(&other);
    a.start(server.login()).await.unwrap();
    // Attempt 1 loses its lease mid-refresh and keeps the rotation (ends at
    // 6 s, retries at 6.2 s); meanwhile another login takes the store, so
    // attempt 2 releases its lease and revokes the rotation, which takes
    // longer than a third of the lease TTL.
    server.push(reauth_testkit::Step::DelayAfterRotation(
        Duration::from_secs(6),
    ));
    server.set_revoke_delay(Duration::from_secs(8));
    let sent = a.access_token().await.unwrap();
    let waiting = tokio::spawn({
        let a = a.clone();
        async move { a.invalidate(&sent).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    store.lose_lease();
    tokio::time::sleep(Duration::from_millis(5_100)).await;
    b.start(TokenSet::new("other-login").with_refresh_token("other-refresh"))
        .await
        .unwrap();
    let got = waiting.await.unwrap();
    assert!(
        matches!(got, Err(Error::SessionEnded(EndReason::Superseded))),
        "{got:?}"
    );
    assert_eq!(server.calls(), 1);
    assert_eq!(server.revocations(), 1, "the orphaned rotation was revoked");
    let stored = store.peek().expect("b's login is kept");
    assert_eq!(stored.access_token.secret(), "other-login");
}

/// Lease deadlines run on the timer's monotonic clock, not the wall clock:
/// a wall-clock jump (suspend, NTP step) while the holder works neither
/// expires its lease nor stretches it. The wall clock is for token expiry
/// only.
#[tokio::test(start_paused = true)]
async fn c18_a_wall_clock_jump_does_not_expire_a_held_lease() {
    let clock = reauth_testkit::JumpClock::new();
    let rt = reauth::Runtime::new(
        clock.clone(),
        reauth::TokioSleep,
        reauth::TokioSpawn,
        reauth::NoJitter,
    );
    // Tokens that live for a day: the jump does not expire them.
    let server = FakeServer::new(&rt, Duration::from_secs(24 * 3600));
    let store = TimedStore::new();
    let session = Session::builder(server.clone())
        .runtime(rt)
        .store(store.clone())
        .refresh_ahead(RefreshAhead::disabled())
        .refresh_timeout(Duration::from_secs(10))
        .retry(RetryPolicy::never())
        .build();
    session.start(server.login()).await.unwrap();
    store.set_load_delay(Duration::from_secs(2));
    let sent = session.access_token().await.unwrap();
    let waiting = tokio::spawn({
        let session = session.clone();
        async move { session.invalidate(&sent).await }
    });
    // While the holder re-reads the store, the wall clock leaps an hour.
    tokio::time::sleep(Duration::from_secs(1)).await;
    clock.jump(Duration::from_secs(3600));
    let got = waiting
        .await
        .unwrap()
        .expect("the lease is still held: one attempt refreshes");
    assert_eq!(got.token().secret(), "access-1");
    assert_eq!(server.calls(), 1);
}

/// C3 across logins: a late 401 for a request sent under a previous login's
/// token never refreshes the new login, even when the new login's set has the
/// same generation number (found by the simulation, crates/reauth-sim).
#[tokio::test(start_paused = true)]
async fn c3_a_late_401_of_a_previous_login_never_refreshes_the_new_one() {
    let rt = runtime();
    let server = FakeServer::new(&rt, LIFETIME);
    let store = MemoryStore::new();
    let p0 = session_on(&server, store.clone());
    let p1 = session_on(&server, store.clone());
    p0.start(server.login()).await.unwrap(); // login A, g1
    assert!(p1.restore().await.unwrap()); // p1 saw g1 only
    let a1 = p0.access_token().await.unwrap();
    let a2 = p0.invalidate(&a1).await.unwrap(); // A g2, stored
    p1.logout().await.unwrap(); // clears A g2 from the store
    let g = p1.start(server.login()).await.unwrap(); // login B, above g1: g2
    assert_eq!(
        g,
        a2.generation(),
        "the new login's set has the old one's number"
    );
    assert!(p0.restore().await.unwrap()); // p0 switches to B g2
    let calls = server.calls();
    // The 401 of a request p0 sent with A g2 arrives now.
    let replay = p0.invalidate(&a2).await.unwrap();
    assert_eq!(server.calls(), calls, "no refresh for a token B never had");
    assert_eq!(replay.generation(), g);
    assert_ne!(replay.token(), a2.token());
    assert!(p0.try_access_token().is_some(), "B's token was not refused");
}
