//! Which failure class a token-endpoint answer belongs to, and when to try again.
//!
//! Pure functions of status, error code, header and clock; each is unit-tested.

use std::time::{Duration, SystemTime};

use reauth::RefreshErrorKind;
use reqwest::StatusCode;
use serde::Deserialize;

/// The class of an error answer from a token endpoint.
///
/// A known RFC 6749 §5.2 `error` code decides; otherwise the status does.
/// `refused` is what an unexplained 400/401/403 means: [`Rejected`] for grants
/// that present a refresh token (the server did not accept it), [`Misconfigured`]
/// for `client_credentials` (there is no user token to reject, so it is the
/// client's credentials).
///
/// [`Rejected`]: RefreshErrorKind::Rejected
/// [`Misconfigured`]: RefreshErrorKind::Misconfigured
pub(crate) fn classify(
    status: StatusCode,
    code: Option<&str>,
    refused: RefreshErrorKind,
) -> RefreshErrorKind {
    use RefreshErrorKind::{Misconfigured, Rejected, Transient};
    match code {
        Some("invalid_grant") => return Rejected,
        Some(
            "invalid_client"
            | "unauthorized_client"
            | "unsupported_grant_type"
            | "invalid_scope"
            | "invalid_request",
        ) => return Misconfigured,
        Some("temporarily_unavailable" | "server_error" | "slow_down") => return Transient,
        _ => {}
    }
    match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => Transient,
        s if s.is_server_error() => Transient,
        StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => refused,
        _ => Misconfigured,
    }
}

/// Parses a `Retry-After` value: delay-seconds, or an HTTP date (relative to
/// `now`; a date in the past means "now"). `None` if it is neither.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An RFC 6749 §5.2 error body, read leniently: any JSON object, both fields optional.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorBody {
    pub(crate) error: Option<String>,
    pub(crate) error_description: Option<String>,
}

impl ErrorBody {
    pub(crate) fn parse(body: &[u8]) -> Self {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .map(|v| Self {
                error: v.get("error").and_then(|e| e.as_str()).map(str::to_owned),
                error_description: v
                    .get("error_description")
                    .and_then(|e| e.as_str())
                    .map(str::to_owned),
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RefreshErrorKind::{Misconfigured, Rejected, Transient};

    const BAD: StatusCode = StatusCode::BAD_REQUEST;

    #[test]
    fn rfc6749_error_codes_decide_the_class() {
        assert_eq!(classify(BAD, Some("invalid_grant"), Rejected), Rejected);
        assert_eq!(
            classify(
                StatusCode::UNAUTHORIZED,
                Some("invalid_grant"),
                Misconfigured
            ),
            Rejected
        );
        for code in [
            "invalid_client",
            "unauthorized_client",
            "unsupported_grant_type",
            "invalid_scope",
            "invalid_request",
        ] {
            assert_eq!(classify(BAD, Some(code), Rejected), Misconfigured, "{code}");
        }
        assert_eq!(
            classify(StatusCode::UNAUTHORIZED, Some("invalid_client"), Rejected),
            Misconfigured
        );
        assert_eq!(
            classify(
                StatusCode::SERVICE_UNAVAILABLE,
                Some("temporarily_unavailable"),
                Rejected
            ),
            Transient
        );
        assert_eq!(classify(BAD, Some("server_error"), Rejected), Transient);
    }

    #[test]
    fn without_a_known_code_the_status_decides() {
        assert_eq!(classify(BAD, None, Rejected), Rejected);
        assert_eq!(classify(BAD, Some("what_is_this"), Rejected), Rejected);
        assert_eq!(classify(StatusCode::UNAUTHORIZED, None, Rejected), Rejected);
        assert_eq!(classify(StatusCode::FORBIDDEN, None, Rejected), Rejected);
        assert_eq!(
            classify(StatusCode::UNAUTHORIZED, None, Misconfigured),
            Misconfigured
        );
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, None, Rejected),
            Transient
        );
        assert_eq!(
            classify(StatusCode::REQUEST_TIMEOUT, None, Rejected),
            Transient
        );
        assert_eq!(
            classify(StatusCode::INTERNAL_SERVER_ERROR, None, Rejected),
            Transient
        );
        assert_eq!(classify(StatusCode::BAD_GATEWAY, None, Rejected), Transient);
        assert_eq!(
            classify(StatusCode::NOT_FOUND, None, Rejected),
            Misconfigured
        );
        assert_eq!(
            classify(StatusCode::METHOD_NOT_ALLOWED, None, Rejected),
            Misconfigured
        );
        assert_eq!(classify(StatusCode::FOUND, None, Rejected), Misconfigured);
    }

    #[test]
    fn retry_after_in_seconds_and_as_http_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn error_bodies_are_read_leniently() {
        let b =
            ErrorBody::parse(br#"{"error":"invalid_grant","error_description":"rotated","x":1}"#);
        assert_eq!(b.error.as_deref(), Some("invalid_grant"));
        assert_eq!(b.error_description.as_deref(), Some("rotated"));
        assert!(ErrorBody::parse(b"<html>502</html>").error.is_none());
        assert!(ErrorBody::parse(br#"{"error":42}"#).error.is_none());
    }
}
