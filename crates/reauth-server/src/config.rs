//! Server configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::keys::ServerKeys;
use crate::secret::Secret;

/// Everything [`Server::new`](crate::Server::new) needs.
///
/// Build it from [`ServerConfig::default`] and assign the fields you need:
///
/// ```
/// use std::time::Duration;
/// let mut config = reauth_server::ServerConfig::default();
/// config.database_url = "sqlite://reauth.db".into();
/// config.grace_window = Duration::from_secs(5);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The `iss` of issued tokens and the RFC 8414 `issuer`. When `None`, the
    /// issuer is `http://{local address}` of the first listener the server is
    /// served on (or `http://localhost` for a router used without a listener).
    pub issuer: Option<String>,
    /// The `aud` of issued access tokens, required by `/api/resources`.
    pub audience: String,
    /// The address `reauth serve` binds (the library's `serve` takes a
    /// listener instead). Default `127.0.0.1:8080`.
    pub bind_addr: SocketAddr,
    /// `sqlite::memory:`, `sqlite://path/to/file.db`, or `postgres://…`.
    pub database_url: String,
    /// Where the signing and MAC keys come from.
    pub keys: KeySource,
    /// Lifetime of access tokens. Default 5 minutes.
    pub access_token_ttl: Duration,
    /// How long after a rotation the parent refresh token still yields the
    /// same successor. Default 10 s; zero makes rotation strict.
    pub grace_window: Duration,
    /// A session unused for this long can no longer be refreshed. Default 14 days.
    pub idle_timeout: Duration,
    /// A session older than this can no longer be refreshed. Default 30 days.
    pub absolute_lifetime: Duration,
    /// An OAuth client registered (or re-keyed) at start-up, if any.
    pub demo_client: Option<ClientCredentials>,
    /// Failed-login budget per (client address, username).
    pub login_rate_limit: RateLimit,
    /// Cost of argon2id password hashes created by this server.
    pub password_hashing: PasswordHashing,
    /// SQLite durability (ignored for Postgres). Default [`SqliteSynchronous::Normal`].
    pub sqlite_synchronous: SqliteSynchronous,
    /// Largest accepted request body in bytes (`413` beyond). Default 16 KiB.
    pub max_body_bytes: usize,
    /// How often revocations made by other replicas are picked up for
    /// `/api/resources`. Local revocations apply at once. Default 1 s.
    pub revocation_poll_interval: Duration,
    /// Maximum connections of the database pool (Postgres; SQLite always
    /// uses one writer connection). Default 16.
    pub max_db_connections: u32,
    /// A built browser page to serve on the API's origin: `index.html` at `/`,
    /// the directory under `/web/` (see `crate::web`). Default none.
    pub web_dir: Option<std::path::PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: "reauth-api".to_owned(),
            bind_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite::memory:".to_owned(),
            keys: KeySource::Ephemeral,
            access_token_ttl: Duration::from_secs(5 * 60),
            grace_window: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(14 * 24 * 3600),
            absolute_lifetime: Duration::from_secs(30 * 24 * 3600),
            demo_client: Some(ClientCredentials::demo()),
            login_rate_limit: RateLimit::default(),
            password_hashing: PasswordHashing::Default,
            sqlite_synchronous: SqliteSynchronous::Normal,
            max_body_bytes: 16 * 1024,
            revocation_poll_interval: Duration::from_secs(1),
            max_db_connections: 16,
            web_dir: None,
        }
    }
}

/// Where the server's keys come from.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum KeySource {
    /// Fresh random keys held only in memory: tokens die with the process.
    #[default]
    Ephemeral,
    /// A JSON key file, created with mode `0600` (fresh keys) when absent.
    File(PathBuf),
    /// Keys supplied by the caller (e.g. shared by several in-process replicas).
    Provided(ServerKeys),
}

/// An OAuth client id and secret.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    /// The `client_id`.
    pub client_id: String,
    /// The `client_secret`.
    pub client_secret: Secret,
}

impl ClientCredentials {
    /// The demo client: `reauth-demo` / `reauth-demo-secret`.
    pub fn demo() -> Self {
        Self {
            client_id: "reauth-demo".to_owned(),
            client_secret: Secret::new("reauth-demo-secret"),
        }
    }
}

/// A token bucket: `burst` failures allowed at once, one more every `refill_every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Failed attempts allowed in a burst.
    pub burst: u32,
    /// Time to earn back one attempt.
    pub refill_every: Duration,
}

impl Default for RateLimit {
    /// 10 failures, then one every 6 s.
    fn default() -> Self {
        Self {
            burst: 10,
            refill_every: Duration::from_secs(6),
        }
    }
}

/// Cost parameters for new argon2id password hashes (verification always uses
/// the parameters stored in the hash).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PasswordHashing {
    /// The `argon2` crate's defaults (OWASP: m = 19 MiB, t = 2, p = 1).
    #[default]
    Default,
    /// Minimal cost, for tests and demos only.
    InsecureFast,
}

/// SQLite `synchronous` pragma (WAL journal in both cases).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SqliteSynchronous {
    /// Survives a process crash (`kill -9`); the last commits may be lost on power loss.
    #[default]
    Normal,
    /// Survives power loss: one fsync per commit.
    Full,
}
