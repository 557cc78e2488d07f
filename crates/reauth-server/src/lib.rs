//! # reauth-server
//!
//! An axum auth server whose refresh-token rotation survives races: rotation
//! is a compare-and-set on a session-family row, a duplicate of the rotation
//! that just happened (within the grace window) gets the byte-identical
//! successor, and any other reuse revokes the family.
//!
//! Storage is SQLite by default (WAL; file or in-memory) and PostgreSQL for
//! several replicas on one database, through one [`Repository`] trait.
//!
//! ```no_run
//! use reauth_server::{Server, ServerConfig};
//!
//! # async fn run() -> Result<(), reauth_server::ServerError> {
//! let mut config = ServerConfig::default();
//! config.database_url = "sqlite://reauth.db".into();
//! let server = Server::new(config).await?;
//! server.add_user("alice", "correct horse").await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! server.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! See the crate `README.md` for the endpoints, the token formats and the
//! rotation algorithm.

mod app_error;
mod audit;
mod client_auth;
mod clients;
mod clock;
mod config;
mod engine;
mod error;
mod faults;
mod jwt;
mod keys;
mod log_budget;
mod metrics;
mod password;
mod rate_limit;
mod refresh_token;
mod routes;
mod secret;
mod serve;
mod server;
pub mod store;
mod tls;
mod util;
mod web;

pub use app_error::AppError;
pub use clients::{ClientInfo, ClientSpec, GrantType};
#[cfg(any(test, feature = "test-util"))]
pub use clock::ManualClock;
pub use clock::{Clock, SystemClock};
pub use config::{
    ClientCredentials, KeySource, Limits, PasswordHashing, RateLimit, ServerConfig,
    SqliteSynchronous, redacted_url,
};
pub use error::ServerError;
pub use faults::{FaultCounters, Faults};
pub use jwt::{AccessClaims, Audience};
pub use keys::{ServerKeys, SigningKeyInfo};
pub use secret::Secret;
pub use server::{RunningServer, Server};
pub use store::{Repository, StoreError, UserInfo};
pub use tls::TlsConfig;
