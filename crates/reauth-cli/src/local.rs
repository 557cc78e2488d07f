//! Endpoints of an auth server (ours in-process, or any other), and the
//! in-process server the demo and the lab spawn.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use reauth::{Refresher as _, TokenSet};
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
    // The demo logs in as a first-party app.
    config.first_party_endpoints = true;
    let server = Server::new(config)
        .await
        .context("starting the in-process server")?;
    server
        .add_user(DEMO_USER, DEMO_PASSWORD)
        .await
        .context("adding the demo user")?;
    server.spawn_local().await.context("listening on 127.0.0.1")
}

/// How the lab gets a session on a server.
#[derive(Clone)]
pub(crate) enum Login {
    /// The resource owner password grant (RFC 6749 §4.3).
    Password { username: String, password: String },
    /// A refresh token the user handed over. Every login spends the current
    /// one (a refresh) and keeps the newest token the lab saw for the next.
    RefreshToken(Arc<Mutex<String>>),
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Password { username, .. } => f
                .debug_struct("Password")
                .field("username", username)
                .finish_non_exhaustive(),
            Self::RefreshToken(_) => f.write_str("RefreshToken([redacted])"),
        }
    }
}

/// Where a client finds an auth server, and how it logs in. Its `Debug`
/// says whether there is a client secret, never what it is.
#[derive(Clone)]
pub(crate) struct Endpoints {
    /// The token endpoint.
    pub(crate) token: Url,
    /// The RFC 7009 revocation endpoint, if the server has one.
    pub(crate) revoke: Option<Url>,
    /// The protected resource.
    pub(crate) resource: Url,
    pub(crate) client_id: String,
    /// `None` for a public client.
    pub(crate) client_secret: Option<String>,
    pub(crate) login: Login,
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints")
            .field("token", &self.token.as_str())
            .field("revoke", &self.revoke.as_ref().map(url::Url::as_str))
            .field("resource", &self.resource.as_str())
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("login", &self.login)
            .finish()
    }
}

impl Endpoints {
    /// The endpoints of our server at `base` (`http://host:port`), the demo
    /// client and the demo user.
    pub(crate) fn ours(base: &str) -> anyhow::Result<Self> {
        let base = Url::parse(base).with_context(|| format!("{base:?} is not a URL"))?;
        let demo = ClientCredentials::demo();
        Ok(Self {
            token: base.join("/oauth/token")?,
            revoke: Some(base.join("/oauth/revoke")?),
            resource: base.join("/api/resources")?,
            client_id: demo.client_id,
            client_secret: Some(demo.client_secret.expose().to_owned()),
            login: Login::Password {
                username: DEMO_USER.to_owned(),
                password: DEMO_PASSWORD.to_owned(),
            },
        })
    }

    /// The client secret, for the HTTP Basic header of the demo's own requests.
    pub(crate) fn client_secret(&self) -> Option<&str> {
        self.client_secret.as_deref()
    }

    /// An OAuth2 refresher for this server (HTTP Basic client authentication).
    ///
    /// # Errors
    ///
    /// If an endpoint URL does not parse or the HTTP client cannot be built.
    pub(crate) fn refresher(&self) -> anyhow::Result<OAuth2Refresher> {
        self.refresher_config().build()
    }

    /// What another process needs to build [`refresher`](Self::refresher).
    pub(crate) fn refresher_config(&self) -> RefresherConfig {
        RefresherConfig {
            token_url: self.token.to_string(),
            revocation_url: self.revoke.as_ref().map(Url::to_string),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
        }
    }

    /// A fresh session's tokens: the password grant, or a refresh of the
    /// refresh token handed over (the chain moves on).
    pub(crate) async fn login(&self) -> anyhow::Result<TokenSet> {
        match &self.login {
            Login::Password { username, password } => self
                .refresher()?
                .password_grant(username, password)
                .await
                .with_context(|| format!("logging in as {username:?} at {}", self.token)),
            Login::RefreshToken(chain) => {
                let current = chain.lock().unwrap_or_else(PoisonError::into_inner).clone();
                let tokens = self
                    .refresher()?
                    .refresh(&TokenSet::new("-").with_refresh_token(current.clone()))
                    .await
                    .with_context(|| {
                        format!("refreshing the handed-over token at {}", self.token)
                    })?;
                let next = tokens
                    .refresh_token
                    .as_ref()
                    .map_or(current, |r| r.secret().to_owned());
                self.keep(&next);
                Ok(tokens.with_refresh_token(next))
            }
        }
    }

    /// Remembers `refresh_token` as the newest of the handed-over chain (a
    /// scenario's session rotated it further).
    pub(crate) fn keep(&self, refresh_token: &str) {
        if let Login::RefreshToken(chain) = &self.login {
            *chain.lock().unwrap_or_else(PoisonError::into_inner) = refresh_token.to_owned();
        }
    }

    /// Whether logins spend a handed-over refresh token (so a revocation
    /// ends every later scenario).
    pub(crate) fn chained(&self) -> bool {
        matches!(self.login, Login::RefreshToken(_))
    }
}

/// The RFC 8414 metadata URL of `issuer`: the well-known segment goes between
/// the host and the issuer's path (RFC 8414 §3).
fn well_known(issuer: &Url, suffix: &str) -> anyhow::Result<Url> {
    let path = issuer.path().trim_end_matches('/');
    let mut url = issuer.clone();
    url.set_path(&format!("/.well-known/{suffix}{path}"));
    url.set_query(None);
    Ok(url)
}

