//! A stand-in for the seed articles' backends, on 127.0.0.1: one-time refresh
//! tokens (a spent one is refused with 401, as those backends do), JWT-shaped
//! access tokens whose `exp` is the only expiry the answer carries, and a
//! protected resource answering 401 to anything but the current token.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// Which article's backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Seed 000: `GET /auth/refresh` with `Authorization: Bearer <refresh
    /// token>` → `{accessToken, refreshToken}`.
    BearerHeader,
    /// Seed 002: `POST /authorization/refresh {refreshToken}` →
    /// `{authorizationToken, refreshToken}`.
    JsonBody,
}

#[derive(Default)]
struct Tokens {
    generation: u64,
    access: String,
    refresh: String,
}

struct Backend {
    shape: Shape,
    tokens: Mutex<Tokens>,
    refreshes: AtomicU64,
}

/// The running backend.
#[derive(Clone)]
pub struct SeedBackend {
    url: String,
    backend: Arc<Backend>,
}

impl SeedBackend {
    /// Starts it on a free port of 127.0.0.1.
    ///
    /// # Panics
    ///
    /// If it cannot bind.
    pub async fn start(shape: Shape) -> Self {
        let backend = Arc::new(Backend {
            shape,
            tokens: Mutex::new(Tokens::default()),
            refreshes: AtomicU64::new(0),
        });
        let app = axum::Router::new()
            .route("/auth/login", post(login))
            .route("/auth/refresh", get(refresh_by_header))
            .route("/authorization/refresh", post(refresh_by_body))
            .route("/api/resources", get(resources))
            .with_state(Arc::clone(&backend));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, backend }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Refreshes that reached the backend.
    pub fn refreshes(&self) -> u64 {
        self.backend.refreshes.load(Ordering::SeqCst)
    }
}

/// A JWT-shaped token (not signed: this backend compares it byte for byte)
/// whose `exp` is a minute from now.
fn access_token(generation: u64) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        + 60;
    let enc = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.unsigned",
        enc(json!({"alg": "none", "typ": "JWT"})),
        enc(json!({"sub": "alice", "gen": generation, "exp": exp}))
    )
}

fn issue(backend: &Backend) -> Value {
    let mut t = backend.tokens.lock().unwrap_or_else(|e| e.into_inner());
    t.generation += 1;
    t.access = access_token(t.generation);
    t.refresh = format!("refresh-{}", t.generation);
    match backend.shape {
        Shape::BearerHeader => json!({"accessToken": t.access, "refreshToken": t.refresh}),
        Shape::JsonBody => {
            json!({"userId": "alice", "authorizationToken": t.access, "refreshToken": t.refresh})
        }
    }
}

async fn login(State(b): State<Arc<Backend>>, Json(body): Json<Value>) -> Response {
    if body["username"] == "alice" && body["password"] == "wonderland" {
        Json(issue(&b)).into_response()
    } else {
        StatusCode::UNAUTHORIZED.into_response()
    }
}

/// Spends `presented` if it is the current refresh token.
fn rotate(b: &Backend, presented: Option<&str>) -> Response {
    b.refreshes.fetch_add(1, Ordering::SeqCst);
    let current = b
        .tokens
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .refresh
        .clone();
    if presented != Some(current.as_str()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    Json(issue(b)).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

async fn refresh_by_header(State(b): State<Arc<Backend>>, headers: HeaderMap) -> Response {
    rotate(&b, bearer(&headers))
}

async fn refresh_by_body(State(b): State<Arc<Backend>>, Json(body): Json<Value>) -> Response {
    rotate(&b, body["refreshToken"].as_str())
}

async fn resources(State(b): State<Arc<Backend>>, headers: HeaderMap) -> Response {
    let current = b
        .tokens
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .access
        .clone();
    if bearer(&headers) == Some(current.as_str()) {
        "protected resources, username: alice".into_response()
    } else {
        StatusCode::UNAUTHORIZED.into_response()
    }
}
