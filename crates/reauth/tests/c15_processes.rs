//! C15: P real OS processes share a file store and their token expires
//! together → exactly one refresh reaches the server; the others adopt the
//! stored result; a holder killed mid-refresh is replaced after its lease.
//!
//! The parent re-runs this test binary as the children (`process_child`);
//! see `reauth_testkit::procs`.
#![cfg(unix)]

use std::time::Duration;

use reauth::FileStore;
use reauth_testkit::procs::{self, Scenario};

const PROCESSES: usize = 4;

/// The child entry: does nothing unless started by `run_processes`.
#[test]
fn process_child() {
    procs::child_main(|path| async move { FileStore::new(path) });
}

fn scenario(dir: &tempfile::TempDir, kill: bool) -> (Scenario, FileStore) {
    let path = dir.path().join("tokens.json");
    let scenario = Scenario {
        child_test: "process_child",
        store: path.to_string_lossy().into_owned(),
        processes: PROCESSES,
        kill_first_refresher: kill,
        refresh_timeout: Duration::from_secs(2),
    };
    (scenario, FileStore::new(path))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c15_processes_sharing_a_file_store_refresh_once() {
    let dir = tempfile::tempdir().unwrap();
    let (scenario, store) = scenario(&dir, false);
    let outcome = procs::run_processes(&scenario, &store).await;
    procs::assert_one_refresh(&outcome, PROCESSES);
    let stored = reauth::TokenStore::load(&store).await.unwrap().unwrap();
    assert_eq!(stored.generation.get(), 2);
    assert_eq!(stored.access_token.secret(), "access-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c15_lease_holder_killed_mid_refresh_is_replaced_after_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let (scenario, store) = scenario(&dir, true);
    let outcome = procs::run_processes(&scenario, &store).await;
    assert!(outcome.killed.is_some());
    procs::assert_one_refresh(&outcome, PROCESSES);
}

#[tokio::test]
async fn c15_rejected_while_the_file_moved_on_is_adopted_not_a_logout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    procs::rejected_while_store_moved_is_adopted(FileStore::new(&path), FileStore::new(&path))
        .await;
}
