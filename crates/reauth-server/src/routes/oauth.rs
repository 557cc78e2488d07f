//! `/oauth/token` (RFC 6749), `/oauth/revoke` (RFC 7009),
//! `/oauth/introspect` (RFC 7662). Form-encoded, client-authenticated.

use std::collections::HashMap;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{AppStateRef, extract, token_json, validate};
use crate::app_error::AppError;
use crate::client_auth::{presented_client, secret_matches};
use crate::engine::Engine;
use crate::engine::TokenResponse;
use crate::faults::RefreshFault;

/// Authenticates the client (Basic or form); `401 invalid_client` otherwise.
async fn authenticate_client(
    state: &Engine,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<String, AppError> {
    let presented = presented_client(
        headers,
        params.get("client_id").map(String::as_str),
        params.get("client_secret").map(String::as_str),
    )?
    .ok_or(AppError::InvalidClient)?;
    // Credentials from the Basic header have not been through the form checks.
    validate::param("client_id", &presented.client_id)?;
    let secret = presented.client_secret.ok_or(AppError::InvalidClient)?;
    validate::param("client_secret", secret.expose())?;
    if is_disabled_demo_secret(state, secret.expose()) {
        tracing::info!(
            client_id = presented.client_id,
            "the public demo secret was presented but the demo client is off"
        );
        return Err(AppError::InvalidClient);
    }
    let stored = state.repo.client_secret_mac(&presented.client_id).await?;
    match stored {
        Some(mac) if secret_matches(state.keys.client_pepper(), secret.expose(), &mac) => {
            Ok(presented.client_id)
        }
        _ => {
            tracing::info!(
                client_id = presented.client_id,
                "client authentication failed"
            );
            Err(AppError::InvalidClient)
        }
    }
}

/// The demo client's secret is public: it authenticates nobody unless the
/// demo client is switched on (an earlier run may have stored it).
fn is_disabled_demo_secret(state: &Engine, secret: &str) -> bool {
    let demo = crate::config::ClientCredentials::demo();
    let enabled = state
        .config
        .demo_client
        .as_ref()
        .is_some_and(|c| c.client_secret == demo.client_secret);
    !enabled && secret == demo.client_secret.expose()
}

fn required<'a>(params: &'a HashMap<String, String>, name: &str) -> Result<&'a str, AppError> {
    params
        .get(name)
        .map(String::as_str)
        .ok_or(AppError::InvalidRequest(match name {
            "grant_type" => "missing grant_type",
            "refresh_token" => "missing refresh_token",
            "username" => "missing username",
            "password" => "missing password",
            "token" => "missing token",
            _ => "missing parameter",
        }))
}

/// `POST /oauth/token`: `password`, `refresh_token` and `client_credentials` grants.
pub(super) async fn token(
    State(state): State<AppStateRef>,
    request: Request,
) -> Result<Response, AppError> {
    let (parts, body) = request.into_parts();
    let params = extract::form(&parts.headers, body, state.config.max_body_bytes).await?;
    let grant_type = required(&params, "grant_type")?;
    if grant_type == "refresh_token" {
        match state.faults.on_refresh().await {
            Some(RefreshFault::Fail(e)) => return Err(e),
            Some(RefreshFault::Hang) => std::future::pending::<()>().await,
            None => {}
        }
    }
    let client_id = authenticate_client(&state, &parts.headers, &params).await?;
    let scope = params.get("scope").map(String::as_str);
    let tokens = match grant_type {
        "refresh_token" => {
            let refresh_token = required(&params, "refresh_token")?;
            state
                .refresh(refresh_token, Some(&client_id), scope)
                .await?
        }
        "password" => {
            let username = required(&params, "username")?;
            let password = required(&params, "password")?;
            state.check_password(username, password.to_owned()).await?;
            state
                .start_session(username, Some(&client_id), scope)
                .await?
        }
        "client_credentials" => {
            let sid = crate::util::random_id();
            TokenResponse {
                access_token: state.access_token(&client_id, &sid, scope, Some(&client_id)),
                token_type: "Bearer",
                expires_in: state.config.access_token_ttl.as_secs(),
                refresh_token: None,
                scope: scope.map(str::to_owned),
            }
        }
        _ => return Err(AppError::UnsupportedGrantType),
    };
    Ok(token_json(&tokens))
}

/// `POST /oauth/revoke`: revokes the session of a refresh or access token.
/// `200` for unknown tokens too (RFC 7009 §2.2).
pub(super) async fn revoke(
    State(state): State<AppStateRef>,
    request: Request,
) -> Result<Response, AppError> {
    let (parts, body) = request.into_parts();
    let params = extract::form(&parts.headers, body, state.config.max_body_bytes).await?;
    authenticate_client(&state, &parts.headers, &params).await?;
    let token = required(&params, "token")?;
    state.revoke_token(token, "revoked").await?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /oauth/introspect`: `{"active": false}` for anything not live.
pub(super) async fn introspect(
    State(state): State<AppStateRef>,
    request: Request,
) -> Result<Response, AppError> {
    let (parts, body) = request.into_parts();
    let params = extract::form(&parts.headers, body, state.config.max_body_bytes).await?;
    authenticate_client(&state, &parts.headers, &params).await?;
    let token = required(&params, "token")?;
    let body = state.introspect(token).await?;
    Ok(axum::Json(body).into_response())
}
