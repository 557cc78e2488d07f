//! The store conformance suite on real Postgres (`DATABASE_URL`), under a
//! random row key so that parallel runs do not meet.

use reauth_postgres::PostgresStore;
use reauth_testkit::conformance;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conforms() {
    let Some(url) = conformance::service_url("DATABASE_URL") else {
        return;
    };
    if let Err(e) = PostgresStore::connect(&url, "probe").await {
        return conformance::skip_or_panic("DATABASE_URL", &e);
    }
    let key = format!("reauth-test-{:016x}", fastrand::u64(..));
    conformance::run(|| {
        let (url, key) = (url.clone(), key.clone());
        async move { PostgresStore::connect(&url, &key).await.expect("connect") }
    })
    .await;
}
