//! S1 (parallel refreshes inside the grace window), S2 (reuse detection),
//! S5 (expired, idle and absolutely expired sessions).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;

use crate::common::{TestServer, Tokens, assert_error, http_client, refresh_at, test_config};

/// Fires `n` refreshes of `refresh_token` at once, each on its own warmed-up
/// connection, released together by a barrier. Returns (status, body) per request.
pub(crate) async fn parallel_refreshes(
    urls: &[String],
    refresh_token: &str,
    n: usize,
) -> Vec<(StatusCode, serde_json::Value)> {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let barrier = barrier.clone();
        let url = urls[i % urls.len()].clone();
        let token = refresh_token.to_owned();
        tasks.push(tokio::spawn(async move {
            let http = http_client();
            // Open the connection before the barrier so the refreshes race.
            let warm = http.get(format!("{url}/healthz")).send().await.unwrap();
            assert_eq!(warm.status(), StatusCode::OK);
            barrier.wait().await;
            refresh_at(&http, &url, &token).await
        }));
    }
    let mut results = Vec::with_capacity(n);
    for task in tasks {
        results.push(
            tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("refresh finished in time")
                .expect("task"),
        );
    }
    results
}

/// S1 on one server: all 200, one distinct successor, family one generation further.
pub(crate) async fn assert_s1(servers: &[&TestServer]) {
    let first = servers[0];
    let tokens = first.login().await;
    let before = first.family(&tokens).await.generation;
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    let results = parallel_refreshes(&urls, &tokens.refresh_token, 50).await;

    let mut successors = HashSet::new();
    let mut access_tokens = HashSet::new();
    for (status, body) in &results {
        assert_eq!(*status, StatusCode::OK, "body: {body}");
        let t = Tokens::from_json(body);
        successors.insert(t.refresh_token);
        access_tokens.insert(t.access_token);
    }
    assert_eq!(successors.len(), 1, "one byte-identical successor");
    assert_eq!(access_tokens.len(), 50, "a fresh access token per answer");
    let family = first.family(&tokens).await;
    assert_eq!(family.generation, before + 1, "exactly one rotation");
    assert!(family.revoked_at.is_none());

    let rotations: u64 = servers
        .iter()
        .map(|s| s.server().faults().rotations())
        .sum();
    let replays: u64 = servers
        .iter()
        .map(|s| s.server().faults().grace_replays())
        .sum();
    assert_eq!((rotations, replays), (1, 49));

    // The successor is live and rotates normally.
    let successor = successors.into_iter().next().unwrap();
    let next = first.refresh_ok(&successor).await;
    assert_ne!(next.refresh_token, successor);
    assert_eq!(first.family(&tokens).await.generation, before + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s1_parallel_refreshes_in_grace_share_one_successor() {
    let server = TestServer::start().await;
    assert_s1(&[&server]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s1_parent_inside_grace_gets_identical_successor_and_fresh_access_token() {
    let server = TestServer::start().await;
    let t1 = server.login().await;
    let t2 = server.refresh_ok(&t1.refresh_token).await;
    server.clock.advance(Duration::from_secs(9));
    let replay = server.refresh_ok(&t1.refresh_token).await;
    assert_eq!(
        replay.refresh_token, t2.refresh_token,
        "byte-identical successor"
    );
    assert_ne!(replay.access_token, t2.access_token, "fresh access token");
    assert_eq!(
        server.resource(&replay.access_token).await.status(),
        StatusCode::OK
    );
    // Nothing was written by the replay: the successor still rotates once.
    let t3 = server.refresh_ok(&t2.refresh_token).await;
    assert_eq!(server.family(&t3).await.generation, 3);
    assert_eq!(server.server().faults().grace_replays(), 1);
}

async fn assert_family_dead(server: &TestServer, live: &Tokens, sid: &str) {
    let (status, body) = server.refresh(&live.refresh_token).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    let response = server.resource(&live.access_token).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        server.introspect(&live.refresh_token).await["active"],
        false
    );
    let family = server
        .server()
        .repository()
        .load_family(sid)
        .await
        .unwrap()
        .unwrap();
    assert!(family.revoked_at.is_some());
    let audit = server
        .server()
        .repository()
        .audit_events(Some(sid))
        .await
        .unwrap();
    assert!(
        audit.iter().any(|e| e.kind == "reuse_detected"),
        "audit: {audit:?}"
    );
}

#[tokio::test]
async fn s2_parent_reuse_after_grace_revokes_family() {
    let server = TestServer::start().await;
    let t1 = server.login().await;
    let t2 = server.refresh_ok(&t1.refresh_token).await;
    server.clock.advance(Duration::from_secs(11));
    let (status, body) = server.refresh(&t1.refresh_token).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    assert_family_dead(&server, &t2, &t1.sid()).await;
    assert_eq!(server.server().faults().reuse_detections(), 1);
}

#[tokio::test]
async fn s2_grandparent_reuse_revokes_family() {
    let server = TestServer::start().await;
    let t1 = server.login().await;
    let t2 = server.refresh_ok(&t1.refresh_token).await;
    let t3 = server.refresh_ok(&t2.refresh_token).await;
    // Well inside the grace window: a grandparent is reuse at any time.
    let (status, body) = server.refresh(&t1.refresh_token).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    assert_family_dead(&server, &t3, &t1.sid()).await;
}

#[tokio::test]
async fn s2_zero_grace_makes_any_duplicate_reuse() {
    let mut config = test_config();
    config.grace_window = Duration::ZERO;
    let server = TestServer::start_with(config).await;
    let t1 = server.login().await;
    let t2 = server.refresh_ok(&t1.refresh_token).await;
    let (status, body) = server.refresh(&t1.refresh_token).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    assert_family_dead(&server, &t2, &t1.sid()).await;
}

#[tokio::test]
async fn s2_other_families_survive_a_reuse() {
    let server = TestServer::start().await;
    let victim = server.login().await;
    let bystander = server.login().await;
    let _ = server.refresh_ok(&victim.refresh_token).await;
    server.clock.advance(Duration::from_secs(60));
    let (status, _) = server.refresh(&victim.refresh_token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let next = server.refresh_ok(&bystander.refresh_token).await;
    assert_eq!(
        server.resource(&next.access_token).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn s5_idle_timeout_is_invalid_grant() {
    let mut config = test_config();
    config.idle_timeout = Duration::from_secs(3600);
    let server = TestServer::start_with(config).await;
    let t1 = server.login().await;
    // Use keeps the session alive...
    server.clock.advance(Duration::from_secs(3500));
    let t2 = server.refresh_ok(&t1.refresh_token).await;
    server.clock.advance(Duration::from_secs(3500));
    let t3 = server.refresh_ok(&t2.refresh_token).await;
    // ...idleness ends it.
    server.clock.advance(Duration::from_secs(3601));
    let (status, body) = server.refresh(&t3.refresh_token).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    assert_eq!(body["error_description"], "session idle timeout");
    assert_eq!(server.introspect(&t3.refresh_token).await["active"], false);
}

#[tokio::test]
async fn s5_absolute_lifetime_is_invalid_grant() {
    let mut config = test_config();
    config.idle_timeout = Duration::from_secs(3600);
    config.absolute_lifetime = Duration::from_secs(3 * 3600);
    let server = TestServer::start_with(config).await;
    let mut tokens = server.login().await;
    for _ in 0..3 {
        server.clock.advance(Duration::from_secs(50 * 60));
        tokens = server.refresh_ok(&tokens.refresh_token).await;
    }
    server.clock.advance(Duration::from_secs(31 * 60));
    let (status, body) = server.refresh(&tokens.refresh_token).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    assert_eq!(body["error_description"], "session expired");
}

#[tokio::test]
async fn s5_expired_access_token_is_refused() {
    let server = TestServer::start().await;
    let tokens = server.login().await;
    assert_eq!(
        server.resource(&tokens.access_token).await.status(),
        StatusCode::OK
    );
    server.clock.advance(Duration::from_secs(5 * 60));
    let response = server.resource(&tokens.access_token).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    // The session itself is fine: refreshing gives a working token.
    let fresh = server.refresh_ok(&tokens.refresh_token).await;
    assert_eq!(
        server.resource(&fresh.access_token).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn s5_unknown_or_forged_refresh_token_is_invalid_grant() {
    let server = TestServer::start().await;
    let other = TestServer::start().await;
    let foreign = other.login().await;
    for token in ["", "rt1_AAAA", "garbage", foreign.refresh_token.as_str()] {
        let (status, body) = server.refresh(token).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    }
}

/// RFC 6749 §6: a refresh token issued to an OAuth client is refreshed by that
/// client, authenticated — not through the first-party `/auth/refresh`, which
/// takes no client credentials; and a first-party token is not an OAuth
/// client's to refresh.
#[tokio::test]
async fn s6_client_bound_refresh_token_needs_its_client() {
    let server = TestServer::start().await;
    let oauth = server.oauth_login().await;
    let (status, body) = server.refresh(&oauth.refresh_token).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");

    let first_party = server.login().await;
    let (status, body) = server
        .oauth_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &first_party.refresh_token),
            ],
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    // Neither attempt spent anything: both still refresh where they belong.
    server.refresh_ok(&first_party.refresh_token).await;
    let (status, body) = server
        .oauth_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &oauth.refresh_token),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
