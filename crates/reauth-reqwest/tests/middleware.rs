//! The DESIGN §3.2 rows that involve requests, end to end through
//! `AuthMiddleware` over real HTTP on loopback.
//!
//! Real sockets, so real time: no timing assertions, no sleeping to wait for
//! something (barriers and channels instead), and a generous deadlock guard.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{AuthServer, client, within_a_minute};
use futures::StreamExt;
use reauth::{EndReason, RefreshAhead, RetryPolicy, Session, SessionEvent, TokenSet};
use reauth_reqwest::{AuthMiddleware, Error, OAuth2Refresher, WithoutBearer};
use reqwest::StatusCode;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const BURST: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c1_burst_of_401s_through_middleware_refreshes_once() {
    let server = AuthServer::start().await;
    let session = server.session("broken").await;
    let client = client(&session, &server.url("/"));
    // Every one of the burst must reach the server with the broken token
    // before any 401 comes back: the refusals wait for each other.
    server.gate_refusals(BURST);

    let requests = (0..BURST).map(|_| {
        let client = client.clone();
        let url = server.url("/api/resource");
        tokio::spawn(async move { client.get(url).send().await })
    });
    let responses = within_a_minute(futures::future::join_all(requests)).await;

    for r in responses {
        let r = r.unwrap().unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.text().await.unwrap(), "ok");
    }
    assert_eq!(
        server.refreshes(),
        1,
        "exactly one refresh for the whole burst"
    );
    let bearers = server.bearers("/api/resource");
    assert_eq!(
        bearers.iter().filter(|b| *b == "Bearer broken").count(),
        BURST,
        "each request was refused once"
    );
    assert_eq!(
        bearers.iter().filter(|b| *b == "Bearer access-1").count(),
        BURST,
        "and replayed once with the new token"
    );
    assert_eq!(bearers.len(), 2 * BURST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c3_late_401_replays_with_newer_token_without_refresh() {
    let server = AuthServer::start().await;
    let session = server.session("access-0").await;
    let client = client(&session, &server.url("/"));
    let mut arrivals = server.slow_arrivals();

    // A: goes out with access-0 and is held by the server.
    let late = tokio::spawn({
        let client = client.clone();
        let url = server.url("/api/slow");
        async move { client.get(url).send().await }
    });
    assert_eq!(
        within_a_minute(arrivals.recv()).await.unwrap(),
        "Bearer access-0"
    );

    // Meanwhile access-0 expires and B's 401 refreshes it: generation 2 is published.
    server.expire_access_token();
    let b = within_a_minute(client.get(server.url("/api/resource")).send())
        .await
        .unwrap();
    assert_eq!(b.status(), StatusCode::OK);
    assert_eq!(server.refreshes(), 1);

    // A's 401 for access-0 now arrives late: replayed with access-1, no new refresh.
    server.release_slow();
    let a = within_a_minute(late).await.unwrap().unwrap();
    assert_eq!(a.status(), StatusCode::OK);
    assert_eq!(server.refreshes(), 1, "a late 401 must not refresh again");
    assert_eq!(
        server.bearers("/api/slow"),
        ["Bearer access-0", "Bearer access-1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c10_replay_refused_again_is_returned_without_second_refresh() {
    let server = AuthServer::start().await;
    let session = server.session("broken").await;
    let mut events = session.events();
    let client = client(&session, &server.url("/"));

    let r = within_a_minute(client.get(server.url("/api/always-401")).send())
        .await
        .unwrap();

    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "the replay's 401 is returned as is"
    );
    assert_eq!(
        server.bearers("/api/always-401"),
        ["Bearer broken", "Bearer access-1"],
        "one replay, no loop"
    );
    assert_eq!(
        server.refreshes(),
        1,
        "no second refresh for the replay's 401"
    );
    let replay_rejected = std::iter::from_fn(|| events.try_next())
        .filter(|e| matches!(e, SessionEvent::ReplayRejected { .. }))
        .count();
    assert_eq!(replay_rejected, 1, "the refused replay is reported once");
    // The session is intact: other requests go on with the new token.
    let ok = within_a_minute(client.get(server.url("/api/resource")).send())
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(server.refreshes(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c11_stream_body_is_not_replayed_but_session_refreshes() {
    let server = AuthServer::start().await;
    let session = server.session("broken").await;
    let client = client(&session, &server.url("/"));

    // A streaming body can be sent only once (`try_clone` is `None`).
    let body = reqwest::Body::wrap(String::from("a large upload"));
    let r = within_a_minute(client.post(server.url("/api/upload")).body(body).send())
        .await
        .unwrap();

    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "the caller gets the 401"
    );
    assert_eq!(
        server.bearers("/api/upload"),
        ["Bearer broken"],
        "not replayed"
    );
    // The session was told: the next request waits for the refresh and goes
    // out with the new token at once, without another 401 round trip.
    let next = within_a_minute(client.get(server.url("/api/resource")).send())
        .await
        .unwrap();
    assert_eq!(next.status(), StatusCode::OK);
    assert_eq!(server.bearers("/api/resource"), ["Bearer access-1"]);
    assert_eq!(server.refreshes(), 1);

    // A replayable body is replayed, for contrast.
    server.expire_access_token();
    let r = within_a_minute(client.post(server.url("/api/upload")).body("small").send())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        server.bearers("/api/upload"),
        ["Bearer broken", "Bearer access-1", "Bearer access-2"]
    );
}

fn token_response(n: u32) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "access_token": format!("access-{n}"),
        "refresh_token": format!("refresh-{n}"),
        "token_type": "Bearer",
        "expires_in": 300,
    }))
}

