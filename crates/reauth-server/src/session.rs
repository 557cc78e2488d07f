//! The session engine: login, rotation (compare-and-set, grace window, reuse
//! detection), revocation and token checks. Handlers call these; nothing here
//! knows about HTTP beyond [`AppError`].
//!
//! # Rotation
//!
//! A refresh token names (family F, generation g) and carries a MAC. The row
//! of F holds its current generation n and `rotated_at`, the time n−1 became n.
//!
//! 1. Fast path, one statement: `UPDATE families SET generation = g+1, …
//!    WHERE id = F AND generation = g AND revoked_at IS NULL AND <lifetimes>`.
//!    One row changed: answer MAC(F, g+1). Of N concurrent presenters of g,
//!    exactly one wins this compare-and-set.
//! 2. Otherwise load the row and classify:
//!    - revoked, unknown, wrong client, past its absolute lifetime or idle
//!      timeout: `invalid_grant`;
//!    - g = n−1 and `now − rotated_at ≤ grace`: a duplicate of the rotation
//!      that just happened. Answer the byte-identical MAC(F, n) and a fresh
//!      access token; nothing is written;
//!    - g < n otherwise (parent after the window, any grandparent): reuse.
//!      Revoke the family, record an audit event, `invalid_grant`.

use std::sync::Arc;

use serde::Serialize;

use crate::app_error::AppError;
use crate::clock::duration_millis;
use crate::jwt::{AccessClaims, Audience};
use crate::refresh_token::{self, FamilyId, RefreshClaims};
use crate::server::AppState;
use crate::store::{FamilyRecord, NewFamily, Rotation};

/// The success body of every token-issuing endpoint.
#[derive(Debug, Serialize)]
pub(crate) struct TokenResponse {
    pub(crate) access_token: String,
    pub(crate) token_type: &'static str,
    pub(crate) expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) scope: Option<String>,
}

const REUSE_DETECTED: &str = "refresh token reuse detected; session revoked";

/// How a refresh was answered (for counters and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefreshOutcome {
    Rotated,
    GraceReplay,
}

fn scope_is_subset(requested: &str, granted: Option<&str>) -> bool {
    let granted: Vec<&str> = granted.unwrap_or("").split_whitespace().collect();
    requested.split_whitespace().all(|s| granted.contains(&s))
}

fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

