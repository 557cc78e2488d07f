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
/// An **HTML** 400/401/403 without a known code is [`Transient`]: a token
/// endpoint answers errors in JSON (RFC 6749 §5.2), so a page is something in
/// front of it (a proxy, a WAF, a captive portal) and no verdict on the
/// refresh token — ending the session on it would log users out because a
/// proxy hiccuped. A bare or plain-text refusal keeps meaning `refused`
/// (hand-written backends answer so).
///
/// [`Rejected`]: RefreshErrorKind::Rejected
/// [`Misconfigured`]: RefreshErrorKind::Misconfigured
/// [`Transient`]: RefreshErrorKind::Transient
pub(crate) fn classify(
    status: StatusCode,
    code: Option<&str>,
    refused: RefreshErrorKind,
    html: bool,
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
        StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN if html => {
            Transient
        }
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

/// The longest `error` code kept (RFC 6749 codes are a few dozen characters).
const MAX_CODE_CHARS: usize = 64;
/// The longest `error_description` kept: enough for a human, short enough
/// for a log line.
const MAX_DESCRIPTION_CHARS: usize = 256;

impl ErrorBody {
    /// Reads the two fields, each cut to a sane length (marked with `…`) and
    /// with control characters (newlines: forged log lines) turned to spaces.
    pub(crate) fn parse(body: &[u8]) -> Self {
        let field = |v: &serde_json::Value, name: &str, max: usize| {
            v.get(name).and_then(|e| e.as_str()).map(|s| tame(s, max))
        };
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .map(|v| Self {
                error: field(&v, "error", MAX_CODE_CHARS),
                error_description: field(&v, "error_description", MAX_DESCRIPTION_CHARS),
            })
            .unwrap_or_default()
    }
}

/// `s` with control characters as spaces, cut after `max` characters (then
/// ending in `…`).
pub(crate) fn tame(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// Whether an error answer is a web page rather than an API's answer: an
/// HTML content type, or a body that opens with markup.
pub(crate) fn is_html(content_type: Option<&str>, body: &[u8]) -> bool {
    let declared = content_type.is_some_and(|t| {
        let t = t.to_ascii_lowercase();
        t.contains("text/html") || t.contains("application/xhtml")
    });
    declared || body.trim_ascii_start().first() == Some(&b'<')
}

#[cfg(test)]
mod tests {
    use super::*;
    use RefreshErrorKind::{Misconfigured, Rejected, Transient};

    const BAD: StatusCode = StatusCode::BAD_REQUEST;

    /// `classify` for an answer that is not a web page.
    fn classify_json(
        status: StatusCode,
        code: Option<&str>,
        refused: RefreshErrorKind,
    ) -> RefreshErrorKind {
        classify(status, code, refused, false)
    }

    #[test]
    fn c6_an_html_refusal_is_transient_unless_it_names_invalid_grant() {
        for status in [BAD, StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN] {
            assert_eq!(classify(status, None, Rejected, true), Transient);
        }
        assert_eq!(
            classify(BAD, Some("invalid_grant"), Rejected, true),
            Rejected
        );
        assert_eq!(
            classify(StatusCode::NOT_FOUND, None, Rejected, true),
            Misconfigured
        );
        assert!(is_html(Some("text/html; charset=utf-8"), b""));
        assert!(is_html(None, b"  \n<!DOCTYPE html>"));
        assert!(!is_html(Some("application/json"), br#"{"error":"x"}"#));
        assert!(!is_html(None, b"Unauthorized"));
    }

    #[test]
    fn c23_error_fields_are_cut_and_lose_control_characters() {
        assert_eq!(tame("short", 10), "short");
        assert_eq!(tame("a\nb\tc", 10), "a b c");
        assert_eq!(tame("ééééé", 3), "ééé…");
        let b = ErrorBody::parse(
            format!(
                r#"{{"error":"{}","error_description":"{}"}}"#,
                "e".repeat(100),
                "d".repeat(1000)
            )
            .as_bytes(),
        );
        assert_eq!(b.error.unwrap().chars().count(), MAX_CODE_CHARS + 1);
        assert_eq!(
            b.error_description.unwrap().chars().count(),
            MAX_DESCRIPTION_CHARS + 1
        );
    }

    #[test]
    fn rfc6749_error_codes_decide_the_class() {
        assert_eq!(
            classify_json(BAD, Some("invalid_grant"), Rejected),
            Rejected
        );
        assert_eq!(
            classify_json(
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
            assert_eq!(
                classify_json(BAD, Some(code), Rejected),
                Misconfigured,
                "{code}"
            );
        }
        assert_eq!(
            classify_json(StatusCode::UNAUTHORIZED, Some("invalid_client"), Rejected),
            Misconfigured
        );
        assert_eq!(
            classify_json(
                StatusCode::SERVICE_UNAVAILABLE,
                Some("temporarily_unavailable"),
                Rejected
            ),
            Transient
        );
        assert_eq!(
            classify_json(BAD, Some("server_error"), Rejected),
            Transient
        );
    }

    #[test]
    fn without_a_known_code_the_status_decides() {
        assert_eq!(classify_json(BAD, None, Rejected), Rejected);
        assert_eq!(classify_json(BAD, Some("what_is_this"), Rejected), Rejected);
        assert_eq!(
            classify_json(StatusCode::UNAUTHORIZED, None, Rejected),
            Rejected
        );
        assert_eq!(
            classify_json(StatusCode::FORBIDDEN, None, Rejected),
            Rejected
        );
        assert_eq!(
            classify_json(StatusCode::UNAUTHORIZED, None, Misconfigured),
            Misconfigured
        );
        assert_eq!(
            classify_json(StatusCode::TOO_MANY_REQUESTS, None, Rejected),
            Transient
        );
        assert_eq!(
            classify_json(StatusCode::REQUEST_TIMEOUT, None, Rejected),
            Transient
        );
        assert_eq!(
            classify_json(StatusCode::INTERNAL_SERVER_ERROR, None, Rejected),
            Transient
        );
        assert_eq!(
            classify_json(StatusCode::BAD_GATEWAY, None, Rejected),
            Transient
        );
        assert_eq!(
            classify_json(StatusCode::NOT_FOUND, None, Rejected),
            Misconfigured
        );
        assert_eq!(
            classify_json(StatusCode::METHOD_NOT_ALLOWED, None, Rejected),
            Misconfigured
        );
        assert_eq!(
            classify_json(StatusCode::FOUND, None, Rejected),
            Misconfigured
        );
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
