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
///
/// Its `Debug` output hides the password of [`database_url`](Self::database_url).
#[derive(Clone)]
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
    /// The demo OAuth client, registered (or re-keyed) at start-up: off by
    /// default, and only for demos and tests — its secret is public. While
    /// it is `None`, the public demo secret is refused for every client,
    /// even one an earlier run stored.
    pub demo_client: Option<ClientCredentials>,
    /// Failed-login budget of one client address against one account
    /// (username); an IPv6 client counts by its /64. Attempts are reserved
    /// before the password check and given back when it succeeds (DESIGN.md
    /// S11). An address that spends it is refused; the account's owner,
    /// elsewhere, is not. Default 10, then one every 6 s.
    pub login_rate_limit: RateLimit,
    /// Ceiling of failed logins against one account from all addresses
    /// together (S11): what many addresses can try is bounded too. Reserved
    /// together with [`login_rate_limit`](Self::login_rate_limit), only when
    /// both have an attempt left. Default 50, then one every 2 s (three
    /// addresses trickling at their own budget's pace cannot empty it).
    /// A `burst` of 0 turns either limit off.
    pub login_account_limit: RateLimit,
    /// Cost of argon2id password hashes created by this server.
    pub password_hashing: PasswordHashing,
    /// SQLite durability (ignored for Postgres). Default [`SqliteSynchronous::Normal`].
    pub sqlite_synchronous: SqliteSynchronous,
    /// Largest accepted request body in bytes (`413` beyond). Default 16 KiB.
    pub max_body_bytes: usize,
    /// How often revocations made by other replicas are picked up for
    /// `/api/resources`. Local revocations apply at once. Default 1 s.
    pub revocation_poll_interval: Duration,
    /// Whether `/metrics` is served on the public router ([`Server::router`]).
    /// Default `true`; set it to `false` and serve
    /// [`Server::metrics_router`] on a private listener instead.
    ///
    /// [`Server::router`]: crate::Server::router
    /// [`Server::metrics_router`]: crate::Server::metrics_router
    pub public_metrics: bool,
    /// Maximum connections of the database pool (Postgres; SQLite always
    /// uses one writer connection). Default 16.
    pub max_db_connections: u32,
    /// Protections against faults, slow clients and overload (DESIGN.md §4.6).
    pub limits: Limits,
    /// A built browser page to serve on the API's origin: `index.html` at `/`,
    /// the directory under `/web/` (see `crate::web`). Default none.
    pub web_dir: Option<std::path::PathBuf>,
    /// Serve the first-party JSON endpoints `/auth/login`, `/auth/refresh`
    /// and `/auth/logout`: a password login with no OAuth client, for an
    /// application and its own API on one origin (the demo, the browser
    /// page). Default off: on a server that only speaks OAuth they are one
    /// more password oracle, outside any client's grant types.
    pub first_party_endpoints: bool,
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
            demo_client: None,
            login_rate_limit: RateLimit::default(),
            login_account_limit: RateLimit {
                burst: 50,
                refill_every: Duration::from_secs(2),
            },
            password_hashing: PasswordHashing::Default,
            sqlite_synchronous: SqliteSynchronous::Normal,
            max_body_bytes: 16 * 1024,
            revocation_poll_interval: Duration::from_secs(1),
            max_db_connections: 16,
            public_metrics: true,
            limits: Limits::default(),
            web_dir: None,
            first_party_endpoints: false,
        }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("bind_addr", &self.bind_addr)
            .field("database_url", &redacted_url(&self.database_url))
            .field("keys", &self.keys)
            .field("access_token_ttl", &self.access_token_ttl)
            .field("grace_window", &self.grace_window)
            .field("idle_timeout", &self.idle_timeout)
            .field("absolute_lifetime", &self.absolute_lifetime)
            .field("demo_client", &self.demo_client)
            .field("login_rate_limit", &self.login_rate_limit)
            .field("login_account_limit", &self.login_account_limit)
            .field("password_hashing", &self.password_hashing)
            .field("sqlite_synchronous", &self.sqlite_synchronous)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("revocation_poll_interval", &self.revocation_poll_interval)
            .field("public_metrics", &self.public_metrics)
            .field("max_db_connections", &self.max_db_connections)
            .field("limits", &self.limits)
            .field("web_dir", &self.web_dir)
            .field("first_party_endpoints", &self.first_party_endpoints)
            .finish()
    }
}

