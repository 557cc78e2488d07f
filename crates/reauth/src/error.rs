//! The failure taxonomy: why a refresh failed, and what a caller of the session sees.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A boxed error source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How a refresh attempt failed. The class decides what the session does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefreshErrorKind {
    /// Worth retrying: connect error, timeout, 5xx, 429. The session retries with
    /// backoff and keeps the user logged in.
    Transient,
    /// The server refused the refresh token (`invalid_grant`, a 400/401 from the
    /// refresh endpoint). Unless another process already rotated it, the session ends.
    Rejected,
    /// The client is set up wrong (`invalid_client`, `unauthorized_client`, a
    /// response that is not a token response). Retrying will not help, and it is
    /// not the user's fault: the session is kept.
    Misconfigured,
}

/// Why a [`Refresher`](crate::Refresher) could not produce a new token set.
///
/// ```
/// use std::time::Duration;
/// use reauth::{RefreshError, RefreshErrorKind};
///
/// let e = RefreshError::transient("503 Service Unavailable").with_retry_after(Duration::from_secs(2));
/// assert!(e.is_transient());
/// assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
/// assert_eq!(RefreshError::rejected("invalid_grant").kind(), RefreshErrorKind::Rejected);
/// ```
#[derive(Debug)]
pub struct RefreshError {
    kind: RefreshErrorKind,
    retry_after: Option<Duration>,
    source: BoxError,
}

impl RefreshError {
    /// A failure of `kind` caused by `source`.
    pub fn new(kind: RefreshErrorKind, source: impl Into<BoxError>) -> Self {
        Self {
            kind,
            retry_after: None,
            source: source.into(),
        }
    }

    /// A transient failure (network, timeout, 5xx, 429).
    pub fn transient(source: impl Into<BoxError>) -> Self {
        Self::new(RefreshErrorKind::Transient, source)
    }

    /// The server rejected the refresh token.
    pub fn rejected(source: impl Into<BoxError>) -> Self {
        Self::new(RefreshErrorKind::Rejected, source)
    }

    /// The client is misconfigured or the response malformed.
    pub fn misconfigured(source: impl Into<BoxError>) -> Self {
        Self::new(RefreshErrorKind::Misconfigured, source)
    }

    /// Records the server's `Retry-After`.
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// The class of failure.
    pub fn kind(&self) -> RefreshErrorKind {
        self.kind
    }

    /// The server's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether retrying may help.
    pub fn is_transient(&self) -> bool {
        self.kind == RefreshErrorKind::Transient
    }

    /// Whether the server refused the refresh token.
    pub fn is_rejected(&self) -> bool {
        self.kind == RefreshErrorKind::Rejected
    }

    /// Whether the client is misconfigured.
    pub fn is_misconfigured(&self) -> bool {
        self.kind == RefreshErrorKind::Misconfigured
    }
}

impl RefreshError {
    /// The session's own reason, when the session (not the refresher) ended
    /// the attempt: timed out, lease busy or lost, refresher panicked, task
    /// abandoned. Match on it instead of comparing messages.
    ///
    /// ```
    /// use std::time::Duration;
    /// use reauth::{AttemptFailure, RefreshError};
    /// let e = RefreshError::transient(AttemptFailure::TimedOut(Duration::from_secs(10)));
    /// assert!(matches!(e.attempt_failure(), Some(AttemptFailure::TimedOut(_))));
    /// assert!(RefreshError::transient("HTTP 503").attempt_failure().is_none());
    /// ```
    pub fn attempt_failure(&self) -> Option<&AttemptFailure> {
        self.source.downcast_ref()
    }

    /// The store failure behind this refresh failure, if a store operation
    /// (the lease, a re-read) failed.
    pub fn store_error(&self) -> Option<&StoreError> {
        self.source.downcast_ref()
    }

    /// The underlying error, to downcast to the refresher's own type (for
    /// `reauth-reqwest`: `reauth_reqwest::Error`).
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.source
    }
}

/// Why the **session** ended a refresh attempt, when the refresher did not
/// say: find it with [`RefreshError::attempt_failure`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttemptFailure {
    /// The refresher did not answer within the refresh timeout (C9).
    #[error("the refresh did not answer within {0:?}")]
    TimedOut(Duration),
    /// Another process held the refresh lease for longer than a waiter waits.
    #[error("another process held the refresh lease for more than {0:?}")]
    LeaseBusy(Duration),
    /// The lease was lost (its deadline passed unrenewed, or the store said
    /// so) before the work under it finished (C18).
    #[error("the refresh lease was lost before the work under it finished")]
    LeaseLost,
    /// The work under one lease took longer than a holder may hold it.
    #[error("the work under the refresh lease took longer than {0:?}")]
    HeldTooLong(Duration),
    /// The refresher panicked (a misconfiguration).
    #[error("the refresher panicked")]
    RefresherPanicked,
    /// The refresh task stopped before finishing (its runtime shut down).
    #[error("the refresh task stopped before finishing (its runtime shut down)")]
    Abandoned,
}

