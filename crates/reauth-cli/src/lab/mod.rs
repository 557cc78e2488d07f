//! `reauth lab`: the client scenarios of DESIGN.md §3.2, end to end.
//!
//! Against our server (the default) each scenario gets a fresh in-process
//! server with an in-memory database and the faults it needs (refresh delay,
//! failing or hanging refreshes, revocation, slow resource). `--against URL`
//! runs the scenarios that need no fault injection against any server that
//! speaks `/oauth/token`, and marks the rest skipped.
//!
//! C15 and C16 run in separate OS processes (this binary re-run as
//! `reauth __lab-child`) that share a file store, Redis or Postgres, and
//! refresh at a counting endpoint of their own; a C16 without its service is
//! skipped, never failed.

mod processes;
mod scenarios;

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use std::sync::{Arc, Mutex};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::local::{self, Endpoints, Login};
use crate::style::Style;
pub(crate) use processes::{ChildArgs, child};
use processes::{PROCESSES, Services};
use scenarios::{ALL, Ideal, Measured, Scenario, Target};

/// The longest one scenario may run.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(90);

/// `reauth lab` options. Its `Debug` leaves out every secret (the
/// password, the refresh token, the client secret, database URLs that may
/// hold a password).
#[derive(clap::Args)]
pub(crate) struct LabArgs {
    /// Run against this OAuth2 server instead of ours: its issuer URL. The
    /// token and revocation endpoints are found by RFC 8414 discovery (or
    /// OpenID Connect discovery), unless given with --token-url /
    /// --revocation-url. Scenarios that need fault injection are skipped.
    #[arg(long, value_name = "ISSUER_URL")]
    against: Option<String>,
    /// The token endpoint of the --against server (skips discovery).
    #[arg(long, value_name = "URL", requires = "against")]
    token_url: Option<String>,
    /// The RFC 7009 revocation endpoint of the --against server.
    #[arg(long, value_name = "URL", requires = "against")]
    revocation_url: Option<String>,
    /// The protected resource of the --against server: a URL, or a path on
    /// the issuer's origin. It must answer 401 to a token it refuses.
    #[arg(long, default_value = "/api/resources")]
    resource: String,
    /// Run only these scenarios (C1 C2 C3 C4a C4b C5 C6 C9 C10 C15 C16).
    #[arg(long = "scenario", value_name = "ID", num_args = 1..)]
    scenarios: Vec<String>,
    /// Redis for C16 (`redis://host:port`); C16 on Redis is skipped without it.
    #[arg(long, env = "REDIS_URL", value_name = "URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// Postgres for C16 (`postgres://user@host/db`); C16 on Postgres is
    /// skipped without it.
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    database_url: Option<crate::serve::DatabaseUrl>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Requests per burst.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(2..=5000))]
    requests: u32,
    /// Log in on the --against server with the password grant as this user.
    #[arg(long, env = "REAUTH_LAB_USERNAME", default_value = local::DEMO_USER)]
    username: String,
    /// Their password.
    #[arg(long, env = "REAUTH_LAB_PASSWORD", default_value = local::DEMO_PASSWORD, hide_default_value = true, hide_env_values = true)]
    password: String,
    /// Instead of the password grant, start from this refresh token (each
    /// scenario's login refreshes it; the lab keeps the newest one, and runs
    /// C6, which revokes it, last).
    #[arg(long, env = "REAUTH_LAB_REFRESH_TOKEN", hide_env_values = true)]
    refresh_token: Option<String>,
    /// The OAuth client id on the --against server.
    #[arg(long, env = "REAUTH_LAB_CLIENT_ID", default_value = "reauth-demo")]
    client_id: String,
    /// The OAuth client secret on the --against server (none: a public client).
    #[arg(long, env = "REAUTH_LAB_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
}

impl std::fmt::Debug for LabArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabArgs")
            .field("against", &self.against)
            .field("token_url", &self.token_url)
            .field("revocation_url", &self.revocation_url)
            .field("resource", &self.resource)
            .field("scenarios", &self.scenarios)
            .field("requests", &self.requests)
            .field("username", &self.username)
            .field("client_id", &self.client_id)
            .field("json", &self.json)
            .finish_non_exhaustive()
    }
}

