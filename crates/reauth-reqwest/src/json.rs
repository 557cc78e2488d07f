//! A refresh endpoint that speaks JSON with its own field names.

use async_trait::async_trait;
use reauth::{RefreshError, RefreshErrorKind, Refresher, TokenSet};
use serde::Serialize;
use url::Url;

use crate::endpoint::{Transport, transport_setters};
use crate::token_response::Fields;

/// A [`Refresher`] for a JSON refresh endpoint: `POST {"<request field>": "<refresh token>"}`,
/// answered with a JSON object holding the new tokens.
///
/// All field names are configurable; the defaults are the RFC 6749 names
/// (`refresh_token` in the request; `access_token`, `refresh_token`,
/// `expires_in`, `token_type`, `scope` in the response). A name starting with
/// `/` is a JSON pointer into nested objects (`/data/accessToken`).
///
/// Error answers are classified like the OAuth2 ones (see the crate docs): a
/// 400/401/403 without a known `error` code is a rejected refresh token.
///
/// The common hand-rolled shape `POST {refreshToken}` →
/// `{authorizationToken, refreshToken}` by configuration alone:
///
/// ```
/// use reauth_reqwest::JsonRefresher;
///
/// let refresher = JsonRefresher::new("https://api.example.com/auth/refresh".parse().unwrap())
///     .request_field("refreshToken")
///     .access_token_field("authorizationToken")
///     .refresh_token_field("refreshToken");
/// # let _ = refresher;
/// ```
#[derive(Clone, Debug)]
pub struct JsonRefresher {
    url: Url,
    request_field: String,
    fields: Fields,
    transport: Transport,
}

impl JsonRefresher {
    /// A refresher posting to `url`.
    pub fn new(url: Url) -> Self {
        Self {
            url,
            request_field: "refresh_token".into(),
            fields: Fields::default(),
            transport: Transport::default(),
        }
    }

    transport_setters!();

    /// The request field that carries the refresh token. Default `refresh_token`.
    #[must_use]
    pub fn request_field(mut self, name: impl Into<String>) -> Self {
        self.request_field = name.into();
        self
    }

    /// The response field holding the access token. Default `access_token`.
    #[must_use]
    pub fn access_token_field(mut self, name: impl Into<String>) -> Self {
        self.fields.access_token = name.into();
        self
    }

    /// The response field holding the new refresh token, if the server rotates
    /// it. Default `refresh_token`. When absent, the old one is kept (C12).
    #[must_use]
    pub fn refresh_token_field(mut self, name: impl Into<String>) -> Self {
        self.fields.refresh_token = name.into();
        self
    }

    /// The response field holding the lifetime in seconds. Default
    /// `expires_in`. When absent, the token has no known expiry and is
    /// refreshed only when refused.
    #[must_use]
    pub fn expires_in_field(mut self, name: impl Into<String>) -> Self {
        self.fields.expires_in = name.into();
        self
    }

    /// The response field holding the token type. Default `token_type`.
    #[must_use]
    pub fn token_type_field(mut self, name: impl Into<String>) -> Self {
        self.fields.token_type = name.into();
        self
    }

    /// Logs in: posts `credentials` as JSON to `login_url` and reads the
    /// answer with this refresher's response field names. Pass the result to
    /// [`Session::start`](reauth::Session::start).
    ///
    /// # Errors
    ///
    /// A classified [`RefreshError`]; wrong credentials (400/401/403) are
    /// [`Rejected`](RefreshErrorKind::Rejected).
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// use reauth_reqwest::JsonRefresher;
    ///
    /// let refresher = JsonRefresher::new("http://127.0.0.1:8080/auth/refresh".parse()?);
    /// let tokens = refresher
    ///     .login("http://127.0.0.1:8080/auth/login".parse()?, &serde_json::json!({"username": "alice", "password": "pw"}))
    ///     .await?;
    /// # let _ = tokens; Ok(()) }
    /// ```
    pub async fn login(
        &self,
        login_url: Url,
        credentials: &impl Serialize,
    ) -> Result<TokenSet, RefreshError> {
        let req = self.transport.http.post(login_url).json(credentials);
        self.transport
            .token(req, &self.fields, RefreshErrorKind::Rejected)
            .await
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl Refresher for JsonRefresher {
    async fn refresh(&self, current: &TokenSet) -> Result<TokenSet, RefreshError> {
        let Some(refresh_token) = &current.refresh_token else {
            return Err(RefreshError::rejected("the session holds no refresh token"));
        };
        let mut body = serde_json::Map::new();
        body.insert(self.request_field.clone(), refresh_token.secret().into());
        let req = self.transport.http.post(self.url.clone()).json(&body);
        self.transport
            .token(req, &self.fields, RefreshErrorKind::Rejected)
            .await
    }
}
