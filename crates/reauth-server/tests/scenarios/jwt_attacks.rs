//! S7: JWT attacks on `/api/resources` all get `401 invalid_token`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use reauth_server::{KeySource, ManualClock, Server, ServerKeys};
use reqwest::StatusCode;
use sha2::Sha256;

use crate::common::{TestServer, test_config};

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn parts(jwt: &str) -> (String, String, String) {
    let mut it = jwt.split('.');
    (
        it.next().unwrap().to_owned(),
        it.next().unwrap().to_owned(),
        it.next().unwrap().to_owned(),
    )
}

async fn assert_invalid_token(server: &TestServer, name: &str, token: &str) {
    let response = server.resource(token).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{name}");
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.starts_with("Bearer"), "{name}: {challenge}");
    assert!(
        challenge.contains("error=\"invalid_token\""),
        "{name}: {challenge}"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token", "{name}");
}

async fn server_with(
    keys: &ServerKeys,
    issuer: &str,
    audience: &str,
    clock: &ManualClock,
) -> TestServer {
    let mut config = test_config();
    config.keys = KeySource::Provided(keys.clone());
    config.issuer = Some(issuer.to_owned());
    config.audience = audience.to_owned();
    let server = Server::with_clock(config, Arc::new(clock.clone()))
        .await
        .unwrap();
    server.add_user("alice", "wonderland").await.unwrap();
    TestServer::serve(server, clock.clone()).await
}

#[tokio::test]
async fn s7_jwt_attacks_are_invalid_token() {
    let keys = ServerKeys::generate();
    let clock = ManualClock::new();
    let server = server_with(&keys, "http://issuer-a", "api", &clock).await;
    let tokens = server.login().await;
    assert_eq!(
        server.resource(&tokens.access_token).await.status(),
        StatusCode::OK
    );
    let (header, payload, signature) = parts(&tokens.access_token);
    let kid = keys.kid().to_owned();

    // alg: none, with and without a signature.
    let none_header = b64(format!(r#"{{"alg":"none","typ":"JWT","kid":"{kid}"}}"#).as_bytes());
    assert_invalid_token(&server, "alg none", &format!("{none_header}.{payload}.")).await;
    assert_invalid_token(
        &server,
        "alg none + sig",
        &format!("{none_header}.{payload}.{signature}"),
    )
    .await;
    let none_lower = b64(br#"{"alg":"None"}"#);
    assert_invalid_token(&server, "alg None", &format!("{none_lower}.{payload}.")).await;

    // Key confusion: HS256 keyed with the public key from the JWKS.
    let jwks: serde_json::Value = server
        .http
        .get(format!("{}/.well-known/jwks.json", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], kid.as_str());
    let x = jwks["keys"][0]["x"].as_str().unwrap();
    for secret in [x.as_bytes().to_vec(), URL_SAFE_NO_PAD.decode(x).unwrap()] {
        let hs_header = b64(format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{kid}"}}"#).as_bytes());
        let input = format!("{hs_header}.{payload}");
        let mut mac = Hmac::<Sha256>::new_from_slice(&secret).unwrap();
        mac.update(input.as_bytes());
        let forged = format!("{input}.{}", b64(&mac.finalize().into_bytes()));
        assert_invalid_token(&server, "HS256 key confusion", &forged).await;
    }
    let rs_header = b64(format!(r#"{{"alg":"RS256","kid":"{kid}"}}"#).as_bytes());
    assert_invalid_token(
        &server,
        "RS256",
        &format!("{rs_header}.{payload}.{signature}"),
    )
    .await;

    // Tampering: payload, header, signature.
    let mut claims = crate::common::claims(&tokens.access_token);
    claims["sub"] = "mallory".into();
    let evil_payload = b64(claims.to_string().as_bytes());
    assert_invalid_token(
        &server,
        "tampered payload",
        &format!("{header}.{evil_payload}.{signature}"),
    )
    .await;
    let evil_header =
        b64(format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{kid}","x":1}}"#).as_bytes());
    assert_invalid_token(
        &server,
        "tampered header",
        &format!("{evil_header}.{payload}.{signature}"),
    )
    .await;
    let mut sig = URL_SAFE_NO_PAD.decode(&signature).unwrap();
    sig[0] ^= 0x80;
    assert_invalid_token(
        &server,
        "tampered signature",
        &format!("{header}.{payload}.{}", b64(&sig)),
    )
    .await;
    let crit = b64(format!(r#"{{"alg":"EdDSA","kid":"{kid}","crit":["exp"]}}"#).as_bytes());
    assert_invalid_token(
        &server,
        "crit header",
        &format!("{crit}.{payload}.{signature}"),
    )
    .await;

    // Unknown kid: the same claims signed by another server's key.
    let stranger = server_with(&ServerKeys::generate(), "http://issuer-a", "api", &clock).await;
    let foreign = stranger.login().await;
    assert_invalid_token(&server, "unknown kid", &foreign.access_token).await;
    let no_kid = b64(br#"{"alg":"EdDSA","typ":"JWT"}"#);
    assert_invalid_token(
        &server,
        "missing kid",
        &format!("{no_kid}.{payload}.{signature}"),
    )
    .await;

    // Same key, wrong issuer / wrong audience.
    let other_iss = server_with(&keys, "http://issuer-b", "api", &clock).await;
    let t = other_iss.login().await;
    assert_invalid_token(&server, "wrong iss", &t.access_token).await;
    let other_aud = server_with(&keys, "http://issuer-a", "other-api", &clock).await;
    let t = other_aud.login().await;
    assert_invalid_token(&server, "wrong aud", &t.access_token).await;

    // Malformed.
    for junk in ["", "abc", "a.b", "a.b.c.d", "....", "ey.ey.ey"] {
        let response = server
            .http
            .get(format!("{}/api/resources", server.url))
            .header("authorization", format!("Bearer {junk}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "junk {junk:?}");
    }
    // Missing credentials: 401 with a bare challenge (RFC 6750 §3.1).
    let response = server
        .http
        .get(format!("{}/api/resources", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"reauth\""
    );

    // Expired (the genuine token, after its 5 minutes).
    assert_eq!(
        server.resource(&tokens.access_token).await.status(),
        StatusCode::OK
    );
    clock.advance(Duration::from_secs(301));
    assert_invalid_token(&server, "expired", &tokens.access_token).await;
}

/// RFC 6750 §3.1: a request that carries no bearer credentials — none at
/// all, or only those of another scheme — gets a challenge without an error
/// code; one whose bearer token is bad gets `error="invalid_token"`.
#[tokio::test]
async fn s7_no_bearer_credentials_get_a_bare_challenge_and_bad_ones_invalid_token() {
    let server = TestServer::start().await;
    for authorization in [
        None,
        Some("Basic YWxpY2U6d29uZGVybGFuZA=="),
        Some("Digest x"),
    ] {
        let mut request = server.http.get(format!("{}/api/resources", server.url));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{authorization:?}"
        );
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer realm=\"reauth\"",
            "{authorization:?}"
        );
    }
    assert_invalid_token(&server, "junk bearer", "not-a-jwt").await;
}