/// A resource at `/api` accepting only `Bearer access-1`.
async fn mount_api(mock: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/api"))
        .and(header("authorization", "Bearer access-1"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .with_priority(1)
        .mount(mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/api"))
        .respond_with(
            ResponseTemplate::new(401)
                .insert_header("www-authenticate", r#"Bearer error="invalid_token""#),
        )
        .with_priority(2)
        .mount(mock)
        .await;
}

async fn hits(mock: &MockServer, p: &str) -> usize {
    mock.received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == p)
        .count()
}

async fn wiremock_session(mock: &MockServer, retry: RetryPolicy) -> Session {
    let refresher = OAuth2Refresher::new(
        format!("{}/oauth/token", mock.uri()).parse().unwrap(),
        "client",
    );
    let session = Session::builder(refresher)
        .refresh_ahead(RefreshAhead::disabled())
        .retry(retry)
        .build();
    session
        .start(TokenSet::new("broken").with_refresh_token("refresh-0"))
        .await
        .unwrap();
    session
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c5_transient_refresh_failure_is_retried_through_middleware() {
    let mock = MockServer::start().await;
    mount_api(&mock).await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(token_response(1))
        .with_priority(2)
        .mount(&mock)
        .await;
    let session = wiremock_session(&mock, RetryPolicy::default()).await;
    let mut events = session.events();
    let client = common::client(&session, &mock.uri());

    let r = within_a_minute(client.get(format!("{}/api", mock.uri())).send())
        .await
        .unwrap();

    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the request succeeded after the refresh was retried"
    );
    assert_eq!(hits(&mock, "/oauth/token").await, 2);
    let mut retried = Vec::new();
    while let Some(e) = within_a_minute(events.next()).await {
        match e {
            SessionEvent::RefreshRetrying { delay, .. } => retried.push(delay),
            SessionEvent::Refreshed { .. } => break,
            SessionEvent::SessionEnded { .. } => {
                panic!("a transient failure must not end the session")
            }
            _ => {}
        }
    }
    assert_eq!(retried.len(), 1);
    assert!(
        retried[0] >= std::time::Duration::from_secs(1),
        "Retry-After honoured: {:?}",
        retried[0]
    );
    assert!(session.is_active());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c5_refresh_unavailable_is_a_typed_error_and_the_next_call_tries_again() {
    let mock = MockServer::start().await;
    mount_api(&mock).await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(token_response(1))
        .with_priority(2)
        .mount(&mock)
        .await;
    let retry = RetryPolicy::default()
        .with_max_attempts(2)
        .with_initial_backoff(std::time::Duration::from_millis(10));
    let session = wiremock_session(&mock, retry).await;
    let client = common::client(&session, &mock.uri());

    let err = within_a_minute(client.get(format!("{}/api", mock.uri())).send())
        .await
        .unwrap_err();
    let session_err = Error::session_error(&err).expect("a typed session error");
    assert!(
        matches!(session_err, reauth::Error::RefreshUnavailable { .. }),
        "{session_err:?}"
    );
    assert!(session.is_active(), "still logged in");

    let r = within_a_minute(client.get(format!("{}/api", mock.uri())).send())
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(hits(&mock, "/oauth/token").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c6_rejected_refresh_ends_session_once_through_middleware() {
    let mock = MockServer::start().await;
    mount_api(&mock).await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(serde_json::json!({"error": "invalid_grant"})),
        )
        .mount(&mock)
        .await;
    let ended = Arc::new(AtomicUsize::new(0));
    let refresher = OAuth2Refresher::new(
        format!("{}/oauth/token", mock.uri()).parse().unwrap(),
        "client",
    );
    let session = Session::builder(refresher)
        .refresh_ahead(RefreshAhead::disabled())
        .on_session_ended({
            let ended = Arc::clone(&ended);
            move |_| {
                ended.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build();
    session
        .start(TokenSet::new("broken").with_refresh_token("refresh-0"))
        .await
        .unwrap();
    let mut events = session.events();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(AuthMiddleware::new(
            session.clone(),
            mock.uri().parse().unwrap(),
        ))
        .build();

    let requests = (0..20).map(|_| {
        let client = client.clone();
        let url = format!("{}/api", mock.uri());
        tokio::spawn(async move { client.get(url).send().await })
    });
    for r in within_a_minute(futures::future::join_all(requests)).await {
        let err = r.unwrap().unwrap_err();
        assert!(
            matches!(
                Error::session_error(&err),
                Some(reauth::Error::SessionEnded(EndReason::RefreshRejected))
            ),
            "{err:?}"
        );
    }
    loop {
        match within_a_minute(events.next()).await {
            Some(SessionEvent::SessionEnded { reason }) => {
                break assert_eq!(reason, EndReason::RefreshRejected);
            }
            Some(_) => {}
            None => panic!("no SessionEnded event"),
        }
    }
    assert_eq!(
        hits(&mock, "/oauth/token").await,
        1,
        "one refresh attempt, no loop"
    );
    assert!(!session.is_active());

    // Later calls fail fast, without network.
    let api_hits = hits(&mock, "/api").await;
    let err = client
        .get(format!("{}/api", mock.uri()))
        .send()
        .await
        .unwrap_err();
    assert!(Error::session_error(&err).is_some_and(reauth::Error::is_session_ended));
    assert_eq!(hits(&mock, "/api").await, api_hits);
    assert_eq!(hits(&mock, "/oauth/token").await, 1);
    assert_eq!(
        ended.load(Ordering::SeqCst),
        1,
        "the end is reported exactly once"
    );
    let more_ends = std::iter::from_fn(|| events.try_next())
        .filter(|e| matches!(e, SessionEvent::SessionEnded { .. }))
        .count();
    assert_eq!(more_ends, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c22_the_bearer_goes_only_to_allowed_origins_and_can_be_withheld() {
    let server = AuthServer::start().await;
    let session = server.session("access-0").await;
    // Another service on loopback: another origin (another port).
    let other = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&other)
        .await;
    let client = client(&session, &server.url("/"));

    let to_api = within_a_minute(client.get(server.url("/api/resource")).send())
        .await
        .unwrap();
    assert_eq!(to_api.status(), StatusCode::OK);
    assert_eq!(server.bearers("/api/resource"), ["Bearer access-0"]);

    let elsewhere = within_a_minute(client.get(format!("{}/collect", other.uri())).send())
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::OK);
    let seen = other.received_requests().await.unwrap();
    assert_eq!(seen.len(), 1);
    assert!(
        !seen[0].headers.contains_key("authorization"),
        "another origin got the bearer"
    );

    // Opted out: no bearer, and its 401 is neither refreshed for nor replayed.
    let withheld = within_a_minute(
        client
            .get(server.url("/api/resource"))
            .with_extension(WithoutBearer)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(withheld.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.bearers("/api/resource"), ["Bearer access-0", ""]);
    assert_eq!(server.refreshes(), 0);
}

#[test]
fn c22_origins_compare_scheme_host_and_port() {
    let session = Session::builder(reauth::refresh_fn(|t: TokenSet| async move { Ok(t) })).build();
    let m = AuthMiddleware::new(session, "https://api.example.com/v1/".parse().unwrap())
        .allow_origin("https://files.example.com".parse().unwrap());
    let allows = |u: &str| m.allows(&u.parse().unwrap());
    assert!(allows("https://api.example.com/v2/anything?x=1"));
    assert!(allows("https://api.example.com:443/"));
    assert!(allows("https://files.example.com/upload"));
    assert!(!allows("http://api.example.com/"), "another scheme");
    assert!(!allows("https://api.example.com:8443/"), "another port");
    assert!(!allows("https://evil.example.com/"), "another host");
    assert!(!allows("https://api.example.com.evil.test/"));
    assert!(!allows("data:text/plain,hi"), "an opaque origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c22_a_401_from_another_origin_after_a_redirect_refreshes_nothing() {
    // The API redirects to another origin, which answers 401: that is not a
    // verdict on our token (it never saw it), so no refresh, no replay.
    let api = MockServer::start().await;
    let other = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/moved"))
        .respond_with(
            ResponseTemplate::new(302).insert_header("location", format!("{}/login", other.uri())),
        )
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(401)
                .insert_header("www-authenticate", r#"Bearer error="invalid_token""#),
        )
        .mount(&other)
        .await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(token_response(1))
        .mount(&api)
        .await;
    let session = wiremock_session(&api, RetryPolicy::never()).await;
    let client = client(&session, &api.uri());

    let got = within_a_minute(client.get(format!("{}/api/moved", api.uri())).send())
        .await
        .unwrap();
    assert_eq!(got.status(), StatusCode::UNAUTHORIZED, "returned as is");
    assert_eq!(hits(&api, "/oauth/token").await, 0, "no refresh");
    assert_eq!(hits(&api, "/api/moved").await, 1, "no replay");
    let seen = other.received_requests().await.unwrap();
    assert_eq!(seen.len(), 1);
    assert!(
        !seen[0].headers.contains_key("authorization"),
        "the other origin never got the bearer"
    );
    assert_eq!(
        session.access_token().await.unwrap().token().secret(),
        "broken",
        "the token was not marked refused"
    );
}
