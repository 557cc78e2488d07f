//! Endpoints of an auth server (ours in-process, or any other), and the
//! in-process server the demo and the lab spawn.

use std::time::Duration;

use anyhow::Context as _;
use reauth::TokenSet;
use reauth_reqwest::{ClientAuth, OAuth2Refresher};
use reauth_server::{ClientCredentials, PasswordHashing, RunningServer, Server, ServerConfig};
use serde::{Deserialize, Serialize};
use url::Url;

/// The user the demo and the lab seed and log in as.
pub(crate) const DEMO_USER: &str = "demo";
/// Their password.
pub(crate) const DEMO_PASSWORD: &str = "demo-password";

/// Starts our server on a free 127.0.0.1 port with an in-memory database,
/// the demo client and the demo user.
pub(crate) async fn spawn_server(grace_window: Duration) -> anyhow::Result<RunningServer> {
    let mut config = ServerConfig::default();
    config.database_url = "sqlite::memory:".to_owned();
    config.password_hashing = PasswordHashing::InsecureFast;
    config.grace_window = grace_window;
    // In process, on loopback, for the demo and the lab only.
    config.demo_client = Some(ClientCredentials::demo());
    let server = Server::new(config)
        .await
        .context("starting the in-process server")?;
    server
        .add_user(DEMO_USER, DEMO_PASSWORD)
        .await
        .context("adding the demo user")?;
    server.spawn_local().await.context("listening on 127.0.0.1")
}

/// Where a client finds an auth server, and who it logs in as.
#[derive(Clone, Debug)]
pub(crate) struct Endpoints {
    /// `{base}/oauth/token`.
    pub(crate) token: Url,
    /// `{base}/oauth/revoke`.
    pub(crate) revoke: Url,
    /// The protected resource.
    pub(crate) resource: Url,
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
    pub(crate) username: String,
    pub(crate) password: String,
}

impl Endpoints {
    /// The endpoints of a server at `base` (`http://host:port`), with our
    /// paths, the demo client and the demo user.
    pub(crate) fn ours(base: &str) -> anyhow::Result<Self> {
        let demo = ClientCredentials::demo();
        Self::new(
            base,
            "/api/resources",
            demo.client_id,
            demo.client_secret.expose().to_owned(),
            DEMO_USER.to_owned(),
            DEMO_PASSWORD.to_owned(),
        )
    }

    /// The endpoints of a server at `base`, its resource at `resource_path`.
    pub(crate) fn new(
        base: &str,
        resource_path: &str,
        client_id: String,
        client_secret: String,
        username: String,
        password: String,
    ) -> anyhow::Result<Self> {
        let base = Url::parse(base).with_context(|| format!("{base:?} is not a URL"))?;
        let join = |p: &str| {
            base.join(p)
                .with_context(|| format!("cannot join {p:?} to {base}"))
        };
        Ok(Self {
            token: join("/oauth/token")?,
            revoke: join("/oauth/revoke")?,
            resource: join(resource_path)?,
            client_id,
            client_secret,
            username,
            password,
        })
    }

    /// An OAuth2 refresher for this server (HTTP Basic client authentication).
    pub(crate) fn refresher(&self) -> OAuth2Refresher {
        self.refresher_config()
            .build()
            .expect("the endpoints' URLs are valid")
    }

    /// What another process needs to build [`refresher`](Self::refresher).
    pub(crate) fn refresher_config(&self) -> RefresherConfig {
        RefresherConfig {
            token_url: self.token.to_string(),
            revocation_url: Some(self.revoke.to_string()),
            client_id: self.client_id.clone(),
            client_secret: Some(self.client_secret.clone()),
        }
    }

    /// Logs in with the password grant.
    pub(crate) async fn login(&self) -> anyhow::Result<TokenSet> {
        self.refresher()
            .password_grant(&self.username, &self.password)
            .await
            .with_context(|| format!("logging in as {:?} at {}", self.username, self.token))
    }
}

/// How to build an OAuth2 refresher, in a form that can be handed to another
/// process (the lab's children). `Debug` hides the secret.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct RefresherConfig {
    token_url: String,
    revocation_url: Option<String>,
    client_id: String,
    client_secret: Option<String>,
}

impl std::fmt::Debug for RefresherConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefresherConfig")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl RefresherConfig {
    /// The refresher (HTTP Basic client authentication when there is a secret).
    pub(crate) fn build(&self) -> anyhow::Result<OAuth2Refresher> {
        let token = Url::parse(&self.token_url).context("token endpoint URL")?;
        let mut refresher = OAuth2Refresher::new(token, self.client_id.clone());
        if let Some(secret) = &self.client_secret {
            refresher = refresher
                .client_secret(secret.clone())
                .client_auth(ClientAuth::Basic);
        }
        if let Some(revoke) = &self.revocation_url {
            refresher =
                refresher.revocation_url(Url::parse(revoke).context("revocation endpoint URL")?);
        }
        Ok(refresher)
    }
}
