//! Race-free access-token refresh.
//!
//! Many requests, one expired token: every request gets `401`, each tries to
//! refresh, the one-time refresh token is rotated by the first and rejected for
//! the rest, and the user is logged out for nothing. A [`Session`] makes exactly
//! **one refresh per token generation**, shared by the refresh-ahead timer and
//! every request that hit a `401`, persists the rotated tokens before anyone
//! uses them, classifies failures (retry, re-login, misconfiguration), and
//! reports the end of a session exactly once.
//!
//! This crate holds the contracts and the single flight; it has no HTTP client
//! and no database. `reauth-reqwest` plugs it into `reqwest-middleware` and
//! ships OAuth2 refreshers.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::{Duration, SystemTime};
//! use reauth::{refresh_fn, RefreshError, Session, TokenSet};
//!
//! let session = Session::builder(refresh_fn(|current: TokenSet| async move {
//!     // Call your authorization server with `current.refresh_token` here.
//!     Ok(TokenSet::new("new-access").with_expires_in(SystemTime::now(), Duration::from_secs(300)))
//! }))
//! .on_session_ended(|reason| eprintln!("logged out: {reason}"))
//! .build();
//!
//! session.start(TokenSet::new("access").with_refresh_token("refresh")).await?;
//! let bearer = session.access_token().await?;
//! assert_eq!(bearer.header_value(), "Bearer access");
//! # Ok(()) }
//! ```
//!
//! # Failure taxonomy
//!
//! | refresh failed with | session does | callers get |
//! |---|---|---|
//! | transient (network, timeout, 5xx, 429) | retries with backoff + jitter, honours `Retry-After`, within a budget | the new token, or [`Error::RefreshUnavailable`]; still logged in |
//! | rejected (`invalid_grant`, 400/401) | adopts a newer stored set if another process rotated; else ends the session once | [`Error::SessionEnded`] |
//! | misconfigured (`invalid_client`, bad response) | keeps the session | [`Error::Misconfigured`] |

pub mod coord;
mod error;
mod events;
mod flight;
mod future;
mod maybe_send;
mod metrics;
mod mutant;
mod policy;
mod refresher;
mod runtime;
mod secret;
mod session;
mod store;
mod sync;
mod token;

pub use error::{
    AttemptFailure, BoxError, EndReason, Error, RefreshError, RefreshErrorKind, StoreError,
};
pub use events::{EVENT_BUFFER, EventStream, SessionEvent, Trigger};
pub use future::AccessTokenFuture;
pub use maybe_send::{BoxFuture, MaybeSend};
pub use policy::{RefreshAhead, RetryPolicy, backoff_base, backoff_delay, is_expired, refresh_at};
pub use refresher::{RefreshFn, Refresher, refresh_fn};
pub use runtime::{Clock, Jitter, NoJitter, RandomJitter, Runtime, Sleep, Spawn, SystemClock};
#[cfg(feature = "tokio")]
pub use runtime::{TokioClock, TokioSleep, TokioSpawn};
pub use secret::{AccessToken, RefreshToken};
pub use session::{Session, SessionBuilder};
#[cfg(feature = "file-store")]
pub use store::FileStore;
pub use store::{MemoryStore, TokenStore};
pub use token::{Bearer, Generation, Lineage, Stamp, TokenSet};
