//! P1: `Session::access_token()` on a valid token, against the two caches people
//! usually write instead — a `tokio::sync::Mutex` and a `std::sync::RwLock`
//! around the token — measured in the same run: on one thread, on two threads,
//! and as 64 tasks on a 2-worker tokio runtime.
//!
//! Run: `cargo bench -p reauth --bench access_token`

#![allow(missing_docs)] // criterion_group! generates undocumented public functions

use std::future::Future;
use std::hint::black_box;
use std::sync::{Arc, Barrier, RwLock};
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use futures::FutureExt;
use reauth::{AccessToken, Bearer, Generation, RefreshAhead, Session, TokenSet, refresh_fn};

/// The hand-written cache: a token and its expiry.
struct Cached {
    token: AccessToken,
    expires_at: SystemTime,
}

impl Cached {
    fn get(&self) -> Option<Bearer> {
        (SystemTime::now() < self.expires_at)
            .then(|| Bearer::new(self.token.clone(), Generation::new(1)))
    }
}

fn cached() -> Cached {
    Cached {
        token: AccessToken::new("token"),
        expires_at: SystemTime::now() + Duration::from_secs(3600),
    }
}

fn session(rt: &tokio::runtime::Runtime) -> Session {
    rt.block_on(async {
        let s = Session::builder(refresh_fn(|_t: TokenSet| async { Ok(TokenSet::new("x")) }))
            .refresh_ahead(RefreshAhead::disabled())
            .build();
        s.start(
            TokenSet::new("token").with_expires_in(SystemTime::now(), Duration::from_secs(3600)),
        )
        .await
        .unwrap();
        s
    })
}

/// Runs `op` `iters` times on each of `threads` threads at once; returns the wall time.
fn threads(n: usize, iters: u64, op: impl Fn() + Send + Sync + 'static) -> Duration {
    let op = Arc::new(op);
    let barrier = Arc::new(Barrier::new(n + 1));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let op = Arc::clone(&op);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..iters {
                    op();
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().unwrap();
    }
    start.elapsed()
}

const TASKS: u64 = 64;

/// Runs `iters` calls of `op()` spread over [`TASKS`] tasks; returns the wall time.
fn tasks<F, Fut>(rt: &tokio::runtime::Runtime, iters: u64, op: F) -> Duration
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let op = Arc::new(op);
    rt.block_on(async move {
        let per_task = iters.div_ceil(TASKS);
        let start = Instant::now();
        let handles: Vec<_> = (0..TASKS)
            .map(|_| {
                let op = Arc::clone(&op);
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        op().await;
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        start.elapsed()
    })
}

fn p1(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let session = session(&rt);
    let mutex = Arc::new(tokio::sync::Mutex::new(cached()));
    let rwlock = Arc::new(RwLock::new(cached()));

    let mut g = c.benchmark_group("p1_access_token_1_thread");
    g.bench_function("reauth_session", |b| {
        b.iter(|| black_box(session.access_token().now_or_never().unwrap().unwrap()))
    });
    g.bench_function("reauth_session_try_access_token", |b| {
        b.iter(|| black_box(session.try_access_token().unwrap()))
    });
    g.bench_function("tokio_mutex_cache", |b| {
        b.iter(|| black_box(futures::executor::block_on(mutex.lock()).get().unwrap()))
    });
    g.bench_function("std_rwlock_cache", |b| {
        b.iter(|| black_box(rwlock.read().unwrap().get().unwrap()))
    });
    g.finish();

    // Two OS threads on the same cache: time per call, per thread.
    let mut g = c.benchmark_group("p1_access_token_2_threads");
    g.bench_function("reauth_session", |b| {
        b.iter_custom(|iters| {
            let s = session.clone();
            threads(2, iters, move || {
                black_box(s.access_token().now_or_never().unwrap().unwrap());
            })
        })
    });
    g.bench_function("reauth_session_try_access_token", |b| {
        b.iter_custom(|iters| {
            let s = session.clone();
            threads(2, iters, move || {
                black_box(s.try_access_token().unwrap());
            })
        })
    });
    g.bench_function("tokio_mutex_cache", |b| {
        b.iter_custom(|iters| {
            let m = Arc::clone(&mutex);
            threads(2, iters, move || {
                black_box(futures::executor::block_on(m.lock()).get().unwrap());
            })
        })
    });
    g.bench_function("std_rwlock_cache", |b| {
        b.iter_custom(|iters| {
            let l = Arc::clone(&rwlock);
            threads(2, iters, move || {
                black_box(l.read().unwrap().get().unwrap());
            })
        })
    });
    g.finish();

    // The shape of a real client: 64 tasks on a 2-worker tokio runtime, each
    // asking for the token before every request. Time per call, all tasks together.
    let mt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("p1_access_token_64_tasks_2_workers");
    g.bench_function("reauth_session", |b| {
        b.iter_custom(|iters| {
            let s = session.clone();
            tasks(&mt, iters, move || {
                let s = s.clone();
                async move {
                    black_box(s.access_token().await.unwrap());
                }
            })
        })
    });
    g.bench_function("tokio_mutex_cache", |b| {
        b.iter_custom(|iters| {
            let m = Arc::clone(&mutex);
            tasks(&mt, iters, move || {
                let m = Arc::clone(&m);
                async move {
                    black_box(m.lock().await.get().unwrap());
                }
            })
        })
    });
    g.bench_function("std_rwlock_cache", |b| {
        b.iter_custom(|iters| {
            let l = Arc::clone(&rwlock);
            tasks(&mt, iters, move || {
                let l = Arc::clone(&l);
                async move {
                    black_box(l.read().unwrap().get().unwrap());
                }
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = p1
}
criterion_main!(benches);
