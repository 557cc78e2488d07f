//! S10: the database cannot commit (disk full, read-only, I/O error) during
//! login, refresh, revoke and logout — never a 200 whose effect is not
//! durable; after the fault clears, every session works as its answers said.
//!
//! The fault is injected underneath the server, at the commit itself: on
//! SQLite a commit hook turns every COMMIT (autocommit statements included)
//! into a rollback, exactly where a full disk fails a WAL append; on
//! Postgres a deferred constraint trigger raises `disk_full` (53100) at
//! COMMIT. Durability is then checked from a *second* server opened on the
//! same database with the same keys.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reauth_server::store::SqliteRepository;
use reauth_server::{KeySource, ManualClock, Server, ServerConfig, ServerKeys, SqliteSynchronous};
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{PASSWORD, TestServer, Tokens, USER, test_config};

/// A failed write is an RFC 6749 `503 temporarily_unavailable` or `500
/// server_error`, never a success.
fn assert_refused(what: &str, status: StatusCode, body: &Value) {
    assert!(
        (status == StatusCode::SERVICE_UNAVAILABLE && body["error"] == "temporarily_unavailable")
            || (status == StatusCode::INTERNAL_SERVER_ERROR && body["error"] == "server_error"),
        "{what} during the fault answered {status} {body}"
    );
}

