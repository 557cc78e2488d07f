//! C25: the built-in refreshers serve each seed's backend without a
//! hand-written closure — seed 000 (the refresh token in an `Authorization:
//! Bearer` header), seed 002 (a JSON body with its own field names, the
//! expiry in the JWT) and the OAuth2 form (RFC 6749 §6) — with the expiry
//! read in seconds, milliseconds, as an absolute time or from the JWT `exp`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reauth::{Clock, Refresher, TokenSet};
use reauth_reqwest::{ClientAuth, Expiry, JsonRefresher, OAuth2Refresher, RefreshTokenIn};
use serde_json::json;
use wiremock::matchers::{body_json, body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[derive(Clone, Copy)]
struct FixedClock(SystemTime);

impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        self.0
    }
}

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn current() -> TokenSet {
    TokenSet::new("old-access").with_refresh_token("the-refresh-token")
}

/// An HS256-looking JWT whose payload holds `exp` (signature not checked).
fn jwt(exp: u64) -> String {
    let enc = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap());
    format!(
        "{}.{}.c2ln",
        enc(json!({"alg": "HS256", "typ": "JWT"})),
        enc(json!({"sub": "andreyka26_", "exp": exp}))
    )
}

#[tokio::test]
async fn c25_seed_000_refresh_token_in_an_authorization_bearer_header() {
    let mock = MockServer::start().await;
    let access = jwt(1_700_000_300);
    Mock::given(method("GET"))
        .and(path("/auth/refresh"))
        .and(header("authorization", "Bearer the-refresh-token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"accessToken": access, "refreshToken": "next-refresh"})),
        )
        .expect(1)
        .mount(&mock)
        .await;
    let refresher = JsonRefresher::new(format!("{}/auth/refresh", mock.uri()).parse().unwrap())
        .method(reqwest::Method::GET)
        .refresh_token_in(RefreshTokenIn::BearerHeader)
        .access_token_field("accessToken")
        .refresh_token_field("refreshToken")
        .clock(FixedClock(t0()));
    let t = refresher.refresh(&current()).await.unwrap();
    assert_eq!(t.access_token.secret(), access);
    assert_eq!(t.refresh_token.unwrap().secret(), "next-refresh");
    assert_eq!(
        t.expires_at,
        Some(t0() + Duration::from_secs(300)),
        "from the JWT exp"
    );
    let sent = &mock.received_requests().await.unwrap()[0];
    assert!(
        sent.body.is_empty(),
        "no body: the token travels in the header"
    );
}

#[tokio::test]
async fn c25_seed_002_json_body_with_its_own_field_names() {
    let mock = MockServer::start().await;
    let access = jwt(1_700_003_600);
    Mock::given(method("POST"))
        .and(path("/authorization/refresh"))
        .and(body_json(json!({"refreshToken": "the-refresh-token"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"userId": "u1", "authorizationToken": access, "refreshToken": "next"}),
        ))
        .expect(1)
        .mount(&mock)
        .await;
    let refresher = JsonRefresher::new(
        format!("{}/authorization/refresh", mock.uri())
            .parse()
            .unwrap(),
    )
    .refresh_token_in(RefreshTokenIn::JsonField("refreshToken".into()))
    .access_token_field("authorizationToken")
    .refresh_token_field("refreshToken")
    .clock(FixedClock(t0()));
    let t = refresher.refresh(&current()).await.unwrap();
    assert_eq!(t.access_token.secret(), access);
    assert_eq!(t.expires_at, Some(t0() + Duration::from_secs(3600)));
}

#[tokio::test]
async fn c25_oauth2_form_with_expiry_in_seconds_milliseconds_or_absolute() {
    let mock = MockServer::start().await;
    let answers = [
        (
            json!({"access_token": "s", "expires_in": 300}),
            Expiry::default(),
        ),
        (
            json!({"access_token": "ms", "expires_in_ms": 300_000}),
            Expiry::Millis("expires_in_ms".into()),
        ),
        (
            json!({"access_token": "at", "expires_at": 1_700_000_300u64}),
            Expiry::At("expires_at".into()),
        ),
        (
            json!({"access_token": "iso", "expires_at": "2023-11-14T22:18:20Z"}),
            Expiry::At("expires_at".into()),
        ),
        (json!({"access_token": jwt(1_700_000_300)}), Expiry::JwtExp),
    ];
    for (answer, expiry) in answers {
        mock.reset().await;
        Mock::given(method("POST"))
            .and(path("/token"))
            .and(header("content-type", "application/x-www-form-urlencoded"))
            .and(body_string_contains("grant_type=refresh_token"))
            .and(body_string_contains("refresh_token=the-refresh-token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(answer.clone()))
            .expect(1)
            .mount(&mock)
            .await;
        let refresher =
            OAuth2Refresher::new(format!("{}/token", mock.uri()).parse().unwrap(), "client")
                .client_secret("secret")
                .client_auth(ClientAuth::Basic)
                .expiry(expiry.clone())
                .clock(FixedClock(t0()));
        let t = refresher.refresh(&current()).await.unwrap();
        assert_eq!(
            t.expires_at,
            Some(t0() + Duration::from_secs(300)),
            "{expiry:?} from {answer}"
        );
    }
}
