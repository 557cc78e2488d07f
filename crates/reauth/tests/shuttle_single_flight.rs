//! Model check of the single flight under the shuttle scheduler.
//!
//! Run with `RUSTFLAGS="--cfg reauth_shuttle" cargo test -p reauth --test shuttle_single_flight`
//! (CI does, in a target directory of its own). Under that cfg the session's
//! internal mutex and flags are shuttle's, so shuttle explores the interleavings
//! of `join` / `finish` / `start` / `end` across tasks; every explored schedule
//! must keep the invariants: one refresh per generation, every waiter answered,
//! the end reported exactly once.
#![cfg(reauth_shuttle)]

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::FutureExt;
use futures::future::BoxFuture;
use reauth::{
    Clock, EndReason, Error, NoJitter, RefreshAhead, RefreshError, Refresher, Runtime, Session,
    SessionBuilder, SessionEvent, Sleep, Spawn, TokenSet,
};

struct FixedClock;
impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)
    }
}

/// No timers in the model: timeouts never fire.
struct NeverSleep;
impl Sleep for NeverSleep {
    fn sleep(&self, _d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(futures::future::pending())
    }
}

struct ShuttleSpawn;
impl Spawn for ShuttleSpawn {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        drop(shuttle::future::spawn(task));
    }
}

/// One-time refresh tokens, like a strict server; yields inside to open interleavings.
#[derive(Default)]
struct StrictServer {
    calls: AtomicUsize,
    valid: Mutex<u64>,
}

#[async_trait]
impl Refresher for StrictServer {
    async fn refresh(&self, current: &TokenSet) -> Result<TokenSet, RefreshError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        shuttle::future::yield_now().await;
        let mut valid = self.valid.lock().unwrap();
        let presented = current
            .refresh_token
            .as_ref()
            .map(|r| r.secret().to_owned());
        if presented != Some(format!("r{}", *valid)) {
            return Err(RefreshError::rejected("invalid_grant"));
        }
        *valid += 1;
        Ok(TokenSet::new(format!("a{}", *valid)).with_refresh_token(format!("r{}", *valid)))
    }
}

struct Shared(Arc<StrictServer>);

#[async_trait]
impl Refresher for Shared {
    async fn refresh(&self, current: &TokenSet) -> Result<TokenSet, RefreshError> {
        self.0.refresh(current).await
    }
}

fn session_builder(server: Arc<StrictServer>, store: reauth::MemoryStore) -> SessionBuilder {
    let rt = Runtime::new(FixedClock, NeverSleep, ShuttleSpawn, NoJitter);
    Session::builder(Shared(server))
        .runtime(rt)
        .store(store)
        .refresh_ahead(RefreshAhead::disabled())
}

fn session_with_store(server: Arc<StrictServer>, store: reauth::MemoryStore) -> Session {
    session_builder(server, store).build()
}

fn session(server: Arc<StrictServer>) -> Session {
    session_with_store(server, reauth::MemoryStore::new())
}

const ITERATIONS: usize = 2_000;

#[test]
fn model_concurrent_401s_refresh_once() {
    shuttle::check_pct(
        || {
            shuttle::future::block_on(async {
                let server = Arc::new(StrictServer::default());
                let s = session(Arc::clone(&server));
                s.start(TokenSet::new("a0").with_refresh_token("r0"))
                    .await
                    .unwrap();
                let sent = s.access_token().await.unwrap();
                let tasks: Vec<_> = (0..3)
                    .map(|_| {
                        let s = s.clone();
                        let sent = sent.clone();
                        shuttle::future::spawn(async move { s.invalidate(&sent).await })
                    })
                    .collect();
                // A reader racing the invalidations.
                let reader = {
                    let s = s.clone();
                    shuttle::future::spawn(async move { s.access_token().await })
                };
                for t in tasks {
                    let got = t.await.unwrap().expect("token");
                    assert_eq!(got.token().secret(), "a1");
                }
                let read = reader.await.unwrap().expect("reader gets a token");
                assert!(["a0", "a1"].contains(&read.token().secret()));
                assert_eq!(server.calls.load(Ordering::SeqCst), 1);
                // A late 401 for the old generation: no second refresh.
                let late = s.invalidate(&sent).await.unwrap();
                assert_eq!(late.token().secret(), "a1");
                assert_eq!(server.calls.load(Ordering::SeqCst), 1);
            });
        },
        ITERATIONS,
        3,
    );
}