async fn post_logout(
    server: &TestServer,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = server.http.post(format!("{}/auth/logout", server.url));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The scenario, whatever the database: `fault(true)` makes every commit
/// fail, `fault(false)` clears it; `reopen()` starts a second server on the
/// same database and keys.
async fn s10_scenario<F, Fut, R, RFut>(server: &TestServer, fault: F, reopen: R)
where
    F: Fn(bool) -> Fut,
    Fut: std::future::Future<Output = ()>,
    R: FnOnce() -> RFut,
    RFut: std::future::Future<Output = TestServer>,
{
    // Sessions to refresh (concurrently, so that SQLite batches some of them
    // into one transaction), to log out two ways, and to revoke.
    let mut refreshing = Vec::new();
    for _ in 0..6 {
        refreshing.push(server.login().await);
    }
    let by_bearer = server.login().await;
    let by_refresh = server.login().await;
    let by_revoke = server.oauth_login().await;

    fault(true).await;
    let answers =
        futures::future::join_all(refreshing.iter().map(|t| server.refresh(&t.refresh_token)))
            .await;
    for (status, body) in &answers {
        assert_refused("refresh", *status, body);
    }
    let (status, body) = server.login_as(USER, PASSWORD).await;
    assert_refused("login", status, &body);
    let (status, body) = server
        .oauth_form(
            "/oauth/token",
            &[
                ("grant_type", "password"),
                ("username", USER),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_refused("password grant", status, &body);
    let (status, body) = post_logout(server, Some(&by_bearer.access_token), None).await;
    assert_refused("logout by bearer", status, &body);
    let body = serde_json::json!({ "refresh_token": by_refresh.refresh_token });
    let (status, body) = post_logout(server, None, Some(body)).await;
    assert_refused("logout by refresh token", status, &body);
    let (status, body) = server
        .oauth_form("/oauth/revoke", &[("token", &by_revoke.refresh_token)])
        .await;
    assert_refused("revocation", status, &body);
    // A failed revocation denies nothing: the session is live, as answered.
    assert_eq!(
        server.resource(&by_bearer.access_token).await.status(),
        StatusCode::OK
    );

    fault(false).await;
    // Nothing was answered as done, so everything is as before the fault —
    // seen from another server on the same database, and then from this one.
    let other = reopen().await;
    let mut next = Vec::new();
    for tokens in &refreshing {
        next.push(other.refresh_ok(&tokens.refresh_token).await);
    }
    for tokens in &next {
        server.refresh_ok(&tokens.refresh_token).await;
    }
    for tokens in [&by_bearer, &by_refresh] {
        other.refresh_ok(&tokens.refresh_token).await;
    }
    let (status, body) = other
        .oauth_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &by_revoke.refresh_token),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // After the fault, every answer is durable again: a logout answered 204
    // is seen by the other server.
    let (status, _) = post_logout(server, Some(&by_bearer.access_token), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let revoked = other
        .server()
        .repository()
        .load_family(&by_bearer.sid())
        .await
        .unwrap()
        .unwrap();
    assert!(revoked.revoked_at.is_some());
    let fresh: Tokens = other.login().await;
    server.refresh_ok(&fresh.refresh_token).await;
}

fn file_config(url: &str, keys: &ServerKeys) -> ServerConfig {
    let mut config = test_config();
    config.database_url = url.to_owned();
    config.keys = KeySource::Provided(keys.clone());
    config.issuer = Some("http://reauth-s10".to_owned());
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s10_sqlite_commit_failure_never_answers_200() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s10.db").display());
    let keys = ServerKeys::generate();
    let clock = ManualClock::new();
    let repo = SqliteRepository::connect_with(
        &url,
        SqliteSynchronous::Normal,
        Duration::from_secs(5),
        Arc::new(clock.clone()),
    )
    .await
    .unwrap();
    let failing = Arc::new(AtomicBool::new(false));
    let hook = failing.clone();
    repo.with_connection(move |conn| {
        // A commit hook returning true turns the COMMIT into a rollback.
        conn.commit_hook(Some(move || hook.load(Ordering::SeqCst)));
    })
    .await
    .unwrap();
    let server = Server::from_parts(
        file_config(&url, &keys),
        Arc::new(repo),
        keys.clone(),
        Arc::new(clock.clone()),
    )
    .await
    .unwrap();
    server.add_user(USER, PASSWORD).await.unwrap();
    let server = TestServer::serve(server, clock.clone()).await;
    s10_scenario(
        &server,
        |on| {
            failing.store(on, Ordering::SeqCst);
            async {}
        },
        || TestServer::start_with_clock(file_config(&url, &keys), clock.clone()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s10_postgres_commit_failure_never_answers_200() {
    let Some(pg) = crate::pg::schema("s10_postgres_commit_failure_never_answers_200").await else {
        return;
    };
    let keys = ServerKeys::generate();
    let clock = ManualClock::new();
    let server = TestServer::start_with_clock(file_config(&pg.url, &keys), clock.clone()).await;
    pg.execute(
        "CREATE TABLE reauth_test_fault (fail BOOLEAN NOT NULL);
         INSERT INTO reauth_test_fault VALUES (false);
         CREATE FUNCTION reauth_test_fail_commit() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF (SELECT fail FROM reauth_test_fault) THEN
             RAISE EXCEPTION 'injected: could not extend file' USING ERRCODE = '53100';
           END IF;
           RETURN NULL;
         END $$;
         CREATE CONSTRAINT TRIGGER fail_commit AFTER INSERT OR UPDATE OR DELETE ON families
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION reauth_test_fail_commit();
         CREATE CONSTRAINT TRIGGER fail_commit AFTER INSERT OR UPDATE OR DELETE ON audit_events
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION reauth_test_fail_commit();",
    )
    .await;
    s10_scenario(
        &server,
        |on| pg.execute_owned(format!("UPDATE reauth_test_fault SET fail = {on}")),
        || TestServer::start_with_clock(file_config(&pg.url, &keys), clock.clone()),
    )
    .await;
}

/// A real full disk, in a server process of its own: its file-size limit
/// (`RLIMIT_FSIZE`, set and lifted from outside with `prlimit`) stops the
/// SQLite WAL from growing, so every commit fails with an I/O error exactly
/// where a full filesystem fails it; then the limit is lifted, and the
/// server — and after it a restarted one — must honour every answer.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s10_sqlite_disk_full_in_a_real_process_never_answers_200() {
    use std::process::Stdio;

    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::process::Command;

    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("full.db");
    let db = format!("sqlite://{}", db_path.display());
    let keys = dir.path().join("keys.json");
    let start = || async {
        // SIGXFSZ ignored (inherited through exec): a write past the limit
        // fails with EFBIG instead of killing the process.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("trap '' XFSZ; exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_reauth-server-testd"))
            .args(["--db", &db, "--keys"])
            .arg(&keys)
            .args(["--user", &format!("{USER}:{PASSWORD}"), "--fast-hash"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn reauth-server-testd");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("child started in time")
            .unwrap()
            .expect("LISTENING line");
        let addr = line.strip_prefix("LISTENING ").unwrap().to_owned();
        (child, format!("http://{addr}"))
    };
    let prlimit = |pid: u32, limit: String| {
        let status = std::process::Command::new("prlimit")
            .arg("--pid")
            .arg(pid.to_string())
            .arg(format!("--fsize={limit}:")) // the soft limit only: it can be lifted again
            .status()
            .expect("prlimit (util-linux)");
        assert!(status.success(), "prlimit failed");
    };
    let http = crate::common::http_client();
    let (child, url) = start().await;
    let pid = child.id().unwrap();
    let login = || async {
        let response = http
            .post(format!("{url}/auth/login"))
            .json(&serde_json::json!({"username": USER, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json::<Value>().await.unwrap_or_default())
    };
    let mut sessions = Vec::new();
    for _ in 0..8 {
        let (status, body) = login().await;
        assert_eq!(status, StatusCode::OK, "{body}");
        sessions.push(Tokens::from_json(&body));
    }

    // The disk is full: no file of the database may grow.
    let size = |suffix: &str| {
        std::fs::metadata(format!("{}{suffix}", db_path.display())).map_or(0, |m| m.len())
    };
    let largest = ["", "-wal", "-shm"].iter().map(|s| size(s)).max().unwrap();
    prlimit(pid, largest.to_string());
    let answers = futures::future::join_all(
        sessions
            .iter()
            .map(|t| crate::common::refresh_at(&http, &url, &t.refresh_token)),
    )
    .await;
    for (status, body) in &answers {
        assert_refused("refresh on a full disk", *status, body);
    }
    let (status, body) = login().await;
    assert_refused("login on a full disk", status, &body);
    let response = http
        .post(format!("{url}/auth/logout"))
        .bearer_auth(&sessions[0].access_token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert_refused(
        "logout on a full disk",
        status,
        &response.json().await.unwrap_or_default(),
    );

    // Space is freed: every session refreshes from where its answers left it.
    prlimit(pid, "unlimited".to_owned());
    let mut latest = Vec::new();
    for tokens in &sessions {
        let (status, body) = crate::common::refresh_at(&http, &url, &tokens.refresh_token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        latest.push(Tokens::from_json(&body));
    }
    drop(child);
    // And after a restart on the same files, every answered rotation holds.
    let (_child, url) = start().await;
    for tokens in &latest {
        let (status, body) = crate::common::refresh_at(&http, &url, &tokens.refresh_token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}
