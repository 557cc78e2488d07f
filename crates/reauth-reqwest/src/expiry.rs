//! Where a token response says when the access token expires.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// Where the access token's expiry comes from (C25). Set it with the
/// refresher's `expiry` method; the default is
/// `Expiry::Seconds("expires_in")`, the RFC 6749 field.
///
/// With [`Seconds`](Self::Seconds), [`Millis`](Self::Millis) and
/// [`At`](Self::At), an answer that lacks the field falls back to the access
/// token's JWT `exp` claim when the access token is a JWT (the common
/// `{accessToken, refreshToken}` shape carries its expiry only there), and
/// otherwise has no known expiry: the token is refreshed when it is refused.
/// A field of the wrong type is a misconfiguration, never a guess.
///
/// A field name starting with `/` is a JSON pointer (`/data/expiresAt`).
///
/// ```
/// use reauth_reqwest::{Expiry, JsonRefresher};
///
/// // `{"token": "…", "ttlMs": 300000}`
/// let refresher = JsonRefresher::new("https://api.example.com/refresh".parse().unwrap())
///     .access_token_field("token")
///     .expiry(Expiry::Millis("ttlMs".into()));
/// # let _ = refresher;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expiry {
    /// A lifetime in **seconds** in the named field (a number, or a string
    /// holding one), counted from when the request was sent.
    Seconds(String),
    /// A lifetime in **milliseconds** in the named field.
    Millis(String),
    /// An **absolute** expiry in the named field: Unix time as a number
    /// (seconds; a value above 10¹¹ is taken as milliseconds — 10¹¹ seconds
    /// is the year 5138), or an RFC 3339 string (`2030-01-01T12:00:00Z`).
    At(String),
    /// The access token's JWT `exp` claim (read, not verified: the token is
    /// for the resource server, which verifies it).
    JwtExp,
    /// No known expiry: the token is used until a request is refused.
    Unknown,
}

impl Default for Expiry {
    fn default() -> Self {
        Self::Seconds("expires_in".to_owned())
    }
}

/// Values of an absolute time above this are milliseconds, not seconds.
const MILLIS_ABOVE: f64 = 1e11;

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    let found = if name.starts_with('/') {
        v.pointer(name)
    } else {
        v.get(name)
    };
    found.filter(|v| !v.is_null())
}

/// A non-negative number, or a string holding one.
fn number(v: &Value) -> Option<f64> {
    let n = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (n.is_finite() && n >= 0.0).then_some(n)
}

/// `now + seconds`; `None` (no known expiry) if not representable.
fn after(now: SystemTime, secs: f64) -> Option<SystemTime> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .and_then(|d| now.checked_add(d))
}

fn unix(secs: f64) -> Option<SystemTime> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .and_then(|d| UNIX_EPOCH.checked_add(d))
}

/// The `exp` claim of `token` if it is a JWT (three base64url segments whose
/// middle one is a JSON object); `None` otherwise.
pub(crate) fn jwt_exp(token: &str) -> Option<SystemTime> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    number(claims.get("exp")?).and_then(unix)
}

/// Turns a number read from a field into an instant, given the time received.
type Reading = fn(f64, SystemTime) -> Option<SystemTime>;

