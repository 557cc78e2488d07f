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
    /// The keys differ from the ones the database was set up with: this
    /// replica would re-key the shared database (every client secret and
    /// refresh token would stop working). Start every replica with the same
    /// key file.
    #[error(
        "the database was set up with other keys (fingerprint {database}; these keys have {keys}): \
         start every server on this database with the same key file"
    )]
    KeyMismatch {
        /// The fingerprint the database remembers.
        database: String,
        /// The fingerprint of the keys given.
        keys: String,
    },
    /// A client with this id already exists.
    #[error("client {0:?} already exists")]
    ClientExists(String),
    /// No client with this id (or, to rotate a secret, no confidential one).
    #[error("no client {0:?}")]
    NoSuchClient(String),
    /// The client registration is invalid.
    #[error("invalid client: {0}")]
    InvalidClient(String),
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
