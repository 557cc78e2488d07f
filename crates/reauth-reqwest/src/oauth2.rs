//! The OAuth2 `refresh_token` grant (RFC 6749 §6), plus the password grant
//! to log in and RFC 7009 revocation on logout.

use async_trait::async_trait;
use reauth::{RefreshError, RefreshErrorKind, Refresher, TokenSet};
use url::Url;

use crate::endpoint::{
    Credentials, Transport, credential_setters, expiry_setter, transport_setters,
};
use crate::token_response::Fields;

/// A [`Refresher`] for the OAuth2 `refresh_token` grant (RFC 6749 §6).
///
/// Sends `grant_type=refresh_token&refresh_token=…` (and `scope` if set) to
/// the token endpoint, authenticated as the client by
/// [`ClientAuth::Basic`](crate::ClientAuth::Basic) (default) or
/// [`ClientAuth::Post`](crate::ClientAuth::Post). The answer is classified as
/// the crate docs' table says. `expires_in` becomes an absolute `expires_at`
/// by the refresher's clock; a response without `refresh_token` keeps the old
/// one (C12).
///
/// ```
/// use reauth_reqwest::{ClientAuth, OAuth2Refresher};
///
/// let refresher = OAuth2Refresher::new("https://auth.example.com/oauth/token".parse().unwrap(), "my-app")
///     .client_secret("s3cret")
///     .client_auth(ClientAuth::Post)
///     .scope("read write")
///     .revocation_url("https://auth.example.com/oauth/revoke".parse().unwrap());
/// assert!(!format!("{refresher:?}").contains("s3cret"));
/// ```
#[derive(Clone, Debug)]
pub struct OAuth2Refresher {
    token_url: Url,
    revocation_url: Option<Url>,
    credentials: Credentials,
    scope: Option<String>,
    fields: Fields,
    transport: Transport,
}

impl OAuth2Refresher {
    /// A refresher for the token endpoint at `token_url`, as the public client
    /// `client_id` until [`client_secret`](Self::client_secret) is set.
    pub fn new(token_url: Url, client_id: impl Into<String>) -> Self {
        Self {
            token_url,
            revocation_url: None,
            credentials: Credentials::new(client_id.into()),
            scope: None,
            fields: Fields::default(),
            transport: Transport::default(),
        }
    }

    credential_setters!();
    transport_setters!();
    expiry_setter!();

    /// The RFC 7009 revocation endpoint. When set,
    /// [`Session::logout`](reauth::Session::logout) revokes the refresh token
    /// there (or the access token, if there is no refresh token), best effort.
    #[must_use]
    pub fn revocation_url(mut self, url: Url) -> Self {
        self.revocation_url = Some(url);
        self
    }

    async fn grant(&self, form: Vec<(&'static str, String)>) -> Result<TokenSet, RefreshError> {
        self.transport
            .form_grant(
                &self.token_url,
                &self.credentials,
                self.scope.as_deref(),
                &self.fields,
                form,
                RefreshErrorKind::Rejected,
            )
            .await
    }

    /// Logs in with the resource owner password grant (RFC 6749 §4.3) and
    /// returns the token set to pass to [`Session::start`](reauth::Session::start).
    ///
    /// The grant is deprecated for third-party clients (OAuth 2.1 drops it),
    /// but first-party apps, CLIs and demos still use it.
    ///
    /// # Errors
    ///
    /// A classified [`RefreshError`]: wrong username or password is
    /// [`Rejected`](RefreshErrorKind::Rejected) (`invalid_grant`).
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// use reauth_reqwest::OAuth2Refresher;
    ///
    /// let refresher = OAuth2Refresher::new("http://127.0.0.1:8080/oauth/token".parse()?, "demo");
    /// let tokens = refresher.password_grant("alice", "correct horse").await?;
    /// let session = reauth::Session::builder(refresher).build();
    /// session.start(tokens).await?;
    /// # Ok(()) }
    /// ```
    pub async fn password_grant(
        &self,
        username: &str,
        password: &str,
    ) -> Result<TokenSet, RefreshError> {
        self.grant(vec![
            ("grant_type", "password".into()),
            ("username", username.into()),
            ("password", password.into()),
        ])
        .await
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl Refresher for OAuth2Refresher {
    async fn refresh(&self, current: &TokenSet) -> Result<TokenSet, RefreshError> {
        let Some(refresh_token) = &current.refresh_token else {
            return Err(RefreshError::rejected("the session holds no refresh token"));
        };
        self.grant(vec![
            ("grant_type", "refresh_token".into()),
            ("refresh_token", refresh_token.secret().into()),
        ])
        .await
    }

    async fn revoke(&self, tokens: &TokenSet) -> Result<(), RefreshError> {
        let Some(url) = &self.revocation_url else {
            return Ok(());
        };
        let mut form = match &tokens.refresh_token {
            Some(r) => vec![
                ("token", r.secret().to_owned()),
                ("token_type_hint", "refresh_token".to_owned()),
            ],
            None => vec![
                ("token", tokens.access_token.secret().to_owned()),
                ("token_type_hint", "access_token".to_owned()),
            ],
        };
        let req = self.transport.client()?.post(url.clone());
        let req = self.credentials.apply(req, &mut form).form(&form);
        // RFC 7009 §2.2: 200 whether or not the token was known. Anything else is
        // reported; logout goes ahead regardless.
        self.transport
            .send(req, RefreshErrorKind::Misconfigured)
            .await
            .map(drop)
    }
}
