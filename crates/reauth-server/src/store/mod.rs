//! Storage: one [`Repository`] trait, implemented for SQLite and PostgreSQL
//! with the same SQL (runtime-checked `sqlx::query`, so a fresh clone builds
//! without a database), and migrations for both.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

mod postgres;
mod sql;
mod sqlite;

pub use postgres::PostgresRepository;
pub use sqlite::SqliteRepository;

use crate::config::ServerConfig;
use crate::error::ServerError;

/// The storage error type.
pub type StoreError = sqlx::Error;

/// Which database a repository talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// SQLite (file or in-memory).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// A session family row.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FamilyRecord {
    /// Family id (32 hex digits).
    pub id: String,
    /// The user (or client) the session belongs to.
    pub subject: String,
    /// The OAuth client the session was issued to (`None` for `/auth/login`).
    pub client_id: Option<String>,
    /// Granted scope.
    pub scope: Option<String>,
    /// Current generation: the live refresh token is MAC(id, generation).
    pub generation: i64,
    /// Creation time (ms).
    pub created_at: i64,
    /// Last login or rotation (ms), for the idle timeout.
    pub last_used_at: i64,
    /// When `generation - 1` was rotated into `generation` (ms).
    pub rotated_at: Option<i64>,
    /// When the family was revoked (ms).
    pub revoked_at: Option<i64>,
    /// Why it was revoked.
    pub revoked_reason: Option<String>,
}

/// A family to create.
#[derive(Debug, Clone)]
pub struct NewFamily<'a> {
    /// Family id.
    pub id: &'a str,
    /// Subject.
    pub subject: &'a str,
    /// OAuth client, if any.
    pub client_id: Option<&'a str>,
    /// Granted scope.
    pub scope: Option<&'a str>,
    /// First generation.
    pub generation: i64,
    /// Now (ms).
    pub now: i64,
}

/// The compare-and-set of one rotation.
#[derive(Debug, Clone)]
pub struct Rotation<'a> {
    /// Family id.
    pub family_id: &'a str,
    /// The generation the presented token carries; the row must still be at it.
    pub expected_generation: i64,
    /// Now (ms): becomes `rotated_at` and `last_used_at`.
    pub now: i64,
    /// The family must have been created after this (absolute lifetime).
    pub created_after: i64,
    /// The family must have been used after this (idle timeout).
    pub used_after: i64,
    /// The family must belong to exactly this OAuth client (`None`: a
    /// first-party family from `/auth/login`).
    pub client_id: Option<&'a str>,
}

/// A stored user.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UserRecord {
    /// Username.
    pub username: String,
    /// argon2id PHC hash.
    pub password_hash: String,
    /// Creation time (ms).
    pub created_at: i64,
}

/// A user as listed (no hash).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserInfo {
    /// Username.
    pub username: String,
    /// Creation time (ms since the Unix epoch).
    pub created_at: i64,
}

/// An audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// When (ms).
    pub at: i64,
    /// `reuse_detected`, `revoked`, `logout`, `user_removed`, …
    pub kind: String,
    /// The family concerned.
    pub family_id: Option<String>,
    /// The subject concerned.
    pub subject: Option<String>,
    /// Free text (never a secret).
    pub detail: Option<String>,
}

/// Row counts, for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreCounts {
    /// Users.
    pub users: i64,
    /// OAuth clients.
    pub clients: i64,
    /// Session families.
    pub families: i64,
    /// Audit events.
    pub audit_events: i64,
}

/// Persistence of users, clients, session families and audit events.
///
/// Every method is one statement or one short transaction. Both backends run
/// the same conformance suite (`tests/scenarios/storage.rs`).
#[async_trait]
pub trait Repository: Send + Sync + fmt::Debug + 'static {
    /// Which database this is.
    fn backend(&self) -> Backend;
    /// Inserts a user; `false` if the name is taken.
    async fn add_user(
        &self,
        username: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Looks a user up.
    async fn find_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError>;
    /// Deletes a user and revokes their families (one transaction). `None`
    /// if there was no such user, else the ids of the families revoked.
    async fn remove_user(
        &self,
        username: &str,
        now: i64,
    ) -> Result<Option<Vec<String>>, StoreError>;
    /// All users, by name.
    async fn list_users(&self) -> Result<Vec<UserInfo>, StoreError>;
    /// Registers a client or replaces its secret MAC.
    async fn upsert_client(
        &self,
        client_id: &str,
        secret_mac: &str,
        now: i64,
    ) -> Result<(), StoreError>;
    /// The stored secret MAC of a client.
    async fn client_secret_mac(&self, client_id: &str) -> Result<Option<String>, StoreError>;
    /// Creates a session family.
    async fn create_family(&self, family: &NewFamily<'_>) -> Result<(), StoreError>;
    /// Loads a family.
    async fn load_family(&self, id: &str) -> Result<Option<FamilyRecord>, StoreError>;
    /// The rotation compare-and-set: advances the family one generation iff it
    /// is still at `expected_generation`, not revoked, within its lifetimes and
    /// (if asked) owned by the client. Returns the updated row, or `None` when
    /// any condition failed (the caller then loads the row to find out why).
    async fn rotate(&self, rotation: &Rotation<'_>) -> Result<Option<FamilyRecord>, StoreError>;
    /// Revokes a live family and records an audit event (one transaction).
    /// `false` if it was unknown or already revoked.
    async fn revoke_family(
        &self,
        id: &str,
        now: i64,
        kind: &str,
        detail: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// Families revoked at or after `since` (ms): `(id, revoked_at)`.
    async fn revoked_since(&self, since: i64) -> Result<Vec<(String, i64)>, StoreError>;
    /// Appends an audit event.
    async fn record_audit(&self, event: &AuditEvent) -> Result<(), StoreError>;
    /// Audit events, oldest first, optionally for one family.
    async fn audit_events(&self, family_id: Option<&str>) -> Result<Vec<AuditEvent>, StoreError>;
    /// Row counts.
    async fn counts(&self) -> Result<StoreCounts, StoreError>;
}

/// Connects to `config.database_url` (`sqlite:…` or `postgres://…`) and runs
/// the migrations.
///
/// # Errors
///
/// [`ServerError::Config`] for an unknown scheme, [`ServerError::Database`]
/// or [`ServerError::Migrate`] when the database fails.
pub async fn connect(config: &ServerConfig) -> Result<Arc<dyn Repository>, ServerError> {
    let url = config.database_url.as_str();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let repo = PostgresRepository::connect(url, config.max_db_connections).await?;
        Ok(Arc::new(repo))
    } else if url.starts_with("sqlite:") {
        let repo = SqliteRepository::connect(url, config.sqlite_synchronous).await?;
        Ok(Arc::new(repo))
    } else {
        Err(ServerError::Config(
            "database_url must start with sqlite: or postgres://".to_owned(),
        ))
    }
}
