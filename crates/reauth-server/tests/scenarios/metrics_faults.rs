//! Fault injection, lab counters, `/metrics`, and the promise that logs and
//! `Debug` output never contain a token or a password.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::common::{PASSWORD, TestServer, test_config};

#[tokio::test]
async fn faults_fail_hang_delay_and_count() {
    let server = TestServer::start().await;
    let faults = server.server().faults().clone();
    let t1 = server.login().await;

    faults.fail_next_refreshes(
        2,
        StatusCode::SERVICE_UNAVAILABLE,
        Some(Duration::from_secs(3)),
    );
    for _ in 0..2 {
        let response = server
            .http
            .post(format!("{}/auth/refresh", server.url))
            .json(&serde_json::json!({"refresh_token": t1.refresh_token}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "3");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "temporarily_unavailable");
    }
    // The failed refreshes did not touch the session.
    let t2 = server.refresh_ok(&t1.refresh_token).await;

    faults.hang_next_refreshes(1);
    let hung = tokio::spawn({
        let http = server.http.clone();
        let url = format!("{}/auth/refresh", server.url);
        let token = t2.refresh_token.clone();
        async move {
            http.post(url)
                .json(&serde_json::json!({"refresh_token": token}))
                .send()
                .await
        }
    });
    // Wait (bounded) until the server holds the hung request, then give up on it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while faults.refresh_requests() < 4 {
        assert!(Instant::now() < deadline, "the hung refresh never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!hung.is_finished(), "a hung refresh gets no answer");
    hung.abort();
    let t3 = server.refresh_ok(&t2.refresh_token).await;

    faults.set_resource_delay(Duration::from_millis(50));
    let start = Instant::now();
    assert_eq!(
        server.resource(&t3.access_token).await.status(),
        StatusCode::OK
    );
    assert!(start.elapsed() >= Duration::from_millis(50));
    faults.clear();

    let counters = faults.counters();
    assert_eq!(counters.refresh_requests, 5);
    assert_eq!(counters.rotations, 2);
    assert_eq!(counters.grace_replays, 0);
    assert_eq!(counters.reuse_detections, 0);
    assert_eq!(counters.resource_requests, 1);
}

#[tokio::test]
async fn metrics_endpoint_exposes_prometheus_text() {
    let server = TestServer::start().await;
    let t1 = server.login().await;
    let _t2 = server.refresh_ok(&t1.refresh_token).await;
    let _replay = server.refresh_ok(&t1.refresh_token).await;
    let response = server
        .http
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    for needle in [
        "reauth_logins_total{outcome=\"success\"}",
        "reauth_refreshes_total{outcome=\"rotated\"}",
        "reauth_refreshes_total{outcome=\"grace_replay\"}",
        "reauth_grace_replays_total",
        "reauth_http_request_duration_seconds_bucket",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
    let health = server
        .http
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// One thread: every server task logs through the thread-local subscriber.
#[tokio::test(flavor = "current_thread")]
async fn logs_and_debug_output_never_contain_secrets() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = TestServer::start().await;
    let t1 = server.login().await;
    let t2 = server.refresh_ok(&t1.refresh_token).await;
    let _ = server.login_as("alice", "not-the-password").await;
    server.clock.advance(Duration::from_secs(11));
    let _ = server.refresh(&t1.refresh_token).await; // reuse: warning logged
    let _ = server.resource(&t2.access_token).await;
    let (status, _) = server
        .oauth_form(
            "/oauth/token",
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("reuse detected"),
        "the reuse warning was logged:\n{logs}"
    );
    for secret in [
        PASSWORD,
        "not-the-password",
        crate::common::CLIENT_SECRET,
        &t1.refresh_token,
        &t2.refresh_token,
        &t1.access_token,
        &t2.access_token,
    ] {
        assert!(!logs.contains(secret), "a secret leaked into the logs");
    }
    let debug = format!("{:?} {:?}", test_config(), server.server());
    assert!(!debug.contains(crate::common::CLIENT_SECRET), "{debug}");
    assert!(debug.contains("[redacted]"));
}

// One thread: every server task logs through the thread-local subscriber.
#[tokio::test(flavor = "current_thread")]
async fn o6_a_flood_of_failed_logins_writes_a_bounded_number_of_log_lines() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut config = test_config();
    config.login_rate_limit.burst = 0; // every attempt reaches the password check
    config.login_account_limit.burst = 0;
    config.limits.password_hash_queue = 1_000;
    let server = TestServer::start_with(config).await;
    let floods = 1_000;
    for _ in 0..floods / 50 {
        let batch = (0..50).map(|_| server.login_as("nobody", "guess"));
        for (status, body) in futures::future::join_all(batch).await {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        }
    }
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines = logs.matches("login failed").count();
    // At most 10 lines a second: the flood would have to take 50 s to
    // write half its events.
    assert!(lines >= 1, "the failures are logged:\n{logs}");
    assert!(
        lines < floods / 2,
        "{lines} lines for {floods} failed logins"
    );
}

#[test]
fn o6_debug_of_a_config_hides_the_database_password() {
    let mut config = test_config();
    config.database_url = "postgres://app:hunter2@db.local/reauth".to_owned();
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(
        shown.contains("postgres://app:***@db.local/reauth"),
        "{shown}"
    );
}
