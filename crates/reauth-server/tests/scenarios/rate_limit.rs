//! S9: login brute force is rate limited with `429` and `Retry-After`.

use std::time::Duration;

use reqwest::StatusCode;

use crate::common::{PASSWORD, TestServer, USER, assert_error};

#[tokio::test]
async fn s9_login_brute_force_is_rate_limited() {
    let server = TestServer::start().await;
    server.server().add_user("bob", "builder").await.unwrap();
    for _ in 0..10 {
        let (status, body) = server.login_as(USER, "guess").await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    }
    // Budget spent: even the right password is refused until it refills.
    let response = server
        .http
        .post(format!("{}/auth/login", server.url))
        .json(&serde_json::json!({"username": USER, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=6).contains(&retry_after), "Retry-After {retry_after}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");

    // Other accounts are not locked out by it.
    let (status, _) = server.login_as("bob", "builder").await;
    assert_eq!(status, StatusCode::OK);

    // After Retry-After, one attempt is available again.
    server.clock.advance(Duration::from_secs(retry_after));
    let (status, _) = server.login_as(USER, PASSWORD).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn s9_password_grant_brute_force_is_rate_limited() {
    let server = TestServer::start().await;
    let mut last = StatusCode::OK;
    let mut limited_after = None;
    for attempt in 1..=20 {
        let (status, body) = server
            .oauth_form(
                "/oauth/token",
                &[
                    ("grant_type", "password"),
                    ("username", USER),
                    ("password", "guess"),
                ],
            )
            .await;
        last = status;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(body["error"], "temporarily_unavailable");
            limited_after = Some(attempt);
            break;
        }
        assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited_after, Some(11));
}
