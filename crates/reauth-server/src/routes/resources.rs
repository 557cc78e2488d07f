//! `GET /api/resources`: the protected demo resource (RFC 6750).

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{AppStateRef, extract};
use crate::app_error::AppError;

#[derive(Serialize)]
struct Resources<'a> {
    subject: &'a str,
    resources: [&'static str; 3],
}

/// `200` with a small JSON body for a live bearer token; `401` with
/// `WWW-Authenticate: Bearer …` otherwise.
pub(super) async fn resources(
    State(state): State<AppStateRef>,
    request: Request,
) -> Result<Response, AppError> {
    state.faults.on_resource().await;
    let token = extract::bearer(request.headers())?.ok_or(AppError::MissingToken)?;
    let claims = state.verify_access(token)?;
    Ok(Json(Resources {
        subject: &claims.sub,
        resources: ["alpha", "beta", "gamma"],
    })
    .into_response())
}
