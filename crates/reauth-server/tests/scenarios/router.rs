//! The router works without a listener (`tower::ServiceExt::oneshot`), as an
//! embedding application or a unit test would use it.

use axum::body::Body;
use http::{Request, StatusCode};
use tower::ServiceExt;

use crate::common::test_config;

#[tokio::test]
async fn router_serves_oneshot_requests() {
    let server = reauth_server::Server::new(test_config()).await.unwrap();
    server.add_user("carol", "pw").await.unwrap();
    let router = server.router();

    let login = Request::post("/auth/login")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"username":"carol","password":"pw"}"#))
        .unwrap();
    let response = router.clone().oneshot(login).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 300);
    let access = body["access_token"].as_str().unwrap();
    // Without a listener the issuer is http://localhost.
    assert_eq!(crate::common::claims(access)["iss"], "http://localhost");

    let resource = Request::get("/api/resources")
        .header("authorization", format!("Bearer {access}"))
        .body(Body::empty())
        .unwrap();
    let response = router.clone().oneshot(resource).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let users = server.list_users().await.unwrap();
    assert_eq!(
        users
            .iter()
            .map(|u| u.username.as_str())
            .collect::<Vec<_>>(),
        ["carol"]
    );
    assert!(matches!(
        server.add_user("carol", "again").await,
        Err(reauth_server::ServerError::UserExists(_))
    ));
    assert!(matches!(
        server.add_user("", "x").await,
        Err(reauth_server::ServerError::InvalidUsername)
    ));
}

#[tokio::test]
async fn s6_unknown_path_or_method_gets_an_rfc6749_body() {
    let server = reauth_server::Server::new(test_config()).await.unwrap();
    let router = server.router();
    for (request, status) in [
        (
            Request::get("/no/such/thing").body(Body::empty()).unwrap(),
            StatusCode::NOT_FOUND,
        ),
        (
            Request::get("/oauth/token").body(Body::empty()).unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ] {
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), status);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "invalid_request", "{body}");
    }
}

#[tokio::test]
async fn unreadable_key_file_and_bad_database_url_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    std::fs::write(&path, "{}").unwrap();
    let mut config = test_config();
    config.keys = reauth_server::KeySource::File(path);
    assert!(matches!(
        reauth_server::Server::new(config).await,
        Err(reauth_server::ServerError::KeyFile { .. })
    ));
    let mut config = test_config();
    config.database_url = "mysql://nope".into();
    assert!(matches!(
        reauth_server::Server::new(config).await,
        Err(reauth_server::ServerError::Config(_))
    ));
}
