//! The conformance suite every [`TokenStore`] and [`Coordinator`] backend runs.
//!
//! One generic set of checks: load/store/clear, compare-and-swap on the
//! stored set's stamp (generation **and** lineage), removal by
//! compare-and-swap (the fenced clear of C20), lease exclusion, owner-checked
//! release, renewal, expiry, the fence that makes a stale holder's write fail
//! (C18), and concurrent writers through separate handles (connections) to
//! the same storage. A backend's test calls [`run`] with a factory that opens
//! a new handle to one fresh, isolated location each time it is called:
//!
//! ```no_run
//! # async fn f() {
//! let store = reauth::MemoryStore::new();
//! reauth_testkit::conformance::run(|| {
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

use reauth::coord::{Coordinator, Lease};
use reauth::{Generation, Lineage, Stamp, TokenSet, TokenStore};

fn lineage(name: &str) -> Lineage {
    Lineage::new(format!("lineage-{name}"))
}

fn set(access: &str, generation: u64) -> TokenSet {
    set_of("a", access, generation)
}

fn set_of(login: &str, access: &str, generation: u64) -> TokenSet {
    TokenSet::new(access)
        .with_refresh_token(format!("refresh-of-{access}"))
        .with_generation(Generation::new(generation))
        .with_lineage(lineage(login))
}

fn stamp(login: &str, generation: u64) -> Stamp {
    Stamp::new(Generation::new(generation), lineage(login))
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
    compare_and_swap(&a).await;
    c19_compare_and_swap_tells_lineages_apart(&a).await;
    c20_clear_is_fenced_by_the_stamp(&a).await;
    lease_excludes_and_release_checks_the_owner(&a).await;
    lease_expires(&a).await;
    renewal_extends_only_a_live_lease_of_its_owner(&a).await;
    c18_stale_holders_write_is_fenced_off(&a).await;
    let handles = vec![open().await, open().await, open().await, open().await];
    concurrent_writers(&handles).await;
    concurrent_lease_has_one_winner(&handles).await;
    c18_fence_holds_across_handles(&handles).await;
    a.clear().await.expect("clear at the end");
}

/// `load` of an empty store is `None`; `store` replaces atomically and keeps
/// every field, generation and lineage included; `clear` empties and is
/// idempotent.
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

async fn cas<S: TokenStore>(
    store: &S,
    fence: Option<&Lease>,
    expected: Option<&Stamp>,
    new: Option<&TokenSet>,
) -> bool {
    coord(store)
        .compare_and_swap(fence, expected, new)
        .await
        .expect("compare_and_swap")
}

/// CAS writes only over the expected stamp; `None` expects an empty store.
pub async fn compare_and_swap<S: TokenStore>(store: &S) {
    store.clear().await.expect("clear");
    assert!(
        !cas(store, None, Some(&stamp("a", 1)), Some(&set("x", 2))).await,
        "nothing stored: expecting g1 fails"
    );
    assert_eq!(
        store.load().await.expect("load"),
        None,
        "failed CAS wrote nothing"
    );
    assert!(
        cas(store, None, None, Some(&set("a", 1))).await,
        "empty store: expecting nothing succeeds"
    );
    assert!(
        !cas(store, None, None, Some(&set("x", 9))).await,
        "stored: expecting nothing fails"
    );
    assert!(
        !cas(store, None, Some(&stamp("a", 2)), Some(&set("x", 3))).await,
        "wrong generation fails"
    );
    assert_eq!(store.load().await.expect("load"), Some(set("a", 1)));
    assert!(
        cas(store, None, Some(&stamp("a", 1)), Some(&set("b", 2))).await,
        "right stamp succeeds"
    );
    assert_eq!(store.load().await.expect("load"), Some(set("b", 2)));
    assert!(
        !cas(store, None, Some(&stamp("a", 1)), Some(&set("c", 2))).await,
        "a second writer from g1 loses"
    );
    assert_eq!(
        store.load().await.expect("load"),
        Some(set("b", 2)),
        "the loser changed nothing"
    );
    store.clear().await.expect("clear");
}

