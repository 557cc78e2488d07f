//! Password checks and new session families.

use super::{Engine, TokenResponse, short};
use crate::app_error::AppError;
use crate::refresh_token::FamilyId;
use crate::store::NewFamily;

impl Engine {
    /// Starts a session family for `subject` and issues its first tokens.
    /// Answers only once the family is committed.
    pub(crate) async fn start_session(
        &self,
        subject: &str,
        client_id: Option<&str>,
        scope: Option<&str>,
    ) -> Result<TokenResponse, AppError> {
        let family = FamilyId::random();
        let id = family.to_hex();
        let created = self
            .repo
            .create_family(&NewFamily {
                id: &id,
                subject,
                client_id,
                scope,
                generation: 1,
            })
            .await?;
        if !created {
            // 128 random bits collided: never in practice.
            return Err(AppError::Internal("family id collision".into()));
        }
        tracing::info!(family = short(&id), subject, "session started");
        Ok(self.token_response(&family, subject, 1, scope, client_id))
    }

    /// Checks username and password (argon2id on a blocking thread), under the
    /// failed-login limiter keyed by `rate_key`. `client_id`: the OAuth
    /// client asking (for the audit log).
    pub(crate) async fn check_password(
        &self,
        username: &str,
        password: String,
        rate_key: &str,
        client_id: Option<&str>,
    ) -> Result<(), AppError> {
        let now = self.now_ms();
        if let Err(retry_after) = self.limiter.check(rate_key, now) {
            crate::metrics::login("rate_limited");
            crate::audit::login_rate_limited(username);
            return Err(AppError::RateLimited { retry_after });
        }
        // A name in the clients' namespace is never a user (such a name can
        // no longer be added; one stored earlier cannot log in).
        let user = if username.starts_with(super::CLIENT_SUBJECT_PREFIX) {
            None
        } else {
            self.repo.find_user(username).await?
        };
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
            let reason = if known {
                "wrong password"
            } else {
                "unknown user"
            };
            crate::audit::login_failed(username, client_id, reason);
            Err(AppError::InvalidGrant("invalid username or password"))
        }
    }
}
