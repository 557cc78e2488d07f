//! Access tokens and token responses.

use std::sync::Arc;

use serde::Serialize;

use super::Engine;
use super::clients::{CLIENT_SUBJECT_PREFIX, still_allowed};
use crate::app_error::AppError;
use crate::clock::duration_millis;
use crate::jwt::{AccessClaims, Audience};
use crate::refresh_token::{self, FamilyId};
use crate::store::{ClientRecord, FamilyRecord};

/// The success body of every token-issuing endpoint. Its `Debug` shows
/// no token.
#[derive(Serialize)]
pub(crate) struct TokenResponse {
    pub(crate) access_token: String,
    pub(crate) token_type: &'static str,
    pub(crate) expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) scope: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"[redacted]")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("scope", &self.scope)
            .finish()
    }
}

impl Engine {
    /// A signed access token for a session.
    pub(crate) fn access_token(
        &self,
        subject: &str,
        sid: &str,
        scope: Option<&str>,
        client_id: Option<&str>,
    ) -> String {
        let iat = self.now_ms().div_euclid(1000);
        let ttl = i64::try_from(self.config.access_token_ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = AccessClaims {
            iss: self.issuer().to_owned(),
            aud: Audience::One(self.config.audience.clone()),
            sub: subject.to_owned(),
            exp: iat.saturating_add(ttl),
            iat,
            nbf: None,
            jti: crate::util::random_id(),
            sid: sid.to_owned(),
            scope: scope.map(str::to_owned),
            client_id: client_id.map(str::to_owned),
        };
        self.jwt.sign(&claims)
    }

    pub(super) fn token_response(
        &self,
        family: &FamilyId,
        row_subject: &str,
        generation: i64,
        scope: Option<&str>,
        client_id: Option<&str>,
    ) -> TokenResponse {
        let sid = family.to_hex();
        TokenResponse {
            access_token: self.access_token(row_subject, &sid, scope, client_id),
            token_type: "Bearer",
            expires_in: self.config.access_token_ttl.as_secs(),
            refresh_token: Some(refresh_token::derive(
                self.keys.refresh_mac_key(),
                family,
                generation,
            )),
            scope: scope.map(str::to_owned),
        }
    }

    /// The answer for `row` at `generation`, with the requested (narrowed)
    /// scope or the granted one, less what `client` may no longer have.
    pub(super) fn respond(
        &self,
        family: &FamilyId,
        row: &FamilyRecord,
        generation: i64,
        requested_scope: Option<&str>,
        client: Option<&ClientRecord>,
    ) -> TokenResponse {
        let scope = still_allowed(requested_scope.or(row.scope.as_deref()), client);
        self.token_response(
            family,
            &row.subject,
            generation,
            scope.as_deref(),
            row.client_id.as_deref(),
        )
    }

    /// A `client_credentials` access token: `sub` is `client:{id}` (never a
    /// user's), `sid` a fresh id that becomes a (revoked) family row only
    /// if the token is revoked. No refresh token (RFC 6749 §4.4.3).
    pub(crate) fn client_credentials(
        &self,
        client: &ClientRecord,
        scope: Option<&str>,
    ) -> TokenResponse {
        let subject = format!("{CLIENT_SUBJECT_PREFIX}{}", client.client_id);
        let sid = crate::util::random_id();
        TokenResponse {
            access_token: self.access_token(&subject, &sid, scope, Some(&client.client_id)),
            token_type: "Bearer",
            expires_in: self.config.access_token_ttl.as_secs(),
            refresh_token: None,
            scope: scope.map(str::to_owned),
        }
    }

    /// Verifies an access token's signature and claims (not revocation).
    pub(crate) fn verify_jwt(&self, token: &str) -> Result<Arc<AccessClaims>, AppError> {
        self.jwt
            .verify(
                token,
                self.issuer(),
                &self.config.audience,
                self.now_ms().div_euclid(1000),
                self.config.limits.clock_leeway,
            )
            .map_err(AppError::InvalidToken)
    }

    /// Verifies a bearer access token, including revocation of its family.
    pub(crate) fn verify_access(&self, token: &str) -> Result<Arc<AccessClaims>, AppError> {
        let claims = self.verify_jwt(token)?;
        let denied = self
            .denylist
            .read()
            .map(|map| map.contains_key(&claims.sid))
            .unwrap_or(false);
        if denied {
            return Err(AppError::InvalidToken("session revoked"));
        }
        Ok(claims)
    }

    /// RFC 7662 introspection of a refresh or access token, for `caller`:
    /// only a token issued to `caller` itself, or any token if `caller` is a
    /// resource server; `{"active": false}` for anything else.
    pub(crate) async fn introspect(
        &self,
        token: &str,
        caller: &ClientRecord,
    ) -> Result<serde_json::Value, AppError> {
        let inactive = serde_json::json!({ "active": false });
        let may_see = |client_id: Option<&str>| {
            caller.introspection || client_id == Some(caller.client_id.as_str())
        };
        if let Some(claims) = refresh_token::verify(self.keys.refresh_mac_key(), token) {
            let Some(row) = self.repo.load_family(&claims.family.to_hex()).await? else {
                return Ok(inactive);
            };
            if !may_see(row.client_id.as_deref()) {
                return Ok(inactive);
            }
            // Judged on the database's clock, like the rotation itself.
            let now = row.read_at;
            let grace = duration_millis(self.config.grace_window);
            let live = row.revoked_at.is_none()
                && row.created_at > now - duration_millis(self.config.absolute_lifetime)
                && row.last_used_at > now - duration_millis(self.config.idle_timeout);
            let current = claims.generation == row.generation;
            let in_grace = claims.generation == row.generation - 1
                && grace > 0
                && row.rotated_at.is_some_and(|t| now - t <= grace);
            if !(live && (current || in_grace)) {
                return Ok(inactive);
            }
            let mut body = serde_json::json!({
                "active": true,
                "token_type": "refresh_token",
                "sub": row.subject,
                "sid": row.id,
                "iss": self.issuer(),
                "iat": row.created_at.div_euclid(1000),
                "exp": (row.created_at + duration_millis(self.config.absolute_lifetime)).div_euclid(1000),
            });
            if let Some(c) = &row.client_id {
                body["client_id"] = c.as_str().into();
            }
            if let Some(s) = &row.scope {
                body["scope"] = s.as_str().into();
            }
            return Ok(body);
        }
        match self.verify_access(token) {
            Ok(claims) if may_see(claims.client_id.as_deref()) => {
                let mut body = serde_json::to_value(&*claims).map_err(AppError::internal)?;
                body["active"] = true.into();
                body["token_type"] = "Bearer".into();
                Ok(body)
            }
            Ok(_) | Err(_) => Ok(inactive),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TokenResponse;

    #[test]
    fn o6_a_token_response_shows_no_token_in_debug() {
        let response = TokenResponse {
            access_token: "at-SECRET".into(),
            token_type: "Bearer",
            expires_in: 300,
            refresh_token: Some("rt-SECRET".into()),
            scope: Some("read".into()),
        };
        let printed = format!("{response:?}");
        assert!(!printed.contains("SECRET"), "{printed}");
        assert!(
            printed.contains("read") && printed.contains("300"),
            "{printed}"
        );
    }
}
