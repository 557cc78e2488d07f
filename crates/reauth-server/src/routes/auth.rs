//! `/auth/login`, `/auth/refresh`, `/auth/logout`: the first-party JSON API.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{AppStateRef, extract, token_json, validate};
use crate::app_error::AppError;
use crate::faults::RefreshFault;

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

/// `POST /auth/login` `{username, password}` → token pair.
pub(super) async fn login(
    State(state): State<AppStateRef>,
    request: Request,
) -> Result<Response, AppError> {
    let (parts, body) = request.into_parts();
    let login: LoginBody = extract::json(&parts.headers, body, state.config.max_body_bytes).await?;
    validate::param("username", &login.username)?;
    validate::param("password", &login.password)?;
    state
        .check_password(&login.username, login.password, None, extract::peer(&parts))
        .await?;
    let tokens = state.start_session(&login.username, None, None).await?;
    Ok(token_json(&tokens))
}

/// `POST /auth/refresh` `{refresh_token}` → token pair.
pub(super) async fn refresh(
    State(state): State<AppStateRef>,
    request: Request,
) -> Result<Response, AppError> {
    match state.faults.on_refresh().await {
        Some(RefreshFault::Fail(e)) => return Err(e),
        Some(RefreshFault::Hang) => std::future::pending::<()>().await,
        None => {}
    }
    let (parts, body) = request.into_parts();
    let body: RefreshBody =
        extract::json(&parts.headers, body, state.config.max_body_bytes).await?;
    validate::param("refresh_token", &body.refresh_token)?;
    let tokens = state.refresh(&body.refresh_token, None, None).await?;
    Ok(token_json(&tokens))
}

/// `POST /auth/logout`: revokes the family of the bearer access token, or of
/// the `{refresh_token}` in the body. `204` (also for unknown tokens).
pub(super) async fn logout(
    State(state): State<AppStateRef>,
    request: Request,
) -> Result<Response, AppError> {
    let (parts, body) = request.into_parts();
    if let Some(token) = extract::bearer(&parts.headers)? {
        // A token of an already revoked family still logs out (idempotent).
        let claims = state.verify_jwt(token)?;
        state.revoke_access(&claims, "logout").await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    if !extract::has_body(&parts.headers) {
        return Err(AppError::MissingToken);
    }
    let body: RefreshBody =
        extract::json(&parts.headers, body, state.config.max_body_bytes).await?;
    validate::param("refresh_token", &body.refresh_token)?;
    state
        .revoke_token(&body.refresh_token, "logout", None)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
