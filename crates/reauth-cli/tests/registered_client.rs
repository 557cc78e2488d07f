//! Done-when of issue 10: a client registered with `reauth client add`
//! works end to end with off-the-shelf clients — the `oauth2` crate
//! (password, refresh, and the authorization-code grant with PKCE for a
//! public client) and `reauth-reqwest`'s `OAuth2Refresher` behind the
//! middleware — against the real `reauth serve`.

mod support;

use std::time::Duration;

use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, HttpRequest,
    HttpResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, ResourceOwnerPassword,
    ResourceOwnerUsername, Scope, TokenResponse, TokenUrl,
};
use reauth_reqwest::{AuthMiddleware, OAuth2Refresher};
use support::Site;

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery";

async fn send(http: reqwest::Client, request: HttpRequest) -> Result<HttpResponse, reqwest::Error> {
    let (parts, body) = request.into_parts();
    let response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let mut builder = http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    let bytes = response.bytes().await?;
    Ok(builder.body(bytes.to_vec()).expect("a valid response"))
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_registered_confidential_client_works_with_the_oauth2_crate() {
    let site = Site::sqlite();
    site.add_user(USER, PASSWORD);
    let app = site.add_client("app", &["--scope", "read write"]);
    let secret = app["client_secret"].as_str().unwrap().to_owned();
    let served = site.serve(&[]);
    let http = http_client();
    let http_fn = |request: HttpRequest| send(http.clone(), request);

    for auth_type in [AuthType::BasicAuth, AuthType::RequestBody] {
        let client = BasicClient::new(ClientId::new("app".to_owned()))
            .set_client_secret(ClientSecret::new(secret.clone()))
            .set_auth_type(auth_type)
            .set_token_uri(TokenUrl::new(format!("{}/oauth/token", served.url())).unwrap());
        let first = client
            .exchange_password(
                &ResourceOwnerUsername::new(USER.to_owned()),
                &ResourceOwnerPassword::new(PASSWORD.to_owned()),
            )
            .add_scope(Scope::new("read".to_owned()))
            .request_async(&http_fn)
            .await
            .expect("password grant");
        assert_eq!(first.scopes().unwrap()[0].as_str(), "read");
        let second = client
            .exchange_refresh_token(first.refresh_token().unwrap())
            .request_async(&http_fn)
            .await
            .expect("refresh grant");
        assert_ne!(
            second.refresh_token().unwrap().secret(),
            first.refresh_token().unwrap().secret()
        );
        let bearer = format!("Bearer {}", second.access_token().secret());
        let resource = support::http(
            &served.addr,
            "GET",
            "/api/resources",
            &[("Authorization", &bearer)],
            "",
        );
        assert_eq!(resource.status, 200, "{}", resource.body);
    }
    served.stop();
}

#[tokio::test]
async fn a_registered_client_works_with_the_reauth_reqwest_refresher() {
    let site = Site::sqlite();
    site.add_user(USER, PASSWORD);
    let app = site.add_client("app", &[]);
    let secret = app["client_secret"].as_str().unwrap().to_owned();
    let served = site.serve(&[]);
    let base = served.url();

    let refresher = OAuth2Refresher::new(format!("{base}/oauth/token").parse().unwrap(), "app")
        .client_secret(secret)
        .revocation_url(format!("{base}/oauth/revoke").parse().unwrap());
    let login = refresher
        .password_grant(USER, PASSWORD)
        .await
        .expect("login");
    let first_refresh = login.refresh_token.clone().expect("a refresh token");
    let session = reauth::Session::builder(refresher).build();
    session.start(login).await.unwrap();
    let client = reqwest_middleware::ClientBuilder::new(http_client())
        .with(AuthMiddleware::new(session.clone(), base.parse().unwrap()))
        .build();
    let resources = format!("{base}/api/resources");
    let response = client.get(&resources).send().await.unwrap();
    assert_eq!(response.status(), 200);

    // The server refuses the access token (as after expiry): the middleware
    // refreshes through the registered client and replays the request.
    let bearer = session.access_token().await.unwrap();
    let generation = bearer.generation();
    let rotated = session.invalidate(&bearer).await.expect("a refresh");
    assert!(rotated.generation() > generation);
    let response = client.get(&resources).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let tokens = session.tokens().unwrap();
    assert_ne!(
        tokens.refresh_token.as_ref().unwrap().secret(),
        first_refresh.secret(),
        "rotated"
    );

    // Logout revokes at the server (RFC 7009, as the registered client).
    let last = tokens.refresh_token.unwrap();
    session.logout().await.unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let refresh = support::post_form(
            &served.addr,
            "/oauth/token",
            &[(
                "Authorization",
                &support::basic("app", app["client_secret"].as_str().unwrap()),
            )],
            &format!("grant_type=refresh_token&refresh_token={}", last.secret()),
        );
        if refresh.status == 400 {
            assert_eq!(refresh.json()["error"], "invalid_grant");
            break;
        }
        assert!(std::time::Instant::now() < until, "logout never revoked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    served.stop();
}

/// The user's side of the authorization endpoint: opens `url`, fills the
/// sign-in form it shows and submits it; the `Location` it is sent to.
fn sign_in(addr: &str, url: &str, password: &str) -> (u16, Option<String>) {
    let path = &url[url.find("/oauth/authorize").expect("our endpoint")..];
    let page = support::get(addr, path);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<form"), "{}", page.body);
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    let query = path.split_once('?').map_or("", |(_, q)| q);
    let form = format!(
        "{query}&username={USER}&password={}",
        url::form_urlencoded::byte_serialize(password.as_bytes()).collect::<String>()
    );
    let answer = support::post_form(addr, "/oauth/authorize", &[], &form);
    (answer.status, answer.header("location").map(str::to_owned))
}

#[tokio::test]
async fn a_registered_public_client_completes_the_authorization_code_grant_with_pkce() {
    let site = Site::sqlite();
    site.add_user(USER, PASSWORD);
    let spa = site.add_client(
        "spa",
        &[
            "--public",
            "--redirect-uri",
            "http://127.0.0.1/callback",
            "--scope",
            "read",
        ],
    );
    assert_eq!(spa["grant_types"][0], "authorization_code");
    let served = site.serve(&[]);
    let base = served.url();
    let http = http_client();
    let http_fn = |request: HttpRequest| send(http.clone(), request);
    let client = BasicClient::new(ClientId::new("spa".to_owned()))
        .set_auth_uri(AuthUrl::new(format!("{base}/oauth/authorize")).unwrap())
        .set_token_uri(TokenUrl::new(format!("{base}/oauth/token")).unwrap())
        // A native app's loopback redirect: any port (RFC 8252 §7.3).
        .set_redirect_uri(RedirectUrl::new("http://127.0.0.1:53682/callback".to_owned()).unwrap());

    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf) = client
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("read".to_owned()))
        .set_pkce_challenge(challenge)
        .url();
    // A wrong password shows the form again; nothing is redirected.
    let (status, location) = sign_in(&served.addr, url.as_str(), "wrong");
    assert_eq!((status, location), (401, None));
    let (status, location) = sign_in(&served.addr, url.as_str(), PASSWORD);
    assert_eq!(status, 303);
    let location = url::Url::parse(&location.expect("a redirect")).unwrap();
    assert!(
        location
            .as_str()
            .starts_with("http://127.0.0.1:53682/callback?")
    );
    let param = |name: &str| {
        location
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(param("state").as_deref(), Some(csrf.secret().as_str()));
    assert_eq!(param("iss").as_deref(), Some(base.as_str()));
    let code = AuthorizationCode::new(param("code").expect("a code"));

    // The wrong verifier is refused; the right one gets tokens, once.
    let wrong = client
        .exchange_code(code.clone())
        .set_pkce_verifier(PkceCodeVerifier::new("x".repeat(43)))
        .request_async(&http_fn)
        .await;
    assert!(wrong.is_err());
    let tokens = client
        .exchange_code(code.clone())
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.secret().clone()))
        .request_async(&http_fn)
        .await
        .expect("code exchange");
    assert_eq!(tokens.scopes().unwrap()[0].as_str(), "read");
    let refreshed = client
        .exchange_refresh_token(tokens.refresh_token().unwrap())
        .request_async(&http_fn)
        .await
        .expect("refresh");
    // A second redemption of the code is refused and revokes what the first
    // one started (RFC 6749 §4.1.2).
    let replay = client
        .exchange_code(code)
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.secret().clone()))
        .request_async(&http_fn)
        .await;
    assert!(replay.is_err());
    let again = client
        .exchange_refresh_token(refreshed.refresh_token().unwrap())
        .request_async(&http_fn)
        .await;
    assert!(
        again.is_err(),
        "the family started by the reused code is revoked"
    );

    // Without PKCE, or to an unregistered redirect URI, there is no code.
    let no_pkce = client.authorize_url(CsrfToken::new_random).url().0;
    let page = support::get(
        &served.addr,
        &no_pkce.as_str()[no_pkce.as_str().find("/oauth/authorize").unwrap()..],
    );
    assert_eq!(page.status, 303);
    assert!(
        page.header("location")
            .unwrap()
            .contains("error=invalid_request"),
        "{:?}",
        page.header("location")
    );
    let evil = format!(
        "/oauth/authorize?response_type=code&client_id=spa&redirect_uri={}&code_challenge={}&code_challenge_method=S256",
        "https%3A%2F%2Fevil.example%2Fcb", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
    let page = support::get(&served.addr, &evil);
    assert_eq!(page.status, 400);
    assert!(page.header("location").is_none());
    served.stop();
}
