//! The cross-replica rows on real Redis: R replicas (separate OS processes,
//! each with its own connection) share one rotating refresh token.
//!
//! * C16: their token expires together → exactly one refresh reaches the
//!   server; the lease holder SIGKILLed mid-refresh is replaced after the
//!   lease TTL; a replica that gets `invalid_grant` while the store moved on
//!   adopts the stored tokens instead of logging out;
//! * C18: the holder's work outlasts the lease TTL → renewed, one refresh;
//! * C19: another login lands in Redis → reported, never adopted;
//! * C20: another process logs out while one refreshes → not undone.
//!
//! Needs `REDIS_URL`; skips without it unless `REAUTH_REQUIRE_SERVICES=1`.
#![cfg(unix)]

use std::time::Duration;

use reauth_redis::RedisStore;
use reauth_testkit::conformance::{service_url, skip_or_panic};
use reauth_testkit::procs::{self, Scenario};

const REPLICAS: usize = 4;

/// The child entry: does nothing unless started by `run_processes`.
#[test]
fn replica_child() {
    procs::child_main(|spec| async move {
        let (url, prefix) = spec.rsplit_once('|').expect("url|prefix");
        RedisStore::connect(url, prefix).await.expect("connect")
    });
}

/// A fresh key prefix: the spec for the children and the parent's store.
async fn redis() -> Option<(String, RedisStore)> {
    let url = service_url("REDIS_URL")?;
    let prefix = format!("reauth-replicas-{:016x}", fastrand::u64(..));
    match RedisStore::connect(&url, &prefix).await {
        Ok(store) => Some((format!("{url}|{prefix}"), store)),
        Err(e) => {
            skip_or_panic("REDIS_URL", &e);
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c16_redis_replicas_refresh_once() {
    let Some((spec, store)) = redis().await else {
        return;
    };
    let scenario = Scenario::new("replica_child", spec, REPLICAS);
    let outcome = procs::run_processes(&scenario, &store).await;
    procs::assert_one_refresh(&outcome, REPLICAS);
    reauth::TokenStore::clear(&store).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c16_redis_lease_holder_killed_mid_refresh_is_replaced_after_the_lease() {
    let Some((spec, store)) = redis().await else {
        return;
    };
    let scenario = Scenario {
        kill_first_refresher: true,
        refresh_timeout: Duration::from_secs(2),
        ..Scenario::new("replica_child", spec, REPLICAS)
    };
    let outcome = procs::run_processes(&scenario, &store).await;
    assert!(outcome.killed.is_some());
    procs::assert_one_refresh(&outcome, REPLICAS);
    reauth::TokenStore::clear(&store).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c16_redis_rejected_while_the_store_moved_on_is_adopted_not_a_logout() {
    let Some((spec, a)) = redis().await else {
        return;
    };
    let (url, prefix) = spec.rsplit_once('|').unwrap();
    let b = RedisStore::connect(url, prefix)
        .await
        .expect("a second connection");
    procs::rejected_while_store_moved_is_adopted(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c18_work_outlasting_the_lease_ttl_still_refreshes_once_on_redis() {
    let Some((spec, store)) = redis().await else {
        return;
    };
    let outcome =
        procs::run_processes(&procs::c18_scenario("replica_child", spec, 3), &store).await;
    procs::assert_one_refresh(&outcome, 3);
    reauth::TokenStore::clear(&store).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c19_another_login_in_redis_is_reported_not_adopted() {
    let Some((spec, store)) = redis().await else {
        return;
    };
    let outcome = procs::run_processes(
        &procs::c19_scenario("replica_child", spec, REPLICAS),
        &store,
    )
    .await;
    procs::assert_foreign_reported_not_adopted(&outcome, REPLICAS);
    reauth::TokenStore::clear(&store).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c20_logout_elsewhere_racing_a_refresh_is_not_undone_on_redis() {
    let Some((spec, store)) = redis().await else {
        return;
    };
    let outcome = procs::run_processes(
        &procs::c20_scenario("replica_child", spec, REPLICAS),
        &store,
    )
    .await;
    procs::assert_logout_not_undone(&outcome, REPLICAS);
}
