//! C16 on real Postgres: R replicas (separate OS processes, each with its own
//! connection) share one rotating refresh token.
//!
//! * their token expires together → exactly one refresh reaches the server;
//! * the lease holder is SIGKILLed mid-refresh → another replica completes
//!   after the lease TTL, still one rotation;
//! * a replica gets `invalid_grant` while the store moved on → it adopts the
//!   stored tokens ("rotated elsewhere") instead of logging out.
//!
//! Needs `DATABASE_URL`; skips without it unless `REAUTH_REQUIRE_SERVICES=1`.
#![cfg(unix)]

use std::time::Duration;

use reauth_postgres::PostgresStore;
use reauth_testkit::conformance::{service_url, skip_or_panic};
use reauth_testkit::procs::{self, Scenario};

const REPLICAS: usize = 4;

/// The child entry: does nothing unless started by `run_processes`.
#[test]
fn replica_child() {
    procs::child_main(|spec| async move {
        let (url, key) = spec.rsplit_once('|').expect("url|key");
        PostgresStore::connect(url, key).await.expect("connect")
    });
}

async fn postgres() -> Option<(String, String, PostgresStore)> {
    let url = service_url("DATABASE_URL")?;
    let key = format!("reauth-c16-{:016x}", fastrand::u64(..));
    match PostgresStore::connect(&url, &key).await {
        Ok(store) => Some((url, key, store)),
        Err(e) => {
            skip_or_panic("DATABASE_URL", &e);
            None
        }
    }
}

fn scenario(url: &str, key: &str, kill: bool) -> Scenario {
    Scenario {
        child_test: "replica_child",
        store: format!("{url}|{key}"),
        processes: REPLICAS,
        kill_first_refresher: kill,
        refresh_timeout: Duration::from_secs(2),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c16_postgres_replicas_refresh_once() {
    let Some((url, key, store)) = postgres().await else {
        return;
    };
    let outcome = procs::run_processes(&scenario(&url, &key, false), &store).await;
    procs::assert_one_refresh(&outcome, REPLICAS);
    reauth::TokenStore::clear(&store).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c16_postgres_lease_holder_killed_mid_refresh_is_replaced_after_the_lease() {
    let Some((url, key, store)) = postgres().await else {
        return;
    };
    let outcome = procs::run_processes(&scenario(&url, &key, true), &store).await;
    assert!(outcome.killed.is_some());
    procs::assert_one_refresh(&outcome, REPLICAS);
    reauth::TokenStore::clear(&store).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c16_postgres_rejected_while_the_store_moved_on_is_adopted_not_a_logout() {
    let Some((url, key, a)) = postgres().await else {
        return;
    };
    let b = PostgresStore::connect(&url, &key)
        .await
        .expect("a second connection");
    procs::rejected_while_store_moved_is_adopted(a, b).await;
}
