//! The conformance suite every [`TokenStore`] backend runs.
//!
//! One generic set of checks: load/store/clear, compare-and-set on the
//! generation, lease exclusion, owner-checked release and expiry, and
//! concurrent writers through separate handles (connections) to the same
//! storage. A backend's test calls [`run`] with a factory that opens a new
//! handle to one fresh, isolated location each time it is called:
//!
//! ```no_run
//! # async fn f() {
//! let store = reauth::MemoryStore::new();
//! reauth::test_util::conformance::run(|| {
//!     let store = store.clone();
//!     async move { store }
//! })
//! .await;
//! # }
//! ```
//!
//! The checks run on real time (leases expire by the backend's own clock) but
//! never assert on speed: expiry is awaited by polling with a generous bound.

use std::future::Future;
use std::time::Duration;

use crate::store::{Coordinator, TokenStore};
use crate::token::{Generation, TokenSet};

fn set(access: &str, generation: u64) -> TokenSet {
    TokenSet::new(access)
        .with_refresh_token(format!("refresh-of-{access}"))
        .with_generation(Generation::new(generation))
}

fn coord<S: TokenStore>(store: &S) -> &dyn Coordinator {
    store
        .coordinator()
        .expect("this store does not coordinate (TokenStore::coordinator is None)")
}

/// Runs every check. `open` must return a new handle to the *same* storage
/// each time (for a database: a new connection to the same key), empty at the
/// first call.
///
/// # Panics
///
/// On the first check that fails, naming it.
pub async fn run<S, F, Fut>(open: F)
where
    S: TokenStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let a = open().await;
    load_store_clear(&a).await;
    compare_and_store(&a).await;
    lease_excludes_and_release_checks_the_owner(&a).await;
    lease_expires(&a).await;
    let handles = vec![open().await, open().await, open().await, open().await];
    concurrent_writers(&handles).await;
    concurrent_lease_has_one_winner(&handles).await;
    a.clear().await.expect("clear at the end");
}

/// `load` of an empty store is `None`; `store` replaces atomically and keeps
/// every field, generation included; `clear` empties and is idempotent.
pub async fn load_store_clear<S: TokenStore>(store: &S) {
    store.clear().await.expect("clear");
    assert_eq!(
        store.load().await.expect("load"),
        None,
        "empty store loads None"
    );
    let t = set("a", 3).with_scope("read write");
    store.store(&t).await.expect("store");
    assert_eq!(
        store.load().await.expect("load"),
        Some(t.clone()),
        "round trip"
    );
    let u = set("b", 4);
    store.store(&u).await.expect("store again");
    assert_eq!(store.load().await.expect("load"), Some(u), "store replaces");
    store.clear().await.expect("clear");
    assert_eq!(store.load().await.expect("load"), None, "cleared");
    store
        .clear()
        .await
        .expect("clearing an empty store is fine");
}

/// CAS writes only over the expected generation; `None` expects an empty store.
pub async fn compare_and_store<S: TokenStore>(store: &S) {
    let c = coord(store);
    store.clear().await.expect("clear");
    assert!(
        !c.compare_and_store(Some(Generation::new(1)), &set("x", 2))
            .await
            .expect("cas"),
        "nothing stored: expecting 1 fails"
    );
    assert_eq!(
        store.load().await.expect("load"),
        None,
        "failed CAS wrote nothing"
    );
    assert!(
        c.compare_and_store(None, &set("a", 1)).await.expect("cas"),
        "empty store: expecting None succeeds"
    );
    assert!(
        !c.compare_and_store(None, &set("x", 9)).await.expect("cas"),
        "stored: expecting None fails"
    );
    assert!(
        !c.compare_and_store(Some(Generation::new(2)), &set("x", 3))
            .await
            .expect("cas"),
        "wrong generation fails"
    );
    assert_eq!(store.load().await.expect("load"), Some(set("a", 1)));
    assert!(
        c.compare_and_store(Some(Generation::new(1)), &set("b", 2))
            .await
            .expect("cas"),
        "right generation succeeds"
    );
    assert_eq!(store.load().await.expect("load"), Some(set("b", 2)));
    assert!(
        !c.compare_and_store(Some(Generation::new(1)), &set("c", 2))
            .await
            .expect("cas"),
        "a second writer from 1 loses"
    );
    assert_eq!(
        store.load().await.expect("load"),
        Some(set("b", 2)),
        "the loser changed nothing"
    );
    store.clear().await.expect("clear");
}

