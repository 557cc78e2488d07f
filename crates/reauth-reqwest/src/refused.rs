//! When does a response mean "the access token was refused"?

use http::header::WWW_AUTHENTICATE;
use reqwest::{Response, StatusCode};

/// Decides whether a response means the server refused the access token, so
/// the session should refresh it and the request be replayed once.
///
/// The default is [`DefaultRefusal`]. Any `Fn(&Response) -> bool` is one too:
///
/// ```
/// use reauth_reqwest::TokenRefused;
/// use reqwest::{Response, StatusCode};
///
/// // An API that answers 403 for an expired token.
/// let refused = |r: &Response| matches!(r.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
/// # fn is_policy(_: &impl TokenRefused) {}
/// # is_policy(&refused);
/// ```
pub trait TokenRefused: Send + Sync + 'static {
    /// Whether `response` says the access token that was sent is not accepted.
    fn token_refused(&self, response: &Response) -> bool;
}

impl<F> TokenRefused for F
where
    F: Fn(&Response) -> bool + Send + Sync + 'static,
{
    fn token_refused(&self, response: &Response) -> bool {
        self(response)
    }
}

/// The default [`TokenRefused`]: a `401 Unauthorized`, or any response whose
/// `WWW-Authenticate` header carries the RFC 6750 `Bearer error="invalid_token"`
/// challenge (some servers send it with 400 or 403).
///
/// ```
/// use reauth_reqwest::DefaultRefusal;
///
/// assert!(DefaultRefusal::challenge_is_invalid_token(r#"Bearer realm="api", error="invalid_token""#));
/// assert!(!DefaultRefusal::challenge_is_invalid_token(r#"Bearer error="insufficient_scope""#));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultRefusal;

impl DefaultRefusal {
    /// Whether a `WWW-Authenticate` value holds a `Bearer` challenge with
    /// `error="invalid_token"` (quoted or not, any letter case in the scheme).
    pub fn challenge_is_invalid_token(value: &str) -> bool {
        // A header may hold several challenges; look at the part after each
        // `Bearer` scheme token up to the next scheme (good enough: auth-params
        // of other schemes rarely say `error=invalid_token`).
        let lower = value.to_ascii_lowercase();
        let Some(start) = lower.find("bearer") else {
            return false;
        };
        let params = &lower[start + "bearer".len()..];
        params.split(',').any(|p| {
            let Some((k, v)) = p.split_once('=') else {
                return false;
            };
            k.trim() == "error" && v.trim().trim_matches('"') == "invalid_token"
        })
    }
}

impl TokenRefused for DefaultRefusal {
    fn token_refused(&self, response: &Response) -> bool {
        if response.status() == StatusCode::UNAUTHORIZED {
            return true;
        }
        response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(Self::challenge_is_invalid_token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, challenge: Option<&str>) -> Response {
        let mut b = http::Response::builder().status(status);
        if let Some(c) = challenge {
            b = b.header(WWW_AUTHENTICATE, c);
        }
        Response::from(b.body("").unwrap())
    }

    #[test]
    fn default_refusal_is_401_or_invalid_token_challenge() {
        let d = DefaultRefusal;
        assert!(d.token_refused(&response(401, None)));
        assert!(d.token_refused(&response(401, Some("Bearer"))));
        assert!(d.token_refused(&response(
            403,
            Some(r#"Bearer realm="x", error="invalid_token""#)
        )));
        assert!(d.token_refused(&response(400, Some("bearer error=invalid_token"))));
        assert!(!d.token_refused(&response(403, Some(r#"Bearer error="insufficient_scope""#))));
        assert!(!d.token_refused(&response(403, None)));
        assert!(!d.token_refused(&response(200, None)));
        assert!(!d.token_refused(&response(500, Some(r#"Basic realm="x""#))));
    }

    #[test]
    fn closures_are_policies() {
        let only_403 = |r: &Response| r.status() == StatusCode::FORBIDDEN;
        assert!(only_403.token_refused(&response(403, None)));
        assert!(!only_403.token_refused(&response(401, None)));
    }
}
