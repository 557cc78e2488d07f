//! [`Server`]: state, router, serving, user management.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::clients::{ClientInfo, ClientSpec, GrantType};
use crate::clock::{Clock, SystemClock};
use crate::config::{ClientCredentials, KeySource, ServerConfig};
use crate::engine::Engine;
use crate::error::ServerError;
use crate::faults::Faults;
use crate::jwt::JwtCodec;
use crate::keys::ServerKeys;
use crate::password::Hashing;
use crate::rate_limit::LoginLimiter;
use crate::secret::Secret;
use crate::store::{NewClient, Repository, UserInfo};
use crate::tls::TlsConfig;

/// The auth server: state plus the axum [`Router`] that serves it.
///
/// Cheap to clone (an `Arc`).
///
/// ```no_run
/// # async fn run() -> Result<(), reauth_server::ServerError> {
/// let server = reauth_server::Server::new(reauth_server::ServerConfig::default()).await?;
/// server.add_user("alice", "correct horse").await?;
/// let running = server.spawn_local().await?;
/// println!("listening on {}", running.url());
/// running.shutdown().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Server {
    state: Arc<Engine>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("issuer", &self.state.issuer())
            .field("backend", &self.state.repo.backend())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Loads or creates the keys, connects to the database, runs migrations
    /// and registers the demo client. Must be called inside a tokio runtime
    /// (it spawns the revocation poller).
    ///
    /// # Errors
    ///
    /// [`ServerError::KeyFile`], [`ServerError::Config`],
    /// [`ServerError::Database`], [`ServerError::Migrate`].
    pub async fn new(config: ServerConfig) -> Result<Self, ServerError> {
        Self::with_clock(config, Arc::new(SystemClock)).await
    }

    /// Like [`Server::new`] with an injected clock (tests use `ManualClock`,
    /// feature `test-util`).
    ///
    /// # Errors
    ///
    /// As [`Server::new`].
    pub async fn with_clock(
        config: ServerConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ServerError> {
        let (keys, created) = match &config.keys {
            KeySource::Ephemeral => (ServerKeys::generate(), None),
            KeySource::File(path) => {
                let (keys, created) = ServerKeys::load_or_create_reporting(path)?;
                (keys, created.then(|| path.clone()))
            }
            KeySource::Provided(keys) => (keys.clone(), None),
        };
        let repo = crate::store::connect(&config, clock.clone()).await?;
        let built = Self::from_parts(config, repo, keys, clock).await;
        if let (Err(ServerError::KeyMismatch { .. }), Some(path)) = (&built, created) {
            // A key file this call just created for a database that belongs
            // to other keys would only be in the way of the right one.
            let _ = std::fs::remove_file(path);
        }
        built
    }

    /// Builds a server on an existing repository.
    ///
    /// Unless the keys are [`KeySource::Ephemeral`], the database remembers
    /// the [fingerprint](ServerKeys::fingerprint) of the first keys it was
    /// used with and refuses any other.
    ///
    /// # Errors
    ///
    /// [`ServerError::KeyMismatch`]; [`ServerError::Database`] when the
    /// database fails.
    pub async fn from_parts(
        config: ServerConfig,
        repo: Arc<dyn Repository>,
        keys: ServerKeys,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ServerError> {
        crate::metrics::install();
        if !matches!(config.keys, KeySource::Ephemeral) {
            check_key_fingerprint(repo.as_ref(), &keys).await?;
        }
        if let Some(demo) = &config.demo_client {
            let mut client = demo_client_record(demo);
            client.secret_mac =
                crate::client_auth::secret_mac(keys.client_pepper(), demo.client_secret.expose());
            repo.upsert_client(&client).await?;
        }
        let cost = config.password_hashing;
        let dummy_hash = tokio::task::spawn_blocking(move || crate::password::dummy_hash(cost))
            .await
            .map_err(|e| ServerError::Task(e.to_string()))?;
        let faults = Faults::default();
        let state = Arc::new(Engine {
            jwt: JwtCodec::new(keys.clone()),
            limiter: LoginLimiter::new(
                config.login_rate_limit,
                config.login_account_limit,
                config.limits.login_limiter_max_keys,
            ),
            hashing: Hashing::new(config.password_hashing, &config.limits, faults.clone()),
            faults,
            denylist: RwLock::new(HashMap::new()),
            issuer: OnceLock::new(),
            dummy_hash,
            config,
            repo,
            clock,
            keys,
        });
        let server = Self { state };
        server.sync_revocations().await?;
        crate::engine::spawn_revocation_poller(Arc::downgrade(&server.state));
        Ok(server)
    }

    /// The axum router of every endpoint (DESIGN.md §4.1). A request body
    /// over [`ServerConfig::max_body_bytes`] is answered `413` on every
    /// route — before any of it is read when its `Content-Length` says so.
    pub fn router(&self) -> Router {
        let router = crate::web::with_page(
            crate::routes::router(self.state.clone()),
            self.state.config.web_dir.as_deref(),
        );
        crate::routes::with_body_limit(router, self.state.config.max_body_bytes)
    }

    /// The operator's router: `/metrics`, `/healthz` and `/readyz`, for a
    /// listener that only the monitoring system reaches (see
    /// [`ServerConfig::public_metrics`] to take `/metrics` off the public one).
    pub fn metrics_router(&self) -> Router {
        crate::routes::metrics_router(self.state.clone())
    }

    /// Serves on `listener` until `shutdown` completes, then drains
    /// connections gracefully — for at most `limits.shutdown_deadline`,
    /// whatever the clients do.
    ///
    /// Every connection gets the limits of [`Limits`](crate::Limits): header
    /// and body read timeouts, a request timeout and a cap on open
    /// connections (DESIGN.md S13).
    ///
    /// If no issuer was configured, the issuer becomes `http://{local address}`.
    ///
    /// # Errors
    ///
    /// [`ServerError::Config`] when no issuer was configured and the listener
    /// is bound to a wildcard address (`0.0.0.0`, `[::]`): the issuer is the
    /// URL clients use, which the server cannot guess. [`ServerError::Io`]
    /// when the listener's address cannot be read.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let addr = listener.local_addr()?;
        self.bind_issuer("http", addr)?;
        tracing::info!(%addr, issuer = self.state.issuer(), "reauth server listening");
        self.serve_with_handshake(listener, |tcp| async move { Ok(tcp) }, shutdown)
            .await
    }

    /// Like [`serve`](Self::serve), with every accepted connection passed
    /// through `handshake` first (a TLS acceptor, say) — inside the
    /// connection's own task, under the connection cap and bounded by the
    /// header read timeout. Sets no issuer: configure one.
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for listener errors.
    pub async fn serve_with_handshake<H, Fut, Io>(
        &self,
        listener: TcpListener,
        handshake: H,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError>
    where
        H: Fn(tokio::net::TcpStream) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = std::io::Result<Io>> + Send + 'static,
        Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        crate::serve::serve(
            self.router(),
            listener,
            &self.state.config.limits,
            handshake,
            shutdown,
        )
        .await;
        Ok(())
    }

    /// Like [`Server::serve`], with TLS: every connection is a TLS stream
    /// (rustls). Each handshake runs in its connection's own task, under the
    /// connection cap and bounded by the header read timeout, so a client
    /// that stalls its handshake holds up nobody; the same limits as
    /// [`Server::serve`] apply after it.
    ///
    /// If no issuer was configured, the issuer becomes `https://{local address}`.
    ///
    /// # Errors
    ///
    /// As [`Server::serve`].
    pub async fn serve_tls(
        &self,
        listener: TcpListener,
        tls: &TlsConfig,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let addr = listener.local_addr()?;
        self.bind_issuer("https", addr)?;
        tracing::info!(%addr, issuer = self.state.issuer(), "reauth server listening (TLS)");
        let acceptor = tls.acceptor();
        self.serve_with_handshake(
            listener,
            move |tcp| {
                let acceptor = acceptor.clone();
                async move { acceptor.accept(tcp).await }
            },
            shutdown,
        )
        .await
    }

    /// Serves [`Server::metrics_router`] (`/metrics`, `/healthz`, `/readyz`)
    /// on a listener of its own — typically a private address — until
    /// `shutdown` completes.
    ///
    /// # Errors
    ///
    /// [`ServerError::Io`] when the listener fails.
    pub async fn serve_metrics(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "metrics listening");
        crate::serve::serve(
            self.metrics_router(),
            listener,
            &self.state.config.limits,
            |tcp| async move { Ok(tcp) },
            shutdown,
        )
        .await;
        Ok(())
    }

    /// Fixes the issuer to `{scheme}://{addr}` unless one was configured.
    fn bind_issuer(&self, scheme: &str, addr: SocketAddr) -> Result<(), ServerError> {
        if self.state.config.issuer.is_some() {
            return Ok(());
        }
        if addr.ip().is_unspecified() {
            return Err(ServerError::Config(format!(
                "listening on the wildcard address {addr} needs an explicit issuer \
                 (the URL clients reach this server at, e.g. https://auth.example.com)"
            )));
        }
        let _ = self.state.issuer.set(format!("{scheme}://{addr}"));
        Ok(())
    }

    /// Binds `127.0.0.1:0`, serves in a background task and returns the bound
    /// address and a handle to stop it.
    ///
    /// # Errors
    ///
    /// [`ServerError::Io`] when binding fails.
    pub async fn spawn_local(&self) -> Result<RunningServer, ServerError> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let server = self.clone();
        let join = tokio::spawn(async move {
            server
                .serve(listener, async move {
                    let _ = rx.await;
                })
                .await
        });
        Ok(RunningServer {
            addr,
            server: self.clone(),
            shutdown: Some(tx),
            join,
        })
    }

    /// The fault-injection switches and counters.
    pub fn faults(&self) -> &Faults {
        &self.state.faults
    }

    /// The repository (storage) of this server.
    pub fn repository(&self) -> &Arc<dyn Repository> {
        &self.state.repo
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.state.config
    }

    /// The issuer (`iss`) of the tokens this server issues.
    pub fn issuer(&self) -> &str {
        self.state.issuer()
    }

    /// The key id of the signing key.
    pub fn kid(&self) -> &str {
        self.state.keys.kid()
    }

    /// Adds a user with an argon2id password hash.
    ///
    /// # Errors
    ///
    /// [`ServerError::UserExists`], [`ServerError::InvalidUsername`] (empty,
    /// over 128 bytes, control characters, or starting with `client:`, the
    /// subjects of `client_credentials` tokens), [`ServerError::Database`].
    pub async fn add_user(&self, username: &str, password: &str) -> Result<(), ServerError> {
        if username.is_empty()
            || username.len() > 128
            || username.chars().any(char::is_control)
            || username.starts_with(crate::engine::CLIENT_SUBJECT_PREFIX)
        {
            return Err(ServerError::InvalidUsername);
        }
        let hash = self
            .state
            .hashing
            .hash(password.to_owned())
            .await
            .map_err(ServerError::PasswordHash)?;
        if self.state.repo.add_user(username, &hash).await? {
            crate::audit::user_changed("user_added", username);
            Ok(())
        } else {
            Err(ServerError::UserExists(username.to_owned()))
        }
    }

    /// Removes a user and revokes their sessions. `false` if there was no
    /// such user.
    ///
    /// # Errors
    ///
    /// [`ServerError::Database`].
    pub async fn remove_user(&self, username: &str) -> Result<bool, ServerError> {
        match self.state.repo.remove_user(username).await? {
            Some(families) => {
                for id in &families {
                    self.state.deny(id);
                }
                crate::audit::user_changed("user_removed", username);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// All users, by name.
    ///
    /// # Errors
    ///
    /// [`ServerError::Database`].
    pub async fn list_users(&self) -> Result<Vec<UserInfo>, ServerError> {
        Ok(self.state.repo.list_users().await?)
    }

    /// Registers an OAuth client. A confidential client gets a fresh
    /// random secret, returned here once: only its keyed hash is stored. A
    /// running server (every replica) sees the client at its next request.
    ///
    /// ```no_run
    /// # async fn f(server: reauth_server::Server) -> Result<(), reauth_server::ServerError> {
    /// let mut spec = reauth_server::ClientSpec::confidential("billing");
    /// spec.scopes = vec!["invoices:read".into()];
    /// let secret = server.register_client(&spec).await?.expect("a confidential client");
    /// println!("client_secret: {}", secret.expose());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ServerError::InvalidClient`] (see [`ClientSpec`] for the rules),
    /// [`ServerError::ClientExists`], [`ServerError::Database`].
    pub async fn register_client(&self, spec: &ClientSpec) -> Result<Option<Secret>, ServerError> {
        let mut client = spec.validate().map_err(ServerError::InvalidClient)?;
        let secret = (!client.public).then(new_client_secret);
        if let Some(secret) = &secret {
            client.secret_mac =
                crate::client_auth::secret_mac(self.state.keys.client_pepper(), secret.expose());
        }
        if !self.state.repo.add_client(&client).await? {
            return Err(ServerError::ClientExists(client.client_id));
        }
        crate::audit::client_changed(
            "client_added",
            &client.client_id,
            &crate::store::client_detail(&client),
        );
        Ok(secret)
    }

    /// Gives a confidential client a fresh secret (returned once); the old
    /// one stops working at once. Its sessions are kept.
    ///
    /// # Errors
    ///
    /// [`ServerError::NoSuchClient`] (also for a public client),
    /// [`ServerError::Database`].
    pub async fn rotate_client_secret(&self, client_id: &str) -> Result<Secret, ServerError> {
        let secret = new_client_secret();
        let mac = crate::client_auth::secret_mac(self.state.keys.client_pepper(), secret.expose());
        if !self.state.repo.set_client_secret(client_id, &mac).await? {
            return Err(ServerError::NoSuchClient(client_id.to_owned()));
        }
        crate::audit::client_changed("client_secret_rotated", client_id, "");
        Ok(secret)
    }

    /// Removes a client and revokes every session issued to it (their
    /// refresh tokens at once; their access tokens on every replica within
    /// `revocation_poll_interval`). `false` if there was no such client.
    ///
    /// # Errors
    ///
    /// [`ServerError::Database`].
    pub async fn remove_client(&self, client_id: &str) -> Result<bool, ServerError> {
        match self.state.repo.remove_client(client_id).await? {
            Some(families) => {
                for id in &families {
                    self.state.deny(id);
                }
                let detail = format!("{} sessions revoked", families.len());
                crate::audit::client_changed("client_removed", client_id, &detail);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Every registered client, by id.
    ///
    /// # Errors
    ///
    /// [`ServerError::Database`].
    pub async fn list_clients(&self) -> Result<Vec<ClientInfo>, ServerError> {
        let clients = self.state.repo.list_clients().await?;
        Ok(clients.into_iter().map(ClientInfo::from).collect())
    }

    /// Whether the database answers (what `/readyz` reports).
    ///
    /// # Errors
    ///
    /// [`ServerError::Database`] when it does not.
    pub async fn check_ready(&self) -> Result<(), ServerError> {
        Ok(self.state.repo.ping().await?)
    }

    /// Revokes the session family a refresh (or access) token belongs to, as
    /// an operator or a fault-injection lab would. `false` when the token is
    /// not one of ours or the family was already revoked.
    ///
    /// # Errors
    ///
    /// [`ServerError::Database`].
    pub async fn revoke_family_by_token(&self, token: &str) -> Result<bool, ServerError> {
        self.state
            .revoke_token(token, "revoked_by_operator", None)
            .await
            .map_err(|e| ServerError::Task(e.to_string()))
    }

    /// Loads revocations made by other replicas into the local denylist now
    /// (it also happens every `revocation_poll_interval`).
    ///
    /// # Errors
    ///
    /// [`ServerError::Database`].
    pub async fn sync_revocations(&self) -> Result<(), ServerError> {
        self.state.sync_revocations().await
    }
}

/// The setting under which a database remembers its keys.
const KEY_FINGERPRINT: &str = "key_fingerprint";

/// Refuses keys other than the ones the database was set up with (and sets
/// a new database up with these).
async fn check_key_fingerprint(
    repo: &dyn Repository,
    keys: &ServerKeys,
) -> Result<(), ServerError> {
    let ours = keys.fingerprint();
    let stored = repo.claim_setting(KEY_FINGERPRINT, &ours).await?;
    if stored == ours {
        Ok(())
    } else {
        Err(ServerError::KeyMismatch {
            database: stored,
            keys: ours,
        })
    }
}

/// The demo client: every grant, scopes `read` and `write`, loopback
/// redirect URIs, and introspection (the lab introspects first-party
/// tokens). Its secret MAC is filled in by the caller.
fn demo_client_record(demo: &ClientCredentials) -> NewClient {
    let mut client = NewClient::new(demo.client_id.clone());
    client.grant_types = GrantType::ALL
        .iter()
        .map(|g| g.as_str().to_owned())
        .collect();
    client.scopes = vec!["read".to_owned(), "write".to_owned()];
    client.default_scope = client.scopes.clone();
    client.redirect_uris = vec![
        "http://127.0.0.1/callback".to_owned(),
        "http://localhost/callback".to_owned(),
    ];
    client.introspection = true;
    client
}

/// 256 random bits, base64url: a client secret.
fn new_client_secret() -> Secret {
    use base64::Engine as _;
    Secret::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crate::keys::random_bytes::<32>()),
    )
}

/// A server serving on a loopback port in a background task
/// (from [`Server::spawn_local`]).
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    server: Server,
    shutdown: Option<oneshot::Sender<()>>,
    join: JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server being served.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Stops accepting, drains open connections (for at most
    /// `limits.shutdown_deadline`, then closes them) and waits for the task.
    ///
    /// # Errors
    ///
    /// The serving error, if any.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let deadline = self.server.config().limits.shutdown_deadline + Duration::from_secs(1);
        match tokio::time::timeout(deadline, &mut self.join).await {
            Ok(joined) => joined.map_err(|e| ServerError::Task(e.to_string()))?,
            Err(_) => {
                self.join.abort();
                Ok(())
            }
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