/// A held lease excludes others; only its owner's release frees it.
pub async fn lease_excludes_and_release_checks_the_owner<S: TokenStore>(store: &S) {
    let c = coord(store);
    let long = Duration::from_secs(60);
    let lease = c
        .try_acquire(long)
        .await
        .expect("acquire")
        .expect("a free lease is granted");
    assert!(
        c.try_acquire(long).await.expect("acquire").is_none(),
        "a held lease excludes"
    );
    let impostor = crate::store::Lease::new("not-the-owner", long);
    c.release(&impostor)
        .await
        .expect("release by a non-owner is not an error");
    assert!(
        c.try_acquire(long).await.expect("acquire").is_none(),
        "a non-owner cannot release"
    );
    c.release(&lease).await.expect("release");
    let again = c
        .try_acquire(long)
        .await
        .expect("acquire")
        .expect("free again after release");
    c.release(&lease)
        .await
        .expect("a stale release is not an error");
    assert!(
        c.try_acquire(long).await.expect("acquire").is_none(),
        "a stale release must not free the new holder's lease"
    );
    c.release(&again).await.expect("release");
}

/// A lease nobody releases lapses after its TTL (a crashed holder).
pub async fn lease_expires<S: TokenStore>(store: &S) {
    let c = coord(store);
    let ttl = Duration::from_millis(300);
    let crashed = c.try_acquire(ttl).await.expect("acquire").expect("granted");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let next = loop {
        if let Some(l) = c
            .try_acquire(Duration::from_secs(60))
            .await
            .expect("acquire")
        {
            break l;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a lease with a 300 ms TTL never lapsed"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_ne!(next.owner(), crashed.owner());
    c.release(&crashed)
        .await
        .expect("the lapsed holder's release");
    assert!(
        c.try_acquire(ttl).await.expect("acquire").is_none(),
        "a lapsed holder cannot release its successor"
    );
    c.release(&next).await.expect("release");
}

/// Writers on separate handles racing a CAS from the same generation: exactly
/// one wins, and the stored set is the winner's, whole.
pub async fn concurrent_writers<S: TokenStore>(handles: &[S]) {
    let first = &handles[0];
    first.clear().await.expect("clear");
    first.store(&set("base", 10)).await.expect("store");
    for round in 0..5u64 {
        let from = Generation::new(10 + round);
        let results =
            futures::future::join_all(handles.iter().enumerate().map(|(i, h)| async move {
                let t = set(&format!("w{i}-r{round}"), 11 + round);
                coord(h)
                    .compare_and_store(Some(from), &t)
                    .await
                    .expect("cas")
                    .then_some(t)
            }))
            .await;
        let winners: Vec<_> = results.into_iter().flatten().collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one CAS from {from} wins"
        );
        assert_eq!(
            first.load().await.expect("load").as_ref(),
            Some(&winners[0]),
            "round {round}: the winner's set, whole"
        );
    }
    first.clear().await.expect("clear");
}

/// Handles racing for a free lease: exactly one is granted.
pub async fn concurrent_lease_has_one_winner<S: TokenStore>(handles: &[S]) {
    for round in 0..5 {
        let leases = futures::future::join_all(
            handles
                .iter()
                .map(|h| coord(h).try_acquire(Duration::from_secs(60))),
        )
        .await;
        let granted: Vec<_> = leases
            .into_iter()
            .filter_map(|r| r.expect("acquire"))
            .collect();
        assert_eq!(
            granted.len(),
            1,
            "round {round}: one lease among racing handles"
        );
        coord(&handles[0])
            .release(&granted[0])
            .await
            .expect("release");
    }
}

/// The URL of a test service from the environment variable `var` (e.g.
/// `REDIS_URL`, `DATABASE_URL`), or `None` after printing a skip notice.
///
/// # Panics
///
/// If the variable is unset while `REAUTH_REQUIRE_SERVICES=1` (CI): there,
/// service tests must run, never skip.
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            skip_or_panic(var, &"the variable is not set");
            None
        }
    }
}

/// Reports a service that could not be used: prints a skip notice, or panics
/// under `REAUTH_REQUIRE_SERVICES=1`.
///
/// # Panics
///
/// Under `REAUTH_REQUIRE_SERVICES=1`.
pub fn skip_or_panic(what: &str, error: &dyn std::fmt::Display) {
    if std::env::var("REAUTH_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
        panic!("REAUTH_REQUIRE_SERVICES=1 but {what} is unavailable: {error}");
    }
    // Straight to stderr, past the test harness's output capture, so the skip is seen.
    let notice = format!(
        "SKIPPED: {what} is unavailable ({error}); set it (and REAUTH_REQUIRE_SERVICES=1) to run this test\n"
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), notice.as_bytes());
}
