//! CORS on the token and revocation endpoints, for the origins of
//! registered public clients only: a single-page app redeems its code,
//! refreshes and revokes from the browser (RFC 9700 §2.1, the OAuth 2.0 for
//! Browser-Based Apps draft), and no other site may read the answers.
//!
//! An origin is allowed when it is the origin of a redirect URI of a public
//! client (`https://app.example` for `https://app.example/cb`; any port for
//! a loopback `http` URI, RFC 8252 §7.3). Answers carry
//! `Access-Control-Allow-Origin` with that origin (never `*`, never with
//! credentials) and `Vary: Origin`; a preflight from another origin gets
//! `403`. Confidential clients and introspection never need a browser.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppStateRef;
use crate::clients::is_loopback_host;
use crate::engine::Engine;

/// The middleware (see the module docs).
pub(super) async fn cors(
    State(state): State<AppStateRef>,
    request: Request,
    next: Next,
) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let allowed = match &origin {
        Some(origin) => allows(&state, origin).await,
        None => false,
    };
    if request.method() == Method::OPTIONS {
        let Some(origin) = origin.filter(|_| allowed) else {
            let body = serde_json::json!({
                "error": "invalid_request",
                "error_description": "this origin is not a registered public client's",
            });
            return (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
        };
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        return response;
    }
    let mut response = next.run(request).await;
    if let Some(origin) = origin.filter(|_| allowed) {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

/// `origin` is the origin of a registered public client's redirect URI.
async fn allows(state: &Engine, origin: &HeaderValue) -> bool {
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let Ok(parsed) = url::Url::parse(origin) else {
        return false;
    };
    // An Origin header is scheme://host[:port], nothing else.
    if !parsed.origin().is_tuple() || parsed.origin().ascii_serialization() != origin {
        return false;
    }
    let Ok(clients) = state.repo.list_clients().await else {
        return false;
    };
    clients
        .iter()
        .filter(|c| c.public)
        .flat_map(|c| c.redirect_uris.iter())
        .filter_map(|uri| url::Url::parse(uri).ok())
        .any(|registered| {
            if registered.origin() == parsed.origin() {
                return true;
            }
            let loopback = registered.scheme() == "http"
                && registered.host().as_ref().is_some_and(is_loopback_host);
            loopback && parsed.scheme() == "http" && registered.host() == parsed.host()
        })
}