/// The token and revocation endpoints of the server whose issuer is
/// `issuer`: RFC 8414 (`/.well-known/oauth-authorization-server`), else OpenID
/// Connect discovery (`/.well-known/openid-configuration`).
pub(crate) async fn discover(issuer: &Url) -> anyhow::Result<(Url, Option<Url>)> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let oidc = {
        let mut u = issuer.clone();
        let path = issuer.path().trim_end_matches('/').to_owned();
        u.set_path(&format!("{path}/.well-known/openid-configuration"));
        u
    };
    let mut tried = Vec::new();
    for url in [well_known(issuer, "oauth-authorization-server")?, oidc] {
        tried.push(url.to_string());
        let Ok(response) = http.get(url.clone()).send().await else {
            continue;
        };
        if !response.status().is_success() {
            continue;
        }
        let Ok(meta) = response.json::<serde_json::Value>().await else {
            continue;
        };
        if meta.get("token_endpoint").is_some() {
            return endpoints_of(issuer, &meta);
        }
    }
    anyhow::bail!(
        "no server metadata with a token_endpoint at {} (give --token-url)",
        tried.join(" or ")
    )
}

/// The token and revocation endpoints in `meta`, the metadata published for
/// `issuer` — only if it is really `issuer`'s (RFC 8414 §3.3: the `issuer`
/// value must be identical to the one asked for; a trailing `/` aside) and
/// its endpoints are on the issuer's origin. Otherwise a server (or whoever
/// answers for it) could point the lab's refresh tokens and client secret
/// at another host; give `--token-url` to use an endpoint elsewhere.
fn endpoints_of(issuer: &Url, meta: &serde_json::Value) -> anyhow::Result<(Url, Option<Url>)> {
    let published = meta.get("issuer").and_then(|v| v.as_str());
    let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
    match published {
        Some(p) if same(p, issuer.as_str()) => {}
        Some(p) => anyhow::bail!(
            "the metadata at {issuer} is for another issuer ({p:?}); refusing it (RFC 8414 §3.3)"
        ),
        None => {
            anyhow::bail!("the metadata at {issuer} names no issuer; refusing it (RFC 8414 §3.3)")
        }
    }
    let endpoint = |name: &str| -> anyhow::Result<Option<Url>> {
        let Some(text) = meta.get(name).and_then(|v| v.as_str()) else {
            return Ok(None);
        };
        let url = Url::parse(text).with_context(|| format!("{name} is not a URL"))?;
        if url.origin() != issuer.origin() {
            anyhow::bail!(
                "{name} {url} is not on the issuer's origin {}; give it explicitly if you trust it",
                issuer.origin().ascii_serialization()
            );
        }
        Ok(Some(url))
    };
    let token = endpoint("token_endpoint")?.context("the metadata has no token_endpoint")?;
    Ok((token, endpoint("revocation_endpoint")?))
}

/// The HTTP client of the lab's refreshers and logins: no redirects (as the
/// refreshers' own), and bounded — a server that never answers fails a
/// login after `TOKEN_REQUEST_TIMEOUT`, it does not hang the lab.
fn token_http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(TOKEN_REQUEST_TIMEOUT)
        .build()
        .context("building the token endpoint's HTTP client")
}

/// The longest one request to a token endpoint (a login, a refresh) takes.
const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

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
        let mut refresher =
            OAuth2Refresher::new(token, self.client_id.clone()).http_client(token_http_client()?);
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server answering every request with `body` (JSON), on loopback.
    async fn metadata_server(body: impl Fn(u16) -> serde_json::Value + Send + 'static) -> Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let json = body(port).to_string();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}",
                    json.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
            }
        });
        format!("http://127.0.0.1:{port}").parse().unwrap()
    }

    #[tokio::test]
    async fn discover_refuses_metadata_of_another_issuer() {
        let issuer = metadata_server(|port| {
            serde_json::json!({
                "issuer": "https://evil.example",
                "token_endpoint": format!("http://127.0.0.1:{port}/token"),
            })
        })
        .await;
        let got = discover(&issuer).await;
        assert!(got.is_err(), "{got:?}");
    }

    #[tokio::test]
    async fn discover_refuses_a_token_endpoint_on_another_origin() {
        let issuer = metadata_server(|port| {
            serde_json::json!({
                "issuer": format!("http://127.0.0.1:{port}"),
                "token_endpoint": "https://collector.example/token",
            })
        })
        .await;
        let got = discover(&issuer).await;
        assert!(got.is_err(), "{got:?}");
    }

    #[tokio::test]
    async fn discover_takes_the_issuers_own_metadata() {
        let issuer = metadata_server(|port| {
            serde_json::json!({
                "issuer": format!("http://127.0.0.1:{port}"),
                "token_endpoint": format!("http://127.0.0.1:{port}/token"),
                "revocation_endpoint": format!("http://127.0.0.1:{port}/revoke"),
            })
        })
        .await;
        let (token, revoke) = discover(&issuer).await.unwrap();
        assert_eq!(token.path(), "/token");
        assert_eq!(revoke.unwrap().path(), "/revoke");
    }
}
