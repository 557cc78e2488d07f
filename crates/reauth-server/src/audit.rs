//! Audit events: what an operator needs to reconstruct who did what, as
//! `tracing` events with target `reauth::audit` and a field `event`
//! naming the kind (the stored `audit_events` rows hold the same kinds for
//! revocations and client changes).
//!
//! | event | level | fields |
//! |---|---|---|
//! | `login_failed` | info | `username`, `client_id`, `reason` |
//! | `login_rate_limited` | warn | `username` |
//! | `client_auth_failed` | info | `client_id`, `reason` |
//! | `reuse_detected` | warn | `family`, `subject`, `client_id`, `presented`, `current` |
//! | `family_revoked` | info | `family`, `reason` |
//! | `client_added`, `client_removed`, `client_secret_rotated` | info | `client_id`, `detail` |
//! | `user_added`, `user_removed` | info | `username` |
//!
//! Fields are identifiers only: a family id is cut to 8 characters, and no
//! token, password, secret or key ever is a field.
//!
//! The events any client can cause once per request — `login_failed`,
//! `login_rate_limited`, `client_auth_failed` — are rate-limited (at most 10
//! lines a second each; see `crate::log_budget`): the first line after a
//! flood carries `suppressed`, the number left out. The
//! `reauth_logins_total` metric still counts every attempt.

/// The target of every audit event (`RUST_LOG=reauth::audit=info`).
pub(crate) const TARGET: &str = "reauth::audit";

use crate::log_budget::{LogBudget, limited};

pub(crate) fn login_failed(username: &str, client_id: Option<&str>, reason: &'static str) {
    limited!(LogBudget::per_request(), |suppressed| tracing::info!(
        target: TARGET,
        event = "login_failed",
        username,
        client_id,
        reason,
        suppressed,
        "login failed"
    ));
}

pub(crate) fn login_rate_limited(username: &str) {
    limited!(LogBudget::per_request(), |suppressed| tracing::warn!(
        target: TARGET,
        event = "login_rate_limited",
        username,
        suppressed,
        "login rate limited"
    ));
}

pub(crate) fn client_auth_failed(client_id: &str, reason: &'static str) {
    limited!(LogBudget::per_request(), |suppressed| tracing::info!(
        target: TARGET,
        event = "client_auth_failed",
        client_id,
        reason,
        suppressed,
        "client authentication failed"
    ));
}

pub(crate) fn reuse_detected(
    family: &str,
    subject: &str,
    client_id: Option<&str>,
    presented: i64,
    current: i64,
) {
    tracing::warn!(
        target: TARGET,
        event = "reuse_detected",
        family = short(family),
        subject,
        client_id,
        presented,
        current,
        "refresh token reuse detected; family revoked"
    );
}

pub(crate) fn family_revoked(family: &str, reason: &str) {
    tracing::info!(
        target: TARGET,
        event = "family_revoked",
        family = short(family),
        reason,
        "family revoked"
    );
}

/// `client_added`, `client_removed` or `client_secret_rotated`.
pub(crate) fn client_changed(event: &'static str, client_id: &str, detail: &str) {
    tracing::info!(target: TARGET, event, client_id, detail, "client changed");
}

/// `user_added` or `user_removed`.
pub(crate) fn user_changed(event: &'static str, username: &str) {
    tracing::info!(target: TARGET, event, username, "user changed");
}

/// The first 8 characters of an id.
pub(crate) fn short(id: &str) -> &str {
    let end = id.char_indices().nth(8).map_or(id.len(), |(i, _)| i);
    &id[..end]
}
