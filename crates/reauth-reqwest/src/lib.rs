//! [`reqwest_middleware`] integration for [`reauth`]: every request carries
//! the session's bearer token; a burst of `401`s makes **one** refresh, and
//! each refused request is replayed once with the new token.
//!
//! * [`AuthMiddleware`] — the middleware (attach, wait, replay once; see its
//!   docs), for the origins you allow only; [`WithoutBearer`] opts one
//!   request out.
//! * [`TokenRefused`] / [`DefaultRefusal`] — what counts as "token refused".
//! * Refreshers over reqwest: [`OAuth2Refresher`] (RFC 6749 §6 `refresh_token`
//!   grant, password-grant login, RFC 7009 revocation), [`JsonRefresher`]
//!   (a JSON endpoint with configurable field names) and
//!   [`ClientCredentialsRefresher`].
//!
//! # Quick start
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use reauth::{Session, TokenSet};
//! use reauth_reqwest::{AuthMiddleware, ClientAuth, OAuth2Refresher};
//!
//! let refresher = OAuth2Refresher::new("https://auth.example.com/oauth/token".parse()?, "my-app")
//!     .client_secret("s3cret")
//!     .client_auth(ClientAuth::Basic);
//! let session = Session::builder(refresher).build();
//! // Log in however you like (e.g. `OAuth2Refresher::password_grant`), then:
//! session.start(TokenSet::new("access").with_refresh_token("refresh")).await?;
//!
//! // The bearer goes to this API's origin only.
//! let api = "https://api.example.com".parse()?;
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(AuthMiddleware::new(session.clone(), api))
//!     .build();
//! # let _ = client; Ok(()) }
//! ```
//!
//! Then use `client` as a `reqwest::Client`:
//!
//! ```no_run
//! # async fn f(client: reqwest_middleware::ClientWithMiddleware) -> Result<(), Box<dyn std::error::Error>> {
//! use reauth_reqwest::Error;
//!
//! match client.get("https://api.example.com/resources").send().await {
//!     Ok(response) => println!("{}", response.status()),
//!     Err(e) if Error::session_error(&e).is_some_and(|s| s.is_session_ended()) => println!("log in again"),
//!     Err(e) => return Err(e.into()),
//! }
//! # Ok(()) }
//! ```
//!
//! Keep the refresher's own `reqwest::Client` plain: a refresher that calls
//! through the middleware would wait for itself.
//!
//! # How token-endpoint answers are classified
//!
//! The session acts on the class of a failed refresh (retry, end the session,
//! or report a misconfiguration). A known RFC 6749 §5.2 `error` code decides
//! first, then the status:
//!
//! | answer | class | why |
//! |---|---|---|
//! | 2xx with a token response | success | `expires_in` → `expires_at` by the refresher's clock; no `refresh_token` → the old one is kept |
//! | 2xx that is not JSON / lacks the access token / has a field of the wrong type | `Misconfigured` | the endpoint or field names are wrong |
//! | `invalid_grant` (any status) | `Rejected` | the refresh token is expired, revoked or rotated |
//! | `invalid_client`, `unauthorized_client`, `unsupported_grant_type`, `invalid_scope`, `invalid_request` | `Misconfigured` | the client is set up wrong; logging out would not help |
//! | `temporarily_unavailable`, `server_error`, `slow_down` | `Transient` | the server says so |
//! | 400, 401 or 403 with no or an unknown code, as an **HTML page** (`text/html`, or a body opening with `<`) | `Transient` | not an RFC 6749 §5.2 answer: a proxy, WAF or captive portal in front of the endpoint — no verdict on the refresh token, so no logout |
//! | 400, 401 or 403 with no or an unknown code, not HTML | `Rejected` (refresh and JSON refreshers); `Misconfigured` (`client_credentials`) | DESIGN §3.1: a 400/401 from the refresh endpoint refuses the refresh token; with `client_credentials` there is no user token, so it is the client's credentials |
//! | 429, 408, 5xx | `Transient`, with `Retry-After` (seconds or HTTP date) | the session honours it up to `RetryPolicy::max_retry_after` (5 min by default) |
//! | any other status (404, 405, 415 …) | `Misconfigured` | wrong URL or method |
//! | a redirect (3xx), or an answer from another URL than the one asked | `Misconfigured` ([`Error::Redirected`]) | never followed: the refresh token and client secret are not re-sent elsewhere (C23) |
//! | a body above 64 KiB (declared or read) | `Misconfigured` ([`Error::ResponseTooLarge`]) | not read whole (C23) |
//! | connect error, timeout, broken body | `Transient` | |
//! | invalid URL or request | `Misconfigured` | |
//!
//! # Features
//!
//! * `rustls` (default): HTTPS through reqwest's rustls backend (aws-lc-rs,
//!   the platform's certificate verifier). Turn default features off only if
//!   you enable another TLS backend of reqwest yourself: without one an
//!   `https://` endpoint cannot be reached. An unsupported URL scheme
//!   (`ftp:`, `file:` …) is a `Misconfigured` refresh error, never a panic.
//!
//! Errors carry status, code and `error_description` only — the code cut
//! to 64 characters, the description to 256 (ending in `…`), control
//! characters as spaces, so a hostile endpoint cannot flood or forge log
//! lines; tokens, secrets and response bodies never appear in errors,
//! `Debug` output or logs.

mod classify;
mod client_credentials;
mod endpoint;
mod error;
mod expiry;
mod json;
mod middleware;
mod oauth2;
mod refused;
mod token_response;

pub use client_credentials::ClientCredentialsRefresher;
pub use endpoint::ClientAuth;
pub use error::Error;
pub use expiry::Expiry;
pub use json::{JsonRefresher, RefreshTokenIn};
pub use middleware::{AuthMiddleware, WithoutBearer};
pub use oauth2::OAuth2Refresher;
pub use refused::{DefaultRefusal, TokenRefused};

/// The repository README's examples, compiled as doctests.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
