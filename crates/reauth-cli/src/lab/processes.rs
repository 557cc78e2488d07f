//! C15 and C16: real OS processes share one store and their token expires
//! together.
//!
//! The parent logs in, writes the login **already expired** to the shared
//! store (through a `Session`, so it carries its lineage and generation), and
//! starts [`PROCESSES`] children: this binary re-run as the hidden
//! `reauth __lab-child`. Each child reads its configuration from the first
//! line of its stdin (never from its environment or arguments: it holds the
//! client secret), opens the store, restores the session with the same OAuth2
//! refresher the lab uses everywhere else (wrapped in a counter), says `ready`
//! on stdout and waits for `go` on stdin, so that all of them ask for a token
//! at once; then it reports one JSON line. Nothing of
//! this is test machinery: it is the library used the way a fleet of workers
//! uses it, against a real token endpoint.
//!
//! Refreshes are counted by the children themselves (each reports the calls
//! its refresher made), so the scenario runs against any OAuth2 server; on
//! our own server the count is checked against the server's rotations too.

use std::hash::{Hash as _, Hasher as _};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use async_trait::async_trait;
use reauth::{
    FileStore, RefreshAhead, RefreshError, Refresher, Session, SessionEvent, TokenSet, TokenStore,
};
use reauth_postgres::PostgresStore;
use reauth_redis::RedisStore;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, Command};

use super::scenarios::Measured;
use crate::local::{Endpoints, RefresherConfig};

/// Processes (C15) or replicas (C16) per scenario.
pub(crate) const PROCESSES: usize = 4;
/// The hidden subcommand the children run.
pub(crate) const CHILD_COMMAND: &str = "__lab-child";
/// Prefix of the child's report line.
const RESULT_PREFIX: &str = "REAUTH_LAB_RESULT ";
/// Each child's refresh timeout (the lease follows from it).
const REFRESH_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest the parent waits for the children, all steps together.
const DEADLINE: Duration = Duration::from_secs(60);

/// The store the processes share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub(crate) enum Shared {
    /// A `FileStore` in a temporary directory.
    File,
    /// A `RedisStore` under a random key prefix.
    Redis,
    /// A `PostgresStore` row with a random key.
    Postgres,
}

impl Shared {
    /// The name in `reauth __lab-child <store>` and in the JSON report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Redis => "redis",
            Self::Postgres => "postgres",
        }
    }
}

/// The services C16 may use; a missing one skips its scenario. `Debug`
/// hides passwords in their URLs.
#[derive(Clone, Default)]
pub(crate) struct Services {
    pub(crate) redis_url: Option<String>,
    pub(crate) database_url: Option<crate::serve::DatabaseUrl>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |url: Option<&str>| url.map(crate::serve::redacted);
        f.debug_struct("Services")
            .field("redis_url", &redact(self.redis_url.as_deref()))
            .field("database_url", &redact(self.database_url.as_deref()))
            .finish()
    }
}

impl Services {
    /// Why `shared` cannot run here, if it cannot.
    pub(crate) fn missing(&self, shared: Shared) -> Option<String> {
        let given = |url: Option<&str>| url.is_some_and(|u| !u.is_empty());
        match shared {
            Shared::File => None,
            Shared::Redis if !given(self.redis_url.as_deref()) => {
                Some("no REDIS_URL / --redis-url".to_owned())
            }
            Shared::Postgres if !given(self.database_url.as_deref()) => {
                Some("no DATABASE_URL / --database-url".to_owned())
            }
            Shared::Postgres => {
                let url = self.database_url.as_deref().unwrap_or_default();
                let postgres = ["postgres://", "postgresql://"]
                    .iter()
                    .any(|scheme| url.starts_with(scheme));
                (!postgres).then(|| "the database URL is not postgres://".to_owned())
            }
            Shared::Redis => None,
        }
    }
}

/// `reauth __lab-child` (hidden): one process of C15/C16, started by the lab.
#[derive(Debug, clap::Args)]
pub(crate) struct ChildArgs {}

/// What the parent hands each child (one JSON line on its stdin).
#[derive(Serialize, Deserialize)]
struct ChildConfig {
    shared: Shared,
    /// A path (file), or `URL|KEY` (Redis, Postgres).
    spec: String,
    refresher: RefresherConfig,
    refresh_timeout_ms: u64,
}

/// What a child reports.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ChildReport {
    pid: u32,
    /// The generation it ended with, if it holds a token.
    generation: Option<u64>,
    /// A fingerprint of the access token it got (never the token), or the error.
    access: Result<u64, String>,
    /// Refresh calls its refresher made.
    refresh_calls: u64,
    /// It published a refresh of its own.
    refreshed: bool,
    /// It adopted the set another process stored.
    adopted: bool,
    /// Its session ended (a logout: never expected here).
    ended: bool,
}

