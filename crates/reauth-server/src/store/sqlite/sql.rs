//! The SQLite statements. `?1`… are positional; "now" is always bound by the
//! database thread from the repository's clock.

/// Columns of a family row, in the order [`super::family_from_row`] reads them.
macro_rules! family_columns {
    () => {
        "id, subject, client_id, scope, generation, created_at, last_used_at, rotated_at, revoked_at, revoked_reason"
    };
}

pub(super) const ADD_USER: &str = "INSERT INTO users (username, password_hash, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (username) DO NOTHING";
pub(super) const FIND_USER: &str =
    "SELECT username, password_hash, created_at FROM users WHERE username = ?1";
pub(super) const DELETE_USER: &str = "DELETE FROM users WHERE username = ?1";
pub(super) const REVOKE_SUBJECT: &str = "UPDATE families SET revoked_at = ?2, revoked_reason = 'user_removed' WHERE subject = ?1 AND revoked_at IS NULL RETURNING id";
pub(super) const LIST_USERS: &str = "SELECT username, created_at FROM users ORDER BY username";
pub(super) const UPSERT_CLIENT: &str = "INSERT INTO clients (client_id, secret_mac, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (client_id) DO UPDATE SET secret_mac = excluded.secret_mac";
pub(super) const CLIENT_SECRET: &str = "SELECT secret_mac FROM clients WHERE client_id = ?1";
pub(super) const CREATE_FAMILY: &str = "INSERT INTO families (id, subject, client_id, scope, generation, created_at, last_used_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)";
pub(super) const LOAD_FAMILY: &str =
    concat!("SELECT ", family_columns!(), " FROM families WHERE id = ?1");
/// The compare-and-set: ?1 id, ?2 expected generation, ?3 now, ?4 absolute
/// lifetime (ms), ?5 idle timeout (ms), ?6 client id (NULL: first party).
pub(super) const ROTATE: &str = concat!(
    "UPDATE families SET generation = generation + 1, rotated_at = ?3, last_used_at = ?3 ",
    "WHERE id = ?1 AND generation = ?2 AND revoked_at IS NULL ",
    "AND created_at > ?3 - ?4 AND last_used_at > ?3 - ?5 AND client_id IS ?6 ",
    "RETURNING ",
    family_columns!()
);
pub(super) const REVOKE_FAMILY: &str = "UPDATE families SET revoked_at = ?2, revoked_reason = ?3 WHERE id = ?1 AND revoked_at IS NULL RETURNING subject";
pub(super) const REVOKED_SINCE: &str = "SELECT id, revoked_at FROM families WHERE revoked_at >= ?1";
pub(super) const INSERT_AUDIT: &str =
    "INSERT INTO audit_events (at, kind, family_id, subject, detail) VALUES (?1, ?2, ?3, ?4, ?5)";
pub(super) const AUDIT_ALL: &str =
    "SELECT at, kind, family_id, subject, detail FROM audit_events ORDER BY id";
pub(super) const AUDIT_FAMILY: &str = "SELECT at, kind, family_id, subject, detail FROM audit_events WHERE family_id = ?1 ORDER BY id";
pub(super) const COUNTS: &str = "SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM clients), \
     (SELECT COUNT(*) FROM families), (SELECT COUNT(*) FROM audit_events)";
