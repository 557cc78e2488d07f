//! P2: 10 000 callers wait on one refresh; time from the refresh response to the
//! last of them resuming. Baseline in the same run: the same 10 000 tasks woken
//! by a bare `tokio::sync::watch` channel (the floor for waking that many tasks).
//!
//! Run: `cargo bench -p reauth --bench waiters`

#![allow(missing_docs)] // criterion_group! generates undocumented public functions

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use reauth::{RefreshAhead, Session, TokenSet, refresh_fn};
use tokio::sync::{Notify, watch};

const WAITERS: usize = 10_000;

struct Probe {
    responded: Mutex<Option<Instant>>,
    last_resume: Mutex<Option<Instant>>,
    resumed: AtomicUsize,
}

impl Probe {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            responded: Mutex::new(None),
            last_resume: Mutex::new(None),
            resumed: AtomicUsize::new(0),
        })
    }
    fn resume(&self) {
        let now = Instant::now();
        let mut last = self.last_resume.lock().unwrap();
        if last.is_none_or(|l| now > l) {
            *last = Some(now);
        }
        self.resumed.fetch_add(1, Ordering::SeqCst);
    }
    fn span(&self) -> Duration {
        let r = self.responded.lock().unwrap().unwrap();
        self.last_resume.lock().unwrap().unwrap().duration_since(r)
    }
}

async fn reauth_round(calls: Arc<AtomicUsize>) -> Duration {
    let probe = Probe::new();
    let gate = Arc::new(Notify::new());
    let (p, g, c) = (Arc::clone(&probe), Arc::clone(&gate), Arc::clone(&calls));
    let session = Session::builder(refresh_fn(move |_t: TokenSet| {
        let (p, g, c) = (Arc::clone(&p), Arc::clone(&g), Arc::clone(&c));
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            g.notified().await;
            *p.responded.lock().unwrap() = Some(Instant::now());
            Ok(TokenSet::new("new").with_refresh_token("r2"))
        }
    }))
    .refresh_ahead(RefreshAhead::disabled())
    .build();
    session
        .start(TokenSet::new("old").with_refresh_token("r1"))
        .await
        .unwrap();
    let sent = session.access_token().await.unwrap();
    let tasks: Vec<_> = (0..WAITERS)
        .map(|_| {
            let (s, sent, p) = (session.clone(), sent.clone(), Arc::clone(&probe));
            tokio::spawn(async move {
                s.invalidate(&sent).await.unwrap();
                p.resume();
            })
        })
        .collect();
    // Let every task reach its wait before the response arrives.
    while calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    gate.notify_one();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(probe.resumed.load(Ordering::SeqCst), WAITERS);
    probe.span()
}

async fn watch_round() -> Duration {
    let probe = Probe::new();
    let (tx, rx) = watch::channel(false);
    let tasks: Vec<_> = (0..WAITERS)
        .map(|_| {
            let (mut rx, p) = (rx.clone(), Arc::clone(&probe));
            tokio::spawn(async move {
                rx.wait_for(|v| *v).await.unwrap();
                p.resume();
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    *probe.responded.lock().unwrap() = Some(Instant::now());
    tx.send(true).unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    probe.span()
}

fn p2(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("p2_10000_waiters_one_refresh");
    g.sample_size(10);
    g.bench_function("reauth_session", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let calls = Arc::new(AtomicUsize::new(0));
                    total += reauth_round(Arc::clone(&calls)).await;
                    assert_eq!(
                        calls.load(Ordering::SeqCst),
                        1,
                        "one refresh for {WAITERS} waiters"
                    );
                }
                total
            })
        })
    });
    g.bench_function("tokio_watch_baseline", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += watch_round().await;
                }
                total
            })
        })
    });
    g.finish();
}

criterion_group!(benches, p2);
criterion_main!(benches);
