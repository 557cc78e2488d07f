//! The authorization endpoint and the authorization-code grant against what
//! an attacker or a strict OAuth 2.0 client tries first (RFC 9700, RFC 9207,
//! RFC 7636, RFC 6749 §4.1), over real HTTP on loopback.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reauth_server::{ClientSpec, GrantType};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common::{PASSWORD, TestServer, USER, assert_error, test_config};

const SPA: &str = "spa";
const WEB_CB: &str = "https://app.example/cb";
const LOOPBACK_CB: &str = "http://127.0.0.1/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn challenge() -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER.as_bytes()))
}

/// A server with a public client `spa` (two redirect URIs, scope `read`).
async fn start() -> TestServer {
    let server = TestServer::start_with(test_config()).await;
    let mut spec = ClientSpec::public(SPA);
    spec.redirect_uris = vec![WEB_CB.into(), LOOPBACK_CB.into()];
    spec.scopes = vec!["read".into()];
    server.server().register_client(&spec).await.unwrap();
    server
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The parameters of a good authorization request to `redirect_uri`.
fn request(redirect_uri: &str) -> Vec<(String, String)> {
    [
        ("response_type", "code"),
        ("client_id", SPA),
        ("redirect_uri", redirect_uri),
        ("state", "xyz"),
        ("code_challenge", &challenge()),
        ("code_challenge_method", "S256"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

async fn show(server: &TestServer, params: &[(String, String)]) -> reqwest::Response {
    no_redirects()
        .get(format!("{}/oauth/authorize", server.url))
        .query(params)
        .send()
        .await
        .unwrap()
}

/// Submits the sign-in form with `headers` (what a browser adds).
async fn sign_in(
    server: &TestServer,
    params: &[(String, String)],
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut form = params.to_vec();
    form.push(("username".into(), USER.into()));
    form.push(("password".into(), PASSWORD.into()));
    let mut request = no_redirects()
        .post(format!("{}/oauth/authorize", server.url))
        .form(&form);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// The query parameters of a redirect's `Location`.
fn location_params(response: &reqwest::Response) -> Vec<(String, String)> {
    let location = response
        .headers()
        .get("location")
        .expect("a redirect")
        .to_str()
        .unwrap();
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn redeem(server: &TestServer, code: &str, redirect_uri: &str) -> (StatusCode, Value) {
    let response = server
        .http
        .post(format!("{}/oauth/token", server.url))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", SPA),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn o1_redirect_uris_match_exactly_rfc9700() {
    let server = start().await;
    // The registered URIs themselves, and a loopback one on any port.
    for good in [WEB_CB, LOOPBACK_CB, "http://127.0.0.1:53682/callback"] {
        let page = show(&server, &request(good)).await;
        assert_eq!(page.status(), StatusCode::OK, "{good}");
    }
    // Whitespace, case, percent-encoding, dot segments, trailing slash,
    // other spellings of the loopback address: shown an error, never
    // redirected (RFC 6749 §4.1.2.1).
    for trick in [
        " https://app.example/cb",
        "https://app.example/cb ",
        "https://app.example/cb/",
        "https://APP.example/cb",
        "https://app.example/c%62",
        "https://app.example/x/../cb",
        " http://127.0.0.1:5000/callback",
        "http://127.0.0.1:5000/x/../callback",
        "http://127.0.0.1:5000/%63allback",
        "http://LOCALHOST:5000/callback",
        "http://2130706433:5000/callback",
        "http://0x7f.1:5000/callback",
    ] {
        let page = show(&server, &request(trick)).await;
        assert_eq!(page.status(), StatusCode::BAD_REQUEST, "{trick:?}");
        assert!(page.headers().get("location").is_none(), "{trick:?}");
    }
    // Registration refuses what cannot be matched exactly.
    for bad in [
        "https://app.example/cb x",
        "https://app.example/cb\n",
        "https://app.example/cb#",
        "https://app.example:443/cb",
        "https://App.example/cb",
        "http://app.example/cb",
    ] {
        let mut spec = ClientSpec::public("other");
        spec.redirect_uris = vec![bad.into()];
        let refused = server.server().register_client(&spec).await;
        assert!(refused.is_err(), "{bad:?} registered");
    }
}

#[tokio::test]
async fn o3_a_public_client_has_no_password_grant_unless_it_opts_in() {
    let server = start().await;
    let grant = |client: &'static str| {
        let server = &server;
        async move {
            let response = server
                .http
                .post(format!("{}/oauth/token", server.url))
                .form(&[
                    ("grant_type", "password"),
                    ("client_id", client),
                    ("username", USER),
                    ("password", PASSWORD),
                ])
                .send()
                .await
                .unwrap();
            let status = response.status();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    // Registered with the defaults: no password grant.
    let (status, body) = grant(SPA).await;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
    );
    server
        .server()
        .register_client(&ClientSpec::public("plain-public"))
        .await
        .unwrap();
    let (status, body) = grant("plain-public").await;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
    );
    // Opting in by listing it works.
    let mut spec = ClientSpec::public("legacy-app");
    spec.grant_types = vec![GrantType::Password, GrantType::RefreshToken];
    server.server().register_client(&spec).await.unwrap();
    let (status, body) = grant("legacy-app").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // PKCE: `plain`, or no method (which means `plain`), is refused.
    let mut plain = request(WEB_CB);
    plain.retain(|(k, _)| k != "code_challenge_method");
    let refused = show(&server, &plain).await;
    assert_eq!(refused.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        param(&location_params(&refused), "error"),
        Some("invalid_request")
    );
    plain.push(("code_challenge_method".into(), "plain".into()));
    let refused = show(&server, &plain).await;
    assert_eq!(
        param(&location_params(&refused), "error"),
        Some("invalid_request")
    );
}

#[tokio::test]
async fn o10_authorization_codes_are_opaque_single_use_and_short_lived() {
    let server = start().await;
    let answer = sign_in(&server, &request(WEB_CB), &[]).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let code = param(&location_params(&answer), "code")
        .expect("a code")
        .to_owned();
    // Nothing in the code decodes to what it stands for: not the user,
    // the redirect URI nor the PKCE challenge.
    for part in code.split(['.', '~', '_', '-']) {
        for decoded in [
            URL_SAFE_NO_PAD.decode(part).unwrap_or_default(),
            part.as_bytes().to_vec(),
        ] {
            let text = String::from_utf8_lossy(&decoded);
            for secret in [USER, "app.example", &challenge()[..16]] {
                assert!(
                    !text.contains(secret),
                    "the code reveals {secret:?}: {text}"
                );
            }
        }
    }
    // Altered by one character: refused.
    let mut altered = code.clone().into_bytes();
    let last = altered.len() - 5;
    altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    let (status, body) = redeem(&server, &altered, WEB_CB).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    // Used once; a second use is refused and revokes what the first got.
    let (status, first) = redeem(&server, &code, WEB_CB).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, body) = redeem(&server, &code, WEB_CB).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    let access = first["access_token"].as_str().unwrap();
    assert_eq!(
        server.resource(access).await.status(),
        StatusCode::UNAUTHORIZED,
        "the access token of the first redemption is revoked"
    );
    // Short-lived: a code older than its lifetime is refused.
    let answer = sign_in(&server, &request(WEB_CB), &[]).await;
    let code = param(&location_params(&answer), "code").unwrap().to_owned();
    server.clock.advance(std::time::Duration::from_secs(61));
    let (status, body) = redeem(&server, &code, WEB_CB).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn o10_every_authorization_response_carries_iss_rfc9207() {
    let server = start().await;
    let issuer = server.url.clone();
    // Success.
    let answer = sign_in(&server, &request(WEB_CB), &[]).await;
    let params = location_params(&answer);
    assert!(param(&params, "code").is_some());
    assert_eq!(param(&params, "iss"), Some(issuer.as_str()));
    // Errors redirected to the client: no PKCE, a scope it may not have.
    let mut no_pkce = request(WEB_CB);
    no_pkce.retain(|(k, _)| k != "code_challenge");
    let mut bad_scope = request(WEB_CB);
    bad_scope.push(("scope".into(), "admin".into()));
    for (params, error) in [(no_pkce, "invalid_request"), (bad_scope, "invalid_scope")] {
        let answer = show(&server, &params).await;
        assert_eq!(answer.status(), StatusCode::SEE_OTHER);
        let params = location_params(&answer);
        assert_eq!(param(&params, "error"), Some(error));
        assert_eq!(param(&params, "state"), Some("xyz"));
        assert_eq!(param(&params, "iss"), Some(issuer.as_str()), "{params:?}");
    }
    let metadata: Value = server
        .http
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            server.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        metadata["authorization_response_iss_parameter_supported"],
        true
    );
}

#[tokio::test]
async fn o10_the_sign_in_form_refuses_cross_site_posts() {
    let server = start().await;
    let params = request(WEB_CB);
    // The page forbids posting its form anywhere else and being framed.
    let page = show(&server, &params).await;
    let csp = page
        .headers()
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("form-action 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    // A cross-site POST (login CSRF) is refused before any password check.
    let origin = server.url.clone();
    for headers in [
        vec![("origin", "https://evil.example")],
        vec![("origin", "null")],
        vec![
            ("sec-fetch-site", "cross-site"),
            ("origin", origin.as_str()),
        ],
        vec![("sec-fetch-site", "same-site")],
    ] {
        let answer = sign_in(&server, &params, &headers).await;
        assert_eq!(answer.status(), StatusCode::FORBIDDEN, "{headers:?}");
        assert!(answer.headers().get("location").is_none(), "{headers:?}");
    }
    // The form posted from the page itself, and a non-browser client.
    for headers in [
        vec![
            ("origin", origin.as_str()),
            ("sec-fetch-site", "same-origin"),
        ],
        vec![("origin", origin.as_str())],
        vec![],
    ] {
        let answer = sign_in(&server, &params, &headers).await;
        assert_eq!(answer.status(), StatusCode::SEE_OTHER, "{headers:?}");
    }
}

/// A browser app (a registered public client) may call the token and
/// revocation endpoints from its own origin; no other origin may read the
/// answers, and introspection is never offered to browsers.
#[tokio::test]
async fn o10_cors_on_token_and_revocation_for_registered_public_origins_only() {
    let server = start().await;
    let mut confidential = ClientSpec::confidential("backend");
    confidential.redirect_uris = vec!["https://backend.example/cb".into()];
    server
        .server()
        .register_client(&confidential)
        .await
        .unwrap();
    let http = no_redirects();
    let preflight = |path: &'static str, origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, format!("{}{path}", server.url))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allow_origin = |response: &reqwest::Response| {
        response
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    for path in ["/oauth/token", "/oauth/revoke"] {
        for origin in ["https://app.example", "http://127.0.0.1:53682"] {
            let answer = preflight(path, origin).await.unwrap();
            assert_eq!(answer.status(), StatusCode::NO_CONTENT, "{path} {origin}");
            assert_eq!(allow_origin(&answer).as_deref(), Some(origin));
            assert!(
                answer.headers()["access-control-allow-methods"]
                    .to_str()
                    .unwrap()
                    .contains("POST")
            );
            assert!(
                answer
                    .headers()
                    .get("access-control-allow-credentials")
                    .is_none()
            );
        }
        // Not a public client's origin: a confidential client's, another
        // site, the same host on another scheme or port.
        for origin in [
            "https://backend.example",
            "https://evil.example",
            "http://app.example",
            "https://app.example:8443",
            "null",
        ] {
            let answer = preflight(path, origin).await.unwrap();
            assert_eq!(answer.status(), StatusCode::FORBIDDEN, "{path} {origin}");
            assert_eq!(allow_origin(&answer), None, "{path} {origin}");
        }
    }
    // The real request: the answer (even an error) is readable by the app.
    let answer = http
        .post(format!("{}/oauth/token", server.url))
        .header("origin", "https://app.example")
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", SPA),
            ("refresh_token", "nope"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        allow_origin(&answer).as_deref(),
        Some("https://app.example")
    );
    assert_eq!(answer.headers()["vary"], "Origin");
    let answer = http
        .post(format!("{}/oauth/token", server.url))
        .header("origin", "https://evil.example")
        .form(&[("grant_type", "refresh_token"), ("client_id", SPA)])
        .send()
        .await
        .unwrap();
    assert_eq!(allow_origin(&answer), None);
    // Introspection: no CORS for anyone.
    let answer = http
        .post(format!("{}/oauth/introspect", server.url))
        .header("origin", "https://app.example")
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(allow_origin(&answer), None);
}