/// The endpoints of the --against server, found by discovery or given.
async fn against(issuer: &str, args: &LabArgs) -> anyhow::Result<Endpoints> {
    let issuer = url::Url::parse(issuer).with_context(|| format!("{issuer:?} is not a URL"))?;
    let parse = |u: &str| url::Url::parse(u).with_context(|| format!("{u:?} is not a URL"));
    let (token, discovered_revoke) = match &args.token_url {
        Some(t) => (parse(t)?, None),
        None => local::discover(&issuer).await?,
    };
    let revoke = match &args.revocation_url {
        Some(r) => Some(parse(r)?),
        None => discovered_revoke,
    };
    let resource = issuer
        .join(&args.resource)
        .with_context(|| format!("cannot join {:?} to {issuer}", args.resource))?;
    let login = match &args.refresh_token {
        Some(rt) => Login::RefreshToken(Arc::new(Mutex::new(rt.clone()))),
        None => Login::Password {
            username: args.username.clone(),
            password: args.password.clone(),
        },
    };
    Ok(Endpoints {
        token,
        revoke,
        resource,
        client_id: args.client_id.clone(),
        client_secret: args.client_secret.clone(),
        login,
    })
}

/// How a scenario ended.
enum Verdict {
    Pass(Measured),
    Fail(Measured),
    Error(String),
    Skipped(String),
}

