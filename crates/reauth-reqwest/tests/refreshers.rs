//! The HTTP refreshers against wiremock on loopback: what they send, and how
//! every kind of answer is classified.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reauth::{Clock, RefreshAhead, RefreshError, RefreshErrorKind, Refresher, Session, TokenSet};
use reauth_reqwest::{
    ClientAuth, ClientCredentialsRefresher, Expiry, JsonRefresher, OAuth2Refresher, RefreshTokenIn,
};
use serde_json::json;
use wiremock::matchers::{body_json, body_string, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// A clock stopped at a fixed instant.
#[derive(Clone, Copy)]
struct FixedClock(SystemTime);

impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        self.0
    }
}

fn t0() -> SystemTime {
    // Wed, 21 Oct 2015 07:28:00 GMT
    UNIX_EPOCH + Duration::from_secs(1_445_412_480)
}

fn current() -> TokenSet {
    TokenSet::new("a0").with_refresh_token("r0")
}

fn oauth2(mock: &MockServer, p: &str) -> OAuth2Refresher {
    OAuth2Refresher::new(format!("{}{p}", mock.uri()).parse().unwrap(), "client")
        .client_secret("secret")
}

async fn requests(mock: &MockServer) -> Vec<Request> {
    mock.received_requests().await.unwrap()
}

#[tokio::test]
async fn oauth2_error_bodies_map_to_failure_classes() {
    use RefreshErrorKind::{Misconfigured, Rejected, Transient};
    let mock = MockServer::start().await;
    let error = |status: u16, code: &str| {
        ResponseTemplate::new(status).set_body_json(json!({"error": code}))
    };
    let cases: Vec<(&str, ResponseTemplate, RefreshErrorKind, Option<Duration>)> = vec![
        ("invalid_grant", error(400, "invalid_grant"), Rejected, None),
        (
            "invalid_client",
            error(401, "invalid_client"),
            Misconfigured,
            None,
        ),
        (
            "unauthorized_client",
            error(400, "unauthorized_client"),
            Misconfigured,
            None,
        ),
        (
            "unsupported_grant_type",
            error(400, "unsupported_grant_type"),
            Misconfigured,
            None,
        ),
        (
            "invalid_scope",
            error(400, "invalid_scope"),
            Misconfigured,
            None,
        ),
        (
            "invalid_request",
            error(400, "invalid_request"),
            Misconfigured,
            None,
        ),
        (
            "unknown_code_400",
            error(400, "something_else"),
            Rejected,
            None,
        ),
        ("bare_401", ResponseTemplate::new(401), Rejected, None),
        ("not_found", ResponseTemplate::new(404), Misconfigured, None),
        (
            "unavailable",
            ResponseTemplate::new(503).insert_header("retry-after", "7"),
            Transient,
            Some(Duration::from_secs(7)),
        ),
        (
            "too_many",
            ResponseTemplate::new(429)
                .insert_header("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT"),
            Transient,
            Some(Duration::from_secs(30)),
        ),
        (
            "server_error",
            ResponseTemplate::new(500).set_body_string("<html>oops</html>"),
            Transient,
            None,
        ),
        (
            "html_200",
            ResponseTemplate::new(200).set_body_string("<html>login</html>"),
            Misconfigured,
            None,
        ),
        (
            "no_access_token",
            ResponseTemplate::new(200).set_body_json(json!({"token": "x"})),
            Misconfigured,
            None,
        ),
    ];
    for (name, response, _, _) in &cases {
        Mock::given(path(format!("/{name}")))
            .respond_with(response.clone())
            .mount(&mock)
            .await;
    }
    for (name, _, kind, retry_after) in cases {
        let refresher = oauth2(&mock, &format!("/{name}")).clock(FixedClock(t0()));
        let err = refresher.refresh(&current()).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{name}: {err}");
        assert_eq!(err.retry_after(), retry_after, "{name}");
    }
}

#[tokio::test]
async fn oauth2_refresh_sends_rfc6749_form_with_basic_auth_of_urlencoded_credentials() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        // base64("client%3A1+%C3%BC:s+e%2Fc%2Br%25t"), computed independently.
        .and(header("authorization", "Basic Y2xpZW50JTNBMSslQzMlQkM6cytlJTJGYyUyQnIlMjV0"))
        .and(body_string("grant_type=refresh_token&refresh_token=r0&scope=read+write"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "a1", "refresh_token": "r1", "token_type": "Bearer", "expires_in": 60, "scope": "read write"
        })))
        .expect(1)
        .mount(&mock)
        .await;
    let refresher = OAuth2Refresher::new(
        format!("{}/token", mock.uri()).parse().unwrap(),
        "client:1 ü",
    )
    .client_secret("s e/c+r%t")
    .client_auth(ClientAuth::Basic)
    .scope("read write");

    let t = refresher.refresh(&current()).await.unwrap();

    assert_eq!(t.access_token.secret(), "a1");
    assert_eq!(t.refresh_token.as_ref().unwrap().secret(), "r1");
    assert_eq!(t.scope.as_deref(), Some("read write"));
}

