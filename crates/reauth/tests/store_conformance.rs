//! The store conformance suite (`reauth_testkit::conformance`) on the
//! built-in stores. `reauth-redis` and `reauth-postgres` run the same suite.

use reauth::{FileStore, MemoryStore};
use reauth_testkit::{conformance, procs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_conforms() {
    let store = MemoryStore::new();
    conformance::run(|| {
        let store = store.clone();
        async move { store }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    conformance::run(|| {
        let path = path.clone();
        async move { FileStore::new(path) }
    })
    .await;
}

#[tokio::test]
async fn memory_store_adopts_when_rejected_while_the_store_moved_on() {
    let store = MemoryStore::new();
    procs::rejected_while_store_moved_is_adopted(store.clone(), store).await;
}