/// Runs the lab; exit code 1 when a scenario fails.
pub(crate) async fn run(args: LabArgs) -> anyhow::Result<ExitCode> {
    let selected = select(&args.scenarios)?;
    let n = usize::try_from(args.requests)?;
    let (target, target_name) = match &args.against {
        None => (
            Target::Ours,
            "our server, in-process (in-memory SQLite, fault injection on)".to_owned(),
        ),
        Some(url) => {
            let endpoints = against(url, &args).await?;
            let name = format!("{url} (token endpoint {})", endpoints.token);
            (Target::Against(Box::new(endpoints)), name)
        }
    };
    // A handed-over refresh token dies with C6's revocation: run C6 last.
    let mut selected = selected;
    if matches!(&target, Target::Against(e) if e.chained()) {
        selected.sort_by_key(|s| s.id == "C6");
    }
    let services = Services {
        redis_url: args.redis_url.clone(),
        database_url: args.database_url.clone(),
    };
    let mut progress = Progress::new(selected.len());
    let mut results = Vec::with_capacity(selected.len());
    for (i, scenario) in selected.iter().enumerate() {
        progress.show(i, scenario);
        let verdict = if let Some(why) = scenario.skip_reason(&target, &services) {
            Verdict::Skipped(why)
        } else {
            let run = scenario.run(&target, &services, n);
            match tokio::time::timeout(SCENARIO_DEADLINE, run).await {
                Err(_) => Verdict::Error(format!("timed out after {SCENARIO_DEADLINE:?}")),
                Ok(Err(e)) => Verdict::Error(crate::one_line(&e)),
                Ok(Ok(m)) if passes(&m, scenario.ideal(n)) => Verdict::Pass(m),
                Ok(Ok(m)) => Verdict::Fail(m),
            }
        };
        results.push((*scenario, verdict));
    }
    progress.done();

    let failed = results
        .iter()
        .filter(|(_, v)| matches!(v, Verdict::Fail(_) | Verdict::Error(_)))
        .count();
    if args.json {
        out!("{}", to_json(&target_name, n, &results));
    } else {
        print_table(Style::stdout(), &target_name, n, &results);
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn select(ids: &[String]) -> anyhow::Result<Vec<Scenario>> {
    if ids.is_empty() {
        return Ok(ALL.to_vec());
    }
    let mut selected = Vec::new();
    for id in ids.iter().flat_map(|s| s.split(',')) {
        // An id may name several rows (C16: one per backend).
        let mut matching = ALL
            .iter()
            .filter(|s| s.id.eq_ignore_ascii_case(id.trim()))
            .peekable();
        if matching.peek().is_none() {
            let mut known: Vec<&str> = ALL.iter().map(|s| s.id).collect();
            known.dedup();
            bail!("unknown scenario {id} (known: {})", known.join(" "));
        }
        for s in matching {
            if !selected.contains(s) {
                selected.push(*s);
            }
        }
    }
    selected.sort_by_key(|s| ALL.iter().position(|x| x == s));
    Ok(selected)
}

fn passes(m: &Measured, ideal: Ideal) -> bool {
    m.refresh_calls == ideal.refresh_calls
        && m.failed == ideal.failed
        && m.logouts == ideal.logouts
        && m.checks.iter().all(|(_, ok)| *ok)
}

/// The `q` quantile of `samples` in milliseconds (nearest rank).
fn quantile_ms(samples: &[Duration], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    // Nearest rank: the smallest sample with at least q of them at or below it.
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    let d = sorted[rank.min(sorted.len()) - 1];
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

fn to_json(target: &str, n: usize, results: &[(Scenario, Verdict)]) -> Value {
    let scenarios: Vec<Value> = results
        .iter()
        .map(|(s, v)| {
            let ideal = s.ideal(n);
            let mut obj = json!({
                "id": s.id,
                "title": s.title,
                "store": s.shared.map(processes::Shared::name),
                "processes": s.shared.map(|_| PROCESSES),
                "ideal": {
                    "refresh_calls": ideal.refresh_calls,
                    "failed": ideal.failed,
                    "logouts": ideal.logouts,
                },
            });
            let (result, measured) = match v {
                Verdict::Pass(m) => ("pass", Some(m)),
                Verdict::Fail(m) => ("fail", Some(m)),
                Verdict::Error(e) => {
                    obj["error"] = json!(e);
                    ("fail", None)
                }
                Verdict::Skipped(why) => {
                    obj["skip_reason"] = json!(why);
                    ("skipped", None)
                }
            };
            obj["result"] = json!(result);
            if let Some(m) = measured {
                obj["refresh_calls"] = json!(m.refresh_calls);
                obj["ok"] = json!(m.ok);
                obj["failed"] = json!(m.failed);
                obj["logouts"] = json!(m.logouts);
                // No latency is measured across processes.
                let added = |q| (!m.added.is_empty()).then(|| quantile_ms(&m.added, q));
                obj["p50_added_ms"] = json!(added(0.5));
                obj["p99_added_ms"] = json!(added(0.99));
                obj["checks"] = m
                    .checks
                    .iter()
                    .map(|(what, ok)| json!({ "what": what, "ok": ok }))
                    .collect();
            }
            obj
        })
        .collect();
    let count = |r: &str| scenarios.iter().filter(|s| s["result"] == r).count();
    json!({
        "target": target,
        "requests_per_burst": n,
        "passed": count("pass"),
        "failed": count("fail"),
        "skipped": count("skipped"),
        "scenarios": scenarios,
    })
}

fn print_table(style: Style, target: &str, n: usize, results: &[(Scenario, Verdict)]) {
    out!(
        "{}",
        style.bold(format!("reauth lab: {target}, bursts of {n} requests"))
    );
    out!(
        "{}",
        style.dim("measured (ideal); added latency = latency through reauth − a plain request's, same scenario")
    );
    out!();
    out!(
        "{}",
        style.bold(format!(
            "{:<5} {:<38} {:>9} {:>11} {:>8} {:>9} {:>9}  result",
            "id", "scenario", "refreshes", "failed", "logouts", "p50 +ms", "p99 +ms"
        ))
    );
    let mut notes = Vec::new();
    for (s, v) in results {
        let ideal = s.ideal(n);
        let (cells, result) = match v {
            Verdict::Pass(m) | Verdict::Fail(m) => {
                for (what, ok) in &m.checks {
                    if !ok {
                        notes.push(format!("{}: {what}", s.id));
                    }
                }
                // No latency is measured across processes (C15, C16).
                let added = |q| {
                    if m.added.is_empty() {
                        "-".to_owned()
                    } else {
                        format!("{:.1}", quantile_ms(&m.added, q))
                    }
                };
                let cells = format!(
                    "{:>9} {:>11} {:>8} {:>9} {:>9}",
                    format!("{} ({})", m.refresh_calls, ideal.refresh_calls),
                    format!("{} ({})", m.failed, ideal.failed),
                    format!("{} ({})", m.logouts, ideal.logouts),
                    added(0.5),
                    added(0.99),
                );
                let result = if matches!(v, Verdict::Pass(_)) {
                    style.green("PASS")
                } else {
                    style.red("FAIL")
                };
                (cells, result)
            }
            Verdict::Error(e) => {
                notes.push(format!("{}: {e}", s.id));
                (format!("{:>50}", "error"), style.red("FAIL"))
            }
            Verdict::Skipped(why) => (format!("{why:>50}"), style.yellow("SKIPPED")),
        };
        out!("{:<5} {:<38} {cells}  {result}", s.id, s.title);
    }
    if !notes.is_empty() {
        out!();
        for note in notes {
            out!("{}", style.red(note));
        }
    }
    let count = |f: fn(&Verdict) -> bool| results.iter().filter(|(_, v)| f(v)).count();
    out!();
    out!(
        "{} passed, {} failed, {} skipped",
        count(|v| matches!(v, Verdict::Pass(_))),
        count(|v| matches!(v, Verdict::Fail(_) | Verdict::Error(_))),
        count(|v| matches!(v, Verdict::Skipped(_))),
    );
}

/// A one-line progress bar on stderr, drawn only on a terminal.
struct Progress {
    total: usize,
    on: bool,
}

impl Progress {
    fn new(total: usize) -> Self {
        Self {
            total,
            on: std::io::stderr().is_terminal(),
        }
    }

    fn show(&mut self, done: usize, running: &Scenario) {
        if !self.on {
            return;
        }
        const WIDTH: usize = 20;
        let filled = WIDTH * done / self.total.max(1);
        let mut stderr = std::io::stderr().lock();
        let _ = write!(
            stderr,
            "\r\x1b[2K[{}{}] {done}/{} {} {}",
            "#".repeat(filled),
            "-".repeat(WIDTH - filled),
            self.total,
            running.id,
            running.title
        );
        let _ = stderr.flush();
    }

    fn done(&mut self) {
        if self.on {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K");
            let _ = stderr.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn o6_debug_output_of_the_lab_holds_no_secret() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            lab: LabArgs,
        }
        let cli = <Cli as clap::Parser>::parse_from([
            "lab",
            "--against",
            "https://idp.example",
            "--password",
            "pw-SECRET-1",
            "--refresh-token",
            "rt-SECRET-2",
            "--client-secret",
            "cs-SECRET-3",
            "--database-url",
            "postgres://u:db-SECRET-4@host/db",
            "--redis-url",
            "redis://:redis-SECRET-5@host",
        ]);
        let endpoints = local::Endpoints {
            token: url::Url::parse("https://idp.example/token").unwrap(),
            revoke: None,
            resource: url::Url::parse("https://api.example/").unwrap(),
            client_id: "lab".into(),
            client_secret: Some("cs-SECRET-6".into()),
            login: local::Login::Password {
                username: "u".into(),
                password: "pw-SECRET-7".into(),
            },
        };
        let entry = crate::netlog::Entry {
            at: Duration::ZERO,
            took: Duration::ZERO,
            kind: crate::netlog::Kind::Resource,
            status: Some(200),
            bearer: Some("bearer-SECRET-8".into()),
            note: String::new(),
        };
        let services = processes::Services {
            redis_url: Some("redis://:redis-SECRET-9@host".into()),
            database_url: Some("postgres://u:db-SECRET-10@host/db".parse().unwrap()),
        };
        let printed = format!("{:?} {endpoints:?} {entry:?} {services:?}", cli.lab);
        assert!(printed.contains("idp.example"), "{printed}");
        assert!(!printed.contains("SECRET"), "{printed}");
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile_ms(&samples, 0.5), 50.0);
        assert_eq!(quantile_ms(&samples, 0.99), 99.0);
        assert_eq!(quantile_ms(&[], 0.5), 0.0);
    }

    #[test]
    fn scenarios_are_selected_case_insensitively_in_table_order() {
        let ids = |v: &[&str]| {
            select(&v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .map(|s| s.iter().map(|s| s.id).collect::<Vec<_>>())
        };
        assert_eq!(ids(&["c10", "C1"]).unwrap(), ["C1", "C10"]);
        assert_eq!(ids(&["C4A,c4b"]).unwrap(), ["C4a", "C4b"]);
        // C16 is one row per backend.
        assert_eq!(ids(&["c16", "C15", "C16"]).unwrap(), ["C15", "C16", "C16"]);
        assert!(ids(&["C99"]).is_err());
        assert_eq!(ids(&[]).unwrap().len(), ALL.len());
    }
}