/// C19: two logins at the same generation are different sets: a CAS that
/// expects one never overwrites the other.
pub async fn c19_compare_and_swap_tells_lineages_apart<S: TokenStore>(store: &S) {
    store.clear().await.expect("clear");
    let theirs = set_of("other-login", "theirs", 5);
    assert!(cas(store, None, None, Some(&theirs)).await);
    assert!(
        !cas(store, None, Some(&stamp("a", 5)), Some(&set("mine", 6))).await,
        "same generation, another lineage: the CAS fails"
    );
    assert!(
        !cas(store, None, Some(&stamp("a", 5)), None).await,
        "and so does a clear expecting our lineage"
    );
    assert_eq!(
        store.load().await.expect("load"),
        Some(theirs),
        "the other login's set is untouched"
    );
    store.clear().await.expect("clear");
}

/// C20: a removal by compare-and-swap removes only the set it expects: a
/// successor written meanwhile survives.
pub async fn c20_clear_is_fenced_by_the_stamp<S: TokenStore>(store: &S) {
    store.clear().await.expect("clear");
    assert!(cas(store, None, None, Some(&set("g1", 1))).await);
    assert!(cas(store, None, Some(&stamp("a", 1)), Some(&set("g2", 2))).await);
    assert!(
        !cas(store, None, Some(&stamp("a", 1)), None).await,
        "clearing g1 once g2 is stored fails"
    );
    assert_eq!(
        store.load().await.expect("load"),
        Some(set("g2", 2)),
        "the successor survives"
    );
    assert!(
        cas(store, None, Some(&stamp("a", 2)), None).await,
        "clearing what is stored succeeds"
    );
    assert_eq!(store.load().await.expect("load"), None, "cleared");
    assert!(
        cas(store, None, None, None).await,
        "clearing an empty store, expecting it empty, succeeds"
    );
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
    let impostor = Lease::expiring("not-the-owner", long);
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

/// Polls until the lease can be taken (the holder's lapsed), within 20 s.
async fn take_after_lapse(c: &dyn Coordinator, ttl: Duration) -> Lease {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(l) = c.try_acquire(ttl).await.expect("acquire") {
            return l;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a lease with a short TTL never lapsed"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A lease nobody releases lapses after its TTL (a crashed holder).
pub async fn lease_expires<S: TokenStore>(store: &S) {
    let c = coord(store);
    let ttl = Duration::from_millis(300);
    let crashed = c.try_acquire(ttl).await.expect("acquire").expect("granted");
    let next = take_after_lapse(c, Duration::from_secs(60)).await;
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

/// `renew` extends the owner's live lease; it refuses a non-owner, a lapsed
/// lease and a released one.
pub async fn renewal_extends_only_a_live_lease_of_its_owner<S: TokenStore>(store: &S) {
    let c = coord(store);
    let short = Duration::from_millis(400);
    let lease = c
        .try_acquire(short)
        .await
        .expect("acquire")
        .expect("granted");
    assert!(
        c.renew(&lease, Duration::from_secs(60))
            .await
            .expect("renew"),
        "the owner renews its live lease"
    );
    // Renewed to a minute: still held well after the first TTL.
    tokio::time::sleep(short * 2).await;
    assert!(
        c.try_acquire(short).await.expect("acquire").is_none(),
        "a renewed lease is still held after its first TTL"
    );
    let impostor = Lease::expiring("not-the-owner", short);
    assert!(
        !c.renew(&impostor, short).await.expect("renew"),
        "a non-owner cannot renew"
    );
    c.release(&lease).await.expect("release");
    assert!(
        !c.renew(&lease, short).await.expect("renew"),
        "a released lease cannot be renewed"
    );
    let lapsing = c
        .try_acquire(short)
        .await
        .expect("acquire")
        .expect("granted");
    let next = take_after_lapse(c, Duration::from_secs(60)).await;
    assert!(
        !c.renew(&lapsing, Duration::from_secs(60))
            .await
            .expect("renew"),
        "a lapsed lease that another holder took cannot be renewed"
    );
    c.release(&next).await.expect("release");
}

/// C18: a holder's write is fenced by its lease: it lands while the lease is
/// held, and fails — even with the right stamp — once the lease lapsed and
/// another holder took it.
pub async fn c18_stale_holders_write_is_fenced_off<S: TokenStore>(store: &S) {
    store.clear().await.expect("clear");
    assert!(cas(store, None, None, Some(&set("g1", 1))).await);
    let c = coord(store);
    let ttl = Duration::from_millis(300);
    let holder = c.try_acquire(ttl).await.expect("acquire").expect("granted");
    assert!(
        cas(
            store,
            Some(&holder),
            Some(&stamp("a", 1)),
            Some(&set("g2", 2))
        )
        .await,
        "the holder's fenced write lands"
    );
    let successor = take_after_lapse(c, Duration::from_secs(60)).await;
    assert!(
        !cas(
            store,
            Some(&holder),
            Some(&stamp("a", 2)),
            Some(&set("stale", 3))
        )
        .await,
        "a stale holder's write fails even with the right stamp"
    );
    assert!(
        !cas(store, Some(&holder), Some(&stamp("a", 2)), None).await,
        "and so does its clear"
    );
    assert_eq!(store.load().await.expect("load"), Some(set("g2", 2)));
    assert!(
        cas(
            store,
            Some(&successor),
            Some(&stamp("a", 2)),
            Some(&set("g3", 3))
        )
        .await,
        "the new holder's write lands"
    );
    c.release(&successor).await.expect("release");
    assert!(
        !cas(
            store,
            Some(&successor),
            Some(&stamp("a", 3)),
            Some(&set("late", 4))
        )
        .await,
        "a released lease fences nothing in"
    );
    let lapsed = c.try_acquire(ttl).await.expect("acquire").expect("granted");
    // By any store's clock, a 300 ms lease has lapsed after 1.5 s of wall time.
    tokio::time::sleep(ttl * 5).await;
    assert!(
        !cas(
            store,
            Some(&lapsed),
            Some(&stamp("a", 3)),
            Some(&set("lapsed", 4))
        )
        .await,
        "a lapsed lease fences nothing in, even with nobody else holding it"
    );
    assert_eq!(store.load().await.expect("load"), Some(set("g3", 3)));
    store.clear().await.expect("clear");
}

/// Writers on separate handles racing a CAS from the same stamp: exactly one
/// wins, and the stored set is the winner's, whole.
pub async fn concurrent_writers<S: TokenStore>(handles: &[S]) {
    let first = &handles[0];
    first.clear().await.expect("clear");
    first.store(&set("base", 10)).await.expect("store");
    for round in 0..5u64 {
        let from = stamp("a", 10 + round);
        let results = futures::future::join_all(handles.iter().enumerate().map(|(i, h)| {
            let from = from.clone();
            async move {
                let t = set(&format!("w{i}-r{round}"), 11 + round);
                cas(h, None, Some(&from), Some(&t)).await.then_some(t)
            }
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

/// C18 across handles: the holder of one handle writes under its lease;
/// writers on the other handles, fenced by leases they do not hold, never do.
pub async fn c18_fence_holds_across_handles<S: TokenStore>(handles: &[S]) {
    let first = &handles[0];
    first.clear().await.expect("clear");
    assert!(cas(first, None, None, Some(&set("base", 1))).await);
    let holder = coord(first)
        .try_acquire(Duration::from_secs(60))
        .await
        .expect("acquire")
        .expect("granted");
    for (i, h) in handles.iter().enumerate().skip(1) {
        let not_mine = Lease::expiring(format!("not-held-{i}"), Duration::from_secs(60));
        assert!(
            !cas(
                h,
                Some(&not_mine),
                Some(&stamp("a", 1)),
                Some(&set("intruder", 2))
            )
            .await,
            "handle {i}: a write fenced by a lease it does not hold fails"
        );
    }
    assert!(
        cas(
            &handles[1],
            Some(&holder),
            Some(&stamp("a", 1)),
            Some(&set("holder", 2))
        )
        .await,
        "the holder's lease fences a write through any handle"
    );
    coord(first).release(&holder).await.expect("release");
    first.clear().await.expect("clear");
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
