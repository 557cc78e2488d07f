//! The authorization endpoint and the authorization-code grant against what
//! an attacker or a strict OAuth 2.0 client tries first (RFC 9700, RFC 9207,
//! RFC 7636, RFC 6749 §4.1), over real HTTP on loopback.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reauth_server::ClientSpec;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use crate::common::{TestServer, test_config};

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