/// A database URL fit for logs: the password (in the authority or a
/// `password` query parameter) is replaced by `***` (a URL that cannot be
/// taken apart and might hold one, by `[redacted]`).
///
/// ```
/// assert_eq!(
///     reauth_server::redacted_url("postgres://app:hunter2@db/reauth"),
///     "postgres://app:***@db/reauth"
/// );
/// ```
pub fn redacted_url(database_url: &str) -> String {
    const REDACTED: &str = "***";
    let Ok(mut url) = url::Url::parse(database_url) else {
        // Not a URL we can take apart: shown only if it cannot hold a password.
        let may_hold_secret =
            database_url.contains('@') || database_url.to_ascii_lowercase().contains("password");
        return if may_hold_secret {
            "[redacted]".to_owned()
        } else {
            database_url.to_owned()
        };
    };
    if url.password().is_some() {
        let _ = url.set_password(Some(REDACTED));
    }
    if url
        .query_pairs()
        .any(|(k, _)| k.eq_ignore_ascii_case("password"))
    {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if k.eq_ignore_ascii_case("password") {
                    REDACTED.to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

/// How much the server waits for, holds and accepts: the bounds that keep it
/// serving under faults, slow clients and floods (DESIGN.md S11–S16).
///
/// ```
/// use std::time::Duration;
/// let mut config = reauth_server::ServerConfig::default();
/// config.limits.max_connections = 256;
/// config.limits.database_wait = Duration::from_secs(2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Longest a request waits for the database (a lock another process
    /// holds, a VACUUM, a queue of work) before it is answered `503` with
    /// `Retry-After`. Default 5 s.
    pub database_wait: Duration,
    /// Password hashes (argon2id, 19 MiB each) computed at once. Default: the
    /// number of cores.
    pub password_hash_concurrency: usize,
    /// Logins that may wait for a hashing slot; beyond, `503` with
    /// `Retry-After`. Default 32.
    pub password_hash_queue: usize,
    /// Buckets the failed-login limiter remembers at most, for (account,
    /// address) pairs and for accounts each (the ones that matter least are
    /// forgotten first). Default 100 000.
    pub login_limiter_max_keys: usize,
    /// Time a client has to send a request's headers; an idle keep-alive
    /// connection is closed after it too. Default 10 s.
    pub header_read_timeout: Duration,
    /// Longest pause between two chunks of a request body. Default 10 s.
    pub body_read_timeout: Duration,
    /// Longest a whole request may take, its body included (`408` beyond).
    /// Default 30 s.
    pub request_timeout: Duration,
    /// Longest a response write may make no progress (a client that stops
    /// reading): the connection is closed. Default 10 s.
    pub write_timeout: Duration,
    /// A connection this old is closed after its request in flight (and
    /// dropped `shutdown_deadline` later if that request does not end), so
    /// no client holds a connection forever, however busy it keeps it.
    /// Default 10 min.
    pub max_connection_age: Duration,
    /// Open connections at most; more clients wait in the listen backlog
    /// until one closes. Default 1024.
    pub max_connections: usize,
    /// Once shutdown is asked for, connections still open after this are
    /// closed and serving returns. Default 10 s.
    pub shutdown_deadline: Duration,
    /// Clock skew tolerated on access tokens' `iat` and `nbf` (a token from a
    /// replica whose clock runs ahead). Default 60 s.
    pub clock_leeway: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            database_wait: Duration::from_secs(5),
            password_hash_concurrency: std::thread::available_parallelism()
                .map_or(2, std::num::NonZeroUsize::get),
            password_hash_queue: 32,
            login_limiter_max_keys: 100_000,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            max_connection_age: Duration::from_secs(600),
            max_connections: 1024,
            shutdown_deadline: Duration::from_secs(10),
            clock_leeway: Duration::from_secs(60),
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

/// An OAuth client id and secret (its `Debug` output hides the secret).
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    /// The `client_id`.
    pub client_id: String,
    /// The `client_secret`.
    pub client_secret: Secret,
}

impl ClientCredentials {
    /// The demo client: `reauth-demo` / `reauth-demo-secret`.
    ///
    /// Its secret is public (it is in this documentation): a server accepts
    /// it only while [`ServerConfig::demo_client`] is set to it.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn o6_debug_of_the_config_hides_the_database_password() {
        let config = ServerConfig {
            database_url: "postgres://app:hunter2@db.local:5432/reauth".to_owned(),
            demo_client: Some(ClientCredentials::demo()),
            ..ServerConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("reauth-demo-secret"), "{shown}");
        assert!(
            shown.contains("postgres://app:***@db.local:5432/reauth"),
            "{shown}"
        );
        let query = redacted_url("postgres://db.local/reauth?user=app&password=hunter2");
        assert_eq!(query, "postgres://db.local/reauth?user=app&password=***");
        assert_eq!(redacted_url("sqlite://reauth.db"), "sqlite://reauth.db");
        assert_eq!(redacted_url("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(redacted_url("not a url with password=x"), "[redacted]");
    }
}
