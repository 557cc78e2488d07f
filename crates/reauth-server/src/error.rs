//! Errors of the server library API (start-up, storage, user management).
//!
//! Errors answered to HTTP clients are [`AppError`](crate::AppError).

use std::path::PathBuf;

use crate::store::StoreError;

/// What can go wrong when starting or administering the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is unusable (e.g. an unknown database URL scheme).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The key file exists but cannot be read or parsed, or cannot be created.
    #[error("key file {path}: {reason}")]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// Why it could not be used.
        reason: String,
    },
    /// The TLS certificate or key cannot be used.
    #[error("{}{reason}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Tls {
        /// The PEM file concerned, if one.
        path: Option<PathBuf>,
        /// Why it could not be used.
        reason: String,
    },
    /// The database failed.
    #[error("database error")]
    Database(#[source] StoreError),
    /// Schema migrations failed.
    #[error("database migration failed")]
    Migrate(#[source] StoreError),
    /// A user with this name already exists.
    #[error("user {0:?} already exists")]
    UserExists(String),
    /// The username is empty, too long or contains control characters.
    #[error("invalid username")]
    InvalidUsername,
    /// Hashing a password failed.
    #[error("password hashing failed: {0}")]
    PasswordHash(String),
    /// Binding or serving the listener failed.
    #[error("I/O error")]
    Io(#[from] std::io::Error),
    /// A background task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(String),
}

impl From<StoreError> for ServerError {
    fn from(e: StoreError) -> Self {
        Self::Database(e)
    }
}
