//! S8: `kill -9` under refresh load, then restart on the same SQLite file:
//! every refresh token a client received is valid or legitimately superseded,
//! and no family is corrupted.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reauth_server::SqliteSynchronous;
use reauth_server::store::{Repository, SqliteRepository};
use reqwest::StatusCode;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::common::{PASSWORD, Tokens, USER, http_client, refresh_at};

const SESSIONS: usize = 8;
const MAX_REFRESHES_PER_SESSION: usize = 5_000;
const KILL_AFTER_REFRESHES: u64 = 200;
const KILL_AFTER: Duration = Duration::from_secs(5);

async fn start_child(db: &str, keys: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_reauth-server-testd"))
        .args(["--db", db, "--keys"])
        .arg(keys)
        .args([
            "--user",
            &format!("{USER}:{PASSWORD}"),
            "--grace-secs",
            "600",
            "--fast-hash",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn reauth-server-testd");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("child started in time")
        .unwrap()
        .expect("LISTENING line");
    let addr = line
        .strip_prefix("LISTENING ")
        .expect("LISTENING line")
        .to_owned();
    (child, format!("http://{addr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_kill_9_under_refresh_load_then_restart_keeps_every_session() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("s8.db").display());
    let keys = dir.path().join("keys.json");
    let (mut child, url) = start_child(&db, &keys).await;
    let http = http_client();

    // Every refresh token each session received, in order (index 0 = login).
    let mut histories = Vec::new();
    for _ in 0..SESSIONS {
        let response = http
            .post(format!("{url}/auth/login"))
            .json(&serde_json::json!({"username": USER, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let tokens = Tokens::from_json(&response.json().await.unwrap());
        histories.push(vec![tokens]);
    }

    // Refresh load: each session rotates its latest token as fast as it can.
    let ok = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tasks = Vec::new();
    for history in histories {
        let ok = ok.clone();
        let url = url.clone();
        let http = http.clone();
        tasks.push(tokio::spawn(async move {
            let mut history = history;
            for _ in 0..MAX_REFRESHES_PER_SESSION {
                if Instant::now() > deadline {
                    break;
                }
                let latest = history.last().unwrap().refresh_token.clone();
                let response = http
                    .post(format!("{url}/auth/refresh"))
                    .timeout(Duration::from_secs(10))
                    .json(&serde_json::json!({ "refresh_token": latest }))
                    .send()
                    .await;
                let Ok(response) = response else { break }; // the server died
                if response.status() != StatusCode::OK {
                    panic!("refresh failed before the crash: {}", response.status());
                }
                let Ok(body) = response.json().await else {
                    break;
                };
                history.push(Tokens::from_json(&body));
                ok.fetch_add(1, Ordering::Relaxed);
            }
            history
        }));
    }

    // SIGKILL mid-load: once enough rotations happened, or after a while if
    // at least one rotation per session did (a slow machine only waits longer).
    let started = Instant::now();
    loop {
        let done = ok.load(Ordering::Relaxed);
        let enough = done >= KILL_AFTER_REFRESHES
            || (started.elapsed() >= KILL_AFTER && done >= SESSIONS as u64)
            || started.elapsed() >= Duration::from_secs(50);
        if enough {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.start_kill().unwrap(); // SIGKILL
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success());

    let mut histories = Vec::new();
    for task in tasks {
        histories.push(
            tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let received: usize = histories.iter().map(|h| h.len() - 1).sum();
    assert!(received > 0, "some refreshes happened before the kill");

    // Restart on the same file and keys.
    let (mut child, url) = start_child(&db, &keys).await;
    for history in &histories {
        let latest = history.last().unwrap();
        // The latest token received is live: current, or the parent of a
        // rotation that committed but whose answer was lost (grace replay).
        let (status, body) = refresh_at(&http, &url, &latest.refresh_token).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "latest token works after restart: {body}"
        );
        let next = Tokens::from_json(&body);
        let (status, body) = refresh_at(&http, &url, &next.refresh_token).await;
        assert_eq!(status, StatusCode::OK, "the family keeps rotating: {body}");
        let after = Tokens::from_json(&body);
        let response = http
            .get(format!("{url}/api/resources"))
            .bearer_auth(&after.access_token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        // Every older token is legitimately superseded: inactive, and
        // presenting them is not needed to know it (introspection has no side effects).
        for old in &history[..history.len().saturating_sub(2)] {
            let response = http
                .post(format!("{url}/oauth/introspect"))
                .basic_auth(crate::common::CLIENT_ID, Some(crate::common::CLIENT_SECRET))
                .form(&[("token", old.refresh_token.as_str())])
                .send()
                .await
                .unwrap();
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["active"], false);
        }
    }
    child.start_kill().unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;

    // No family corrupted: each advanced exactly as its client saw it. The
    // client received generations 1..=len, then two more rotations after the
    // restart; a lost answer was re-served by grace, not rotated twice.
    let repo = SqliteRepository::connect(&db, SqliteSynchronous::Normal)
        .await
        .unwrap();
    for history in &histories {
        let family = repo.load_family(&history[0].sid()).await.unwrap().unwrap();
        assert!(family.revoked_at.is_none(), "family revoked: {family:?}");
        let expected = i64::try_from(history.len()).unwrap() + 2;
        assert_eq!(family.generation, expected, "family generation");
    }
}
