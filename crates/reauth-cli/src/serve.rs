//! `reauth serve`: the auth server, configured by flags or environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use reauth_server::{KeySource, Server, ServerConfig, ServerError};

use crate::duration;

/// `reauth serve` options. Each flag can also be set by the environment
/// variable named in `--help`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// The address to listen on (port 0 picks a free one).
    #[arg(long, env = "REAUTH_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// The database: `sqlite://FILE` (created when absent), `sqlite::memory:`
    /// or `postgres://USER:PASSWORD@HOST/DB`.
    #[arg(
        long = "db",
        env = "REAUTH_DATABASE_URL",
        default_value = "sqlite://reauth.db"
    )]
    database_url: String,
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
    /// The `iss` of issued tokens (default: `http://{listening address}`).
    #[arg(long, env = "REAUTH_ISSUER")]
    issuer: Option<String>,
    /// Also register the demo OAuth client `reauth-demo` / `reauth-demo-secret`
    /// (for `reauth lab --against` and trying things out). Its secret is
    /// public: never on a server that matters.
    #[arg(long, env = "REAUTH_DEMO_CLIENT")]
    demo_client: bool,
    #[command(flatten)]
    limits: crate::serve_limits::LimitArgs,
}

/// Runs the server until SIGTERM or Ctrl-C.
pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = ServerConfig::default();
    config.bind_addr = args.addr;
    config.database_url = args.database_url.clone();
    config.keys = KeySource::File(args.key_file.clone());
    config.access_token_ttl = args.access_ttl;
    config.grace_window = args.grace_window;
    config.idle_timeout = args.idle_timeout;
    config.absolute_lifetime = args.absolute_lifetime;
    config.issuer = args.issuer.clone();
    if !args.demo_client {
        config.demo_client = None;
    }
    args.limits.apply(&mut config.limits);
    let server = open(config).await?;
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let local = listener.local_addr().context("reading the bound address")?;
    println!(
        "reauth: listening on http://{local} (database {}, grace window {:?}, access tokens {:?})",
        redacted(&args.database_url),
        args.grace_window,
        args.access_ttl
    );
    server
        .serve(listener, shutdown_signal())
        .await
        .context("serving")?;
    println!("reauth: stopped");
    Ok(ExitCode::SUCCESS)
}

/// Starts a server, turning start-up failures into one clear sentence.
pub(crate) async fn open(config: ServerConfig) -> anyhow::Result<Server> {
    let url = redacted(&config.database_url);
    Server::new(config).await.map_err(|e| match e {
        ServerError::KeyFile { path, reason } => {
            anyhow::anyhow!("cannot use key file {}: {reason}", path.display())
        }
        ServerError::Config(_) | ServerError::Database(_) | ServerError::Migrate(_) => {
            anyhow::Error::new(e).context(format!("cannot open database {url}"))
        }
        other => anyhow::Error::new(other).context("cannot start the server"),
    })
}

/// The database URL with any password replaced by `***`.
pub(crate) fn redacted(database_url: &str) -> String {
    match url::Url::parse(database_url) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => database_url.to_owned(),
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    println!("reauth: shutting down");
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
    }
}
