//! `/oauth/token` (RFC 6749), `/oauth/revoke` (RFC 7009),
//! `/oauth/introspect` (RFC 7662). Form-encoded, client-authenticated.

use std::collections::HashMap;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{AppStateRef, extract, token_json, validate};
use crate::app_error::AppError;
use crate::client_auth::presented_client;
use crate::clients::GrantType;
use crate::engine::{Engine, check_grant, grant_scope};
use crate::faults::RefreshFault;
use crate::store::ClientRecord;

/// The authenticated client of a request: credentials from HTTP Basic or
/// the form (RFC 6749 §2.3.1), checked like every parameter, then by the
/// engine. `401 invalid_client` otherwise.
async fn authenticated(
    state: &Engine,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<ClientRecord, AppError> {
    let presented = presented_client(
        headers,
        params.get("client_id").map(String::as_str),
        params.get("client_secret").map(String::as_str),
    )?
    .ok_or(AppError::InvalidClient)?;
    // Credentials from the Basic header have not been through the form checks.
    validate::param("client_id", &presented.client_id)?;
    if let Some(secret) = &presented.client_secret {
        validate::param("client_secret", secret.expose())?;
    }
    state.authenticate_client(presented).await
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
            "code" => "missing code",
            "redirect_uri" => "missing redirect_uri",
            "code_verifier" => "missing code_verifier (PKCE is required)",
            _ => "missing parameter",
        }))
}

/// `POST /oauth/token`: the `authorization_code`, `refresh_token`,
/// `password` and `client_credentials` grants, each only for clients
/// registered with it.
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
    let client = authenticated(&state, &parts.headers, &params).await?;
    let grant = GrantType::parse(grant_type).ok_or(AppError::UnsupportedGrantType)?;
    check_grant(&client, grant)?;
    let scope = params.get("scope").map(String::as_str);
    let tokens = match grant {
        GrantType::RefreshToken => {
            let refresh_token = required(&params, "refresh_token")?;
            state.refresh(refresh_token, Some(&client), scope).await?
        }
        GrantType::Password => {
            let scope = grant_scope(&client, scope)?;
            let username = required(&params, "username")?;
            let password = required(&params, "password")?;
            state
                .check_password(
                    username,
                    password.to_owned(),
                    Some(&client.client_id),
                    extract::peer(&parts),
                )
                .await?;
            state
                .start_session(username, Some(&client.client_id), scope.as_deref())
                .await?
        }
        GrantType::ClientCredentials => {
            let scope = grant_scope(&client, scope)?;
            state.client_credentials(&client, scope.as_deref())
        }
        GrantType::AuthorizationCode => {
            let code = required(&params, "code")?;
            let redirect_uri = params.get("redirect_uri").map(String::as_str);
            let verifier = required(&params, "code_verifier")?;
            state
                .redeem_code(&client, code, redirect_uri, verifier)
                .await?
        }
    };
    Ok(token_json(&tokens))
}

/// `POST /oauth/revoke`: revokes the session of a refresh or access token
/// issued to the authenticated client — durably, on every replica. `200`
/// for unknown tokens too (RFC 7009 §2.2); `400 unauthorized_client` for a
/// token issued to another client (§2.1).
pub(super) async fn revoke(
    State(state): State<AppStateRef>,
    request: Request,
) -> Result<Response, AppError> {
    let (parts, body) = request.into_parts();
    let params = extract::form(&parts.headers, body, state.config.max_body_bytes).await?;
    let client = authenticated(&state, &parts.headers, &params).await?;
    let token = required(&params, "token")?;
    state.revoke_token(token, "revoked", Some(&client)).await?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /oauth/introspect`: for the token's own client or a resource
/// server; `{"active": false}` for anything else or anything not live.
pub(super) async fn introspect(
    State(state): State<AppStateRef>,
    request: Request,
) -> Result<Response, AppError> {
    let (parts, body) = request.into_parts();
    let params = extract::form(&parts.headers, body, state.config.max_body_bytes).await?;
    let client = authenticated(&state, &parts.headers, &params).await?;
    if client.public {
        // RFC 7662 §2.1: the caller must be authorized; a public client is
        // not authenticated at all.
        crate::audit::client_auth_failed(&client.client_id, "a public client cannot introspect");
        return Err(AppError::InvalidClient);
    }
    let token = required(&params, "token")?;
    let body = state.introspect(token, &client).await?;
    Ok(axum::Json(body).into_response())
}
