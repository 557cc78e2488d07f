//! A refresh endpoint that speaks JSON with its own field names.

use async_trait::async_trait;
use http::header::{AUTHORIZATION, HeaderValue};
use reauth::{RefreshError, RefreshErrorKind, Refresher, TokenSet};
use reqwest::Method;
use serde::Serialize;
use url::Url;

use crate::endpoint::{Transport, expiry_setter, transport_setters};
use crate::token_response::Fields;

/// How a [`JsonRefresher`] sends the refresh token.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefreshTokenIn {
    /// In a JSON body, under this field name: `{"<name>": "<refresh token>"}`.
    /// The default, with the name `refresh_token`.
    JsonField(String),
    /// In the `Authorization: Bearer <refresh token>` header, with no body —
    /// the refresh endpoint of the seed-000 backend (`GET /auth/refresh`).
    BearerHeader,
}

impl Default for RefreshTokenIn {
    fn default() -> Self {
        Self::JsonField("refresh_token".to_owned())
    }
}

/// A [`Refresher`] for a hand-rolled refresh endpoint answering JSON:
/// `POST {"<field>": "<refresh token>"}` by default, or the refresh token in
/// an `Authorization: Bearer` header ([`RefreshTokenIn`]), with any method.
///
/// All field names are configurable; the defaults are the RFC 6749 names
/// (`refresh_token` in the request; `access_token`, `refresh_token`,
/// `token_type`, `scope` in the response; the expiry from `expires_in`
/// seconds, else the access token's JWT `exp` — see
/// [`Expiry`](crate::Expiry)). A name
/// starting with `/` is a JSON pointer into nested objects
/// (`/data/accessToken`).
///
/// Error answers are classified like the OAuth2 ones (see the crate docs): a
/// 400/401/403 without a known `error` code is a rejected refresh token.
///
/// The seed-002 backend, `POST {refreshToken}` → `{authorizationToken,
/// refreshToken}` with the expiry in the JWT, by configuration alone:
///
/// ```
/// use reauth_reqwest::{JsonRefresher, RefreshTokenIn};
///
/// let refresher = JsonRefresher::new("https://api.example.com/authorization/refresh".parse().unwrap())
///     .refresh_token_in(RefreshTokenIn::JsonField("refreshToken".into()))
///     .access_token_field("authorizationToken")
///     .refresh_token_field("refreshToken");
/// # let _ = refresher;
/// ```
///
/// The seed-000 backend, `GET /auth/refresh` with `Authorization: Bearer
/// <refresh token>` → `{accessToken, refreshToken}`:
///
/// ```
/// use reauth_reqwest::{JsonRefresher, RefreshTokenIn};
///
/// let refresher = JsonRefresher::new("https://api.example.com/auth/refresh".parse().unwrap())
///     .method(reqwest::Method::GET)
///     .refresh_token_in(RefreshTokenIn::BearerHeader)
///     .access_token_field("accessToken")
///     .refresh_token_field("refreshToken");
/// # let _ = refresher;
/// ```
#[derive(Clone, Debug)]
pub struct JsonRefresher {
    url: Url,
    method: Method,
    refresh_token_in: RefreshTokenIn,
    fields: Fields,
    transport: Transport,
}

impl JsonRefresher {
    /// A refresher posting to `url`.
    pub fn new(url: Url) -> Self {
        Self {
            url,
            method: Method::POST,
            refresh_token_in: RefreshTokenIn::default(),
            fields: Fields::default(),
            transport: Transport::default(),
        }
    }

    transport_setters!();

    /// How the refresh token is sent. Default: the JSON field `refresh_token`.
    #[must_use]
    pub fn refresh_token_in(mut self, how: RefreshTokenIn) -> Self {
        self.refresh_token_in = how;
        self
    }

    /// The HTTP method of the refresh request. Default `POST`.
    #[must_use]
    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
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

    expiry_setter!();

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
        let req = self.transport.client()?.post(login_url).json(credentials);
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
        let req = self
            .transport
            .client()?
            .request(self.method.clone(), self.url.clone())
            .header(http::header::ACCEPT, "application/json");
        let req = match &self.refresh_token_in {
            RefreshTokenIn::JsonField(name) => {
                let mut body = serde_json::Map::new();
                body.insert(name.clone(), refresh_token.secret().into());
                req.json(&body)
            }
            RefreshTokenIn::BearerHeader => {
                let mut value = HeaderValue::try_from(format!("Bearer {}", refresh_token.secret()))
                    .map_err(|e| RefreshError::rejected(crate::error::Error::InvalidToken(e)))?;
                value.set_sensitive(true);
                req.header(AUTHORIZATION, value)
            }
        };
        self.transport
            .token(req, &self.fields, RefreshErrorKind::Rejected)
            .await
    }
}
