//! `reauth demo`: the 401 storm and its fix, in one command.
//!
//! Three runs, each on a fresh in-process server:
//!
//! 1. **reauth** — our client (`reauth-reqwest` middleware) against our
//!    server: N × `401`, one refresh, N × `200`.
//! 2. **uncoordinated** — every request refreshes on its own, against a
//!    strict server (grace window 0, the classic behaviour): N refreshes,
//!    N − 1 rejected, the family revoked, the user logged out.
//! 3. **reauth + strict server** — our client against that same strict
//!    server: still one refresh, all OK. The client-side fix alone suffices.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use reauth::{AccessToken, RefreshAhead, Session};
use reauth_reqwest::AuthMiddleware;
use reqwest_middleware::ClientBuilder;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::burst::{self, Outcome};
use crate::local::{self, Endpoints};
use crate::netlog::{Entry, Kind, NetLog, Recorder, RecordingRefresher, Together};
use crate::style::Style;

/// The access token the session starts with: no server accepts it.
const BROKEN_TOKEN: &str = "broken-on-purpose";
/// The grace window of the forgiving server (our default).
const GRACE: Duration = Duration::from_secs(10);
/// No burst may take longer than this.
const DEADLINE: Duration = Duration::from_secs(120);
/// Log lines shown per kind of entry before "… and K more".
const SHOWN_PER_KIND: usize = 10;

/// `reauth demo` options.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// How many concurrent requests to fire.
    #[arg(long, short = 'n', default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    requests: u32,
    /// Print one JSON summary object instead of the network log.
    #[arg(long)]
    json: bool,
}

/// What one run did.
#[derive(Debug)]
struct Run {
    /// Refresh requests the server received during the burst.
    refresh_calls: u64,
    /// Refreshes the server answered with new tokens.
    refresh_ok: usize,
    /// Refreshes the server refused.
    refresh_rejected: usize,
    ok: usize,
    failed: usize,
    logouts: usize,
    /// `401`s on the wire.
    unauthorized: usize,
    /// Families the server revoked for reuse.
    reuse_detections: u64,
    took: Duration,
    log: Vec<Entry>,
    errors: Vec<String>,
}

impl Run {
    fn to_json(&self, server: &str) -> Value {
        json!({
            "server": server,
            "refresh_calls": self.refresh_calls,
            "refresh_ok": self.refresh_ok,
            "refresh_rejected": self.refresh_rejected,
            "ok": self.ok,
            "failed": self.failed,
            "logouts": self.logouts,
            "unauthorized": self.unauthorized,
            "family_revoked": self.reuse_detections > 0,
            "duration_ms": ms(self.took),
            "errors": self.errors.iter().take(5).collect::<Vec<_>>(),
        })
    }
}

