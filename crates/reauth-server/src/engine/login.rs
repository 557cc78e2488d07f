//! Password checks and new session families.

use std::time::Duration;

use super::{Engine, TokenResponse, short};
use crate::app_error::AppError;
use crate::password::Busy;
use crate::refresh_token::FamilyId;
use crate::store::NewFamily;

/// How long a login turned away by a full hashing queue is asked to wait.
const HASHING_RETRY_AFTER: Duration = Duration::from_secs(1);

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

    /// Checks username and password: one attempt is reserved from the
    /// failed-login budgets of (account, `address`) and of the account
    /// first (S11), the argon2id check runs in
    /// the bounded hashing pool (S12), and the attempt is given back if the
    /// password was right or never checked. `client_id`: the OAuth client
    /// asking (for the audit log).
    pub(crate) async fn check_password(
        &self,
        username: &str,
        password: String,
        client_id: Option<&str>,
        address: Option<std::net::IpAddr>,
    ) -> Result<(), AppError> {
        let attempt = match self.limiter.reserve(username, address, self.now_ms()) {
            Ok(attempt) => attempt,
            Err(retry_after) => {
                crate::metrics::login("rate_limited");
                crate::audit::login_rate_limited(username);
                return Err(AppError::RateLimited { retry_after });
            }
        };
        // A name in the clients' namespace is never a user (such a name can
        // no longer be added; one stored earlier cannot log in).
        let found = if username.starts_with(super::CLIENT_SUBJECT_PREFIX) {
            Ok(None)
        } else {
            self.repo.find_user(username).await
        };
        let user = match found {
            Ok(user) => user,
            Err(e) => {
                attempt.refund();
                return Err(e.into());
            }
        };
        let (hash, known) = match user {
            Some(u) => (u.password_hash, true),
            None => (self.dummy_hash.clone(), false),
        };
        let ok = match self.hashing.verify(password, hash).await {
            Ok(ok) => ok,
            Err(Busy) => {
                attempt.refund();
                crate::metrics::login("busy");
                return Err(AppError::Unavailable {
                    retry_after: HASHING_RETRY_AFTER,
                });
            }
        };
        if ok && known {
            attempt.refund();
            crate::metrics::login("success");
            Ok(())
        } else {
            drop(attempt); // Spent.
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