impl Expiry {
    /// When `access` (from the answer `v`, received at `now`) expires.
    /// `Err` names what is wrong without echoing a value.
    pub(crate) fn expires_at(
        &self,
        v: &Value,
        access: &str,
        now: SystemTime,
    ) -> Result<Option<SystemTime>, String> {
        let (name, read): (&str, Reading) = match self {
            Self::Unknown => return Ok(None),
            Self::JwtExp => return Ok(jwt_exp(access)),
            Self::Seconds(name) => (name, |n, now| after(now, n)),
            Self::Millis(name) => (name, |n, now| after(now, n / 1000.0)),
            Self::At(name) => {
                let Some(value) = field(v, name) else {
                    return Ok(jwt_exp(access));
                };
                if let Value::String(s) = value
                    && let Ok(t) = time::OffsetDateTime::parse(
                        s.trim(),
                        &time::format_description::well_known::Rfc3339,
                    )
                {
                    let nanos = t.unix_timestamp_nanos();
                    return Ok(u64::try_from(nanos)
                        .ok()
                        .and_then(|n| UNIX_EPOCH.checked_add(Duration::from_nanos(n))));
                }
                let n = number(value).ok_or_else(|| {
                    format!("`{name}` is neither a Unix time nor an RFC 3339 date")
                })?;
                return Ok(if n > MILLIS_ABOVE {
                    unix(n / 1000.0)
                } else {
                    unix(n)
                });
            }
        };
        match field(v, name) {
            None => Ok(jwt_exp(access)),
            Some(value) => {
                let n = number(value)
                    .ok_or_else(|| format!("`{name}` is not a non-negative number"))?;
                Ok(read(n, now))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    /// A JWT-shaped token with `claims` (signature not checked).
    fn jwt(claims: &Value) -> String {
        let enc = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
        format!("{}.{}.sig", enc(&json!({"alg": "EdDSA"})), enc(claims))
    }

    #[test]
    fn c25_expiry_in_seconds_milliseconds_absolute_or_from_the_jwt() {
        let v = json!({"expires_in": 300, "ttlMs": 300_000, "exp_s": 1_700_000_300u64,
                       "exp_ms": 1_700_000_300_000u64, "exp_iso": "2023-11-14T22:18:20Z"});
        let at = now() + Duration::from_secs(300);
        let get = |e: Expiry| e.expires_at(&v, "opaque", now()).unwrap();
        assert_eq!(get(Expiry::default()), Some(at));
        assert_eq!(get(Expiry::Millis("ttlMs".into())), Some(at));
        assert_eq!(get(Expiry::At("exp_s".into())), Some(at));
        assert_eq!(get(Expiry::At("exp_ms".into())), Some(at));
        assert_eq!(get(Expiry::At("exp_iso".into())), Some(at));
        assert_eq!(get(Expiry::Unknown), None);
        let token = jwt(&json!({"sub": "u", "exp": 1_700_000_300u64}));
        assert_eq!(
            Expiry::JwtExp
                .expires_at(&json!({}), &token, now())
                .unwrap(),
            Some(at)
        );
    }

    #[test]
    fn c25_an_answer_without_the_field_falls_back_to_the_jwt_exp() {
        let token = jwt(&json!({"exp": 1_700_000_060u64}));
        let got = Expiry::default()
            .expires_at(&json!({"accessToken": token}), &token, now())
            .unwrap();
        assert_eq!(got, Some(now() + Duration::from_secs(60)));
        // An opaque token without the field: no known expiry.
        assert_eq!(
            Expiry::default()
                .expires_at(&json!({}), "opaque", now())
                .unwrap(),
            None
        );
    }

    #[test]
    fn wrong_types_are_errors_and_garbage_jwts_are_not_jwts() {
        let v = json!({"expires_in": "soon", "at": true});
        assert!(Expiry::default().expires_at(&v, "a", now()).is_err());
        assert!(Expiry::At("at".into()).expires_at(&v, "a", now()).is_err());
        assert!(
            Expiry::Seconds("expires_in".into())
                .expires_at(&json!({"expires_in": -5}), "a", now())
                .is_err()
        );
        for garbage in ["a.b", "a.b.c.d", "x.%%%.y", "x.bm90anNvbg.y", ""] {
            assert_eq!(jwt_exp(garbage), None, "{garbage}");
        }
        // Absurd values mean "no known expiry", never a panic.
        let huge = json!({"expires_in": 1e300, "at": 1e300});
        assert_eq!(
            Expiry::default().expires_at(&huge, "a", now()).unwrap(),
            None
        );
        assert_eq!(
            Expiry::At("at".into())
                .expires_at(&huge, "a", now())
                .unwrap(),
            None
        );
    }
}
