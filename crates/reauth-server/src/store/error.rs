//! [`StoreError`]: what a [`Repository`](super::Repository) call can fail
//! with, whatever the database behind it.

/// A boxed error cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A storage failure, classified by what the caller should do about it.
///
/// The database driver's own error is kept as the [`source`](std::error::Error::source)
/// (for logs), never in the type: users of the [`Repository`](super::Repository)
/// trait do not depend on any driver's version.
///
/// ```
/// use reauth_server::store::StoreError;
/// let e = StoreError::unavailable("the database is locked");
/// assert!(e.is_unavailable());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database cannot do the work now but may later: busy or locked
    /// past the configured wait, disk full, read-only, an I/O error, a lost
    /// connection, an exhausted pool. Nothing was committed. Answered `503
    /// temporarily_unavailable` with `Retry-After`.
    #[error("database unavailable")]
    Unavailable(#[source] BoxError),
    /// The database refused a value (a NUL byte, a value too long for an
    /// index). Answered `400 invalid_request`; nothing was written.
    #[error("value refused by the database")]
    InvalidInput(#[source] BoxError),
    /// Any other database failure (a bug, a corrupt database). Answered `500
    /// server_error`; nothing was committed.
    #[error("database error")]
    Backend(#[source] BoxError),
}

impl StoreError {
    /// A [`StoreError::Unavailable`] with `cause`.
    pub fn unavailable(cause: impl Into<BoxError>) -> Self {
        Self::Unavailable(cause.into())
    }

    /// A [`StoreError::Backend`] with `cause`.
    pub fn backend(cause: impl Into<BoxError>) -> Self {
        Self::Backend(cause.into())
    }

    /// Whether the failure is temporary (the same call may succeed later).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}
