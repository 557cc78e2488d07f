//! Many workers sharing one rotating refresh token through Redis: each
//! worker has its own connection and session; their token expires together;
//! exactly one refresh reaches the authorization server, the others adopt it.
//! (Each worker would be a pod or a process; here they are tasks with their
//! own connections, which is all the store sees.)
//!
//! Run: `REDIS_URL=redis://127.0.0.1:6379 cargo run -p reauth-examples --example many_workers_redis`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use reauth::{RefreshAhead, Session, TokenSet, refresh_fn};
use reauth_redis::RedisStore;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let key = format!("reauth-example-{}", std::process::id());
    // The authorization server: counts refreshes, one-time refresh tokens.
    let refreshes = Arc::new(AtomicU64::new(0));

    // Whoever logs in writes the shared session once; here it is already expired.
    let login = TokenSet::new("access-0")
        .with_refresh_token("refresh-0")
        .with_expires_at(SystemTime::now() - Duration::from_secs(1));
    let first = worker(&url, &key, &refreshes).await?;
    first.start(login).await?;

    let mut workers = vec![first];
    for _ in 1..8 {
        let w = worker(&url, &key, &refreshes).await?;
        w.restore().await?; // the session the first worker stored
        workers.push(w);
    }
    let tokens = futures::future::join_all(workers.iter().map(|w| w.access_token())).await;
    for (i, t) in tokens.into_iter().enumerate() {
        println!("worker {i}: {}", t?.token().secret());
    }
    println!(
        "refreshes at the server: {}",
        refreshes.load(Ordering::SeqCst)
    );
    reauth::TokenStore::clear(&RedisStore::connect(&url, &key).await?).await?;
    Ok(())
}

async fn worker(url: &str, key: &str, refreshes: &Arc<AtomicU64>) -> anyhow::Result<Session> {
    let store = RedisStore::connect(url, key).await?;
    let count = Arc::clone(refreshes);
    let refresher = refresh_fn(move |current: TokenSet| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            // A real refresher calls the token endpoint with `current.refresh_token`.
            let _ = current;
            Ok(TokenSet::new(format!("access-{n}"))
                .with_refresh_token(format!("refresh-{n}"))
                .with_expires_in(SystemTime::now(), Duration::from_secs(300)))
        }
    });
    Ok(Session::builder(refresher)
        .store(store)
        .refresh_ahead(RefreshAhead::disabled())
        .build())
}
