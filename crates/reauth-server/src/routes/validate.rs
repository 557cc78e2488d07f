//! Limits on every request parameter (DESIGN.md S15): a value that is too
//! long, not UTF-8, or holds a NUL byte or control characters is refused
//! with `400 invalid_request` naming the parameter — before it reaches the
//! limiter, a password hash or the database (where Postgres would refuse a
//! NUL with an error, and a long value could overflow an index).

use crate::app_error::AppError;

/// What a parameter may hold.
#[derive(Debug, Clone, Copy)]
struct Rule {
    max_len: usize,
    /// Control characters (C0, DEL, C1) refused, not only NUL.
    no_controls: bool,
    /// RFC 6749 §3.3 scope syntax.
    scope: bool,
}

const fn rule(max_len: usize, no_controls: bool) -> Rule {
    Rule {
        max_len,
        no_controls,
        scope: false,
    }
}

/// Longest value of a parameter with no rule of its own.
pub(crate) const MAX_OTHER: usize = 4096;

fn rule_for(name: &str) -> Rule {
    match name {
        "grant_type" | "token_type_hint" => rule(64, true),
        "username" | "client_id" => rule(128, true),
        "password" => rule(1024, false),
        "client_secret" => rule(256, false),
        "refresh_token" => rule(1024, true),
        // An access token (at most 8 KiB) or a refresh token.
        "token" => rule(8192, true),
        "scope" => Rule {
            max_len: 1024,
            no_controls: true,
            scope: true,
        },
        _ => rule(MAX_OTHER, false),
    }
}

/// The static name of a known parameter, for error descriptions.
fn known(name: &str) -> &'static str {
    match name {
        "grant_type" => "grant_type",
        "token_type_hint" => "token_type_hint",
        "username" => "username",
        "client_id" => "client_id",
        "password" => "password",
        "client_secret" => "client_secret",
        "refresh_token" => "refresh_token",
        "token" => "token",
        "scope" => "scope",
        _ => "parameter",
    }
}

fn scope_char(c: char) -> bool {
    // scope-token = 1*( %x21 / %x23-5B / %x5D-7E ), tokens separated by spaces.
    c == ' ' || c == '\x21' || ('\x23'..='\x5b').contains(&c) || ('\x5d'..='\x7e').contains(&c)
}

/// Checks `value` of parameter `name` against its rule.
///
/// # Errors
///
/// [`AppError::InvalidParameter`].
pub(crate) fn param(name: &str, value: &str) -> Result<(), AppError> {
    let rule = rule_for(name);
    let refuse = |why| {
        Err(AppError::InvalidParameter {
            name: known(name),
            why,
        })
    };
    if value.len() > rule.max_len {
        return refuse("too long");
    }
    if value.contains('\0') {
        return refuse("contains a NUL byte");
    }
    if rule.no_controls && value.chars().any(char::is_control) {
        return refuse("contains control characters");
    }
    if rule.scope && !value.chars().all(scope_char) {
        return refuse("not a valid scope (RFC 6749 section 3.3)");
    }
    Ok(())
}

/// Checks a parameter's name: short, printable.
///
/// # Errors
///
/// [`AppError::InvalidParameter`].
pub(crate) fn name(name: &str) -> Result<(), AppError> {
    if name.len() > 64 || name.chars().any(char::is_control) {
        return Err(AppError::InvalidParameter {
            name: "parameter name",
            why: "too long or contains control characters",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s15_values_are_bounded_and_printable() {
        assert!(param("username", "alice").is_ok());
        assert!(param("username", &"a".repeat(129)).is_err());
        assert!(param("username", "a\0b").is_err());
        assert!(param("username", "a\tb").is_err());
        assert!(param("password", "tab\tis fine").is_ok());
        assert!(param("password", "nul\0is not").is_err());
        assert!(param("scope", "read write:all").is_ok());
        assert!(param("scope", "read \"x\"").is_err());
        assert!(param("scope", "caf\u{e9}").is_err());
        assert!(param("unknown", &"x".repeat(MAX_OTHER)).is_ok());
        assert!(param("unknown", &"x".repeat(MAX_OTHER + 1)).is_err());
        assert!(name("a\u{0}").is_err());
    }
}
