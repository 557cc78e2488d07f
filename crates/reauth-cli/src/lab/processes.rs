//! C15 and C16: real OS processes share one store and their token expires
//! together.
//!
//! The children are this binary re-run as `reauth __lab-child <store>`; the
//! parent and the children are `reauth::test_util::procs`' harness: a
//! loopback refresh endpoint with one-time refresh tokens that counts every
//! refresh reaching it, an expired login written to the shared store, and a
//! barrier so that all processes ask at once.

use std::panic::AssertUnwindSafe;
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::FutureExt as _;
use reauth::test_util::procs::{self, Outcome};
use reauth::{FileStore, TokenStore};
use reauth_postgres::PostgresStore;
use reauth_redis::RedisStore;

use super::scenarios::Measured;

/// Processes (C15) or replicas (C16) per scenario.
pub(crate) const PROCESSES: usize = 4;
/// The hidden subcommand the children run.
pub(crate) const CHILD_COMMAND: &str = "__lab-child";
/// Each child's refresh timeout (the lease follows from it).
const REFRESH_TIMEOUT: Duration = Duration::from_secs(2);

/// The store the processes share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
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

/// The services C16 may use; a missing one skips its scenario.
#[derive(Clone, Debug, Default)]
pub(crate) struct Services {
    pub(crate) redis_url: Option<String>,
    pub(crate) database_url: Option<String>,
}

impl Services {
    /// Why `shared` cannot run here, if it cannot.
    pub(crate) fn missing(&self, shared: Shared) -> Option<String> {
        let given = |url: &Option<String>| url.as_deref().is_some_and(|u| !u.is_empty());
        match shared {
            Shared::File => None,
            Shared::Redis if !given(&self.redis_url) => {
                Some("no REDIS_URL / --redis-url".to_owned())
            }
            Shared::Postgres if !given(&self.database_url) => {
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
pub(crate) struct ChildArgs {
    /// The store the processes share.
    #[arg(value_enum)]
    store: Shared,
}

/// A child's whole life: restore from the shared store, meet the others at
/// the barrier, ask for a token, report on stdout. Runs its own runtime, so it
/// must be called outside one. Does nothing unless the lab started it.
pub(crate) fn child(args: &ChildArgs) -> ExitCode {
    match args.store {
        Shared::File => procs::child_main(|path| async move { FileStore::new(path) }),
        Shared::Redis => procs::child_main(|spec| async move {
            let (url, prefix) = spec.rsplit_once('|').expect("url|prefix");
            RedisStore::connect(url, prefix)
                .await
                .expect("connect to Redis")
        }),
        Shared::Postgres => procs::child_main(|spec| async move {
            let (url, key) = spec.rsplit_once('|').expect("url|key");
            PostgresStore::connect(url, key)
                .await
                .expect("connect to Postgres")
        }),
    }
    ExitCode::SUCCESS
}

/// Runs C15 (`File`) or C16 (`Redis`, `Postgres`) and measures it.
pub(crate) async fn run(shared: Shared, services: &Services) -> anyhow::Result<Measured> {
    // A random key so that nothing else in the service is touched.
    let key = format!("reauth-lab-{:016x}", fastrand::u64(..));
    let url = match shared {
        Shared::File => "",
        Shared::Redis => services.redis_url.as_deref().unwrap_or_default(),
        Shared::Postgres => services.database_url.as_deref().unwrap_or_default(),
    };
    // The harness panics when a child fails: catch it, so that the panic
    // becomes this scenario's error, not the lab's end.
    let scenario = AssertUnwindSafe(async move {
        match shared {
            Shared::File => {
                let dir = tempfile::tempdir().context("a temporary directory")?;
                let path = dir.path().join("tokens.json");
                let spec = path.to_string_lossy().into_owned();
                measure(shared, spec, FileStore::new(path)).await
            }
            Shared::Redis => {
                let store = RedisStore::connect(url, &key)
                    .await
                    .with_context(|| format!("cannot connect to Redis at {url}"))?;
                measure(shared, format!("{url}|{key}"), store).await
            }
            Shared::Postgres => {
                let store = PostgresStore::connect(url, &key)
                    .await
                    .context("cannot connect to Postgres")?;
                measure(shared, format!("{url}|{key}"), store).await
            }
        }
    });
    match scenario.catch_unwind().await {
        Ok(measured) => measured,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("the harness panicked");
            // The full text (children's output included) is already on stderr.
            bail!("{}", message.lines().next().unwrap_or_default())
        }
    }
}

/// Starts the children on `store` (opened by them from `spec`), collects their
/// reports and clears what was stored.
async fn measure<S: TokenStore>(
    shared: Shared,
    spec: String,
    store: S,
) -> anyhow::Result<Measured> {
    let exe = std::env::current_exe().context("cannot find the reauth binary")?;
    let scenario = procs::Scenario {
        // Unused: the children are started by `child_command` below.
        child_test: CHILD_COMMAND,
        store: spec,
        processes: PROCESSES,
        kill_first_refresher: false,
        refresh_timeout: REFRESH_TIMEOUT,
    };
    let outcome = procs::run_processes_with(&scenario, &store, || {
        let mut command = Command::new(&exe);
        command.args([CHILD_COMMAND, shared.name()]);
        command
    })
    .await;
    let _ = store.clear().await;
    Ok(measured(&outcome))
}

/// The lab's view of the harness's outcome.
fn measured(outcome: &Outcome) -> Measured {
    let results = &outcome.results;
    let ok = results.iter().filter(|r| r.access.is_ok()).count();
    let refreshed = results.iter().filter(|r| r.refreshed).count();
    let adopted = results.iter().filter(|r| r.adopted && !r.refreshed).count();
    let first = results.first();
    let same = first.is_some_and(|first| {
        first.generation.is_some_and(|g| g > 1)
            && results.iter().all(|r| {
                r.generation == first.generation && r.access.is_ok() && r.access == first.access
            })
    });
    let generation = first
        .and_then(|r| r.generation)
        .map_or_else(|| "none".to_owned(), |g| format!("g{g}"));
    Measured {
        refresh_calls: u64::try_from(outcome.calls).unwrap_or(u64::MAX),
        ok,
        failed: PROCESSES - ok.min(PROCESSES),
        logouts: results.iter().filter(|r| r.ended).count(),
        added: Vec::new(),
        checks: vec![
            (
                format!("all {PROCESSES} processes end on one new generation ({generation})"),
                same && results.len() == PROCESSES,
            ),
            (
                format!(
                    "one refreshed, the rest adopted ({refreshed} refreshed, {adopted} adopted)"
                ),
                refreshed == 1 && adopted == PROCESSES - 1,
            ),
            (
                format!("one rotation at the server ({})", outcome.rotations),
                outcome.rotations == 1,
            ),
        ],
    }
}
