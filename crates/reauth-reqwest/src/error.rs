//! This crate's error type: what the middleware fails with, and what a
//! refresher's [`RefreshError`](reauth::RefreshError) carries as its source.

use reqwest::StatusCode;

/// Errors of the middleware and the HTTP refreshers.
///
/// The middleware returns [`Error::Session`] wrapped in
/// [`reqwest_middleware::Error::Middleware`]; use [`Error::from_middleware`]
/// or [`session_error`](Self::session_error) to get it back:
///
/// ```
/// use reauth_reqwest::Error;
///
/// fn must_log_in_again(err: &reqwest_middleware::Error) -> bool {
///     Error::session_error(err).is_some_and(|e| e.is_session_ended())
/// }
/// # let err = reqwest_middleware::Error::middleware(Error::from(reauth::Error::NoSession));
/// # assert!(must_log_in_again(&err));
/// ```
///
/// Refreshers put the other variants behind a classified
/// [`RefreshError`](reauth::RefreshError). No variant ever holds a token,
/// secret or response body: only status codes, OAuth2 error codes and the
/// server's `error_description`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The session could not provide a token: not logged in, session ended,
    /// refresh unavailable or misconfigured, or the wait timed out.
    #[error(transparent)]
    Session(#[from] reauth::Error),
    /// A token cannot be put in an HTTP header (it contains control
    /// characters).
    #[error("the token is not a valid header value")]
    InvalidToken(#[source] http::header::InvalidHeaderValue),
    /// The request to the token endpoint failed before a response arrived
    /// (connect error, timeout, reading the body).
    #[error("request to the token endpoint failed")]
    Http(#[source] reqwest::Error),
    /// The token endpoint answered with an error status.
    #[error("token endpoint answered {status}{}{}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default(), description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Endpoint {
        /// The HTTP status.
        status: StatusCode,
        /// The RFC 6749 §5.2 `error` code, if the body had one (at most 64
        /// characters, control characters as spaces).
        code: Option<String>,
        /// The server's `error_description`, if any: at most 256 characters
        /// (longer ones are cut, ending in `…`), control characters as
        /// spaces, so it is safe in a log line.
        description: Option<String>,
    },
    /// The token endpoint answered with a redirect (3xx), or its answer came
    /// from another URL (a client that follows redirects). Not followed: the
    /// refresh token and the client secret are never re-sent elsewhere.
    #[error("token endpoint redirected ({status}); not followed")]
    Redirected {
        /// The HTTP status of the answer.
        status: StatusCode,
    },
    /// The token endpoint's answer was larger than `limit` bytes; it was not
    /// read whole.
    #[error("token endpoint answer larger than {limit} bytes")]
    ResponseTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The token endpoint answered success with something that is not a token
    /// response (not JSON, or a required field is missing or of the wrong type).
    #[error("token endpoint answered {status} with an unusable body: {reason}")]
    InvalidResponse {
        /// The HTTP status.
        status: StatusCode,
        /// What was wrong, without echoing the body.
        reason: String,
    },
}

impl Error {
    /// This crate's error inside a middleware error, if it is one.
    pub fn from_middleware(err: &reqwest_middleware::Error) -> Option<&Self> {
        match err {
            reqwest_middleware::Error::Middleware(e) => e.downcast_ref::<Self>(),
            _ => None,
        }
    }

    /// This crate's error behind a refresh failure, if one of this crate's
    /// refreshers reported it: match the status, the OAuth2 code, a redirect
    /// or an oversized answer without comparing messages.
    ///
    /// ```
    /// use reauth_reqwest::Error;
    ///
    /// fn rate_limited(e: &reauth::Error) -> bool {
    ///     e.refresh_error()
    ///         .and_then(Error::from_refresh_error)
    ///         .is_some_and(|e| matches!(e, Error::Endpoint { status, .. } if status.as_u16() == 429))
    /// }
    /// # let _ = rate_limited;
    /// ```
    pub fn from_refresh_error(err: &reauth::RefreshError) -> Option<&Self> {
        err.get_ref().downcast_ref()
    }

    /// The session error inside a middleware error, if the middleware failed
    /// because the session could not provide a token.
    pub fn session_error(err: &reqwest_middleware::Error) -> Option<&reauth::Error> {
        match Self::from_middleware(err)? {
            Self::Session(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_error_round_trips_through_middleware_error() {
        let err = reqwest_middleware::Error::middleware(Error::Session(reauth::Error::Timeout));
        assert!(matches!(
            Error::session_error(&err),
            Some(reauth::Error::Timeout)
        ));
    }

    #[test]
    fn endpoint_error_displays_code_and_description() {
        let e = Error::Endpoint {
            status: StatusCode::BAD_REQUEST,
            code: Some("invalid_grant".into()),
            description: Some("token rotated".into()),
        };
        assert_eq!(
            e.to_string(),
            "token endpoint answered 400 Bad Request (invalid_grant): token rotated"
        );
    }
}