/// Runs the demo.
pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let n = usize::try_from(args.requests).context("--requests")?;
    let style = Style::stdout();
    if !args.json {
        out!(
            "{}",
            style.bold(format!(
                "reauth demo: {n} concurrent request{} with a broken access token",
                plural(n)
            ))
        );
        out!(
            "{}",
            style.dim("in-process server on 127.0.0.1, in-memory SQLite, demo user logged in through the client library")
        );
        out!(
            "{}",
            style.dim("the first answers are released together once every request is in flight, as on a real network")
        );
    }

    let coordinated = reauth_run(n, GRACE).await.context("reauth run")?;
    if !args.json {
        heading(
            style,
            "1) reauth client (reauth-reqwest AuthMiddleware), server grace window 10 s",
        );
        print_log(style, &coordinated.log);
        let verdict = format!(
            "{} × 401 → {} refresh → {} × 200   ({} failed, {} logout{}, {} ms)",
            coordinated.unauthorized,
            coordinated.refresh_calls,
            coordinated.ok,
            coordinated.failed,
            coordinated.logouts,
            plural(coordinated.logouts),
            ms(coordinated.took)
        );
        if coordinated.unauthorized < n {
            out!(
                "   {}",
                style.dim(format!(
                    "({} request{} started once the refresh was under way: {} waited for it instead of sending a token known to be bad)",
                    n - coordinated.unauthorized,
                    plural(n - coordinated.unauthorized),
                    if n - coordinated.unauthorized == 1 { "it" } else { "they" },
                ))
            );
        }
        let good = coordinated.refresh_calls == 1 && coordinated.failed == 0;
        out!(
            "   {}",
            if good {
                style.green(verdict)
            } else {
                style.red(verdict)
            }
        );
    }

    let naive = uncoordinated_run(n).await.context("uncoordinated run")?;
    if !args.json {
        heading(
            style,
            "2) uncoordinated client (each request refreshes on its own), strict server (grace window 0)",
        );
        print_log(style, &naive.log);
        let verdict = format!(
            "strict server, no client coordination: {} refresh{}, {} rejected{}{} → {} ok, {} failed",
            naive.refresh_calls,
            if naive.refresh_calls == 1 { "" } else { "es" },
            naive.refresh_rejected,
            if naive.reuse_detections > 0 {
                ", family revoked"
            } else {
                ""
            },
            if naive.logouts > 0 {
                " → logged out"
            } else {
                ""
            },
            naive.ok,
            naive.failed,
        );
        out!(
            "   {}",
            if naive.failed > 0 {
                style.red(verdict)
            } else {
                style.yellow(verdict)
            }
        );
    }

    let strict = reauth_run(n, Duration::ZERO)
        .await
        .context("reauth run against the strict server")?;
    if args.json {
        let summary = json!({
            "requests": n,
            "reauth": coordinated.to_json("grace window 10s"),
            "uncoordinated": naive.to_json("strict (grace window 0)"),
            "reauth_strict_server": strict.to_json("strict (grace window 0)"),
        });
        out!("{summary}");
    } else {
        heading(style, "3) reauth client, strict server (grace window 0)");
        let verdict = format!(
            "{} refresh, {} ok, {} failed, {} logouts: the client-side fix alone suffices",
            strict.refresh_calls, strict.ok, strict.failed, strict.logouts
        );
        out!(
            "   {}",
            if strict.refresh_calls == 1 && strict.failed == 0 {
                style.green(verdict)
            } else {
                style.red(verdict)
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn heading(style: Style, text: &str) {
    out!();
    out!("{}", style.bold(text));
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// A plain HTTP client for the bursts.
pub(crate) fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
        .context("building the HTTP client")
}

/// The burst through our client: a session started with a broken access token.
async fn reauth_run(n: usize, grace: Duration) -> anyhow::Result<Run> {
    let running = local::spawn_server(grace).await?;
    let endpoints = Endpoints::ours(&running.url())?;
    let mut tokens = endpoints.login().await?;
    tokens.access_token = AccessToken::from(BROKEN_TOKEN);

    let log = NetLog::new();
    let logouts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&logouts);
    let session = Session::builder(RecordingRefresher::new(
        endpoints.refresher()?,
        Arc::clone(&log),
    ))
    .refresh_ahead(RefreshAhead::disabled())
    .on_session_ended(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
    })
    .build();
    session
        .start(tokens)
        .await
        .context("starting the session")?;
    let client = ClientBuilder::new(http_client()?)
        .with(AuthMiddleware::new(
            session.clone(),
            endpoints.resource.clone(),
        ))
        .with(Together::new(n))
        .with(Recorder::new(Arc::clone(&log)))
        .build();

    let faults = running.server().faults().clone();
    let before = faults.counters();
    log.restart();
    let started = Instant::now();
    let outcomes = burst::fire(&client, &endpoints.resource, n, DEADLINE).await;
    let took = started.elapsed();
    let after = faults.counters();
    let _ = running.shutdown().await;

    let ok = outcomes.iter().filter(|o| o.is_ok()).count();
    Ok(Run {
        refresh_calls: after.refresh_requests - before.refresh_requests,
        refresh_ok: log.count(Kind::Refresh, Some(200)),
        refresh_rejected: log.count(Kind::Refresh, None),
        ok,
        failed: n - ok,
        logouts: logouts.load(Ordering::SeqCst),
        unauthorized: log.count(Kind::Resource, Some(401)),
        reuse_detections: after.reuse_detections - before.reuse_detections,
        took,
        log: log.entries(),
        errors: errors(&outcomes),
    })
}

fn errors(outcomes: &[Outcome]) -> Vec<String> {
    outcomes
        .iter()
        .filter_map(|o| o.error.clone())
        .take(5)
        .collect()
}

/// The burst without coordination: every request that gets a 401 presents
/// the refresh token itself, and logs the user out when that is refused.
async fn uncoordinated_run(n: usize) -> anyhow::Result<Run> {
    let running = local::spawn_server(Duration::ZERO).await?;
    let endpoints = Arc::new(Endpoints::ours(&running.url())?);
    let tokens = endpoints.login().await?;
    let refresh_token = tokens
        .refresh_token
        .as_ref()
        .map(|r| r.secret().to_owned())
        .context("the login returned no refresh token")?;
    let http = http_client()?;
    let log = NetLog::new();
    let logouts = Arc::new(AtomicUsize::new(0));

    let faults = running.server().faults().clone();
    let before = faults.counters();
    log.restart();
    let started = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..n {
        let (http, endpoints, log, logouts) = (
            http.clone(),
            Arc::clone(&endpoints),
            Arc::clone(&log),
            Arc::clone(&logouts),
        );
        let refresh_token = refresh_token.clone();
        set.spawn(
            async move { naive_request(&http, &endpoints, &refresh_token, &log, &logouts).await },
        );
    }
    let outcomes = burst::collect(set, n, DEADLINE).await;
    let took = started.elapsed();
    let after = faults.counters();
    let _ = running.shutdown().await;

    let ok = outcomes.iter().filter(|o| o.is_ok()).count();
    Ok(Run {
        refresh_calls: after.refresh_requests - before.refresh_requests,
        refresh_ok: log.count(Kind::Refresh, Some(200)),
        refresh_rejected: log
            .entries()
            .iter()
            .filter(|e| e.kind == Kind::Refresh && e.status != Some(200))
            .count(),
        ok,
        failed: n - ok,
        logouts: logouts.load(Ordering::SeqCst),
        unauthorized: log.count(Kind::Resource, Some(401)),
        reuse_detections: after.reuse_detections - before.reuse_detections,
        took,
        log: log.entries(),
        errors: errors(&outcomes),
    })
}

/// What a typical hand-written interceptor does: on 401, refresh, retry once;
/// on a refused refresh, log out.
async fn naive_request(
    http: &reqwest::Client,
    endpoints: &Endpoints,
    refresh_token: &str,
    log: &NetLog,
    logouts: &AtomicUsize,
) -> Outcome {
    let started = Instant::now();
    let fail = |error: String| Outcome {
        status: None,
        latency: started.elapsed(),
        error: Some(error),
    };
    let get = |bearer: String| async move {
        let t = Instant::now();
        let status = http
            .get(endpoints.resource.clone())
            .bearer_auth(&bearer)
            .send()
            .await
            .map(|r| r.status().as_u16());
        log.record(
            t,
            Kind::Resource,
            status.as_ref().ok().copied(),
            Some(bearer),
            String::new(),
        );
        status
    };
    match get(BROKEN_TOKEN.to_owned()).await {
        Ok(200) => {
            return Outcome {
                status: Some(200),
                latency: started.elapsed(),
                error: None,
            };
        }
        Ok(_) => {}
        Err(e) => return fail(burst::error_chain(&e)),
    }
    let t = Instant::now();
    let answer = http
        .post(endpoints.token.clone())
        .basic_auth(&endpoints.client_id, endpoints.client_secret())
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .send()
        .await;
    let (status, body) = match answer {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
        Err(e) => {
            log.record(t, Kind::Refresh, None, None, e.to_string());
            return fail(burst::error_chain(&e));
        }
    };
    let access = body["access_token"].as_str().map(str::to_owned);
    let code = body["error"].as_str().unwrap_or_default().to_owned();
    log.record(t, Kind::Refresh, Some(status), None, code.clone());
    let Some(access) = access.filter(|_| status == 200) else {
        logouts.fetch_add(1, Ordering::SeqCst);
        log.record(Instant::now(), Kind::Logout, None, None, code);
        return Outcome {
            status: Some(status),
            latency: started.elapsed(),
            error: None,
        };
    };
    match get(access).await {
        Ok(status) => Outcome {
            status: Some(status),
            latency: started.elapsed(),
            error: None,
        },
        Err(e) => fail(burst::error_chain(&e)),
    }
}

/// A stretch of log entries left out: their kind and status, how many, and
/// when the last of them finished.
type Hidden = ((&'static str, Option<u16>), usize, Duration);

/// Prints the log in order, at most [`SHOWN_PER_KIND`] lines of each kind of
/// entry; each stretch cut short ends with one "… and K more" line.
fn print_log(style: Style, log: &[Entry]) {
    let mut shown: HashMap<(&'static str, Option<u16>), usize> = HashMap::new();
    let mut hidden: Option<Hidden> = None;
    let flush = |hidden: &mut Option<Hidden>| {
        if let Some(((what, status), count, last)) = hidden.take() {
            out!(
                "   {}",
                style.dim(format!(
                    "            … and {count} more {what} {} (the last at +{:.1} ms)",
                    status.map_or_else(|| "failed".to_owned(), |s| s.to_string()),
                    ms(last),
                ))
            );
        }
    };
    for entry in log {
        let key = (label(entry.kind), entry.status);
        if hidden.as_ref().is_some_and(|(k, _, _)| *k != key) {
            flush(&mut hidden);
        }
        let seen = shown.entry(key).or_insert(0);
        *seen += 1;
        if *seen <= SHOWN_PER_KIND {
            out!("   {}", line(style, entry));
        } else {
            let h = hidden.get_or_insert((key, 0, entry.at));
            h.1 += 1;
            h.2 = entry.at;
        }
    }
    flush(&mut hidden);
}

fn label(kind: Kind) -> &'static str {
    match kind {
        Kind::Resource => "GET  /api/resources",
        Kind::Refresh => "POST /oauth/token (refresh)",
        Kind::Logout => "logout",
    }
}

fn line(style: Style, entry: &Entry) -> String {
    let at = style.dim(format!("+{:>8.1} ms", ms(entry.at)));
    match entry.kind {
        Kind::Logout => format!(
            "{at}  {}",
            style.red(format!("logged out ({})", entry.note))
        ),
        kind => {
            let what = format!("{:<28}", label(kind));
            let what = if kind == Kind::Refresh {
                style.yellow(what)
            } else {
                what
            };
            let note = if entry.note.is_empty() {
                String::new()
            } else {
                format!("  {}", entry.note)
            };
            format!(
                "{at}  {what} {}{note}  {}",
                style.status(entry.status),
                style.dim(format!("({:.1} ms)", ms(entry.took)))
            )
        }
    }
}
