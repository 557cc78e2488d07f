//! The one error type answered to HTTP clients, rendered as RFC 6749 §5.2 /
//! RFC 6750 §3 error bodies.

use std::borrow::Cow;
use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::StoreError;

/// An error answered to an HTTP client.
///
/// Every variant renders `{"error": code, "error_description": text}` with
/// `Cache-Control: no-store`; see [`AppError::status`] for the statuses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// `400 invalid_request`: malformed body, wrong content type, missing or
    /// repeated parameter.
    #[error("invalid_request: {0}")]
    InvalidRequest(&'static str),
    /// `400 invalid_request`: a parameter is too long, not UTF-8, or holds
    /// characters it may not (a NUL byte, control characters).
    #[error("invalid_request: invalid {name}: {why}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
    /// `408 invalid_request`: the request (its body) took too long to arrive.
    #[error("request timeout")]
    RequestTimeout,
    /// `413 invalid_request`: the body exceeds the configured limit.
    #[error("request body too large")]
    PayloadTooLarge,
    /// `401 invalid_client` with `WWW-Authenticate: Basic`.
    #[error("invalid_client")]
    InvalidClient,
    /// `400 invalid_grant`: bad credentials or a dead, rotated, revoked or
    /// unknown refresh token.
    #[error("invalid_grant: {0}")]
    InvalidGrant(&'static str),
    /// `400 unsupported_grant_type`.
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    /// `400 unauthorized_client`: the client may not use this grant type, or
    /// asked to revoke a token issued to another client (RFC 7009 §2.1).
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(&'static str),
    /// `400 invalid_scope`.
    #[error("invalid_scope")]
    InvalidScope,
    /// `401 invalid_token` with `WWW-Authenticate: Bearer …, error="invalid_token"`.
    #[error("invalid_token: {0}")]
    InvalidToken(&'static str),
    /// `401` with a bare `WWW-Authenticate: Bearer realm="reauth"` (RFC 6750 §3.1:
    /// no error code when the request carried no credentials).
    #[error("missing bearer token")]
    MissingToken,
    /// `429 temporarily_unavailable` with `Retry-After`.
    #[error("rate limited")]
    RateLimited {
        /// When the client may try again.
        retry_after: Duration,
    },
    /// `503 temporarily_unavailable` with `Retry-After`: the database cannot
    /// do the work now (locked past the configured wait, disk full, …) or the
    /// password-hashing queue is full. Nothing was done.
    #[error("temporarily unavailable")]
    Unavailable {
        /// When the client may try again.
        retry_after: Duration,
    },
    /// An injected fault (see [`Faults`](crate::Faults)).
    #[error("injected fault {status}")]
    Injected {
        /// The status to answer.
        status: StatusCode,
        /// Optional `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// `500 server_error`. The cause is logged, never sent.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[derive(Serialize)]
struct ErrorBody {
    error: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_description: Option<Cow<'static, str>>,
}

/// How long a client is asked to wait after a `503` from the database.
const DATABASE_RETRY_AFTER: Duration = Duration::from_secs(1);

impl AppError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_)
            | Self::InvalidParameter { .. }
            | Self::InvalidGrant(_)
            | Self::UnsupportedGrantType
            | Self::UnauthorizedClient(_)
            | Self::InvalidScope => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::InvalidClient | Self::InvalidToken(_) | Self::MissingToken => {
                StatusCode::UNAUTHORIZED
            }
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Injected { status, .. } => *status,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The RFC 6749 / RFC 6750 error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_)
            | Self::InvalidParameter { .. }
            | Self::RequestTimeout
            | Self::PayloadTooLarge => "invalid_request",
            Self::Unavailable { .. } => "temporarily_unavailable",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnauthorizedClient(_) => "unauthorized_client",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidToken(_) | Self::MissingToken => "invalid_token",
            Self::RateLimited { .. } => "temporarily_unavailable",
            Self::Injected { status, .. } => match status.as_u16() {
                400 | 401 | 403 => "invalid_grant",
                429 | 503 => "temporarily_unavailable",
                500..=599 => "server_error",
                _ => "invalid_request",
            },
            Self::Internal(_) => "server_error",
        }
    }

    fn description(&self) -> Option<Cow<'static, str>> {
        let text = match self {
            Self::InvalidParameter { name, why } => {
                return Some(Cow::Owned(format!("invalid {name}: {why}")));
            }
            Self::InvalidRequest(d)
            | Self::InvalidGrant(d)
            | Self::InvalidToken(d)
            | Self::UnauthorizedClient(d) => Some(*d),
            Self::PayloadTooLarge => Some("request body too large"),
            Self::RequestTimeout => Some("the request took too long to arrive"),
            Self::Unavailable { .. } => Some("temporarily unavailable; retry later"),
            Self::InvalidClient => Some("client authentication failed"),
            Self::UnsupportedGrantType => Some("unsupported grant_type"),
            Self::InvalidScope => Some("a requested scope is not allowed here"),
            Self::MissingToken => Some("bearer token required"),
            Self::RateLimited { .. } => Some("too many failed attempts; retry later"),
            Self::Injected { .. } => Some("injected fault"),
            Self::Internal(_) => None,
        };
        text.map(Cow::Borrowed)
    }

    /// Wraps any error as a `500`.
    pub(crate) fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(e))
    }
}

impl From<StoreError> for AppError {
    /// `Unavailable` → `503` with `Retry-After`, `InvalidInput` → `400`,
    /// anything else → `500` (cause logged, never sent).
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => {
                crate::log_budget::limited!(
                    crate::log_budget::LogBudget::per_request(),
                    |suppressed| tracing::warn!(error = %cause, suppressed, "database unavailable")
                );
                Self::Unavailable {
                    retry_after: DATABASE_RETRY_AFTER,
                }
            }
            StoreError::InvalidInput(cause) => {
                crate::log_budget::limited!(
                    crate::log_budget::LogBudget::per_request(),
                    |suppressed| tracing::info!(
                        error = %cause,
                        suppressed,
                        "value refused by the database"
                    )
                );
                Self::InvalidRequest("a parameter holds a value the server cannot store")
            }
            other => Self::internal(other),
        }
    }
}

fn retry_after_value(d: Duration) -> HeaderValue {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    HeaderValue::from(secs.max(1))
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            let mut chain = cause.to_string();
            let mut source = cause.source();
            while let Some(s) = source {
                chain.push_str(": ");
                chain.push_str(&s.to_string());
                source = s.source();
            }
            crate::log_budget::limited!(
                crate::log_budget::LogBudget::per_request(),
                |suppressed| tracing::error!(error = %chain, suppressed, "internal error")
            );
        }
        let status = self.status();
        let body = ErrorBody {
            error: self.code(),
            error_description: self.description(),
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        match &self {
            Self::InvalidClient => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"reauth\""),
                );
            }
            Self::MissingToken => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"reauth\""),
                );
            }
            Self::InvalidToken(d) => {
                let value = format!(
                    "Bearer realm=\"reauth\", error=\"invalid_token\", error_description=\"{d}\""
                );
                if let Ok(v) = HeaderValue::from_str(&value) {
                    headers.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            Self::RateLimited { retry_after }
            | Self::Unavailable { retry_after }
            | Self::Injected {
                retry_after: Some(retry_after),
                ..
            } => {
                headers.insert(header::RETRY_AFTER, retry_after_value(*retry_after));
            }
            _ => {}
        }
        response
    }
}
