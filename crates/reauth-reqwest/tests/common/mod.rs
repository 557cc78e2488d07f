//! A small auth + resource server on 127.0.0.1:0 for end-to-end tests.
//!
//! * `POST /oauth/token` — `grant_type=refresh_token`: one-time refresh tokens
//!   (`refresh-{n}`), rotation `n` issues `access-{n}`; a stale or unknown
//!   refresh token is `400 invalid_grant`, exactly what a duplicate refresh gets.
//! * `GET /api/resource` — 200 for the current access token, else 401 with
//!   `WWW-Authenticate: Bearer error="invalid_token"`. With a gate set, refused
//!   requests are held until `gate` of them have arrived.
//! * `GET /api/slow` — the first call is held until [`AuthServer::release_slow`];
//!   its arrival is announced on the channel from [`AuthServer::slow_arrivals`].
//! * `GET /api/always-401` — refuses everything.
//! * `POST /api/upload` — like `/api/resource`, reading the body.
//!
//! Every request to `/api/*` is logged with the bearer it carried.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use reauth::{RefreshAhead, Session, TokenSet};
use reauth_reqwest::{AuthMiddleware, ClientAuth, OAuth2Refresher};
use reqwest_middleware::ClientWithMiddleware;
use tokio::sync::{Barrier, Notify, mpsc};

#[derive(Default)]
struct Tokens {
    rotation: u64,
    access: Option<String>,
    refresh: Option<String>,
}

#[derive(Default)]
struct Shared {
    tokens: Mutex<Tokens>,
    refreshes: AtomicUsize,
    log: Mutex<Vec<(String, String)>>,
    gate: Mutex<Option<Arc<Barrier>>>,
    slow_calls: AtomicUsize,
    slow_release: Notify,
    slow_arrived: Mutex<Option<mpsc::UnboundedSender<String>>>,
}

/// The running server.
#[derive(Clone)]
pub struct AuthServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl AuthServer {
    /// Starts the server; `access-0` / `refresh-0` are valid.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        {
            let mut t = shared.tokens.lock().unwrap();
            t.access = Some("access-0".into());
            t.refresh = Some("refresh-0".into());
        }
        let app = Router::new()
            .route("/oauth/token", post(token))
            .route("/api/resource", get(resource))
            .route("/api/slow", get(slow))
            .route("/api/always-401", get(always_401))
            .route("/api/upload", post(upload))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, shared }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Refresh calls received (successful or not).
    pub fn refreshes(&self) -> usize {
        self.shared.refreshes.load(Ordering::SeqCst)
    }

    /// The bearer tokens `path` was called with, in order.
    pub fn bearers(&self, path: &str) -> Vec<String> {
        let log = self.shared.log.lock().unwrap();
        log.iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// The access token stops being accepted (the refresh token still works).
    pub fn expire_access_token(&self) {
        self.shared.tokens.lock().unwrap().access = None;
    }

    /// Holds refused `/api/resource` requests until `n` of them have arrived.
    pub fn gate_refusals(&self, n: usize) {
        *self.shared.gate.lock().unwrap() = Some(Arc::new(Barrier::new(n)));
    }

    /// Announces arrivals at `/api/slow` (with their bearer).
    pub fn slow_arrivals(&self) -> mpsc::UnboundedReceiver<String> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.shared.slow_arrived.lock().unwrap() = Some(tx);
        rx
    }

    /// Lets the held `/api/slow` call answer.
    pub fn release_slow(&self) {
        self.shared.slow_release.notify_one();
    }

    /// A session on the tokio runtime, started with `access`/`refresh-0`,
    /// refreshing through this server's token endpoint, with refresh-ahead off.
    pub async fn session(&self, access: &str) -> Session {
        let refresher =
            OAuth2Refresher::new(self.url("/oauth/token").parse().unwrap(), "test-client")
                .client_secret("test-secret")
                .client_auth(ClientAuth::Basic);
        let session = Session::builder(refresher)
            .refresh_ahead(RefreshAhead::disabled())
            .build();
        session
            .start(TokenSet::new(access).with_refresh_token("refresh-0"))
            .await
            .unwrap();
        session
    }
}

/// A client whose requests to `api`'s origin go through [`AuthMiddleware`]
/// for `session`.
pub fn client(session: &Session, api: &str) -> ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(AuthMiddleware::new(session.clone(), api.parse().unwrap()))
        .build()
}

/// Fails the test instead of hanging if `f` does not finish in a minute
/// (no timing assertion: only a guard against deadlock).
pub async fn within_a_minute<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test deadlocked")
}

fn bearer(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

fn log(shared: &Shared, uri: &Uri, headers: &HeaderMap) -> String {
    let b = bearer(headers);
    shared
        .log
        .lock()
        .unwrap()
        .push((uri.path().to_owned(), b.clone()));
    b
}

fn accepted(shared: &Shared, bearer: &str) -> bool {
    let t = shared.tokens.lock().unwrap();
    t.access
        .as_deref()
        .is_some_and(|a| bearer == format!("Bearer {a}"))
}

fn refused() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#)],
        "refused",
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct TokenForm {
    grant_type: String,
    refresh_token: Option<String>,
}

async fn token(State(shared): State<Arc<Shared>>, Form(form): Form<TokenForm>) -> Response {
    shared.refreshes.fetch_add(1, Ordering::SeqCst);
    let mut t = shared.tokens.lock().unwrap();
    if form.grant_type != "refresh_token"
        || form.refresh_token.is_none()
        || form.refresh_token != t.refresh
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": "invalid_grant"})),
        )
            .into_response();
    }
    t.rotation += 1;
    let n = t.rotation;
    t.access = Some(format!("access-{n}"));
    t.refresh = Some(format!("refresh-{n}"));
    Json(serde_json::json!({
        "access_token": format!("access-{n}"),
        "refresh_token": format!("refresh-{n}"),
        "token_type": "Bearer",
        "expires_in": 300,
    }))
    .into_response()
}

async fn resource(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response {
    let b = log(&shared, &uri, &headers);
    if accepted(&shared, &b) {
        return "ok".into_response();
    }
    let gate = shared.gate.lock().unwrap().clone();
    if let Some(gate) = gate {
        gate.wait().await;
    }
    refused()
}

async fn slow(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response {
    let b = log(&shared, &uri, &headers);
    if shared.slow_calls.fetch_add(1, Ordering::SeqCst) == 0 {
        if let Some(tx) = shared.slow_arrived.lock().unwrap().as_ref() {
            let _ = tx.send(b.clone());
        }
        shared.slow_release.notified().await;
    }
    if accepted(&shared, &b) {
        "ok".into_response()
    } else {
        refused()
    }
}

async fn always_401(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response {
    log(&shared, &uri, &headers);
    refused()
}

async fn upload(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let b = log(&shared, &uri, &headers);
    if accepted(&shared, &b) {
        format!("stored {} bytes", body.len()).into_response()
    } else {
        refused()
    }
}
