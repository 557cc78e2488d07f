//! C16 on real Redis: R replicas (separate OS processes, each with its own
//! connection) share one rotating refresh token.
//!
//! * their token expires together → exactly one refresh reaches the server;
//! * the lease holder is SIGKILLed mid-refresh → another replica completes
//!   after the lease TTL, still one rotation;
//! * a replica gets `invalid_grant` while the store moved on → it adopts the
//!   stored tokens ("rotated elsewhere") instead of logging out.
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

async fn redis() -> Option<(String, String, RedisStore)> {
    let url = service_url("REDIS_URL")?;
    let prefix = format!("reauth-c16-{:016x}", fastrand::u64(..));
    match RedisStore::connect(&url, &prefix).await {
        Ok(store) => Some((url, prefix, store)),
        Err(e) => {
            skip_or_panic("REDIS_URL", &e);
            None
        }
    }
}

fn scenario(url: &str, prefix: &str, kill: bool) -> Scenario {
    Scenario {
        child_test: "replica_child",
        store: format!("{url}|{prefix}"),
        processes: REPLICAS,
        kill_first_refresher: kill,
        refresh_timeout: Duration::from_secs(2),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c16_redis_replicas_refresh_once() {
    let Some((url, prefix, store)) = redis().await else {
        return;
    };
    let outcome = procs::run_processes(&scenario(&url, &prefix, false), &store).await;
    procs::assert_one_refresh(&outcome, REPLICAS);
    reauth::TokenStore::clear(&store).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c16_redis_lease_holder_killed_mid_refresh_is_replaced_after_the_lease() {
    let Some((url, prefix, store)) = redis().await else {
        return;
    };
    let outcome = procs::run_processes(&scenario(&url, &prefix, true), &store).await;
    assert!(outcome.killed.is_some());
    procs::assert_one_refresh(&outcome, REPLICAS);
    reauth::TokenStore::clear(&store).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c16_redis_rejected_while_the_store_moved_on_is_adopted_not_a_logout() {
    let Some((url, prefix, a)) = redis().await else {
        return;
    };
    let b = RedisStore::connect(&url, &prefix)
        .await
        .expect("a second connection");
    procs::rejected_while_store_moved_is_adopted(a, b).await;
}
