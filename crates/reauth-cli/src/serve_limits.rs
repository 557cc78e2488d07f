//! `reauth serve` flags for the limits that keep the server serving under
//! slow clients, floods and a locked database (DESIGN.md S12–S14).

use std::time::Duration;

use reauth_server::Limits;

use crate::duration;

/// Limits of `reauth serve`; each flag has an environment variable.
#[derive(Debug, clap::Args)]
pub(crate) struct LimitArgs {
    /// Most open connections; more clients wait in the listen backlog.
    #[arg(long, env = "REAUTH_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// Time a client has to send a request's headers (idle connections are
    /// closed after it too).
    #[arg(long, env = "REAUTH_HEADER_TIMEOUT", default_value = "10s", value_parser = duration::parse)]
    header_timeout: Duration,
    /// Longest pause between two chunks of a request body.
    #[arg(long, env = "REAUTH_BODY_TIMEOUT", default_value = "10s", value_parser = duration::parse)]
    body_timeout: Duration,
    /// Longest a whole request may take (`408` beyond).
    #[arg(long, env = "REAUTH_REQUEST_TIMEOUT", default_value = "30s", value_parser = duration::parse)]
    request_timeout: Duration,
    /// Longest a response write may make no progress (a client that stops
    /// reading); the connection is closed.
    #[arg(long, env = "REAUTH_WRITE_TIMEOUT", default_value = "10s", value_parser = duration::parse)]
    write_timeout: Duration,
    /// A connection this old is closed after its request in flight.
    #[arg(long, env = "REAUTH_MAX_CONNECTION_AGE", default_value = "10m", value_parser = duration::parse)]
    max_connection_age: Duration,
    /// After SIGTERM or Ctrl-C, connections still open after this are closed
    /// and the process exits.
    #[arg(long, env = "REAUTH_SHUTDOWN_DEADLINE", default_value = "10s", value_parser = duration::parse)]
    shutdown_deadline: Duration,
    /// Longest a request waits for the database before `503`.
    #[arg(long, env = "REAUTH_DB_WAIT", default_value = "5s", value_parser = duration::parse)]
    db_wait: Duration,
    /// Password hashes computed at once (default: the number of cores).
    #[arg(long, env = "REAUTH_HASH_CONCURRENCY")]
    hash_concurrency: Option<usize>,
    /// Logins that may wait for a hashing slot; beyond, `503`.
    #[arg(long, env = "REAUTH_HASH_QUEUE", default_value_t = 32)]
    hash_queue: usize,
}

impl LimitArgs {
    /// Writes the flags into `limits`.
    pub(crate) fn apply(&self, limits: &mut Limits) {
        limits.max_connections = self.max_connections;
        limits.header_read_timeout = self.header_timeout;
        limits.body_read_timeout = self.body_timeout;
        limits.request_timeout = self.request_timeout;
        limits.write_timeout = self.write_timeout;
        limits.max_connection_age = self.max_connection_age;
        limits.shutdown_deadline = self.shutdown_deadline;
        limits.database_wait = self.db_wait;
        if let Some(n) = self.hash_concurrency {
            limits.password_hash_concurrency = n;
        }
        limits.password_hash_queue = self.hash_queue;
    }
}