impl AppState {
    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_millis()
    }

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
            jti: crate::util::random_id(),
            sid: sid.to_owned(),
            scope: scope.map(str::to_owned),
            client_id: client_id.map(str::to_owned),
        };
        self.jwt.sign(&claims)
    }

    fn token_response(
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

    /// Starts a session family for `subject` and issues its first tokens.
    pub(crate) async fn start_session(
        &self,
        subject: &str,
        client_id: Option<&str>,
        scope: Option<&str>,
    ) -> Result<TokenResponse, AppError> {
        let family = FamilyId::random();
        let id = family.to_hex();
        self.repo
            .create_family(&NewFamily {
                id: &id,
                subject,
                client_id,
                scope,
                generation: 1,
                now: self.now_ms(),
            })
            .await?;
        tracing::info!(family = short(&id), subject, "session started");
        Ok(self.token_response(&family, subject, 1, scope, client_id))
    }

    /// Checks username and password (argon2id on a blocking thread), under the
    /// failed-login limiter keyed by `rate_key`.
    pub(crate) async fn check_password(
        &self,
        username: &str,
        password: String,
        rate_key: &str,
    ) -> Result<(), AppError> {
        let now = self.now_ms();
        if let Err(retry_after) = self.limiter.check(rate_key, now) {
            crate::metrics::login("rate_limited");
            tracing::warn!(username, "login rate limited");
            return Err(AppError::RateLimited { retry_after });
        }
        let user = self.repo.find_user(username).await?;
        let (hash, known) = match user {
            Some(u) => (u.password_hash, true),
            None => (self.dummy_hash.clone(), false),
        };
        let ok = tokio::task::spawn_blocking(move || crate::password::verify(&password, &hash))
            .await
            .map_err(AppError::internal)?;
        if ok && known {
            crate::metrics::login("success");
            Ok(())
        } else {
            self.limiter.record_failure(rate_key, self.now_ms());
            crate::metrics::login("failure");
            tracing::info!(username, "login failed");
            Err(AppError::InvalidGrant("invalid username or password"))
        }
    }

    /// Rotates a refresh token (see the module docs).
    ///
    /// `client_id`: the family must have been issued to exactly that client —
    /// `Some` for `/oauth/token` (the authenticated client), `None` for
    /// `/auth/refresh` (first-party families from `/auth/login` only).
    pub(crate) async fn refresh(
        &self,
        presented: &str,
        client_id: Option<&str>,
        requested_scope: Option<&str>,
    ) -> Result<TokenResponse, AppError> {
        let Some(claims) = refresh_token::verify(self.keys.refresh_mac_key(), presented) else {
            crate::metrics::refresh("rejected");
            return Err(AppError::InvalidGrant("invalid refresh token"));
        };
        let result = self
            .refresh_verified(claims, client_id, requested_scope)
            .await;
        match &result {
            Ok((_, RefreshOutcome::Rotated)) => {
                self.faults.count_rotation();
                crate::metrics::refresh("rotated");
            }
            Ok((_, RefreshOutcome::GraceReplay)) => {
                self.faults.count_grace_replay();
                crate::metrics::refresh("grace_replay");
            }
            Err(AppError::InvalidGrant(REUSE_DETECTED)) => {
                crate::metrics::refresh("reuse_detected")
            }
            Err(AppError::InvalidGrant(_)) => crate::metrics::refresh("rejected"),
            Err(_) => {}
        }
        result.map(|(response, _)| response)
    }

    async fn refresh_verified(
        &self,
        claims: RefreshClaims,
        client_id: Option<&str>,
        requested_scope: Option<&str>,
    ) -> Result<(TokenResponse, RefreshOutcome), AppError> {
        let family_id = claims.family.to_hex();
        let g = claims.generation;
        let config = &self.config;
        // A narrowed scope must be validated before anything is written.
        if let Some(scope) = requested_scope {
            let row = self
                .repo
                .load_family(&family_id)
                .await?
                .ok_or(AppError::InvalidGrant("invalid refresh token"))?;
            if !scope_is_subset(scope, row.scope.as_deref()) {
                return Err(AppError::InvalidScope);
            }
        }
        for _ in 0..3 {
            let now = self.now_ms();
            let rotation = Rotation {
                family_id: &family_id,
                expected_generation: g,
                now,
                created_after: now.saturating_sub(duration_millis(config.absolute_lifetime)),
                used_after: now.saturating_sub(duration_millis(config.idle_timeout)),
                client_id,
            };
            if let Some(row) = self.repo.rotate(&rotation).await? {
                tracing::debug!(
                    family = short(&family_id),
                    generation = row.generation,
                    "rotated"
                );
                let response = self.respond(&claims.family, &row, row.generation, requested_scope);
                return Ok((response, RefreshOutcome::Rotated));
            }
            // The compare-and-set failed: find out why.
            let row = self
                .repo
                .load_family(&family_id)
                .await?
                .ok_or(AppError::InvalidGrant("invalid refresh token"))?;
            if row.revoked_at.is_some() {
                return Err(AppError::InvalidGrant("session revoked"));
            }
            // A token issued to an OAuth client is refreshed by that client,
            // authenticated, at `/oauth/token` (RFC 6749 §6); a first-party
            // token (`/auth/login`) only at `/auth/refresh`.
            if row.client_id.as_deref() != client_id {
                return Err(AppError::InvalidGrant(
                    "refresh token was issued to another client",
                ));
            }
            if row.created_at <= rotation.created_after {
                return Err(AppError::InvalidGrant("session expired"));
            }
            let n = row.generation;
            if g == n {
                if row.last_used_at <= rotation.used_after {
                    return Err(AppError::InvalidGrant("session idle timeout"));
                }
                continue; // Cannot happen with a monotonic row; retry the CAS.
            }
            let grace = duration_millis(config.grace_window);
            if g == n - 1 && grace > 0 && row.rotated_at.is_some_and(|t| now - t <= grace) {
                tracing::debug!(family = short(&family_id), generation = n, "grace replay");
                let response = self.respond(&claims.family, &row, n, requested_scope);
                return Ok((response, RefreshOutcome::GraceReplay));
            }
            if g < n {
                let detail = format!("generation {g} presented while current is {n}");
                self.revoke(&family_id, "reuse_detected", Some(&detail))
                    .await?;
                self.faults.count_reuse();
                tracing::warn!(
                    family = short(&family_id),
                    subject = row.subject,
                    presented = g,
                    current = n,
                    "refresh token reuse detected; family revoked"
                );
                return Err(AppError::InvalidGrant(REUSE_DETECTED));
            }
            tracing::warn!(
                family = short(&family_id),
                presented = g,
                current = n,
                "refresh token generation ahead of the database"
            );
            return Err(AppError::InvalidGrant("invalid refresh token"));
        }
        Err(AppError::Internal("rotation did not converge".into()))
    }

    fn respond(
        &self,
        family: &FamilyId,
        row: &FamilyRecord,
        generation: i64,
        requested_scope: Option<&str>,
    ) -> TokenResponse {
        let scope = requested_scope.or(row.scope.as_deref());
        self.token_response(
            family,
            &row.subject,
            generation,
            scope,
            row.client_id.as_deref(),
        )
    }

    /// Revokes a family (idempotent): database, local denylist, metrics.
    /// Returns whether this call revoked it.
    pub(crate) async fn revoke(
        &self,
        family_id: &str,
        kind: &'static str,
        detail: Option<&str>,
    ) -> Result<bool, AppError> {
        let now = self.now_ms();
        let revoked = self
            .repo
            .revoke_family(family_id, now, kind, detail)
            .await?;
        self.deny(family_id, now);
        if revoked {
            crate::metrics::revocation(kind);
            tracing::info!(family = short(family_id), kind, "family revoked");
        }
        Ok(revoked)
    }

    pub(crate) fn deny(&self, family_id: &str, revoked_at: i64) {
        if let Ok(mut map) = self.denylist.write() {
            map.entry(family_id.to_owned()).or_insert(revoked_at);
        }
    }

    /// Revokes the family of a refresh token or an access token. Unknown or
    /// invalid tokens are ignored (RFC 7009 §2.2).
    pub(crate) async fn revoke_token(
        &self,
        token: &str,
        kind: &'static str,
    ) -> Result<bool, AppError> {
        if let Some(claims) = refresh_token::verify(self.keys.refresh_mac_key(), token) {
            return self.revoke(&claims.family.to_hex(), kind, None).await;
        }
        if let Ok(claims) = self.jwt.verify(
            token,
            self.issuer(),
            &self.config.audience,
            self.now_ms().div_euclid(1000),
        ) {
            return self.revoke(&claims.sid, kind, None).await;
        }
        Ok(false)
    }

    /// Verifies a bearer access token, including revocation of its family.
    pub(crate) fn verify_access(&self, token: &str) -> Result<Arc<AccessClaims>, AppError> {
        let claims = self
            .jwt
            .verify(
                token,
                self.issuer(),
                &self.config.audience,
                self.now_ms().div_euclid(1000),
            )
            .map_err(AppError::InvalidToken)?;
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

    /// RFC 7662 introspection of a refresh or access token.
    pub(crate) async fn introspect(&self, token: &str) -> Result<serde_json::Value, AppError> {
        let inactive = serde_json::json!({ "active": false });
        if let Some(claims) = refresh_token::verify(self.keys.refresh_mac_key(), token) {
            let Some(row) = self.repo.load_family(&claims.family.to_hex()).await? else {
                return Ok(inactive);
            };
            let now = self.now_ms();
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
            Ok(claims) => {
                let mut body = serde_json::to_value(&*claims).map_err(AppError::internal)?;
                body["active"] = true.into();
                body["token_type"] = "Bearer".into();
                Ok(body)
            }
            Err(_) => Ok(inactive),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::scope_is_subset;

    #[test]
    fn scope_subset() {
        assert!(scope_is_subset("a b", Some("b a c")));
        assert!(scope_is_subset("", None));
        assert!(!scope_is_subset("a d", Some("a b")));
        assert!(!scope_is_subset("a", None));
    }
}
