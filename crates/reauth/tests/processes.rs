//! The cross-process rows on a file store, through real OS processes:
//!
//! * C15: P processes share a file store and their token expires together →
//!   exactly one refresh reaches the server; the others adopt the stored
//!   result; a holder killed mid-refresh is replaced after its lease;
//! * C18: the holder's work (a slow answer, slow writes) outlasts the lease
//!   TTL → it renews the lease; still one refresh, nobody logged out;
//! * C19: another login lands in the store → reported, never adopted;
//! * C20: another process logs out while one refreshes → the logout is not
//!   undone and the orphaned rotation is revoked.
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

fn shared(dir: &tempfile::TempDir) -> (String, FileStore) {
    let path = dir.path().join("tokens.json");
    (path.to_string_lossy().into_owned(), FileStore::new(path))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c15_processes_sharing_a_file_store_refresh_once() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, store) = shared(&dir);
    let scenario = Scenario::new("process_child", spec, PROCESSES);
    let outcome = procs::run_processes(&scenario, &store).await;
    procs::assert_one_refresh(&outcome, PROCESSES);
    let stored = reauth::TokenStore::load(&store).await.unwrap().unwrap();
    assert_eq!(stored.generation.get(), 2);
    assert_eq!(stored.access_token.secret(), "access-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c15_lease_holder_killed_mid_refresh_is_replaced_after_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, store) = shared(&dir);
    let scenario = Scenario {
        kill_first_refresher: true,
        refresh_timeout: Duration::from_secs(2),
        ..Scenario::new("process_child", spec, PROCESSES)
    };
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c18_work_outlasting_the_lease_ttl_still_refreshes_once_on_a_file_store() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, store) = shared(&dir);
    let outcome =
        procs::run_processes(&procs::c18_scenario("process_child", spec, 3), &store).await;
    procs::assert_one_refresh(&outcome, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c19_another_login_in_the_file_store_is_reported_not_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, store) = shared(&dir);
    let scenario = procs::c19_scenario("process_child", spec, PROCESSES);
    let outcome = procs::run_processes(&scenario, &store).await;
    procs::assert_foreign_reported_not_adopted(&outcome, PROCESSES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c20_logout_elsewhere_racing_a_refresh_is_not_undone_on_a_file_store() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, store) = shared(&dir);
    let scenario = procs::c20_scenario("process_child", spec, PROCESSES);
    let outcome = procs::run_processes(&scenario, &store).await;
    procs::assert_logout_not_undone(&outcome, PROCESSES);
}