#[tokio::test]
async fn oauth2_client_secret_post_puts_credentials_in_the_form() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string(
            "grant_type=refresh_token&refresh_token=r0&client_id=client&client_secret=s%26cret",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"access_token": "a1"})))
        .expect(1)
        .mount(&mock)
        .await;
    let refresher =
        OAuth2Refresher::new(format!("{}/token", mock.uri()).parse().unwrap(), "client")
            .client_secret("s&cret")
            .client_auth(ClientAuth::Post);

    let t = refresher.refresh(&current()).await.unwrap();

    assert_eq!(t.access_token.secret(), "a1");
    assert!(
        t.refresh_token.is_none(),
        "absent → None; the session keeps the old one (C12)"
    );
    assert!(
        requests(&mock).await[0]
            .headers
            .get("authorization")
            .is_none()
    );
}

#[tokio::test]
async fn expires_in_becomes_expires_at_by_the_injected_clock() {
    let mock = MockServer::start().await;
    Mock::given(path("/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "a1", "expires_in": 300})),
        )
        .mount(&mock)
        .await;
    let t = oauth2(&mock, "/token")
        .clock(FixedClock(t0()))
        .refresh(&current())
        .await
        .unwrap();
    assert_eq!(t.expires_at, Some(t0() + Duration::from_secs(300)));

    // Or by the session runtime's clock, so expiry follows the session's (possibly virtual) time.
    let runtime = reauth::Runtime::new(
        FixedClock(t0() + Duration::from_secs(10)),
        reauth::TokioSleep,
        reauth::TokioSpawn,
        reauth::NoJitter,
    );
    let t = oauth2(&mock, "/token")
        .clock(runtime.clock())
        .refresh(&current())
        .await
        .unwrap();
    assert_eq!(t.expires_at, Some(t0() + Duration::from_secs(310)));
}

#[tokio::test]
async fn oauth2_refresh_without_refresh_token_is_rejected_without_network() {
    let mock = MockServer::start().await;
    let err = oauth2(&mock, "/token")
        .refresh(&TokenSet::new("a0"))
        .await
        .unwrap_err();
    assert!(err.is_rejected());
    assert!(requests(&mock).await.is_empty());
}

#[tokio::test]
async fn unreachable_token_endpoint_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let refresher = OAuth2Refresher::new(format!("http://{addr}/token").parse().unwrap(), "client");
    let err = refresher.refresh(&current()).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn oauth2_password_grant_logs_in() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string(
            "grant_type=password&username=alice&password=p%40ss+word",
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "a0", "refresh_token": "r0"})),
        )
        .mount(&mock)
        .await;
    let refresher = oauth2(&mock, "/token").client_auth(ClientAuth::Basic);
    let t = refresher
        .password_grant("alice", "p@ss word")
        .await
        .unwrap();
    assert_eq!(t.refresh_token.unwrap().secret(), "r0");

    let wrong = oauth2(&mock, "/nope")
        .password_grant("alice", "x")
        .await
        .unwrap_err();
    assert!(wrong.is_misconfigured(), "404: wrong URL");
}

#[tokio::test]
async fn logout_revokes_the_refresh_token_per_rfc7009() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/revoke"))
        .and(body_string(
            "token=r0&token_type_hint=refresh_token&client_id=client&client_secret=secret",
        ))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&mock)
        .await;
    let refresher = oauth2(&mock, "/token")
        .client_auth(ClientAuth::Post)
        .revocation_url(format!("{}/revoke", mock.uri()).parse().unwrap());
    let session = Session::builder(refresher)
        .refresh_ahead(RefreshAhead::disabled())
        .build();
    session.start(current()).await.unwrap();

    session.logout().await.unwrap();

    assert_eq!(requests(&mock).await.len(), 1);
}

#[tokio::test]
async fn json_refresher_article_shape_by_configuration_alone() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/refresh"))
        .and(body_json(json!({"refreshToken": "r0"})))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"authorizationToken": "a1", "refreshToken": "r1"})),
        )
        .expect(1)
        .mount(&mock)
        .await;
    let refresher = JsonRefresher::new(format!("{}/auth/refresh", mock.uri()).parse().unwrap())
        .refresh_token_in(RefreshTokenIn::JsonField("refreshToken".into()))
        .access_token_field("authorizationToken")
        .refresh_token_field("refreshToken");
    let session = Session::builder(refresher)
        .refresh_ahead(RefreshAhead::disabled())
        .build();
    session.start(current()).await.unwrap();

    let sent = session.access_token().await.unwrap();
    let fresh = session.invalidate(&sent).await.unwrap();

    assert_eq!(fresh.token().secret(), "a1");
    let tokens = session.tokens().unwrap();
    assert_eq!(tokens.refresh_token.unwrap().secret(), "r1");
    assert_eq!(
        tokens.expires_at, None,
        "no expiry known: refreshed on refusal only"
    );
}

