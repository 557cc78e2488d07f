//! C21: the file store never blocks the executor, and does not follow a
//! symlink planted as its lock file.
#![cfg(unix)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use reauth::{FileStore, RefreshAhead, Session, TokenSet, TokenStore, refresh_fn};

/// Another process holding the file store's lock: a separate open file
/// description of the lock file with an exclusive `flock` on it, held until
/// `release` says so or `safety` passes. Returns whether it was released on
/// request (`true`) or only by the safety timeout.
fn hold_the_lock(
    lock: std::path::PathBuf,
    release: mpsc::Receiver<()>,
    held: mpsc::Sender<()>,
    safety: Duration,
) -> std::thread::JoinHandle<bool> {
    std::thread::spawn(move || {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(lock)
            .unwrap();
        fs4::FileExt::lock(&file).unwrap();
        held.send(()).unwrap();
        let on_request = release.recv_timeout(safety).is_ok();
        drop(file);
        on_request
    })
}

#[tokio::test(flavor = "current_thread")]
async fn c21_a_file_lock_held_elsewhere_never_blocks_the_executor() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path().join("tokens.json"));
    // A session on the same single-threaded runtime whose token is valid:
    // its fast path must keep answering while the store waits for the lock.
    let other = Session::builder(refresh_fn(|t: TokenSet| async move { Ok(t) }))
        .refresh_ahead(RefreshAhead::disabled())
        .build();
    other.start(TokenSet::new("still-valid")).await.unwrap();

    let (release, released) = mpsc::channel();
    let (held_tx, held_rx) = mpsc::channel();
    let holder = hold_the_lock(
        store.lock_path(),
        released,
        held_tx,
        Duration::from_secs(20),
    );
    held_rx.recv().unwrap();
    // The write needs the lock another process holds.
    let writing = {
        let store = store.clone();
        tokio::spawn(async move { store.store(&TokenSet::new("a")).await })
    };
    // Let the write start; on a blocked executor nothing below would run
    // until the holder gave up.
    let ran = Arc::new(AtomicBool::new(false));
    let other_task = {
        let (other, ran) = (other.clone(), Arc::clone(&ran));
        tokio::spawn(async move {
            let bearer = other.access_token().await.unwrap();
            assert_eq!(bearer.token().secret(), "still-valid");
            ran.store(true, Ordering::SeqCst);
        })
    };
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    other_task.await.unwrap();
    assert!(ran.load(Ordering::SeqCst));
    let _ = release.send(());
    let released_on_request = tokio::task::spawn_blocking(move || holder.join().unwrap())
        .await
        .unwrap();
    assert!(
        released_on_request,
        "the executor was blocked while another process held the file lock"
    );
    writing
        .await
        .unwrap()
        .expect("the write lands once the lock is free");
    assert_eq!(
        store.load().await.unwrap().unwrap().access_token.secret(),
        "a"
    );
}

#[tokio::test]
async fn c21_a_symlink_planted_as_the_lock_file_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path().join("tokens.json"));
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    std::os::unix::fs::symlink(&victim, store.lock_path()).unwrap();
    let coord = store.coordinator().unwrap();
    let acquired = coord.try_acquire(Duration::from_secs(10)).await;
    assert!(acquired.is_err(), "refused, not followed: {acquired:?}");
    let written = store.store(&TokenSet::new("a")).await;
    assert!(written.is_err(), "{written:?}");
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"precious",
        "the symlink's target was not touched"
    );
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn insecure(e: &reauth::StoreError) -> bool {
    matches!(e, reauth::StoreError::Insecure { .. })
}

#[tokio::test]
async fn file_store_refuses_a_file_or_directory_others_can_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let store = FileStore::new(&path);
    store
        .store(&TokenSet::new("a").with_refresh_token("r"))
        .await
        .unwrap();

    // Another user could swap the file: refused, typed, nothing touched.
    set_mode(dir.path(), 0o777);
    let err = store.load().await.unwrap_err();
    assert!(insecure(&err), "{err:?}");
    let err = store.store(&TokenSet::new("b")).await.unwrap_err();
    assert!(insecure(&err), "{err:?}");
    set_mode(dir.path(), 0o700);

    // A token file others may write (planted, or loosened): refused.
    set_mode(&path, 0o666);
    let err = store.load().await.unwrap_err();
    assert!(insecure(&err), "{err:?}");
    set_mode(&path, 0o600);
    assert_eq!(
        store.load().await.unwrap().unwrap().access_token.secret(),
        "a",
        "nothing was lost"
    );
}

#[tokio::test]
async fn file_store_refuses_a_file_owned_by_another_user() {
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("skipped: needs root to give a file to another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    // Planted by another user (nobody), with a login of theirs: a session
    // must not adopt it (session fixation).
    std::fs::write(
        &path,
        serde_json::to_vec(&TokenSet::new("planted").with_refresh_token("theirs")).unwrap(),
    )
    .unwrap();
    set_mode(&path, 0o600);
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    let err = FileStore::new(&path).load().await.unwrap_err();
    assert!(insecure(&err), "{err:?}");
}
