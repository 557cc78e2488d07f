//! `reauth serve`: the auth server, configured by flags or environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use reauth_server::{
    ClientCredentials, KeySource, Server, ServerConfig, ServerError, SqliteSynchronous, TlsConfig,
};

use crate::duration;

/// `reauth serve` options. Each flag can also be set by the environment
/// variable named in `--help`.
#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// The address to listen on (port 0 picks a free one).
    #[arg(long, env = "REAUTH_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// The database: `sqlite://FILE` (created when absent), `sqlite::memory:`
    /// or `postgres://USER:PASSWORD@HOST/DB`.
    #[arg(
        long = "db",
        env = "REAUTH_DATABASE_URL",
        hide_env_values = true,
        default_value = "sqlite://reauth.db"
    )]
    database_url: DatabaseUrl,
    /// The signing and MAC keys (JSON). Generated with mode 0600 when absent.
    #[arg(long, env = "REAUTH_KEY_FILE", default_value = "reauth-keys.json")]
    key_file: PathBuf,
    /// Lifetime of access tokens (`300`, `300s`, `5m`, …).
    #[arg(long, env = "REAUTH_ACCESS_TTL", default_value = "5m", value_parser = duration::parse)]
    access_ttl: Duration,
    /// How long a just-rotated refresh token still yields the same successor;
    /// 0 makes rotation strict.
    #[arg(long, env = "REAUTH_GRACE_WINDOW", default_value = "10s", value_parser = duration::parse)]
    grace_window: Duration,
    /// A session unused for this long can no longer be refreshed.
    #[arg(long, env = "REAUTH_IDLE_TIMEOUT", default_value = "14d", value_parser = duration::parse)]
    idle_timeout: Duration,
    /// A session older than this can no longer be refreshed.
    #[arg(long, env = "REAUTH_ABSOLUTE_LIFETIME", default_value = "30d", value_parser = duration::parse)]
    absolute_lifetime: Duration,
    /// The URL clients reach this server at: the `iss` of issued tokens and
    /// the RFC 8414 issuer (default: `http[s]://{listening address}`;
    /// required when `--addr` is a wildcard address such as 0.0.0.0).
    #[arg(long, env = "REAUTH_ISSUER", value_parser = parse_issuer)]
    issuer: Option<String>,
    /// The `aud` of issued access tokens.
    #[arg(long, env = "REAUTH_AUDIENCE", default_value = "reauth-api")]
    audience: String,
    /// Serve TLS with this PEM certificate chain (leaf first); needs `--tls-key`.
    #[arg(
        long,
        env = "REAUTH_TLS_CERT",
        requires = "tls_key",
        value_name = "PEM"
    )]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(
        long,
        env = "REAUTH_TLS_KEY",
        requires = "tls_cert",
        value_name = "PEM"
    )]
    tls_key: Option<PathBuf>,
    /// Serve `/metrics` (with `/healthz` and `/readyz`) on this address
    /// instead of the public one, e.g. 127.0.0.1:9090.
    #[arg(long, env = "REAUTH_METRICS_ADDR", value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// SQLite durability: `normal` survives a crash of the process, `full`
    /// survives power loss (one fsync per commit). Ignored for Postgres.
    #[arg(long, env = "REAUTH_SQLITE_SYNCHRONOUS", value_enum, default_value_t = Synchronous::Normal)]
    sqlite_synchronous: Synchronous,
    /// Also register the demo OAuth client `reauth-demo` / `reauth-demo-secret`
    /// (for `reauth lab --against` and trying things out). Its secret is
    /// public: never on a server that matters.
    #[arg(long, env = "REAUTH_DEMO_CLIENT")]
    demo_client: bool,
    /// A built browser page to serve on the same origin: `index.html` at `/`,
    /// the rest under `/web/` (the browser demo: `crates/reauth-web-demo/run`).
    #[arg(long, env = "REAUTH_WEB_DIR")]
    web_dir: Option<PathBuf>,
    /// Also serve the first-party JSON endpoints /auth/login, /auth/refresh
    /// and /auth/logout (a password login without an OAuth client, for an
    /// app on the API's own origin such as the --web-dir page). Off by
    /// default: OAuth clients use /oauth/token.
    #[arg(long, env = "REAUTH_FIRST_PARTY_ENDPOINTS")]
    first_party_endpoints: bool,
    #[command(flatten)]
    limits: crate::serve_limits::LimitArgs,
}

