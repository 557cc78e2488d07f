//! RFC 8414 metadata and the JWKS.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::AppStateRef;

/// `GET /.well-known/oauth-authorization-server`.
pub(super) async fn metadata(State(state): State<AppStateRef>) -> Response {
    let issuer = state.issuer();
    let methods = ["client_secret_basic", "client_secret_post"];
    Json(serde_json::json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/oauth/token"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "response_types_supported": [],
        "grant_types_supported": ["password", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": methods,
        "revocation_endpoint_auth_methods_supported": methods,
        "introspection_endpoint_auth_methods_supported": methods,
    }))
    .into_response()
}

/// `GET /.well-known/jwks.json`.
pub(super) async fn jwks(State(state): State<AppStateRef>) -> Response {
    Json(state.jwt.jwks()).into_response()
}
