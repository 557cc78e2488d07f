//! The OAuth2 `client_credentials` grant (RFC 6749 §4.4): no user, no refresh
//! token; a new access token is simply acquired again.

use async_trait::async_trait;
use reauth::{RefreshError, RefreshErrorKind, Refresher, TokenSet};
use url::Url;

use crate::endpoint::{
    Credentials, Transport, credential_setters, expiry_setter, transport_setters,
};
use crate::token_response::Fields;

/// A [`Refresher`] that re-acquires the access token with the
/// `client_credentials` grant (RFC 6749 §4.4). It ignores the current token set.
///
/// As there is no user token to reject, an unexplained 400/401/403 counts as
/// [`Misconfigured`](RefreshErrorKind::Misconfigured) (the client's
/// credentials), not as a rejection that ends the session; an explicit
/// `invalid_grant` still ends it.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use reauth_reqwest::ClientCredentialsRefresher;
///
/// let refresher = ClientCredentialsRefresher::new("https://auth.example.com/oauth/token".parse()?, "svc", "s3cret")
///     .scope("reports:read");
/// let tokens = refresher.fetch().await?;
/// let session = reauth::Session::builder(refresher).build();
/// session.start(tokens).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ClientCredentialsRefresher {
    token_url: Url,
    credentials: Credentials,
    scope: Option<String>,
    fields: Fields,
    transport: Transport,
}

impl ClientCredentialsRefresher {
    /// A refresher for the token endpoint at `token_url`, authenticating as
    /// `client_id` with `client_secret` ([`ClientAuth::Basic`](crate::ClientAuth::Basic) by default).
    pub fn new(
        token_url: Url,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        Self {
            token_url,
            credentials: Credentials::new(client_id.into()),
            scope: None,
            fields: Fields::default(),
            transport: Transport::default(),
        }
        .client_secret(client_secret)
    }

    credential_setters!();
    transport_setters!();
    expiry_setter!();

    /// Acquires a token set; pass the first one to
    /// [`Session::start`](reauth::Session::start).
    ///
    /// # Errors
    ///
    /// A classified [`RefreshError`].
    pub async fn fetch(&self) -> Result<TokenSet, RefreshError> {
        let form = vec![("grant_type", "client_credentials".to_owned())];
        self.transport
            .form_grant(
                &self.token_url,
                &self.credentials,
                self.scope.as_deref(),
                &self.fields,
                form,
                RefreshErrorKind::Misconfigured,
            )
            .await
    }
}

#[cfg_attr(not(target_arch = "wasm32"), async_trait)]
#[cfg_attr(target_arch = "wasm32", async_trait(?Send))]
impl Refresher for ClientCredentialsRefresher {
    async fn refresh(&self, _current: &TokenSet) -> Result<TokenSet, RefreshError> {
        self.fetch().await
    }
}