/// `Debug` shows the database URL without its password.
impl std::fmt::Debug for ServeArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeArgs")
            .field("addr", &self.addr)
            .field("database_url", &redacted(&self.database_url))
            .field("key_file", &self.key_file)
            .field("access_ttl", &self.access_ttl)
            .field("grace_window", &self.grace_window)
            .field("idle_timeout", &self.idle_timeout)
            .field("absolute_lifetime", &self.absolute_lifetime)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("metrics_addr", &self.metrics_addr)
            .field("sqlite_synchronous", &self.sqlite_synchronous)
            .field("demo_client", &self.demo_client)
            .field("web_dir", &self.web_dir)
            .field("first_party_endpoints", &self.first_party_endpoints)
            .field("limits", &self.limits)
            .finish()
    }
}

/// SQLite's `synchronous` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Synchronous {
    /// WAL with `synchronous=NORMAL`.
    Normal,
    /// WAL with `synchronous=FULL`.
    Full,
}

/// An issuer is an absolute `http(s)` URL without query or fragment
/// (RFC 8414 §2); a trailing slash is dropped.
fn parse_issuer(value: &str) -> Result<String, String> {
    let url = url::Url::parse(value).map_err(|e| format!("{value:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
        return Err(format!("{value:?} must be an https:// (or http://) URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{value:?} must have no query or fragment"));
    }
    Ok(value.trim_end_matches('/').to_owned())
}

/// Runs the server until SIGTERM or Ctrl-C.
pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if args.issuer.is_none() && args.addr.ip().is_unspecified() {
        anyhow::bail!(
            "--addr {} listens on every interface: set --issuer (REAUTH_ISSUER) to the URL \
             clients reach this server at, e.g. https://auth.example.com",
            args.addr
        );
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            TlsConfig::from_pem_files(cert, key)
                .map_err(|e| anyhow::anyhow!("cannot use TLS: {e}"))?,
        ),
        _ => None,
    };
    let mut config = ServerConfig::default();
    config.bind_addr = args.addr;
    config.database_url = args.database_url.to_string();
    config.keys = KeySource::File(args.key_file.clone());
    config.access_token_ttl = args.access_ttl;
    config.grace_window = args.grace_window;
    config.idle_timeout = args.idle_timeout;
    config.absolute_lifetime = args.absolute_lifetime;
    config.issuer = args.issuer.clone();
    config.audience = args.audience.clone();
    config.sqlite_synchronous = match args.sqlite_synchronous {
        Synchronous::Normal => SqliteSynchronous::Normal,
        Synchronous::Full => SqliteSynchronous::Full,
    };
    config.public_metrics = args.metrics_addr.is_none();
    if args.demo_client {
        config.demo_client = Some(ClientCredentials::demo());
    }
    config.web_dir = args.web_dir.clone();
    config.first_party_endpoints = args.first_party_endpoints;
    args.limits.apply(&mut config.limits);
    let server = open(config).await?;
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let local = listener.local_addr().context("reading the bound address")?;
    let metrics_listener = match args.metrics_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for metrics"))?,
        ),
        None => None,
    };
    let signalled = shutdown_signal()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!(
        "reauth: listening on {scheme}://{local} (issuer {}, database {}, grace window {:?}, access tokens {:?})",
        args.issuer
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{local}")),
        redacted(&args.database_url),
        args.grace_window,
        args.access_ttl
    );

    // One signal stops every listener.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        signalled.await;
        let _ = stop.send(true);
    });
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let metrics = match metrics_listener {
        Some(listener) => {
            println!(
                "reauth: metrics on http://{}/metrics",
                listener
                    .local_addr()
                    .context("reading the metrics address")?
            );
            let server = server.clone();
            let stop = until_stopped();
            Some(tokio::spawn(async move {
                server.serve_metrics(listener, stop).await
            }))
        }
        None => None,
    };
    let served = match &tls {
        Some(tls) => server.serve_tls(listener, tls, until_stopped()).await,
        None => server.serve(listener, until_stopped()).await,
    };
    served.context("serving")?;
    if let Some(metrics) = metrics {
        metrics
            .await
            .context("the metrics listener")?
            .context("serving metrics")?;
    }
    println!("reauth: stopped");
    Ok(ExitCode::SUCCESS)
}

