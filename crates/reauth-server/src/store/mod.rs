//! Storage: one [`Repository`] trait, implemented for SQLite (feature
//! `sqlite`, through `rusqlite`) and PostgreSQL (feature `postgres`, through
//! sqlx), with migrations for both.
//!
//! # Whose clock
//!
//! Every time a repository writes or compares (`created_at`, `rotated_at`,
//! `last_used_at`, `revoked_at`, the idle and absolute lifetimes) is read
//! from **the database's clock**, inside the repository, never passed in by
//! the caller: replicas whose clocks disagree still judge grace windows and
//! session lifetimes on one clock (DESIGN.md S16). Rows carry the database's
//! time of the read ([`FamilyRecord::read_at`]) for the rules the engine
//! applies itself. PostgreSQL uses its `clock_timestamp()` (through the
//! `reauth_now_ms()` function of the migrations); SQLite, an embedded
//! database with one host, uses the [`Clock`] it was opened
//! with (the system clock unless a test injects one).
//!
//! # Errors
//!
//! Every method fails with the server's own [`StoreError`]: `Unavailable`
//! (busy past the configured wait, disk full, read-only, I/O), `InvalidInput`
//! (a value the database refuses) or `Backend`. A method that returns `Ok`
//! has committed its writes durably (as durable as the database's
//! configuration makes a commit); one that fails has committed nothing.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

mod error;
#[cfg(feature = "test-util")]
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use error::{BoxError, StoreError};
#[cfg(feature = "test-util")]
pub use memory::MemoryRepository;
#[cfg(feature = "postgres")]
pub use postgres::PostgresRepository;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteRepository;

use crate::clock::Clock;
use crate::config::ServerConfig;
use crate::error::ServerError;

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
    /// Creation time (ms since the Unix epoch, database clock).
    pub created_at: i64,
    /// Last login or rotation (ms), for the idle timeout.
    pub last_used_at: i64,
    /// When `generation - 1` was rotated into `generation` (ms).
    pub rotated_at: Option<i64>,
    /// When the family was revoked (ms).
    pub revoked_at: Option<i64>,
    /// Why it was revoked.
    pub revoked_reason: Option<String>,
    /// The database's clock when this row was read (ms): the "now" every
    /// rule about this row is judged at.
    pub read_at: i64,
}

/// A family to create (its times come from the database's clock).
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
}

/// The compare-and-set of one rotation.
#[derive(Debug, Clone)]
pub struct Rotation<'a> {
    /// Family id.
    pub family_id: &'a str,
    /// The generation the presented token carries; the row must still be at it.
    pub expected_generation: i64,
    /// The family must be younger than this (by the database's clock).
    pub absolute_lifetime: Duration,
    /// The family must have been used within this (by the database's clock).
    pub idle_timeout: Duration,
    /// The family must belong to exactly this OAuth client (`None`: a
    /// first-party family from `/auth/login`).
    pub client_id: Option<&'a str>,
}

/// What a rotation's compare-and-set did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RotateOutcome {
    /// The family advanced one generation; the updated row (committed).
    Advanced(FamilyRecord),
    /// A condition failed and nothing was written; the family's row as it is
    /// now (`None`: no such family), for the caller to find out why.
    Unchanged(Option<FamilyRecord>),
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

/// An OAuth client as stored (lists are in the order they were given).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientRecord {
    /// The `client_id`.
    pub client_id: String,
    /// HMAC-SHA256 of the secret under the server's pepper (hex); empty for
    /// a public client.
    pub secret_mac: String,
    /// A public client (`token_endpoint_auth_method=none`): no secret.
    pub public: bool,
    /// The grant types it may use (`authorization_code`, `refresh_token`,
    /// `password`, `client_credentials`).
    pub grant_types: Vec<String>,
    /// The scopes it may ask for.
    pub scopes: Vec<String>,
    /// The scope granted when it asks for none.
    pub default_scope: Vec<String>,
    /// Its registered redirect URIs (authorization-code grant).
    pub redirect_uris: Vec<String>,
    /// A resource server: may introspect any token, not only its own.
    pub introspection: bool,
    /// Registration time (ms, database clock).
    pub created_at: i64,
}