#[test]
fn model_logout_racing_refresh_ends_once_and_answers_everyone() {
    shuttle::check_pct(
        || {
            shuttle::future::block_on(async {
                let server = Arc::new(StrictServer::default());
                let s = session(Arc::clone(&server));
                let mut events = s.events();
                s.start(TokenSet::new("a0").with_refresh_token("r0"))
                    .await
                    .unwrap();
                let sent = s.access_token().await.unwrap();
                let waiters: Vec<_> = (0..2)
                    .map(|_| {
                        let s = s.clone();
                        let sent = sent.clone();
                        shuttle::future::spawn(async move { s.invalidate(&sent).await })
                    })
                    .collect();
                let logout = {
                    let s = s.clone();
                    shuttle::future::spawn(async move { s.logout().await })
                };
                logout.await.unwrap().unwrap();
                for w in waiters {
                    match w.await.unwrap() {
                        Ok(b) => assert_eq!(b.token().secret(), "a1"),
                        Err(Error::SessionEnded(EndReason::LoggedOut)) => {}
                        Err(e) => panic!("unexpected {e:?}"),
                    }
                }
                assert!(!s.is_active());
                let ended = std::iter::from_fn(|| events.try_next())
                    .filter(|e| matches!(e, SessionEvent::SessionEnded { .. }))
                    .count();
                assert_eq!(ended, 1);
                assert!(server.calls.load(Ordering::SeqCst) <= 1);
            });
        },
        ITERATIONS,
        3,
    );
}

/// The persist lock's ordering (flight.rs, invariant 6) under the model: a
/// refresh, a new login and a reader race. Whatever the schedule, the store
/// ends up holding exactly what is published (never an older set, never the
/// superseded login's rotation), and a refresh that lost to the new login
/// does not publish.
#[test]
fn model_new_login_racing_a_refresh_keeps_store_and_published_in_step() {
    shuttle::check_pct(
        || {
            shuttle::future::block_on(async {
                let server = Arc::new(StrictServer::default());
                let store = reauth::MemoryStore::new();
                let s = session_with_store(Arc::clone(&server), store.clone());
                s.start(TokenSet::new("a0").with_refresh_token("r0"))
                    .await
                    .unwrap();
                let sent = s.access_token().await.unwrap();
                let refresh = {
                    let s = s.clone();
                    shuttle::future::spawn(async move { s.invalidate(&sent).await })
                };
                let login = {
                    let s = s.clone();
                    shuttle::future::spawn(async move {
                        s.start(TokenSet::new("b0").with_refresh_token("rb")).await
                    })
                };
                login.await.unwrap().unwrap();
                let _ = refresh.await.unwrap();
                let published = s.tokens().expect("the new login is active");
                let stored = futures::executor::block_on(reauth::TokenStore::load(&store))
                    .unwrap()
                    .expect("stored");
                assert_eq!(stored.stamp(), published.stamp(), "store and memory agree");
                assert_eq!(published.access_token.secret(), "b0", "the new login wins");
            });
        },
        ITERATIONS,
        3,
    );
}

/// An `on_session_ended` callback runs after every lock of the session is
/// released (C24): one that calls back into the session — here `restore`,
/// polled once — never finds the persist lock held by the path that ended
/// the session, however the rejected refresh, its joiners and a reader
/// interleave.
#[test]
fn model_callbacks_run_outside_every_lock() {
    shuttle::check_pct(
        || {
            shuttle::future::block_on(async {
                let server = Arc::new(StrictServer::default());
                *server.valid.lock().unwrap() = 99; // every refresh is rejected
                let slot: Arc<Mutex<Option<Session>>> = Arc::default();
                let blocked = Arc::new(AtomicUsize::new(0));
                let s = {
                    let slot = Arc::clone(&slot);
                    let blocked = Arc::clone(&blocked);
                    session_builder(Arc::clone(&server), reauth::MemoryStore::new())
                        .on_session_ended(move |_| {
                            let session = slot.lock().unwrap().clone();
                            if let Some(session) = session
                                && session.restore().now_or_never().is_none()
                            {
                                blocked.fetch_add(1, Ordering::SeqCst);
                            }
                        })
                        .build()
                };
                *slot.lock().unwrap() = Some(s.clone());
                s.start(TokenSet::new("a0").with_refresh_token("r0"))
                    .await
                    .unwrap();
                let sent = s.access_token().await.unwrap();
                let refreshes: Vec<_> = (0..2)
                    .map(|_| {
                        let (s, sent) = (s.clone(), sent.clone());
                        shuttle::future::spawn(async move { s.invalidate(&sent).await })
                    })
                    .collect();
                let reader = {
                    let s = s.clone();
                    shuttle::future::spawn(async move { s.access_token().await })
                };
                for r in refreshes {
                    assert!(matches!(
                        r.await.unwrap(),
                        Err(Error::SessionEnded(EndReason::RefreshRejected))
                    ));
                }
                let _ = reader.await.unwrap();
                assert_eq!(
                    blocked.load(Ordering::SeqCst),
                    0,
                    "a callback ran under the persist lock"
                );
                slot.lock().unwrap().take();
            });
        },
        ITERATIONS,
        3,
    );
}
