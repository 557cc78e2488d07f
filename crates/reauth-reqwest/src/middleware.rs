//! The middleware: attach the session's bearer token, replay once when it is refused.

use std::fmt;
use std::sync::Arc;

use futures::FutureExt;
use http::header::{AUTHORIZATION, HeaderValue};
use reauth::{Bearer, Session};
use reqwest::{Request, Response, Url};
use reqwest_middleware::{Middleware, Next};

use crate::error::Error;
use crate::refused::{DefaultRefusal, TokenRefused};

/// A [`reqwest_middleware::Middleware`] that authenticates requests to the
/// API with the bearer token of a [`Session`].
///
/// # Where the bearer goes (C22)
///
/// Only to the origins you allowed: [`new`](Self::new) takes the API's URL,
/// and its **origin** (scheme, host and port) is the one the bearer is
/// attached to; [`allow_origin`](Self::allow_origin) adds more. There is no
/// "every request" default and no guessing from the first request: a client
/// reused for another service, a link followed from an API response, or a
/// third-party URL never receives the token. A request to any other origin
/// goes out untouched (no `Authorization` set, no refresh, no replay), and so
/// does a request carrying the [`WithoutBearer`] extension. Redirects followed
/// by reqwest drop the `Authorization` header when they leave the origin, and
/// a refusal from a response whose final URL is on another origin (a redirect
/// away, then a 401 there) is not taken for a refusal of the token: it is
/// returned as is, with no refresh and no replay.
///
/// For each request to an allowed origin it:
///
/// 1. takes [`Session::access_token`] — which returns at once while the token
///    is valid, and waits when a refresh of a refused or expired token is in
///    flight (C4a), so no request goes out with a token known to be bad;
/// 2. sets `Authorization: Bearer …` (marked sensitive) and sends;
/// 3. if the response says the token was refused ([`TokenRefused`], by
///    default [`DefaultRefusal`]):
///    * body replayable: calls [`Session::invalidate`] with the token that was
///      sent — one refresh per generation however many requests do this at
///      once (C1), none if a newer token already exists (C3) — and replays the
///      request **once** with the token it returns. If the replay is refused
///      too, that response is returned as is and
///      [`Session::replay_rejected`] records it (C10): no second refresh, no loop.
///    * body not replayable (a stream): returns the refused response, after
///      reporting the token as refused so the session refreshes it for the
///      next request (C11). The caller does not wait for that refresh.
///
/// # Errors
///
/// When the session cannot provide a token (not logged in, session ended,
/// refresh unavailable, …), the request fails with
/// [`reqwest_middleware::Error::Middleware`] holding [`Error::Session`]; get
/// it back with [`Error::session_error`]. Errors of the underlying client are
/// passed through.
///
/// ```
/// # fn f(session: reauth::Session) -> Result<(), url::ParseError> {
/// use reauth_reqwest::AuthMiddleware;
/// use reqwest::StatusCode;
///
/// let api = "https://api.example.com".parse()?;
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(AuthMiddleware::new(session, api).refused_when(|r: &reqwest::Response| {
///         matches!(r.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
///     }))
///     .build();
/// # let _ = client; Ok(()) }
/// ```
#[derive(Clone)]
pub struct AuthMiddleware {
    session: Session,
    refused: Arc<dyn TokenRefused>,
    origins: Arc<[url::Origin]>,
}

/// A per-request opt-out of [`AuthMiddleware`]: a request carrying this
/// extension goes out without the bearer (and is never refreshed for or
/// replayed), even to an allowed origin.
///
/// ```no_run
/// # async fn f(client: reqwest_middleware::ClientWithMiddleware) -> Result<(), reqwest_middleware::Error> {
/// use reauth_reqwest::WithoutBearer;
///
/// let public = client
///     .get("https://api.example.com/public/status")
///     .with_extension(WithoutBearer)
///     .send()
///     .await?;
/// # let _ = public; Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct WithoutBearer;

impl fmt::Debug for AuthMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origins: Vec<String> = self
            .origins
            .iter()
            .map(url::Origin::ascii_serialization)
            .collect();
        f.debug_struct("AuthMiddleware")
            .field("session", &self.session)
            .field("origins", &origins)
            .finish_non_exhaustive()
    }
}

impl AuthMiddleware {
    /// Middleware attaching `session`'s bearer to requests for the origin of
    /// `api` (its scheme, host and port; the path does not matter), replaying
    /// on [`DefaultRefusal`] (401, or `WWW-Authenticate: Bearer
    /// error="invalid_token"`).
    pub fn new(session: Session, api: Url) -> Self {
        Self {
            session,
            refused: Arc::new(DefaultRefusal),
            origins: Arc::from([api.origin()]),
        }
    }

    /// Also attaches the bearer to requests for the origin of `url`.
    #[must_use]
    pub fn allow_origin(mut self, url: Url) -> Self {
        let origin = url.origin();
        if !self.origins.contains(&origin) {
            let mut all = self.origins.to_vec();
            all.push(origin);
            self.origins = Arc::from(all);
        }
        self
    }

    /// Whether a request to `url` gets the bearer.
    pub fn allows(&self, url: &Url) -> bool {
        let origin = url.origin();
        // An opaque origin (`data:`, `file:`) never matches, not even itself.
        origin.is_tuple() && self.origins.contains(&origin)
    }

    /// Replaces the test for "the server refused the token".
    #[must_use]
    pub fn refused_when(mut self, refused: impl TokenRefused) -> Self {
        self.refused = Arc::new(refused);
        self
    }

    /// The session.
    pub fn session(&self) -> &Session {
        &self.session
    }
}

fn authorize(req: &mut Request, bearer: &Bearer) -> reqwest_middleware::Result<()> {
    let mut value = HeaderValue::try_from(bearer.header_value())
        .map_err(|e| reqwest_middleware::Error::middleware(Error::InvalidToken(e)))?;
    value.set_sensitive(true);
    req.headers_mut().insert(AUTHORIZATION, value);
    Ok(())
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait::async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait::async_trait(?Send))]
impl Middleware for AuthMiddleware {
    async fn handle(
        &self,
        mut req: Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        if extensions.get::<WithoutBearer>().is_some() || !self.allows(req.url()) {
            return next.run(req, extensions).await;
        }
        let sent = self.current_bearer().await?;
        // Cloned before sending: `None` for a streaming body, which can be sent once only.
        let replay = req.try_clone();
        authorize(&mut req, &sent)?;
        let response = next.clone().run(req, extensions).await?;
        // A refusal counts only from an origin the bearer goes to: after a
        // redirect to another origin (which never got the bearer — reqwest
        // drops `Authorization` when a redirect leaves the origin), a 401 is
        // not a verdict on our token. No refresh, no replay (C22).
        if !self.refused.token_refused(&response) || !self.allows(response.url()) {
            return Ok(response);
        }
        // Boxed so that the rare path does not enlarge every request's future.
        Box::pin(self.after_refusal(response, replay, sent, extensions, next)).await
    }
}

