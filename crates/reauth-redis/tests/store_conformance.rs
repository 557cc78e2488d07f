//! The store conformance suite on real Redis (`REDIS_URL`), under a random
//! key prefix so that parallel runs do not meet.

use reauth_redis::RedisStore;
use reauth_testkit::conformance;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_conforms() {
    let Some(url) = conformance::service_url("REDIS_URL") else {
        return;
    };
    if let Err(e) = RedisStore::connect(&url, "probe").await {
        return conformance::skip_or_panic("REDIS_URL", &e);
    }
    let prefix = format!("reauth-test-{:016x}", fastrand::u64(..));
    conformance::run(|| {
        let (url, prefix) = (url.clone(), prefix.clone());
        async move { RedisStore::connect(&url, &prefix).await.expect("connect") }
    })
    .await;
}