/// Starts a server, turning start-up failures into one clear sentence.
pub(crate) async fn open(config: ServerConfig) -> anyhow::Result<Server> {
    let url = redacted(&config.database_url);
    let key_file = match &config.keys {
        KeySource::File(path) => Some(path.clone()),
        _ => None,
    };
    Server::new(config).await.map_err(|e| match e {
        ServerError::KeyFile { path, reason } => {
            anyhow::anyhow!("cannot use key file {}: {reason}", path.display())
        }
        e @ ServerError::KeyMismatch { .. } => match &key_file {
            Some(path) => anyhow::anyhow!("key file {}: {e}", path.display()),
            None => anyhow::anyhow!("{e}"),
        },
        ServerError::Config(_) | ServerError::Database(_) | ServerError::Migrate(_) => {
            anyhow::Error::new(e).context(format!("cannot open database {url}"))
        }
        other => anyhow::Error::new(other).context("cannot start the server"),
    })
}

/// A database URL as given on the command line or in the environment: its
/// `Debug` output hides the password (`***`); [`Deref`] gives
/// the real URL to the code that connects.
///
/// [`Deref`]: std::ops::Deref
#[derive(Clone)]
pub(crate) struct DatabaseUrl(String);

impl std::str::FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl std::ops::Deref for DatabaseUrl {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redacted(&self.0))
    }
}

/// For commands that only read (`list`): fails, creating nothing, when the
/// SQLite database file or the key file does not exist — a typo in `--db`
/// must not leave an empty database behind and list nothing.
pub(crate) fn must_exist(
    database_url: &str,
    key_file: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    if let Some(path) = reauth_server::store::SqliteRepository::file_path(database_url)
        && !path.exists()
    {
        anyhow::bail!(
            "no database at {} (nothing to list; `reauth serve` creates it)",
            path.display()
        );
    }
    if let Some(key_file) = key_file
        && !key_file.exists()
    {
        anyhow::bail!(
            "no key file at {} (`reauth serve` creates it)",
            key_file.display()
        );
    }
    Ok(())
}

/// The database URL with any password replaced by `***`: the server's own
/// redaction, so the CLI and the server's logs show the same thing.
pub(crate) fn redacted(database_url: &str) -> String {
    reauth_server::redacted_url(database_url)
}

/// Completes on Ctrl-C or SIGTERM.
///
/// The handlers are installed when this is called, not when the future is
/// first polled: a signal that arrives right after start-up (the address is
/// printed) still shuts down gracefully instead of killing the process.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let (mut term, mut int) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        )
    };
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        println!("reauth: shutting down");
    })
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_in_database_urls_are_redacted() {
        assert_eq!(
            redacted("postgres://app:hunter2@db.local/reauth"),
            "postgres://app:***@db.local/reauth"
        );
        assert_eq!(redacted("sqlite://reauth.db"), "sqlite://reauth.db");
        assert_eq!(redacted("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(
            redacted("postgres://db.local/reauth?user=app&password=hunter2"),
            "postgres://db.local/reauth?user=app&password=***"
        );
    }

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        serve: super::ServeArgs,
    }

    #[test]
    fn o6_debug_of_the_serve_arguments_hides_the_database_password() {
        use clap::Parser as _;
        let cli = Cli::try_parse_from(["reauth", "--db", "postgres://app:hunter2@db.local/reauth"])
            .expect("valid arguments");
        let shown = format!("{cli:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("postgres://app:***@db.local/reauth"),
            "{shown}"
        );
        assert_eq!(
            &*cli.serve.database_url,
            "postgres://app:hunter2@db.local/reauth"
        );
    }
}
