//! The HTTP endpoints of DESIGN.md §4.1.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::engine::Engine;
use crate::engine::TokenResponse;

mod auth;
mod authorize;
mod extract;
mod oauth;
mod resources;
mod validate;
mod well_known;

/// Shared state as handlers see it.
type AppStateRef = Arc<Engine>;

pub(crate) fn router(state: AppStateRef) -> Router {
    let router = Router::new();
    let router = if state.config.public_metrics {
        router.route("/metrics", get(metrics))
    } else {
        router
    };
    router
        .route("/auth/login", post(auth::login))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .route(
            "/oauth/authorize",
            get(authorize::show).post(authorize::submit),
        )
        .route("/oauth/token", post(oauth::token))
        .route("/oauth/revoke", post(oauth::revoke))
        .route("/oauth/introspect", post(oauth::introspect))
        .route(
            "/.well-known/oauth-authorization-server",
            get(well_known::metadata),
        )
        .route("/.well-known/jwks.json", get(well_known::jwks))
        .route("/api/resources", get(resources::resources))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async { rfc6749_error(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            rfc6749_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .layer(middleware::from_fn(crate::metrics::track_latency))
        .with_state(state)
}

/// Refuses a body over `limit` bytes with `413` and an RFC 6749 body: at
/// once when its `Content-Length` says so (nothing of it is read), else as
/// soon as the bytes read pass the limit.
pub(crate) fn with_body_limit(router: Router, limit: usize) -> Router {
    router
        .layer(tower_http::limit::RequestBodyLimitLayer::new(limit))
        .layer(middleware::map_response(render_too_large))
}

/// tower-http's plain-text `413` as an RFC 6749 error.
async fn render_too_large(response: Response) -> Response {
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !json {
        return crate::app_error::AppError::PayloadTooLarge.into_response();
    }
    response
}

/// `/metrics`, `/healthz` (and `/readyz`) alone, for a private listener.
pub(crate) fn metrics_router(state: AppStateRef) -> Router {
    let limit = state.config.max_body_bytes;
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async { rfc6749_error(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(state);
    with_body_limit(router, limit)
}

/// Liveness: the process serves HTTP.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the database answers (within the configured wait). `503
/// temporarily_unavailable` otherwise, so a load balancer sends no traffic
/// to a replica that cannot serve it.
async fn readyz(axum::extract::State(state): axum::extract::State<AppStateRef>) -> Response {
    match state.repo.ping().await {
        Ok(()) => "ready\n".into_response(),
        Err(e) => {
            crate::log_budget::limited!(
                crate::log_budget::LogBudget::per_request(),
                |suppressed| tracing::warn!(
                    error = %e,
                    suppressed,
                    "readiness check failed: the database does not answer"
                )
            );
            crate::app_error::AppError::Unavailable {
                retry_after: std::time::Duration::from_secs(1),
            }
            .into_response()
        }
    }
}

async fn metrics() -> Response {
    let mut response = crate::metrics::render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

/// A token response with `Cache-Control: no-store` (RFC 6749 §5.1).
fn token_json(body: &TokenResponse) -> Response {
    let mut response = axum::Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// An unknown path or method still gets an RFC 6749 §5.2 error body.
fn rfc6749_error(status: StatusCode, description: &'static str) -> Response {
    let body = serde_json::json!({ "error": "invalid_request", "error_description": description });
    (
        status,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        axum::Json(body),
    )
        .into_response()
}
