//! Reading a token response into a [`TokenSet`], with configurable field names.

use std::time::SystemTime;

use reauth::TokenSet;
use serde_json::Value;

use crate::expiry::Expiry;

/// Where the parts of a token response are found. A name starting with `/` is
/// a JSON pointer (RFC 6901) into nested objects, e.g. `/data/accessToken`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fields {
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
    pub(crate) expiry: Expiry,
    pub(crate) token_type: String,
    pub(crate) scope: String,
}

impl Default for Fields {
    /// The RFC 6749 §5.1 names.
    fn default() -> Self {
        Self {
            access_token: "access_token".into(),
            refresh_token: "refresh_token".into(),
            expiry: Expiry::default(),
            token_type: "token_type".into(),
            scope: "scope".into(),
        }
    }
}

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    let found = if name.starts_with('/') {
        v.pointer(name)
    } else {
        v.get(name)
    };
    found.filter(|v| !v.is_null())
}

fn string(v: &Value, name: &str) -> Result<Option<String>, String> {
    match field(v, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("`{name}` is not a string")),
    }
}

/// Parses a success body. `now` (when the request was sent) turns a
/// relative expiry into an absolute `expires_at` and is recorded as
/// `obtained_at`; see [`Expiry`] for where the expiry is read. A missing refresh token is
/// left `None`: the session keeps the old one (C12).
///
/// The error never echoes the body or a value from it.
pub(crate) fn parse(body: &[u8], fields: &Fields, now: SystemTime) -> Result<TokenSet, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON ({})", e.classify_name()))?;
    if !v.is_object() {
        return Err("not a JSON object".into());
    }
    let access = string(&v, &fields.access_token)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("no `{}`", fields.access_token))?;
    let expires_at = fields.expiry.expires_at(&v, &access, now)?;
    let mut tokens = TokenSet::new(access);
    if let Some(r) = string(&v, &fields.refresh_token)?.filter(|s| !s.is_empty()) {
        tokens = tokens.with_refresh_token(r);
    }
    if let Some(at) = expires_at {
        tokens = tokens.with_expires_at(at);
        tokens.obtained_at = Some(now);
    }
    if let Some(t) = string(&v, &fields.token_type)? {
        tokens = tokens.with_token_type(t);
    }
    if let Some(s) = string(&v, &fields.scope)? {
        tokens = tokens.with_scope(s);
    }
    Ok(tokens)
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn rfc6749_response_becomes_a_token_set_with_absolute_expiry() {
        let body = br#"{"access_token":"a1","token_type":"Bearer","expires_in":300,"refresh_token":"r1","scope":"read"}"#;
        let t = parse(body, &Fields::default(), now()).unwrap();
        assert_eq!(t.access_token.secret(), "a1");
        assert_eq!(t.refresh_token.as_ref().map(|r| r.secret()), Some("r1"));
        assert_eq!(t.expires_at, Some(now() + Duration::from_secs(300)));
        assert_eq!(t.obtained_at, Some(now()));
        assert_eq!(t.scope.as_deref(), Some("read"));
    }

    #[test]
    fn expires_in_may_be_fractional_or_quoted_and_may_be_absent() {
        let t = parse(
            br#"{"access_token":"a","expires_in":"60"}"#,
            &Fields::default(),
            now(),
        )
        .unwrap();
        assert_eq!(t.expires_at, Some(now() + Duration::from_secs(60)));
        let t = parse(
            br#"{"access_token":"a","expires_in":1.5}"#,
            &Fields::default(),
            now(),
        )
        .unwrap();
        assert_eq!(t.expires_at, Some(now() + Duration::from_millis(1500)));
        let t = parse(
            br#"{"access_token":"a","expires_in":null}"#,
            &Fields::default(),
            now(),
        )
        .unwrap();
        assert_eq!(t.expires_at, None);
        assert!(
            parse(
                br#"{"access_token":"a","expires_in":-1}"#,
                &Fields::default(),
                now()
            )
            .is_err()
        );
        assert!(
            parse(
                br#"{"access_token":"a","expires_in":"soon"}"#,
                &Fields::default(),
                now()
            )
            .is_err()
        );
    }

    #[test]
    fn c12_missing_refresh_token_is_left_none() {
        let t = parse(br#"{"access_token":"a"}"#, &Fields::default(), now()).unwrap();
        assert!(t.refresh_token.is_none());
        assert_eq!(t.token_type, "Bearer");
    }

    #[test]
    fn malformed_bodies_are_errors_that_do_not_echo_values() {
        assert!(parse(b"<html>", &Fields::default(), now()).is_err());
        assert!(parse(b"[]", &Fields::default(), now()).is_err());
        assert!(parse(br#"{"token":"x"}"#, &Fields::default(), now()).is_err());
        assert!(parse(br#"{"access_token":""}"#, &Fields::default(), now()).is_err());
        let e = parse(
            br#"{"access_token":"a","refresh_token":{"secret-value":1}}"#,
            &Fields::default(),
            now(),
        )
        .unwrap_err();
        assert!(!e.contains("secret-value"), "{e}");
        let e = parse(
            br#"{"access_token":"a", "x": "secret-value""#,
            &Fields::default(),
            now(),
        )
        .unwrap_err();
        assert!(!e.contains("secret-value"), "{e}");
    }

    #[test]
    fn json_pointers_reach_nested_fields() {
        let fields = Fields {
            access_token: "/data/token".into(),
            ..Fields::default()
        };
        let t = parse(br#"{"data":{"token":"nested"}}"#, &fields, now()).unwrap();
        assert_eq!(t.access_token.secret(), "nested");
    }
}
