//! Helpers shared by the scenario tests.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reauth_server::store::FamilyRecord;
use reauth_server::{
    ClientCredentials, ManualClock, PasswordHashing, RunningServer, Server, ServerConfig,
};
use reqwest::StatusCode;
use serde_json::Value;

pub(crate) const USER: &str = "alice";
pub(crate) const PASSWORD: &str = "wonderland";
pub(crate) const CLIENT_ID: &str = "reauth-demo";
pub(crate) const CLIENT_SECRET: &str = "reauth-demo-secret";

/// A config for tests: in-memory SQLite, cheap password hashing.
pub(crate) fn test_config() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.password_hashing = PasswordHashing::InsecureFast;
    config.demo_client = Some(ClientCredentials::demo());
    config.first_party_endpoints = true;
    config
}

/// A token pair as answered by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
}

impl Tokens {
    pub(crate) fn from_json(body: &Value) -> Self {
        Self {
            access_token: body["access_token"]
                .as_str()
                .expect("access_token")
                .to_owned(),
            refresh_token: body["refresh_token"]
                .as_str()
                .expect("refresh_token")
                .to_owned(),
        }
    }

    /// The `sid` (family id) claim of the access token.
    pub(crate) fn sid(&self) -> String {
        claims(&self.access_token)["sid"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// The decoded (unverified) claims of a JWT.
pub(crate) fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("jwt payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// A server on a loopback port with a manual clock and one user.
pub(crate) struct TestServer {
    pub(crate) running: RunningServer,
    pub(crate) clock: ManualClock,
    pub(crate) http: reqwest::Client,
    pub(crate) url: String,
}

pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

impl TestServer {
    pub(crate) async fn start() -> Self {
        Self::start_with(test_config()).await
    }

    pub(crate) async fn start_with(config: ServerConfig) -> Self {
        Self::start_with_clock(config, ManualClock::new()).await
    }

    pub(crate) async fn start_with_clock(config: ServerConfig, clock: ManualClock) -> Self {
        let server = Server::with_clock(config, Arc::new(clock.clone()))
            .await
            .expect("server starts");
        if server.add_user(USER, PASSWORD).await.is_err() {
            // Already present (shared database).
        }
        Self::serve(server, clock).await
    }

    pub(crate) async fn serve(server: Server, clock: ManualClock) -> Self {
        let running = server.spawn_local().await.expect("bind loopback");
        let url = running.url();
        Self {
            running,
            clock,
            http: http_client(),
            url,
        }
    }

    pub(crate) fn server(&self) -> &Server {
        self.running.server()
    }

    pub(crate) async fn login(&self) -> Tokens {
        let (status, body) = self.login_as(USER, PASSWORD).await;
        assert_eq!(status, StatusCode::OK, "login failed: {body}");
        Tokens::from_json(&body)
    }

    pub(crate) async fn login_as(&self, user: &str, password: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}/auth/login", self.url))
            .json(&serde_json::json!({"username": user, "password": password}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn refresh(&self, refresh_token: &str) -> (StatusCode, Value) {
        refresh_at(&self.http, &self.url, refresh_token).await
    }

    pub(crate) async fn refresh_ok(&self, refresh_token: &str) -> Tokens {
        let (status, body) = self.refresh(refresh_token).await;
        assert_eq!(status, StatusCode::OK, "refresh failed: {body}");
        Tokens::from_json(&body)
    }

    pub(crate) async fn resource(&self, access_token: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/api/resources", self.url))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn oauth_form(
        &self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Logs the test user in through `/oauth/token` (password grant, the test client).
    pub(crate) async fn oauth_login(&self) -> Tokens {
        let (status, body) = self
            .oauth_form(
                "/oauth/token",
                &[
                    ("grant_type", "password"),
                    ("username", USER),
                    ("password", PASSWORD),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        Tokens::from_json(&body)
    }

    pub(crate) async fn introspect(&self, token: &str) -> Value {
        let (status, body) = self
            .oauth_form("/oauth/introspect", &[("token", token)])
            .await;
        assert_eq!(status, StatusCode::OK);
        body
    }

    pub(crate) async fn family(&self, tokens: &Tokens) -> FamilyRecord {
        self.server()
            .repository()
            .load_family(&tokens.sid())
            .await
            .unwrap()
            .expect("family row")
    }
}

pub(crate) async fn refresh_at(
    http: &reqwest::Client,
    url: &str,
    refresh_token: &str,
) -> (StatusCode, Value) {
    let response = http
        .post(format!("{url}/auth/refresh"))
        .json(&serde_json::json!({ "refresh_token": refresh_token }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Asserts an RFC 6749 error body.
pub(crate) fn assert_error(
    status: StatusCode,
    body: &Value,
    expected_status: StatusCode,
    code: &str,
) {
    assert_eq!(status, expected_status, "body: {body}");
    assert_eq!(body["error"], code, "body: {body}");
}
