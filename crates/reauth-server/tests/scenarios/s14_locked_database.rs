//! S14: the database is locked (another process holds the write lock, a
//! VACUUM): endpoints that need no database keep answering at once, and a
//! refresh that cannot get the database answers `503` with `Retry-After`
//! after the configured wait — then works once the lock is gone.

use std::time::Duration;

use reauth_server::{KeySource, ManualClock, ServerConfig, ServerKeys};
use reqwest::StatusCode;

use crate::common::{TestServer, Tokens, test_config};

/// Generous: these endpoints answer in milliseconds; the bound only has to
/// be far below the time the lock is held.
const PROMPT: Duration = Duration::from_secs(5);

fn config(url: &str) -> ServerConfig {
    let mut config = test_config();
    config.database_url = url.to_owned();
    config.keys = KeySource::Provided(ServerKeys::generate());
    config.limits.database_wait = Duration::from_millis(500);
    config
}

/// Runs while the database is locked by someone else.
async fn while_locked(server: &TestServer, sessions: &[Tokens]) {
    // Refreshes that need the lock, all at once (more than the runtime has
    // workers): none may hold a worker while it waits.
    let refreshes =
        futures::future::join_all(sessions.iter().map(|t| server.refresh(&t.refresh_token)));
    let prompt = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        for path in ["/healthz", "/.well-known/jwks.json"] {
            let response = tokio::time::timeout(
                PROMPT,
                server.http.get(format!("{}{path}", server.url)).send(),
            )
            .await
            .unwrap_or_else(|_| panic!("{path} did not answer while the database was locked"))
            .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
        }
        let response = tokio::time::timeout(PROMPT, server.resource(&sessions[0].access_token))
            .await
            .expect("/api/resources did not answer while the database was locked");
        assert_eq!(response.status(), StatusCode::OK);
    };
    let (answers, ()) = tokio::join!(refreshes, prompt);
    for (status, body) in answers {
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    }
    // Retry-After on the 503.
    let response = server
        .http
        .post(format!("{}/auth/refresh", server.url))
        .json(&serde_json::json!({ "refresh_token": sessions[0].refresh_token }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
}

async fn sessions(server: &TestServer) -> Vec<Tokens> {
    let mut sessions = Vec::new();
    for _ in 0..8 {
        sessions.push(server.login().await);
    }
    sessions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s14_sqlite_write_lock_held_elsewhere_leaves_the_server_answering() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s14.db");
    let url = format!("sqlite://{}", path.display());
    let server = TestServer::start_with_clock(config(&url), ManualClock::new()).await;
    let sessions = sessions(&server).await;

    // Another process (here: another connection) takes the write lock.
    let admin = rusqlite::Connection::open(&path).unwrap();
    admin.execute_batch("BEGIN IMMEDIATE").unwrap();
    while_locked(&server, &sessions).await;
    admin.execute_batch("COMMIT").unwrap();

    // Nothing was rotated: every session refreshes with the same token.
    for tokens in &sessions {
        server.refresh_ok(&tokens.refresh_token).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s14_postgres_table_lock_held_elsewhere_leaves_the_server_answering() {
    let Some(pg) =
        crate::pg::schema("s14_postgres_table_lock_held_elsewhere_leaves_the_server_answering")
            .await
    else {
        return;
    };
    let server = TestServer::start_with_clock(config(&pg.url), ManualClock::new()).await;
    let sessions = sessions(&server).await;

    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(&pg.url).await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE families IN ACCESS EXCLUSIVE MODE;")
        .execute(&mut admin)
        .await
        .unwrap();
    while_locked(&server, &sessions).await;
    sqlx::raw_sql("COMMIT").execute(&mut admin).await.unwrap();
    let _ = admin.close().await;

    for tokens in &sessions {
        server.refresh_ok(&tokens.refresh_token).await;
    }
}