impl fmt::Display for RefreshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            RefreshErrorKind::Transient => "token refresh failed transiently",
            RefreshErrorKind::Rejected => "refresh token rejected",
            RefreshErrorKind::Misconfigured => "token refresh misconfigured",
        };
        write!(f, "{what}: {}", self.source)
    }
}

impl std::error::Error for RefreshError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// A [`TokenStore`](crate::TokenStore) failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading or writing failed.
    #[error("token store I/O failed")]
    Io(#[from] std::io::Error),
    /// The stored data could not be understood. Nothing was overwritten.
    #[error("token store holds data that could not be read")]
    Corrupt(#[source] BoxError),
    /// A backend-specific failure.
    #[error("token store backend failed")]
    Backend(#[source] BoxError),
    /// A compare-and-set write kept losing to other writers; the tokens stay
    /// published in memory.
    #[error("the token store kept changing under a compare-and-set write")]
    Conflict,
    /// The operation was abandoned before it finished: the task running it
    /// never ran to completion (its runtime shut down).
    #[error("the token store operation was abandoned before it finished")]
    Abandoned,
    /// The store's file or directory is not private to this user (owned by
    /// another user, or writable by the group or the world): another user
    /// could read, plant or swap tokens. Nothing was read or written.
    #[error("the token store at {} is not private: {reason}", path.display())]
    Insecure {
        /// The file or directory refused.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndReason {
    /// The server rejected the refresh token and no other process had rotated it.
    RefreshRejected,
    /// [`Session::logout`](crate::Session::logout) was called.
    LoggedOut,
    /// Another owner of the shared store (a browser tab, a process) ended the
    /// session — it logged out, or its refresh was rejected: it said so
    /// ([`Session::end_elsewhere`](crate::Session::end_elsewhere)), or this
    /// session found the shared store cleared when it came to refresh.
    EndedElsewhere,
    /// Another login (another user, or a new login of the same user) replaced
    /// this one in the shared store. Its set was reported
    /// ([`SessionEvent::ForeignSet`](crate::SessionEvent::ForeignSet)) and not
    /// adopted; call [`Session::restore`](crate::Session::restore) to switch
    /// to it deliberately.
    Superseded,
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RefreshRejected => "the refresh token was rejected",
            Self::LoggedOut => "logged out",
            Self::EndedElsewhere => "ended by another owner of the shared store",
            Self::Superseded => "replaced by another login in the shared store",
        })
    }
}

/// What [`Session::access_token`](crate::Session::access_token) and
/// [`Session::invalidate`](crate::Session::invalidate) fail with.
///
/// Cheap to clone: every waiter of one refresh gets the same error.
///
/// | variant | user logged out? | next call |
/// |---|---|---|
/// | `NoSession` | never logged in | fails fast until [`Session::start`](crate::Session::start) |
/// | `SessionEnded` | yes, exactly once | fails fast until a new session starts |
/// | `RefreshUnavailable` | no | tries to refresh again |
/// | `Misconfigured` | no | tries again (fix the configuration) |
/// | `Timeout` | no | joins the refresh still in flight, or starts one |
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No session has been started (or restored from the store).
    #[error("no session: log in first")]
    NoSession,
    /// The session ended; the user has to log in again.
    #[error("session ended: {0}")]
    SessionEnded(EndReason),
    /// The refresh failed transiently and its retry budget ran out. The session is kept.
    #[error("token refresh unavailable")]
    RefreshUnavailable {
        /// The server's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
        /// The last failure.
        #[source]
        source: Arc<RefreshError>,
    },
    /// The refresher is misconfigured or the token response malformed. The session is kept.
    #[error("token refresh misconfigured")]
    Misconfigured(#[source] Arc<RefreshError>),
    /// This caller's own deadline passed while the refresh was still running.
    #[error("timed out waiting for a token refresh")]
    Timeout,
}

impl Error {
    /// The refresh failure behind [`RefreshUnavailable`](Self::RefreshUnavailable)
    /// or [`Misconfigured`](Self::Misconfigured).
    pub fn refresh_error(&self) -> Option<&RefreshError> {
        match self {
            Self::RefreshUnavailable { source, .. } | Self::Misconfigured(source) => Some(source),
            _ => None,
        }
    }

    /// Whether the user has to log in again.
    pub fn is_session_ended(&self) -> bool {
        matches!(self, Self::SessionEnded(_) | Self::NoSession)
    }

    /// Whether trying again later may succeed without a new login.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::RefreshUnavailable { .. } | Self::Timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_classes_are_predicates() {
        assert!(RefreshError::transient("x").is_transient());
        assert!(RefreshError::rejected("x").is_rejected());
        assert!(RefreshError::misconfigured("x").is_misconfigured());
        assert!(Error::SessionEnded(EndReason::RefreshRejected).is_session_ended());
        assert!(Error::Timeout.is_transient());
        assert!(!Error::Misconfigured(Arc::new(RefreshError::misconfigured("x"))).is_transient());
    }
}
