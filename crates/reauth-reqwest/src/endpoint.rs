//! Talking to a token endpoint: client authentication, sending, and turning
//! every answer into a token set or a classified [`RefreshError`].

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reauth::{Clock, RefreshError, RefreshErrorKind, SystemClock, TokenSet};
use reqwest::RequestBuilder;

use crate::classify::{ErrorBody, classify, is_html, parse_retry_after};
use crate::error::Error;
use crate::token_response::{self, Fields};

/// How the client authenticates at the token endpoint (RFC 6749 §2.3.1).
///
/// Without a client secret (a public client), `client_id` is sent in the form
/// body whatever this says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic with the form-urlencoded id and
    /// secret, as RFC 6749 §2.3.1 requires. The default.
    #[default]
    Basic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    Post,
}

/// A string that is never printed.
#[derive(Clone)]
pub(crate) struct Secret(pub(crate) String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The `Authorization` value for `client_secret_basic`: each part is
/// `application/x-www-form-urlencoded` before they are joined and base64-encoded
/// (RFC 6749 §2.3.1; a `:` in the id must not split it).
pub(crate) fn basic_authorization(client_id: &str, secret: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        BASE64.encode(format!("{}:{}", enc(client_id), enc(secret)))
    )
}

/// An OAuth2 client's identity and how it proves it.
#[derive(Clone, Debug)]
pub(crate) struct Credentials {
    pub(crate) id: String,
    pub(crate) secret: Option<Secret>,
    pub(crate) auth: ClientAuth,
}

impl Credentials {
    pub(crate) fn new(id: String) -> Self {
        Self {
            id,
            secret: None,
            auth: ClientAuth::default(),
        }
    }

    /// Adds client authentication to a form request.
    pub(crate) fn apply(
        &self,
        req: RequestBuilder,
        form: &mut Vec<(&'static str, String)>,
    ) -> RequestBuilder {
        match (&self.secret, self.auth) {
            (Some(secret), ClientAuth::Basic) => {
                let mut value = HeaderValue::try_from(basic_authorization(&self.id, &secret.0))
                    .expect("base64 is a valid header value");
                value.set_sensitive(true);
                req.header(AUTHORIZATION, value)
            }
            (Some(secret), ClientAuth::Post) => {
                form.push(("client_id", self.id.clone()));
                form.push(("client_secret", secret.0.clone()));
                req
            }
            (None, _) => {
                form.push(("client_id", self.id.clone()));
                req
            }
        }
    }
}

/// The HTTP client and clock a refresher uses.
#[derive(Clone)]
pub(crate) struct Transport {
    /// The client, or why the default one could not be built (reported as
    /// `Misconfigured` by every request, never a panic).
    pub(crate) http: Result<reqwest::Client, Arc<reqwest::Error>>,
    pub(crate) clock: Arc<dyn Clock>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport").finish_non_exhaustive()
    }
}