/// A refresher that counts its calls.
struct Counting<R> {
    inner: R,
    calls: Arc<AtomicU64>,
}

#[async_trait]
impl<R: Refresher> Refresher for Counting<R> {
    async fn refresh(&self, current: &TokenSet) -> Result<TokenSet, RefreshError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.refresh(current).await
    }
}

fn fingerprint(secret: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    secret.hash(&mut h);
    h.finish()
}

/// A child's whole life. Builds its own runtime, so it must be called outside
/// one. Fails unless the lab started it (and wrote its configuration).
pub(crate) fn child(_args: &ChildArgs) -> ExitCode {
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|rt| rt.block_on(child_run()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reauth __lab-child: {}", crate::one_line(&e));
            ExitCode::FAILURE
        }
    }
}

async fn open(shared: Shared, spec: &str) -> anyhow::Result<Arc<dyn TokenStore>> {
    Ok(match shared {
        Shared::File => Arc::new(FileStore::new(spec)),
        Shared::Redis => {
            let (url, prefix) = spec.rsplit_once('|').context("url|prefix")?;
            Arc::new(RedisStore::connect(url, prefix).await.context("Redis")?)
        }
        Shared::Postgres => {
            let (url, key) = spec.rsplit_once('|').context("url|key")?;
            Arc::new(PostgresStore::connect(url, key).await.context("Postgres")?)
        }
    })
}