impl fmt::Debug for ClientRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientRecord")
            .field("client_id", &self.client_id)
            .field("secret_mac", &"[redacted]")
            .field("public", &self.public)
            .field("grant_types", &self.grant_types)
            .field("scopes", &self.scopes)
            .field("default_scope", &self.default_scope)
            .field("redirect_uris", &self.redirect_uris)
            .field("introspection", &self.introspection)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A client to register (its registration time comes from the database's
/// clock). Lists are stored space separated: no element may contain a space.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewClient {
    /// The `client_id`.
    pub client_id: String,
    /// HMAC of the secret (hex); empty for a public client.
    pub secret_mac: String,
    /// A public client.
    pub public: bool,
    /// Allowed grant types.
    pub grant_types: Vec<String>,
    /// Allowed scopes.
    pub scopes: Vec<String>,
    /// Scope granted when none is asked for.
    pub default_scope: Vec<String>,
    /// Redirect URIs.
    pub redirect_uris: Vec<String>,
    /// May introspect any token.
    pub introspection: bool,
}

impl NewClient {
    /// A client with only an id (public, no grants, no scopes); fill in the
    /// rest field by field.
    pub fn new(client_id: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            ..Self::default()
        }
    }
}

impl fmt::Debug for NewClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewClient")
            .field("client_id", &self.client_id)
            .field("public", &self.public)
            .field("grant_types", &self.grant_types)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// Joins a list for a space-separated column.
pub(crate) fn join(list: &[String]) -> String {
    list.join(" ")
}

