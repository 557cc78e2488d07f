//! The coordinated refresh round trip (C15/C16) beside the in-process one.
//!
//! One round = `invalidate()` on the current token → the single flight → (for
//! a coordinating store: lease, re-read, refresh, compare-and-set, release) →
//! persist → publish → the caller resumes. The refresher answers at once, so
//! the figure is the session's own cost plus the store's. Baseline in the same
//! run: the in-process round trip on a memory store that does not coordinate.
//! For each backend the same store *without* its coordinator ("store only")
//! separates the cost of the lease + CAS from the cost of persisting at all.
//!
//! Run: `REDIS_URL=redis://127.0.0.1:6379 DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!       cargo bench -p reauth-postgres --bench coordinated`
//! (the Redis and Postgres rows are left out when their variable is unset).

#![allow(missing_docs)] // criterion_group! generates undocumented public functions

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use criterion::{Criterion, criterion_group, criterion_main};
use reauth::{
    FileStore, MemoryStore, RefreshAhead, Session, StoreError, TokenSet, TokenStore, refresh_fn,
};
use reauth_postgres::PostgresStore;
use reauth_redis::RedisStore;

/// A store with its coordinator hidden: the in-process path.
struct StoreOnly<S>(S);

#[async_trait]
impl<S: TokenStore> TokenStore for StoreOnly<S> {
    async fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        self.0.load().await
    }
    async fn store(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        self.0.store(tokens).await
    }
    async fn clear(&self) -> Result<(), StoreError> {
        self.0.clear().await
    }
}

async fn session(store: Arc<dyn TokenStore>) -> Session {
    let session = Session::builder(refresh_fn(|_current: TokenSet| async {
        Ok(TokenSet::new("fresh").with_refresh_token("r"))
    }))
    .store(store)
    .refresh_ahead(RefreshAhead::disabled())
    .build();
    session
        .start(TokenSet::new("first").with_refresh_token("r"))
        .await
        .unwrap();
    session
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let suffix = format!("{:016x}", fastrand::u64(..));
    let mut stores: Vec<(&str, Arc<dyn TokenStore>)> = vec![
        ("in_process_memory", Arc::new(StoreOnly(MemoryStore::new()))),
        ("coordinated_memory", Arc::new(MemoryStore::new())),
        (
            "store_only_file",
            Arc::new(StoreOnly(FileStore::new(dir.path().join("a.json")))),
        ),
        (
            "coordinated_file_lock",
            Arc::new(FileStore::new(dir.path().join("b.json"))),
        ),
    ];
    if let Ok(url) = std::env::var("REDIS_URL") {
        let (a, b) = rt.block_on(async {
            let a = RedisStore::connect(&url, &format!("bench-a-{suffix}"))
                .await
                .unwrap();
            let b = RedisStore::connect(&url, &format!("bench-b-{suffix}"))
                .await
                .unwrap();
            (a, b)
        });
        stores.push(("store_only_redis", Arc::new(StoreOnly(a))));
        stores.push(("coordinated_redis_lease", Arc::new(b)));
    }
    if let Ok(url) = std::env::var("DATABASE_URL") {
        let (a, b) = rt.block_on(async {
            let a = PostgresStore::connect(&url, &format!("bench-a-{suffix}"))
                .await
                .unwrap();
            let b = PostgresStore::connect(&url, &format!("bench-b-{suffix}"))
                .await
                .unwrap();
            (a, b)
        });
        stores.push(("store_only_postgres", Arc::new(StoreOnly(a))));
        stores.push(("coordinated_postgres_lease", Arc::new(b)));
    }
    let mut g = c.benchmark_group("coordinated_refresh_round_trip");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (name, store) in stores {
        let s = rt.block_on(session(Arc::clone(&store)));
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let sent = s.access_token().await.unwrap();
                let fresh = s.invalidate(&sent).await.unwrap();
                assert_eq!(fresh.generation(), sent.generation().next());
            });
        });
        rt.block_on(store.clear()).unwrap();
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
