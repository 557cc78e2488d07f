//! RFC 8414 metadata and the JWKS.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::AppStateRef;
use crate::clients::GrantType;

/// `GET /.well-known/oauth-authorization-server`.
pub(super) async fn metadata(State(state): State<AppStateRef>) -> Response {
    let issuer = state.issuer();
    let confidential = ["client_secret_basic", "client_secret_post"];
    let any_client = ["client_secret_basic", "client_secret_post", "none"];
    let grants: Vec<&str> = GrantType::ALL.iter().map(|g| g.as_str()).collect();
    Json(serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oauth/authorize"),
        "token_endpoint": format!("{issuer}/oauth/token"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": grants,
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": any_client,
        "revocation_endpoint_auth_methods_supported": any_client,
        "introspection_endpoint_auth_methods_supported": confidential,
        "authorization_response_iss_parameter_supported": true,
    }))
    .into_response()
}

/// `GET /.well-known/jwks.json`.
pub(super) async fn jwks(State(state): State<AppStateRef>) -> Response {
    Json(state.jwt.jwks()).into_response()
}