#[tokio::test]
async fn json_refresher_classifies_errors_and_logs_in() {
    let mock = MockServer::start().await;
    Mock::given(path("/auth/refresh"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"message": "expired"})))
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/auth/login"))
        .and(body_json(json!({"username": "alice", "password": "pw"})))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": {"token": "a0", "renew": "r0", "ttl": 60}})),
        )
        .mount(&mock)
        .await;
    let refresher = JsonRefresher::new(format!("{}/auth/refresh", mock.uri()).parse().unwrap())
        .access_token_field("/data/token")
        .refresh_token_field("/data/renew")
        .expiry(Expiry::Seconds("/data/ttl".into()))
        .clock(FixedClock(t0()));

    let err = refresher.refresh(&current()).await.unwrap_err();
    assert!(err.is_rejected(), "{err}");

    let login_url = format!("{}/auth/login", mock.uri()).parse().unwrap();
    let t = refresher
        .login(login_url, &json!({"username": "alice", "password": "pw"}))
        .await
        .unwrap();
    assert_eq!(t.access_token.secret(), "a0");
    assert_eq!(t.refresh_token.unwrap().secret(), "r0");
    assert_eq!(t.expires_at, Some(t0() + Duration::from_secs(60)));
}

#[tokio::test]
async fn client_credentials_reacquires_without_a_refresh_token() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(header("authorization", "Basic c3ZjOnNlY3JldA==")) // svc:secret
        .and(body_string(
            "grant_type=client_credentials&scope=reports%3Aread",
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "cc", "expires_in": 3600})),
        )
        .expect(2)
        .mount(&mock)
        .await;
    let refresher = ClientCredentialsRefresher::new(
        format!("{}/token", mock.uri()).parse().unwrap(),
        "svc",
        "secret",
    )
    .scope("reports:read");
    let session = Session::builder(refresher.clone())
        .refresh_ahead(RefreshAhead::disabled())
        .build();
    session
        .start(refresher.fetch().await.unwrap())
        .await
        .unwrap();

    let sent = session.access_token().await.unwrap();
    let fresh = session.invalidate(&sent).await.unwrap();

    assert_eq!(fresh.token().secret(), "cc");
    assert!(fresh.generation() > sent.generation());
    assert!(session.tokens().unwrap().refresh_token.is_none());
}

#[tokio::test]
async fn client_credentials_refused_is_misconfiguration_not_logout() {
    let mock = MockServer::start().await;
    Mock::given(path("/token"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&mock)
        .await;
    let refresher = ClientCredentialsRefresher::new(
        format!("{}/token", mock.uri()).parse().unwrap(),
        "svc",
        "wrong",
    );
    let err: RefreshError = refresher.fetch().await.unwrap_err();
    assert!(err.is_misconfigured(), "{err}");
}

#[test]
fn refreshers_never_print_secrets() {
    let url: url::Url = "http://127.0.0.1:1/token".parse().unwrap();
    let a = format!(
        "{:?}",
        OAuth2Refresher::new(url.clone(), "id").client_secret("hunter2")
    );
    let b = format!(
        "{:?}",
        ClientCredentialsRefresher::new(url, "id", "hunter2")
    );
    assert!(!a.contains("hunter2") && !b.contains("hunter2"), "{a} {b}");
}

#[tokio::test]
async fn c7_an_unsupported_url_scheme_is_a_misconfiguration_not_a_panic() {
    for url in ["ftp://example.invalid/token", "file:///etc/passwd"] {
        let refresher = OAuth2Refresher::new(url.parse().unwrap(), "client");
        let err = refresher
            .refresh(&TokenSet::new("a").with_refresh_token("r"))
            .await
            .unwrap_err();
        assert_eq!(
            err.kind(),
            reauth::RefreshErrorKind::Misconfigured,
            "{url}: {err}"
        );
    }
}

#[tokio::test]
async fn https_token_endpoints_are_spoken_to_in_tls_by_default() {
    // A listener that records the first byte a client sends: a TLS
    // handshake record starts with 0x16. (A build without TLS never gets
    // there, or sends a plaintext request: the secrets in clear.)
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let first = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut byte = [0u8; 1];
        conn.read_exact(&mut byte).await.map(|_| byte[0]).ok()
    });
    let refresher = OAuth2Refresher::new(
        format!("https://127.0.0.1:{port}/token").parse().unwrap(),
        "client",
    );
    let err = refresher
        .refresh(&TokenSet::new("a").with_refresh_token("r"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), RefreshErrorKind::Transient, "{err}");
    let first = tokio::time::timeout(Duration::from_secs(60), first)
        .await
        .expect("the client connected")
        .unwrap();
    assert_eq!(first, Some(0x16), "a TLS ClientHello");
}
