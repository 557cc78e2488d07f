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
/// Columns of a client row, in the order [`super::client_from_row`] reads them.
macro_rules! client_columns {
    () => {
        "client_id, secret_mac, public, grant_types, scopes, default_scope, redirect_uris, introspection, created_at"
    };
}

/// ?1 id, ?2 secret MAC, ?3 now, ?4 public, ?5 grant types, ?6 scopes,
/// ?7 default scope, ?8 redirect URIs, ?9 introspection.
macro_rules! insert_client {
    () => {
        "INSERT INTO clients (client_id, secret_mac, created_at, public, grant_types, scopes, default_scope, redirect_uris, introspection) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (client_id) "
    };
}
pub(super) const ADD_CLIENT: &str = concat!(insert_client!(), "DO NOTHING");
pub(super) const UPSERT_CLIENT: &str = concat!(
    insert_client!(),
    "DO UPDATE SET secret_mac = excluded.secret_mac, public = excluded.public, ",
    "grant_types = excluded.grant_types, scopes = excluded.scopes, ",
    "default_scope = excluded.default_scope, redirect_uris = excluded.redirect_uris, ",
    "introspection = excluded.introspection"
);
pub(super) const FIND_CLIENT: &str = concat!(
    "SELECT ",
    client_columns!(),
    " FROM clients WHERE client_id = ?1"
);
pub(super) const LIST_CLIENTS: &str = concat!(
    "SELECT ",
    client_columns!(),
    " FROM clients ORDER BY client_id"
);
pub(super) const DELETE_CLIENT: &str = "DELETE FROM clients WHERE client_id = ?1";
pub(super) const REVOKE_CLIENT_FAMILIES: &str = "UPDATE families SET revoked_at = ?2, revoked_reason = 'client_removed' WHERE client_id = ?1 AND revoked_at IS NULL RETURNING id";
pub(super) const SET_CLIENT_SECRET: &str =
    "UPDATE clients SET secret_mac = ?2 WHERE client_id = ?1 AND public = 0";
pub(super) const CREATE_FAMILY: &str = "INSERT INTO families (id, subject, client_id, scope, generation, created_at, last_used_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) ON CONFLICT (id) DO NOTHING";
/// ?1 id, ?2 subject, ?3 client, ?4 now, ?5 reason: a revoked row, or the
/// live row revoked; no row returned if it was revoked already.
pub(super) const REVOKE_SESSION: &str = "INSERT INTO families (id, subject, client_id, scope, generation, created_at, last_used_at, revoked_at, revoked_reason) \
     VALUES (?1, ?2, ?3, NULL, 0, ?4, ?4, ?4, ?5) \
     ON CONFLICT (id) DO UPDATE SET revoked_at = excluded.revoked_at, revoked_reason = excluded.revoked_reason \
     WHERE families.revoked_at IS NULL RETURNING subject";
pub(super) const CLAIM_SETTING: &str =
    "INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING";
pub(super) const GET_SETTING: &str = "SELECT value FROM settings WHERE name = ?1";
pub(super) const PING: &str = "SELECT COUNT(*) FROM settings";
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
