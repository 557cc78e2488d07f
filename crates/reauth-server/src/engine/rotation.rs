//! Rotation of refresh tokens.
//!
//! A refresh token names (family F, generation g) and carries a MAC. The row
//! of F holds its current generation n and `rotated_at`, the time n−1 became n.
//!
//! 1. Fast path, one statement: `UPDATE families SET generation = g+1, …
//!    WHERE id = F AND generation = g AND revoked_at IS NULL AND <lifetimes>`.
//!    One row changed (and committed): answer MAC(F, g+1). Of N concurrent
//!    presenters of g, exactly one wins this compare-and-set.
//! 2. Otherwise the repository hands back the row as it is and classify:
//!    - another client's (checked first, answered as an unknown token, and
//!      nothing is written), revoked, unknown, past its absolute lifetime
//!      or idle timeout: `invalid_grant`;
//!    - g = n−1 and `now − rotated_at ≤ grace`: a duplicate of the rotation
//!      that just happened. Answer the byte-identical MAC(F, n) and a fresh
//!      access token; nothing is written;
//!    - g < n otherwise (parent after the window, any grandparent): reuse.
//!      Revoke the family, record an audit event, `invalid_grant`.
//!
//! Every time in these rules — `now`, `rotated_at`, `created_at`,
//! `last_used_at` — is the database's clock (`FamilyRecord::read_at` is the
//! database's now), so replicas whose clocks disagree decide alike (S16).

use super::{Engine, TokenResponse, short};
use crate::app_error::AppError;
use crate::clock::duration_millis;
use crate::refresh_token::{self, RefreshClaims};
use crate::store::{ClientRecord, RotateOutcome, Rotation};

/// The answer to a token that is unknown, forged, or another client's.
const INVALID: &str = "invalid refresh token";
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

impl Engine {
    /// Rotates a refresh token (see the module docs).
    ///
    /// `client`: the family must have been issued to exactly that client —
    /// `Some` for `/oauth/token` (the authenticated client), `None` for
    /// `/auth/refresh` (first-party families from `/auth/login` only).
    /// `requested_scope` may narrow the granted scope, never widen it
    /// (`invalid_scope`); scopes the client may no longer have are dropped.
    pub(crate) async fn refresh(
        &self,
        presented: &str,
        client: Option<&ClientRecord>,
        requested_scope: Option<&str>,
    ) -> Result<TokenResponse, AppError> {
        let Some(claims) = refresh_token::verify(self.keys.refresh_mac_key(), presented) else {
            crate::metrics::refresh("rejected");
            return Err(AppError::InvalidGrant(INVALID));
        };
        let result = self.refresh_verified(claims, client, requested_scope).await;
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
        client: Option<&ClientRecord>,
        requested_scope: Option<&str>,
    ) -> Result<(TokenResponse, RefreshOutcome), AppError> {
        let client_id = client.map(|c| c.client_id.as_str());
        let family_id = claims.family.to_hex();
        let g = claims.generation;
        let config = &self.config;
        // A narrowed scope must be validated before anything is written —
        // after the client binding, so another client learns nothing about
        // the token (not even its scope) from the answer.
        if let Some(scope) = requested_scope {
            let row = self
                .repo
                .load_family(&family_id)
                .await?
                .ok_or(AppError::InvalidGrant(INVALID))?;
            if row.client_id.as_deref() != client_id {
                return Err(AppError::InvalidGrant(INVALID));
            }
            if !scope_is_subset(scope, row.scope.as_deref()) {
                return Err(AppError::InvalidScope);
            }
        }
        let rotation = Rotation {
            family_id: &family_id,
            expected_generation: g,
            absolute_lifetime: config.absolute_lifetime,
            idle_timeout: config.idle_timeout,
            client_id,
        };
        for _ in 0..3 {
            let row = match self.repo.rotate(&rotation).await? {
                RotateOutcome::Advanced(row) => {
                    tracing::debug!(
                        family = short(&family_id),
                        generation = row.generation,
                        "rotated"
                    );
                    let response = self.respond(
                        &claims.family,
                        &row,
                        row.generation,
                        requested_scope,
                        client,
                    );
                    return Ok((response, RefreshOutcome::Rotated));
                }
                // The compare-and-set failed: find out why.
                RotateOutcome::Unchanged(row) => row.ok_or(AppError::InvalidGrant(INVALID))?,
            };
            let now = row.read_at;
            // First of all: a token issued to an OAuth client is refreshed
            // by that client, authenticated, at `/oauth/token` (RFC 6749
            // §6); a first-party token (`/auth/login`) only at
            // `/auth/refresh`. Any other presenter gets the answer an
            // unknown token gets — not whether the session is live, revoked
            // or reused — and changes nothing.
            if row.client_id.as_deref() != client_id {
                return Err(AppError::InvalidGrant(INVALID));
            }
            if row.revoked_at.is_some() {
                return Err(AppError::InvalidGrant("session revoked"));
            }
            if row.created_at <= now.saturating_sub(duration_millis(config.absolute_lifetime)) {
                return Err(AppError::InvalidGrant("session expired"));
            }
            let n = row.generation;
            if g == n {
                if row.last_used_at <= now.saturating_sub(duration_millis(config.idle_timeout)) {
                    return Err(AppError::InvalidGrant("session idle timeout"));
                }
                continue; // Cannot happen with a monotonic row; retry the CAS.
            }
            let grace = duration_millis(config.grace_window);
            if g == n - 1 && grace > 0 && row.rotated_at.is_some_and(|t| now - t <= grace) {
                tracing::debug!(family = short(&family_id), generation = n, "grace replay");
                let response = self.respond(&claims.family, &row, n, requested_scope, client);
                return Ok((response, RefreshOutcome::GraceReplay));
            }
            if g < n {
                let detail = format!("generation {g} presented while current is {n}");
                self.revoke(&family_id, "reuse_detected", Some(&detail))
                    .await?;
                self.faults.count_reuse();
                crate::audit::reuse_detected(
                    &family_id,
                    &row.subject,
                    row.client_id.as_deref(),
                    g,
                    n,
                );
                return Err(AppError::InvalidGrant(REUSE_DETECTED));
            }
            tracing::warn!(
                family = short(&family_id),
                presented = g,
                current = n,
                "refresh token generation ahead of the database"
            );
            return Err(AppError::InvalidGrant(INVALID));
        }
        Err(AppError::Internal("rotation did not converge".into()))
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