impl AuthMiddleware {
    /// The token to send. The fast path (a valid token) completes on the first
    /// poll; only a caller that has to wait keeps the waiting future, boxed.
    async fn current_bearer(&self) -> reqwest_middleware::Result<Bearer> {
        let result = match self.session.access_token().now_or_never() {
            Some(result) => result,
            // Dropping the first attempt is harmless (cancel-safe; it joined the
            // refresh, which runs on its own task); this one joins it again.
            None => Box::pin(self.session.access_token()).await,
        };
        result.map_err(|e| reqwest_middleware::Error::middleware(Error::Session(e)))
    }

    /// The server refused `sent`: replay once, or not at all for a body that
    /// cannot be sent twice.
    async fn after_refusal(
        &self,
        response: Response,
        replay: Option<Request>,
        sent: Bearer,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let Some(mut replay) = replay else {
            // C11: the body is gone, so no replay; but tell the session the token
            // is refused: it starts the refresh (or leaves the one in flight) on
            // its own task, and the next request waits for the new token instead
            // of repeating the 401.
            tracing::debug!(generation = %sent.generation(), "token refused; body not replayable, returning the response");
            self.session.refused(&sent);
            return Ok(response);
        };
        drop(response);
        tracing::debug!(generation = %sent.generation(), "token refused; replaying once with a fresh token");
        let fresh = self
            .session
            .invalidate(&sent)
            .await
            .map_err(|e| reqwest_middleware::Error::middleware(Error::Session(e)))?;
        authorize(&mut replay, &fresh)?;
        let response = next.run(replay, extensions).await?;
        if self.refused.token_refused(&response) && self.allows(response.url()) {
            // C10: returned as is; no second refresh for this request.
            tracing::warn!(generation = %fresh.generation(), status = %response.status(), "replayed request refused again");
            self.session.replay_rejected(&fresh);
        }
        Ok(response)
    }
}