/// The audit detail of a registered client (no secret).
pub(crate) fn client_detail(c: &NewClient) -> String {
    format!(
        "{}; grant_types={}; scopes={}; redirect_uris={}{}",
        if c.public { "public" } else { "confidential" },
        join(&c.grant_types),
        join(&c.scopes),
        join_uris(&c.redirect_uris),
        if c.introspection {
            "; introspection"
        } else {
            ""
        }
    )
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// Splits a space-separated column.
pub(crate) fn split(column: &str) -> Vec<String> {
    column.split_whitespace().map(str::to_owned).collect()
}

/// The redirect-URI column: a JSON array of strings, so no URI can be split
/// or joined into another whatever characters it holds (RFC 9700 §4.1: the
/// URI compared is exactly the one registered).
pub(crate) fn join_uris(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".to_owned())
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// Reads the redirect-URI column: a JSON array, or (rows written before
/// the column held JSON) a space-separated list, read as before. A column
/// that is neither reads as no URI at all: the client can then not be
/// redirected to, which fails closed.
pub(crate) fn split_uris(column: &str) -> Vec<String> {
    if column.trim_start().starts_with('[') {
        serde_json::from_str(column).unwrap_or_default()
    } else {
        split(column)
    }
}

/// A session to mark revoked whether or not it has a family row: the
/// "family" of a `client_credentials` access token is that one token, and
/// exists in the database only once revoked.
#[derive(Debug, Clone, Copy)]
pub struct RevokedSession<'a> {
    /// The `sid` of the tokens.
    pub id: &'a str,
    /// Their subject.
    pub subject: &'a str,
    /// The client they were issued to.
    pub client_id: Option<&'a str>,
    /// Why (also the audit event's kind).
    pub kind: &'a str,
    /// Free text for the audit event (never a secret).
    pub detail: Option<&'a str>,
}

/// An audit event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditEvent {
    /// When (ms, database clock).
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

/// An audit event to record (stamped with the database's clock).
#[derive(Debug, Clone, Copy)]
pub struct NewAuditEvent<'a> {
    /// Kind.
    pub kind: &'a str,
    /// The family concerned.
    pub family_id: Option<&'a str>,
    /// The subject concerned.
    pub subject: Option<&'a str>,
    /// Free text (never a secret).
    pub detail: Option<&'a str>,
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
/// Every method is one statement or one short transaction, runs off the
/// async workers (SQLite: a database thread; PostgreSQL: sqlx's async
/// driver), and gives up after the configured wait with
/// [`StoreError::Unavailable`]. Both backends run the same conformance
/// suite (`tests/scenarios/storage.rs`).
#[async_trait]
pub trait Repository: Send + Sync + fmt::Debug + 'static {
    /// Which database this is.
    fn backend(&self) -> Backend;
    /// The database's clock (ms since the Unix epoch).
    async fn now(&self) -> Result<i64, StoreError>;
    /// Inserts a user; `false` if the name is taken.
    async fn add_user(&self, username: &str, password_hash: &str) -> Result<bool, StoreError>;
    /// Looks a user up.
    async fn find_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError>;
    /// Deletes a user and revokes their families (one transaction). `None`
    /// if there was no such user, else the ids of the families revoked.
    async fn remove_user(&self, username: &str) -> Result<Option<Vec<String>>, StoreError>;
    /// All users, by name.
    async fn list_users(&self) -> Result<Vec<UserInfo>, StoreError>;
    /// Registers a client and records a `client_added` audit event (one
    /// transaction); `false` if the id is taken.
    async fn add_client(&self, client: &NewClient) -> Result<bool, StoreError>;
    /// Registers a client or replaces every field of it but its
    /// registration time (the demo client at start-up); no audit event.
    async fn upsert_client(&self, client: &NewClient) -> Result<(), StoreError>;
    /// Looks a client up.
    async fn find_client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError>;
    /// All clients, by id.
    async fn list_clients(&self) -> Result<Vec<ClientRecord>, StoreError>;
    /// Deletes a client, revokes every family issued to it and records a
    /// `client_removed` audit event (one transaction). `None` if there was
    /// no such client, else the ids of the families revoked.
    async fn remove_client(&self, client_id: &str) -> Result<Option<Vec<String>>, StoreError>;
    /// Replaces a confidential client's secret MAC and records a
    /// `client_secret_rotated` audit event (one transaction). `false` if
    /// there is no such confidential client.
    async fn set_client_secret(
        &self,
        client_id: &str,
        secret_mac: &str,
    ) -> Result<bool, StoreError>;
    /// Creates a session family; `false` (nothing written) if a family with
    /// this id exists already.
    async fn create_family(&self, family: &NewFamily<'_>) -> Result<bool, StoreError>;
    /// Loads a family.
    async fn load_family(&self, id: &str) -> Result<Option<FamilyRecord>, StoreError>;
    /// The rotation compare-and-set: advances the family one generation iff it
    /// is still at `expected_generation`, not revoked, within its lifetimes and
    /// owned by the client. Returns `Advanced` only once the change is
    /// committed.
    async fn rotate(&self, rotation: &Rotation<'_>) -> Result<RotateOutcome, StoreError>;
    /// Revokes a live family and records an audit event (one transaction).
    /// `false` if it was unknown or already revoked.
    async fn revoke_family(
        &self,
        id: &str,
        kind: &str,
        detail: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// Revokes the session `id` and records an audit event (one
    /// transaction), creating a revoked family row if there is none, so that
    /// the revocation of any token — a `client_credentials` one included —
    /// is durable and seen by every replica. `false` if it was already
    /// revoked.
    async fn revoke_session(&self, session: &RevokedSession<'_>) -> Result<bool, StoreError>;
    /// Families revoked within `window` before the database's now:
    /// `(id, revoked_at)`.
    async fn revoked_within(&self, window: Duration) -> Result<Vec<(String, i64)>, StoreError>;
    /// Appends an audit event.
    async fn record_audit(&self, event: &NewAuditEvent<'_>) -> Result<(), StoreError>;
    /// Audit events, oldest first, optionally for one family.
    async fn audit_events(&self, family_id: Option<&str>) -> Result<Vec<AuditEvent>, StoreError>;
    /// Row counts.
    async fn counts(&self) -> Result<StoreCounts, StoreError>;
    /// Stores `value` under `name` unless a value is stored already; the
    /// value stored now (ours, or the one that was there).
    async fn claim_setting(&self, name: &str, value: &str) -> Result<String, StoreError>;
    /// A cheap read that proves the database answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// A [`Duration`] in whole milliseconds for SQL, saturating.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// Connects to `config.database_url` (`sqlite:…` or `postgres://…`) and runs
/// the migrations. `clock` is the SQLite database's clock (PostgreSQL uses
/// its own).
///
/// # Errors
///
/// [`ServerError::Config`] for an unknown scheme or a backend compiled out,
/// [`ServerError::Database`] or [`ServerError::Migrate`] when the database
/// fails.
pub async fn connect(
    config: &ServerConfig,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn Repository>, ServerError> {
    let url = config.database_url.as_str();
    let _ = &clock;
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        {
            let repo = PostgresRepository::connect(
                url,
                config.max_db_connections,
                config.limits.database_wait,
            )
            .await?;
            return Ok(Arc::new(repo));
        }
        #[cfg(not(feature = "postgres"))]
        return Err(ServerError::Config(
            "this build has no PostgreSQL support (feature `postgres`)".to_owned(),
        ));
    }
    if url.starts_with("sqlite:") {
        #[cfg(feature = "sqlite")]
        {
            let repo = SqliteRepository::connect_with(
                url,
                config.sqlite_synchronous,
                config.limits.database_wait,
                clock,
            )
            .await?;
            return Ok(Arc::new(repo));
        }
        #[cfg(not(feature = "sqlite"))]
        return Err(ServerError::Config(
            "this build has no SQLite support (feature `sqlite`)".to_owned(),
        ));
    }
    Err(ServerError::Config(
        "database_url must start with sqlite: or postgres://".to_owned(),
    ))
}