impl Default for Transport {
    fn default() -> Self {
        Self {
            http: token_client(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// The largest token-endpoint answer read (success or error): 64 KiB. A token
/// response is a few KiB even with an ID token; anything larger is a broken
/// or hostile endpoint, refused as misconfiguration before it fills memory.
pub(crate) const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// How long the default client waits for a token endpoint's whole answer.
/// A session bounds its refreshes by its own (shorter, by default) refresh
/// timeout; this bounds the calls nothing else bounds — a login
/// (`password_grant`, `exchange_code`, `JsonRefresher::login`) or a
/// revocation against an endpoint that accepts the connection and never
/// answers.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) const DEFAULT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// How long the default client waits for a connection to a token endpoint.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The default client for token endpoints: it does **not** follow redirects,
/// so a refresh token or a client secret is never re-sent to wherever a
/// `Location` header points (C23), and it gives up on a connection after
/// `DEFAULT_CONNECT_TIMEOUT` and on an answer after `DEFAULT_REQUEST_TIMEOUT`
/// (outside a browser, whose `fetch` has its own limits). In a browser the page's `fetch` follows
/// redirects by itself; a redirected answer is then refused (see
/// [`Transport::send`]).
fn token_client() -> Result<reqwest::Client, Arc<reqwest::Error>> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(DEFAULT_CONNECT_TIMEOUT)
            .timeout(DEFAULT_REQUEST_TIMEOUT)
            .build()
            .map_err(|e| {
                tracing::error!(error = %e, "the token endpoint's HTTP client could not be built");
                Arc::new(e)
            })
    }
    #[cfg(target_arch = "wasm32")]
    {
        Ok(reqwest::Client::new())
    }
}

impl Transport {
    /// The HTTP client.
    ///
    /// # Errors
    ///
    /// `Misconfigured` if the default client could not be built (its TLS
    /// backend failed to initialise).
    pub(crate) fn client(&self) -> Result<&reqwest::Client, RefreshError> {
        self.http.as_ref().map_err(|e| {
            RefreshError::misconfigured(std::io::Error::other(format!(
                "the token endpoint's HTTP client could not be built: {e}"
            )))
        })
    }
}

/// Reads at most `limit` bytes of `response`'s body.
#[cfg(not(target_arch = "wasm32"))]
async fn capped_body(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, RefreshError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads at most `limit` bytes of `response`'s body (in a browser the body
/// arrives whole; a declared or actual size above the limit is refused).
#[cfg(target_arch = "wasm32")]
async fn capped_body(response: reqwest::Response, limit: usize) -> Result<Vec<u8>, RefreshError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let body = response.bytes().await.map_err(transport_error)?;
    if body.len() > limit {
        return Err(too_large(limit));
    }
    Ok(body.to_vec())
}

fn too_large(limit: usize) -> RefreshError {
    tracing::debug!(limit, "token endpoint answer too large");
    RefreshError::misconfigured(Error::ResponseTooLarge { limit })
}

impl Transport {
    /// Sends `req` and returns the body of a 2xx answer. Any other outcome is a
    /// classified error: see the table in the crate docs. `refused` is the
    /// class of an unexplained 400/401/403.
    ///
    /// Hostile or broken endpoints (C23): a redirect is never followed by the
    /// default client and is refused as misconfiguration (so is an answer
    /// that arrives from another URL than the one asked — a client that
    /// followed a redirect); a body above [`MAX_RESPONSE_BYTES`] is refused
    /// before it is read whole.
    pub(crate) async fn send(
        &self,
        req: RequestBuilder,
        refused: RefreshErrorKind,
    ) -> Result<Success, RefreshError> {
        let (client, request) = req.build_split();
        let request = request.map_err(transport_error)?;
        let asked = request.url().clone();
        let sent_at = self.clock.now();
        let response = client.execute(request).await.map_err(transport_error)?;
        let status = response.status();
        if status.is_redirection() || response.url() != &asked {
            tracing::debug!(%status, "token endpoint redirected; not followed");
            return Err(RefreshError::misconfigured(Error::Redirected { status }));
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, self.clock.now()));
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = capped_body(response, MAX_RESPONSE_BYTES).await?;
        if status.is_success() {
            return Ok(Success {
                status,
                body,
                sent_at,
            });
        }
        let parsed = ErrorBody::parse(&body);
        let html = is_html(content_type.as_deref(), &body);
        let kind = classify(status, parsed.error.as_deref(), refused, html);
        tracing::debug!(%status, error = parsed.error.as_deref(), ?kind, "token endpoint refused");
        let err = Error::Endpoint {
            status,
            code: parsed.error,
            description: parsed.error_description,
        };
        let mut err = RefreshError::new(kind, err);
        if let Some(ra) = retry_after.filter(|_| kind == RefreshErrorKind::Transient) {
            err = err.with_retry_after(ra);
        }
        Err(err)
    }

    /// POSTs the RFC 6749 form `form` (plus `scope` and the client's
    /// authentication) to `url` and parses the token response with `fields`;
    /// a refusal without a known error code is classified as `refused`.
    pub(crate) async fn form_grant(
        &self,
        url: &url::Url,
        credentials: &Credentials,
        scope: Option<&str>,
        fields: &Fields,
        mut form: Vec<(&'static str, String)>,
        refused: RefreshErrorKind,
    ) -> Result<TokenSet, RefreshError> {
        if let Some(scope) = scope {
            form.push(("scope", scope.to_owned()));
        }
        let req = credentials.apply(self.client()?.post(url.clone()), &mut form);
        let req = req
            .header(http::header::ACCEPT, "application/json")
            .form(&form);
        self.token(req, fields, refused).await
    }

    /// Sends a token request and parses the token response with `fields`.
    pub(crate) async fn token(
        &self,
        req: RequestBuilder,
        fields: &Fields,
        refused: RefreshErrorKind,
    ) -> Result<TokenSet, RefreshError> {
        let ok = self.send(req, refused).await?;
        token_response::parse(&ok.body, fields, ok.sent_at).map_err(|reason| {
            RefreshError::misconfigured(Error::InvalidResponse {
                status: ok.status,
                reason,
            })
        })
    }
}

/// A 2xx answer.
pub(crate) struct Success {
    status: reqwest::StatusCode,
    body: Vec<u8>,
    /// When the request was sent: `expires_in` counts from here, which errs on
    /// the early side.
    sent_at: SystemTime,
}

fn transport_error(e: reqwest::Error) -> RefreshError {
    let e = e.without_url();
    let kind = if e.is_builder() || e.is_redirect() {
        RefreshErrorKind::Misconfigured
    } else {
        RefreshErrorKind::Transient
    };
    tracing::debug!(error = %e, ?kind, "token endpoint unreachable");
    RefreshError::new(kind, Error::Http(e))
}

/// Builder methods every HTTP refresher has.
macro_rules! transport_setters {
    () => {
        /// The HTTP client for calls to the endpoint (proxies, TLS roots,
        /// timeouts). Default: a `reqwest::Client` that does not follow
        /// redirects and gives up after 10 s without a connection or 60 s
        /// without a whole answer (a session whose `refresh_timeout` is
        /// longer than that needs a client of its own). Build yours with
        /// `.redirect(reqwest::redirect::Policy::none())` too: a client that
        /// follows a redirect re-sends the refresh token and the client
        /// secret to wherever it points (the answer is then refused, but the
        /// secrets have left). Do not pass a client that goes through
        /// [`AuthMiddleware`](crate::AuthMiddleware).
        #[must_use]
        pub fn http_client(mut self, client: reqwest::Client) -> Self {
            self.transport.http = Ok(client);
            self
        }

        /// The clock that turns a relative expiry into `expires_at` and reads
        /// HTTP dates in `Retry-After`. Default: [`reauth::SystemClock`]. To
        /// follow a session's (possibly virtual) time, pass its runtime's
        /// clock: `.clock(runtime.clock())`.
        #[must_use]
        pub fn clock(mut self, clock: impl reauth::Clock) -> Self {
            self.transport.clock = std::sync::Arc::new(clock);
            self
        }
    };
}

/// Builder methods of refreshers that authenticate as an OAuth2 client.
macro_rules! credential_setters {
    () => {
        /// The client secret. Without one the client is public: `client_id`
        /// goes in the form body and no secret is sent.
        #[must_use]
        pub fn client_secret(mut self, secret: impl Into<String>) -> Self {
            self.credentials.secret = Some(crate::endpoint::Secret(secret.into()));
            self
        }

        /// How the secret is sent. Default: [`ClientAuth::Basic`](crate::ClientAuth::Basic).
        #[must_use]
        pub fn client_auth(mut self, auth: crate::ClientAuth) -> Self {
            self.credentials.auth = auth;
            self
        }

        /// The `scope` parameter to send, if any.
        #[must_use]
        pub fn scope(mut self, scope: impl Into<String>) -> Self {
            self.scope = Some(scope.into());
            self
        }
    };
}

/// The `expiry` builder method of refreshers that parse a token response
/// (they hold `fields: Fields`).
macro_rules! expiry_setter {
    () => {
        /// Where the access token's expiry is read. Default: `expires_in`
        /// seconds, else the access token's JWT `exp` (see
        /// [`Expiry`](crate::Expiry)).
        #[must_use]
        pub fn expiry(mut self, expiry: crate::Expiry) -> Self {
            self.fields.expiry = expiry;
            self
        }
    };
}

pub(crate) use {credential_setters, expiry_setter, transport_setters};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_form_urlencodes_before_base64() {
        // RFC 6749 §2.3.1 / Appendix B: space → '+', ':' and others percent-encoded.
        let v = basic_authorization("my client:1", "p@ss w:rd/ü+");
        let decoded =
            String::from_utf8(BASE64.decode(v.strip_prefix("Basic ").unwrap()).unwrap()).unwrap();
        assert_eq!(decoded, "my+client%3A1:p%40ss+w%3Ard%2F%C3%BC%2B");
        assert_eq!(
            basic_authorization("id", "secret"),
            format!("Basic {}", BASE64.encode("id:secret"))
        );
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let mut c = Credentials::new("client".into());
        c.secret = Some(Secret("hunter2".into()));
        let out = format!("{c:?}");
        assert!(!out.contains("hunter2") && out.contains("client"), "{out}");
    }
}
