//! S4: revoke / logout kill the family at once; introspection says inactive.

use std::time::Duration;

use reqwest::StatusCode;

use crate::common::{CLIENT_ID, CLIENT_SECRET, PASSWORD, TestServer, Tokens, USER, assert_error};

async fn assert_dead(server: &TestServer, tokens: &Tokens) {
    let (status, body) = server.refresh(&tokens.refresh_token).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    // The access token is refused before its `exp`.
    let response = server.resource(&tokens.access_token).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        server.introspect(&tokens.refresh_token).await,
        serde_json::json!({"active": false})
    );
    assert_eq!(
        server.introspect(&tokens.access_token).await,
        serde_json::json!({"active": false})
    );
}

#[tokio::test]
async fn s4_logout_with_bearer_revokes_family() {
    let server = TestServer::start().await;
    let tokens = server.login().await;
    assert_eq!(
        server.introspect(&tokens.refresh_token).await["active"],
        true
    );
    assert_eq!(
        server.introspect(&tokens.access_token).await["active"],
        true
    );
    let response = server
        .http
        .post(format!("{}/auth/logout", server.url))
        .bearer_auth(&tokens.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_dead(&server, &tokens).await;
    // Idempotent.
    let again = server
        .http
        .post(format!("{}/auth/logout", server.url))
        .bearer_auth(&tokens.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn s4_logout_with_refresh_token_revokes_family() {
    let server = TestServer::start().await;
    let tokens = server.login().await;
    let response = server
        .http
        .post(format!("{}/auth/logout", server.url))
        .json(&serde_json::json!({"refresh_token": tokens.refresh_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_dead(&server, &tokens).await;
    let audit = server
        .server()
        .repository()
        .audit_events(Some(&tokens.sid()))
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].kind, "logout");
}

#[tokio::test]
async fn s4_oauth_revoke_takes_effect_at_once_without_grace() {
    let server = TestServer::start().await;
    let t1 = server.oauth_login().await;
    let (status, body) = server
        .oauth_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &t1.refresh_token),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let t2 = Tokens::from_json(&body);

    let (status, _) = server
        .oauth_form("/oauth/revoke", &[("token", &t2.refresh_token)])
        .await;
    assert_eq!(status, StatusCode::OK);
    // The parent is inside the grace window, but a revoked family has no grace.
    let (status, body) = server
        .oauth_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &t1.refresh_token),
            ],
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    assert_dead(&server, &t2).await;

    // Unknown and garbage tokens: still 200 (RFC 7009 §2.2).
    for token in ["nonsense", "rt1_AAAA", "a.b.c"] {
        let (status, _) = server
            .oauth_form("/oauth/revoke", &[("token", token)])
            .await;
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test]
async fn s4_revoking_an_access_token_ends_its_session() {
    let server = TestServer::start().await;
    // A client revokes tokens issued to it (RFC 7009 §2.1).
    let tokens = server.oauth_login().await;
    let (status, _) = server
        .oauth_form(
            "/oauth/revoke",
            &[
                ("token", &tokens.access_token),
                ("token_type_hint", "access_token"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_dead(&server, &tokens).await;
}

#[tokio::test]
async fn s4_operator_revocation_and_user_removal() {
    let server = TestServer::start().await;
    let a = server.login().await;
    assert!(
        server
            .server()
            .revoke_family_by_token(&a.refresh_token)
            .await
            .unwrap()
    );
    assert!(
        !server
            .server()
            .revoke_family_by_token(&a.refresh_token)
            .await
            .unwrap()
    );
    assert_dead(&server, &a).await;

    let b = server.login().await;
    assert!(server.server().remove_user(USER).await.unwrap());
    assert!(!server.server().remove_user(USER).await.unwrap());
    assert_dead(&server, &b).await;
    let (status, _) = server.login_as(USER, PASSWORD).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn s4_introspection_reports_live_tokens() {
    let server = TestServer::start().await;
    let t1 = server.login().await;
    let body = server.introspect(&t1.refresh_token).await;
    assert_eq!(body["active"], true);
    assert_eq!(body["sub"], USER);
    let t2 = server.refresh_ok(&t1.refresh_token).await;
    // The parent is still usable inside the grace window, then not.
    assert_eq!(server.introspect(&t1.refresh_token).await["active"], true);
    server.clock.advance(Duration::from_secs(11));
    assert_eq!(server.introspect(&t1.refresh_token).await["active"], false);
    assert_eq!(server.introspect(&t2.refresh_token).await["active"], true);
    // Introspection requires client authentication.
    let response = server
        .http
        .post(format!("{}/oauth/introspect", server.url))
        .basic_auth(CLIENT_ID, Some("wrong"))
        .form(&[("token", t2.refresh_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let _ = CLIENT_SECRET;
}
