//! Revocation, the access-token denylist, and the poller that learns of
//! other replicas' revocations.

use std::sync::Weak;
use std::time::Duration;

use super::Engine;
use crate::app_error::AppError;
use crate::error::ServerError;
use crate::jwt::AccessClaims;
use crate::refresh_token;
use crate::store::{ClientRecord, RevokedSession};

impl Engine {
    /// Revokes a family (idempotent): database, local denylist, metrics.
    /// Returns whether this call revoked it. Fails — and denies nothing —
    /// unless the revocation is committed.
    pub(crate) async fn revoke(
        &self,
        family_id: &str,
        kind: &'static str,
        detail: Option<&str>,
    ) -> Result<bool, AppError> {
        let revoked = self.repo.revoke_family(family_id, kind, detail).await?;
        self.deny(family_id);
        if revoked {
            crate::metrics::revocation(kind);
            crate::audit::family_revoked(family_id, kind);
        }
        Ok(revoked)
    }

    /// Revokes the session of an access token: its family, or — for a
    /// token with no family (`client_credentials`) — a revoked row made for
    /// it, so the revocation survives restarts and reaches every replica.
    pub(crate) async fn revoke_access(
        &self,
        claims: &AccessClaims,
        kind: &'static str,
    ) -> Result<bool, AppError> {
        let revoked = self
            .repo
            .revoke_session(&RevokedSession {
                id: &claims.sid,
                subject: &claims.sub,
                client_id: claims.client_id.as_deref(),
                kind,
                detail: Some("access token revoked"),
            })
            .await?;
        self.deny(&claims.sid);
        if revoked {
            crate::metrics::revocation(kind);
            crate::audit::family_revoked(&claims.sid, kind);
        }
        Ok(revoked)
    }

    /// Refuses the family's access tokens from now on, in this process.
    pub(crate) fn deny(&self, family_id: &str) {
        let now = self.now_ms();
        if let Ok(mut map) = self.denylist.write() {
            map.entry(family_id.to_owned()).or_insert(now);
        }
    }

    /// Revokes the session of a refresh token or an access token. Unknown
    /// or invalid tokens are ignored (RFC 7009 §2.2). With `by` (an OAuth
    /// client at `/oauth/revoke`), only a token issued to that client:
    /// another's is `unauthorized_client` (RFC 7009 §2.1).
    pub(crate) async fn revoke_token(
        &self,
        token: &str,
        kind: &'static str,
        by: Option<&ClientRecord>,
    ) -> Result<bool, AppError> {
        let issued_to_caller = |client_id: Option<&str>| match by {
            None => Ok(()),
            Some(c) if client_id == Some(c.client_id.as_str()) => Ok(()),
            Some(c) => {
                crate::audit::client_auth_failed(
                    &c.client_id,
                    "asked to revoke a token issued to another client",
                );
                Err(AppError::UnauthorizedClient(
                    "the token was not issued to this client",
                ))
            }
        };
        if let Some(claims) = refresh_token::verify(self.keys.refresh_mac_key(), token) {
            let family_id = claims.family.to_hex();
            if by.is_some() {
                let Some(row) = self.repo.load_family(&family_id).await? else {
                    return Ok(false);
                };
                issued_to_caller(row.client_id.as_deref())?;
            }
            return self.revoke(&family_id, kind, None).await;
        }
        if let Ok(claims) = self.verify_jwt(token) {
            issued_to_caller(claims.client_id.as_deref())?;
            return self.revoke_access(&claims, kind).await;
        }
        Ok(false)
    }

    /// How long a revoked family stays on the denylist: its access tokens
    /// are dead after their lifetime anyway (plus a minute of slack).
    fn deny_window(&self) -> Duration {
        self.config.access_token_ttl + Duration::from_secs(60)
    }

    /// Loads revocations made by other replicas into the local denylist.
    pub(crate) async fn sync_revocations(&self) -> Result<(), ServerError> {
        let window = self.deny_window();
        let revoked = self.repo.revoked_within(window).await?;
        let now = self.now_ms();
        let horizon = now - crate::clock::duration_millis(window);
        if let Ok(mut map) = self.denylist.write() {
            map.retain(|_, learned| *learned >= horizon);
            for (id, _) in revoked {
                map.entry(id).or_insert(now);
            }
        }
        Ok(())
    }
}

/// Polls the database for revocations every `revocation_poll_interval`
/// while the engine lives.
pub(crate) fn spawn_revocation_poller(engine: Weak<Engine>) {
    tokio::spawn(async move {
        loop {
            let interval = match engine.upgrade() {
                Some(e) => e.config.revocation_poll_interval,
                None => return,
            };
            tokio::time::sleep(interval.max(Duration::from_millis(10))).await;
            let Some(e) = engine.upgrade() else { return };
            if let Err(err) = e.sync_revocations().await {
                tracing::warn!(error = %err, "revocation poll failed");
            }
        }
    });
}