async fn child_run() -> anyhow::Result<()> {
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut line = String::new();
    stdin.read_line(&mut line).await?;
    let config: ChildConfig = serde_json::from_str(&line)
        .context("__lab-child is started by `reauth lab`, not by hand")?;
    let store = open(config.shared, &config.spec).await?;
    let calls = Arc::new(AtomicU64::new(0));
    let refresher = Counting {
        inner: config.refresher.build()?,
        calls: Arc::clone(&calls),
    };
    let session = Session::builder(refresher)
        .store(store)
        .refresh_ahead(RefreshAhead::disabled())
        .refresh_timeout(Duration::from_millis(config.refresh_timeout_ms))
        .wait_timeout(DEADLINE)
        .build();
    let mut events = session.events();
    if !session.restore().await.context("restoring the session")? {
        bail!("the shared store holds no session");
    }
    // Meet the others: say ready, wait for the parent's go.
    println!("ready");
    line.clear();
    stdin.read_line(&mut line).await.context("waiting for go")?;
    let got = session.access_token().await;
    let mut report = ChildReport {
        pid: std::process::id(),
        generation: session.generation().map(reauth::Generation::get),
        access: got
            .map(|b| fingerprint(b.token().secret()))
            .map_err(|e| e.to_string()),
        refresh_calls: 0,
        refreshed: false,
        adopted: false,
        ended: false,
    };
    // Events are sent before the waiters wake, so what decided this process
    // is already queued.
    while let Some(event) = events.try_next() {
        match event {
            SessionEvent::Refreshed { .. } => report.refreshed = true,
            SessionEvent::Adopted { .. } => report.adopted = true,
            SessionEvent::SessionEnded { .. } => report.ended = true,
            _ => {}
        }
    }
    report.refresh_calls = calls.load(Ordering::SeqCst);
    println!("{RESULT_PREFIX}{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Runs C15 (`File`) or C16 (`Redis`, `Postgres`) against `endpoints` and
/// measures it. `rotations` reads the server's rotation counter when the
/// server is ours.
pub(crate) async fn run(
    shared: Shared,
    services: &Services,
    endpoints: &Endpoints,
    rotations: Option<&(dyn Fn() -> u64 + Send + Sync)>,
) -> anyhow::Result<Measured> {
    // A random key so that nothing else in the service is touched.
    let key = format!("reauth-lab-{:016x}", fastrand::u64(..));
    let dir = tempfile::tempdir().context("a temporary directory")?;
    let spec = match shared {
        Shared::File => dir
            .path()
            .join("tokens.json")
            .to_string_lossy()
            .into_owned(),
        Shared::Redis => format!(
            "{}|{key}",
            services.redis_url.as_deref().unwrap_or_default()
        ),
        Shared::Postgres => format!(
            "{}|{key}",
            services.database_url.as_deref().unwrap_or_default()
        ),
    };
    let store = open(shared, &spec).await?;
    let before = rotations.map(|r| r());
    let result = measure(shared, &spec, Arc::clone(&store), endpoints).await;
    if let Ok(Some(newest)) = store.load().await
        && let Some(rt) = &newest.refresh_token
    {
        endpoints.keep(rt.secret());
    }
    let _ = store.clear().await;
    let mut measured = result?;
    if let (Some(before), Some(rotations)) = (before, rotations) {
        let at_server = rotations() - before;
        measured.checks.push((
            format!("one rotation at the server ({at_server})"),
            at_server == 1,
        ));
    }
    Ok(measured)
}

async fn measure(
    shared: Shared,
    spec: &str,
    store: Arc<dyn TokenStore>,
    endpoints: &Endpoints,
) -> anyhow::Result<Measured> {
    // The login, already expired: every process that loads it must refresh.
    let mut login = endpoints.login().await?;
    let now = SystemTime::now();
    login.obtained_at = Some(now - Duration::from_secs(600));
    login.expires_at = Some(now - Duration::from_secs(60));
    let writer = Session::builder(endpoints.refresher()?)
        .store(Arc::clone(&store))
        .refresh_ahead(RefreshAhead::disabled())
        .build();
    writer.start(login).await.context("writing the login")?;
    drop(writer);

    let config = ChildConfig {
        shared,
        spec: spec.to_owned(),
        refresher: endpoints.refresher_config(),
        refresh_timeout_ms: u64::try_from(REFRESH_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
    };
    let mut config = serde_json::to_string(&config)?;
    config.push('\n');
    let exe = std::env::current_exe().context("cannot find the reauth binary")?;
    let mut children = Vec::with_capacity(PROCESSES);
    for _ in 0..PROCESSES {
        let child = Command::new(&exe)
            .arg(CHILD_COMMAND)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting a child process")?;
        children.push(child);
    }
    let reports = tokio::time::timeout(DEADLINE, drive(&mut children, &config))
        .await
        .context("the processes did not finish within a minute")??;
    Ok(measured(&reports))
}

/// Waits until every child is ready, tells them all to go, and collects their reports.
async fn drive(children: &mut [Child], config: &str) -> anyhow::Result<Vec<ChildReport>> {
    let mut stdins = Vec::with_capacity(children.len());
    for child in children.iter_mut() {
        let mut stdin = child.stdin.take().context("child stdin")?;
        stdin.write_all(config.as_bytes()).await?;
        stdins.push(stdin);
    }
    let mut lines = Vec::with_capacity(children.len());
    for child in children.iter_mut() {
        let stdout = child.stdout.take().context("child stdout")?;
        let mut reader = BufReader::new(stdout).lines();
        match reader.next_line().await? {
            Some(l) if l == "ready" => {}
            _ => {
                let err = stderr_of(child).await;
                bail!("a child process failed before it was ready: {err}");
            }
        }
        lines.push(reader);
    }
    for stdin in &mut stdins {
        stdin.write_all(b"go\n").await?;
    }
    drop(stdins);
    let mut reports = Vec::with_capacity(children.len());
    for (child, reader) in children.iter_mut().zip(lines.iter_mut()) {
        let mut report = None;
        while let Some(line) = reader.next_line().await? {
            if let Some(json) = line.strip_prefix(RESULT_PREFIX) {
                report = Some(serde_json::from_str::<ChildReport>(json)?);
            }
        }
        let status = child.wait().await?;
        match report {
            Some(r) if status.success() => reports.push(r),
            _ => {
                let err = stderr_of(child).await;
                bail!("a child process failed ({status}): {err}");
            }
        }
    }
    Ok(reports)
}

/// The last line of a child's stderr.
async fn stderr_of(child: &mut Child) -> String {
    let Some(stderr) = child.stderr.take() else {
        return String::new();
    };
    let mut lines = BufReader::new(stderr).lines();
    let mut last = String::new();
    while let Ok(Some(l)) = lines.next_line().await {
        if !l.trim().is_empty() {
            last = l;
        }
    }
    last
}

/// The lab's view of the children's reports.
fn measured(reports: &[ChildReport]) -> Measured {
    let ok = reports.iter().filter(|r| r.access.is_ok()).count();
    let refreshed = reports.iter().filter(|r| r.refreshed).count();
    let adopted = reports.iter().filter(|r| r.adopted && !r.refreshed).count();
    let first = reports.first();
    let same = first.is_some_and(|first| {
        first.generation.is_some_and(|g| g > 1)
            && reports.iter().all(|r| {
                r.generation == first.generation && r.access.is_ok() && r.access == first.access
            })
    });
    let generation = first
        .and_then(|r| r.generation)
        .map_or_else(|| "none".to_owned(), |g| format!("g{g}"));
    Measured {
        refresh_calls: reports.iter().map(|r| r.refresh_calls).sum(),
        ok,
        failed: PROCESSES - ok.min(PROCESSES),
        logouts: reports.iter().filter(|r| r.ended).count(),
        added: Vec::new(),
        checks: vec![
            (
                format!("all {PROCESSES} processes end on one new generation ({generation})"),
                same && reports.len() == PROCESSES,
            ),
            (
                format!(
                    "one refreshed, the rest adopted ({refreshed} refreshed, {adopted} adopted)"
                ),
                refreshed == 1 && adopted == PROCESSES - 1,
            ),
        ],
    }
}
