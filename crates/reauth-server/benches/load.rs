//! Loopback load generator for DESIGN.md §6 P4 and P5.
//!
//! ```text
//! cargo bench -p reauth-server --bench load                 # SQLite only
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo bench -p reauth-server --bench load -- --secs 3  # + Postgres
//! ```
//!
//! Every figure is printed beside a baseline measured in the same run, on the
//! same runtime and the same machine:
//!
//! - **P4**: `GET /api/resources` with a valid bearer token (one per
//!   connection) vs an axum hello-world, at 1 and 32 connections.
//! - **P5**: `POST /auth/refresh` rotations/s (each rotation committed before
//!   its answer; every client rotates its own session sequentially) for
//!   SQLite `synchronous=NORMAL`, SQLite `FULL` and Postgres, at 1 and 32
//!   clients, beside the hello-world ceiling and the raw single-row commit
//!   rate (`UPDATE … SET n = n + 1` in autocommit) of the same database.
//!
//! - **P7**: 400 clients log in at once and keep logging in (half of them
//!   unknown users; real argon2id cost; a `503` is retried after its
//!   `Retry-After`), with the server's limits: peak RSS over idle and the
//!   rate of answers, by kind. Then P4 and P5 (SQLite
//!   NORMAL) served with the limits (`Server::spawn_local`) beside the same
//!   router served by plain `axum::serve` (no timeouts, no cap), alternated
//!   in the same run (four rounds, the order flipped each round): the cost
//!   of the limits.
//!
//! `--only P4|NORMAL|FULL|Postgres|P7` runs one section. Each measurement runs
//! for `--secs` seconds (default 2) after a short
//! warm-up, and at most 10 million requests: it is bounded in time and count.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::get;
use http_body_util::{BodyExt, Full};
use reauth_server::store::{PostgresRepository, Repository, SqliteRepository};
use reauth_server::{
    KeySource, PasswordHashing, Server, ServerConfig, ServerKeys, SqliteSynchronous, SystemClock,
};

mod common;

use common::{connect, json_field, login};

const MAX_REQUESTS: u64 = 10_000_000;

struct Opts {
    secs: f64,
    only: Option<String>,
}

impl Opts {
    /// Whether the section `label` was selected by `--only SUBSTRING`.
    fn wants(&self, label: &str) -> bool {
        self.only.as_deref().is_none_or(|o| label.contains(o))
    }
}

fn opts() -> Opts {
    let mut secs = 2.0;
    let mut only = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--secs" => secs = args.next().and_then(|v| v.parse().ok()).unwrap_or(secs),
            "--only" => only = args.next(),
            _ => {} // cargo passes `--bench`; everything else is ignored.
        }
    }
    Opts { secs, only }
}

/// What one client sends next, given the previous answer.
trait Workload: Send + 'static {
    fn request(&mut self) -> http::Request<Full<Bytes>>;
    fn response(&mut self, status: http::StatusCode, body: &[u8]);
    /// How long to wait before the next request (a client honouring
    /// `Retry-After`).
    fn pause(&mut self) -> Option<Duration> {
        None
    }
}

struct Get {
    addr: SocketAddr,
    path: &'static str,
    bearer: Option<String>,
}

impl Workload for Get {
    fn request(&mut self) -> http::Request<Full<Bytes>> {
        let mut builder = http::Request::get(self.path).header("host", self.addr.to_string());
        if let Some(token) = &self.bearer {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        builder.body(Full::new(Bytes::new())).expect("request")
    }
    fn response(&mut self, status: http::StatusCode, _body: &[u8]) {
        assert!(status.is_success(), "GET {} answered {status}", self.path);
    }
}

struct Rotate {
    addr: SocketAddr,
    refresh_token: String,
}

impl Workload for Rotate {
    fn request(&mut self) -> http::Request<Full<Bytes>> {
        let body = format!("{{\"refresh_token\":\"{}\"}}", self.refresh_token);
        http::Request::post("/auth/refresh")
            .header("host", self.addr.to_string())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("request")
    }
    fn response(&mut self, status: http::StatusCode, body: &[u8]) {
        assert!(
            status.is_success(),
            "refresh answered {status}: {}",
            String::from_utf8_lossy(body)
        );
        self.refresh_token = json_field(body, "refresh_token").to_owned();
    }
}

/// Runs `clients` sequential clients for `secs`; returns completed requests per second.
async fn run<W: Workload>(addr: SocketAddr, clients: Vec<W>, secs: f64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for mut workload in clients {
        let (stop, measuring, count) = (stop.clone(), measuring.clone(), count.clone());
        let mut sender = connect(addr).await;
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) && count.load(Ordering::Relaxed) < MAX_REQUESTS {
                sender.ready().await.expect("connection ready");
                let response = sender
                    .send_request(workload.request())
                    .await
                    .expect("response");
                let status = response.status();
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes();
                workload.response(status, &body);
                if measuring.load(Ordering::Relaxed) {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(pause) = workload.pause() {
                    tokio::time::sleep(pause).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // warm-up
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let done = count.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("client task");
    }
    done as f64 / elapsed
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

async fn hello_world() -> SocketAddr {
    serve(Router::new().route("/", get(|| async { "Hello, World!" }))).await
}

async fn hello(addr: SocketAddr, clients: usize, secs: f64) -> f64 {
    let work = (0..clients)
        .map(|_| Get {
            addr,
            path: "/",
            bearer: None,
        })
        .collect();
    run(addr, work, secs).await
}

fn config(db: &str) -> ServerConfig {
    let mut config = ServerConfig::default();
    config.database_url = db.to_owned();
    config.password_hashing = PasswordHashing::InsecureFast;
    config.login_rate_limit.burst = 0;
    config.login_account_limit.burst = 0;
    config.keys = KeySource::Provided(ServerKeys::generate());
    config.first_party_endpoints = true;
    config
}

async fn start(server: Server) -> SocketAddr {
    server.add_user("bench", "bench").await.expect("user");
    let running = server.spawn_local().await.expect("spawn");
    let addr = running.addr();
    std::mem::forget(running); // serve until the process exits
    addr
}

/// The raw single-row commit rate of a database: `tasks` concurrent writers,
/// each updating its own row in autocommit (as each client rotates its own family).
async fn raw_commits<F, Fut>(tasks: usize, secs: f64, commit: F) -> f64
where
    F: Fn(i64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for task in 0..tasks {
        let (stop, count, commit) = (stop.clone(), count.clone(), commit.clone());
        let row = i64::try_from(task).unwrap_or(0);
        handles.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) && count.load(Ordering::Relaxed) < MAX_REQUESTS {
                commit(row).await;
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = count.load(Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let done = count.load(Ordering::Relaxed) - before;
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.await.expect("commit task");
    }
    done as f64 / elapsed
}

async fn rotations(addr: SocketAddr, clients: usize, secs: f64) -> f64 {
    let mut work = Vec::new();
    for _ in 0..clients {
        let (_, refresh_token) = login(addr).await;
        work.push(Rotate {
            addr,
            refresh_token,
        });
    }
    run(addr, work, secs).await
}

struct Row {
    figure: String,
    clients: usize,
    value: f64,
    baseline_name: &'static str,
    baseline: f64,
}

fn print(rows: &[Row]) {
    println!();
    println!("| figure | clients | req/s | baseline | baseline req/s | ratio |");
    println!("|---|---:|---:|---|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {:.0} | {} | {:.0} | {:.1} % |",
            r.figure,
            r.clients,
            r.value,
            r.baseline_name,
            r.baseline,
            100.0 * r.value / r.baseline
        );
    }
}

async fn p5_for(
    label: &str,
    addr: SocketAddr,
    hello_addr: SocketAddr,
    secs: f64,
    raw: impl Fn(usize) -> std::pin::Pin<Box<dyn std::future::Future<Output = f64> + Send>>,
    rows: &mut Vec<Row>,
) {
    for clients in [1, 32] {
        let hw = hello(hello_addr, clients, secs).await;
        let commits = raw(clients).await;
        let rot = rotations(addr, clients, secs).await;
        eprintln!(
            "P5 {label} x{clients}: {rot:.0} rotations/s, hello {hw:.0}/s, raw commits {commits:.0}/s"
        );
        rows.push(Row {
            figure: format!("P5 rotations, {label}"),
            clients,
            value: rot,
            baseline_name: "raw commit",
            baseline: commits,
        });
        rows.push(Row {
            figure: format!("P5 rotations, {label}"),
            clients,
            value: rot,
            baseline_name: "hello-world",
            baseline: hw,
        });
    }
}

/// A line of `/proc/self/status` in KiB (Linux).
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Answers to P7's logins, by kind.
#[derive(Default)]
struct LoginTally {
    ok: AtomicU64,
    refused: AtomicU64,
    busy: AtomicU64,
    other: AtomicU64,
}

struct Login {
    addr: SocketAddr,
    body: Bytes,
    tally: Arc<LoginTally>,
    busy: bool,
}

impl Workload for Login {
    fn request(&mut self) -> http::Request<Full<Bytes>> {
        http::Request::post("/auth/login")
            .header("host", self.addr.to_string())
            .header("content-type", "application/json")
            .body(Full::new(self.body.clone()))
            .expect("request")
    }
    fn response(&mut self, status: http::StatusCode, _body: &[u8]) {
        self.busy = status == http::StatusCode::SERVICE_UNAVAILABLE;
        let counter = match status.as_u16() {
            200 => &self.tally.ok,
            400 => &self.tally.refused,
            503 => &self.tally.busy,
            _ => &self.tally.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    fn pause(&mut self) -> Option<Duration> {
        // The server's Retry-After is 1 s.
        self.busy.then_some(Duration::from_secs(1))
    }
}

/// P7: 400 parallel logins, half unknown users, real argon2id.
async fn p7_logins(secs: f64) {
    let mut cfg = config("sqlite::memory:");
    cfg.password_hashing = PasswordHashing::Default;
    let server = Server::new(cfg).await.expect("server");
    let addr = start(server).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = status_kib("VmRSS").unwrap_or(0);
    // Reset the peak (VmHWM) to the current RSS: the figure is this burst's.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let tally = Arc::new(LoginTally::default());
    let clients = (0..400)
        .map(|i| Login {
            addr,
            body: Bytes::from(if i % 2 == 0 {
                r#"{"username":"bench","password":"bench"}"#.to_owned()
            } else {
                format!(r#"{{"username":"nobody{i}","password":"guess"}}"#)
            }),
            tally: tally.clone(),
            busy: false,
        })
        .collect();
    let rate = run(addr, clients, secs).await;
    let peak = status_kib("VmHWM").unwrap_or(0);
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
    let answered = load(&tally.ok) + load(&tally.refused) + load(&tally.busy) + load(&tally.other);
    let share = |c: &AtomicU64| rate * load(c) / answered.max(1.0);
    println!();
    println!("| P7: 400 parallel logins (half unknown users) | value |");
    println!("|---|---:|");
    println!(
        "| RSS idle (server + load generator) | {:.0} MiB |",
        idle as f64 / 1024.0
    );
    println!(
        "| peak RSS during the burst | {:.0} MiB |",
        peak as f64 / 1024.0
    );
    println!(
        "| **peak over idle** | **{:.0} MiB** |",
        peak.saturating_sub(idle) as f64 / 1024.0
    );
    println!("| answers/s, all | {rate:.0} |");
    println!(
        "| password checked: 200 (known user) /s | {:.0} |",
        share(&tally.ok)
    );
    println!(
        "| password checked: 400 (wrong or unknown) /s | {:.0} |",
        share(&tally.refused)
    );
    println!(
        "| turned away: 503 + Retry-After /s | {:.0} |",
        share(&tally.busy)
    );
    println!("| other statuses | {:.0} |", load(&tally.other));
}

/// Serves `server`'s router (user already added by [`start`]) with plain
/// `axum::serve`: no timeouts, no cap.
async fn start_unlimited(server: Server) -> SocketAddr {
    serve(server.router()).await
}

/// The cost of the limits on P4 and P5: the same server served with and
/// without them, alternated.
async fn p7_cost(dir: &std::path::Path, secs: f64) {
    let resources = |addr: SocketAddr| async move {
        let mut work = Vec::new();
        for _ in 0..32 {
            let (access, _) = login(addr).await;
            work.push(Get {
                addr,
                path: "/api/resources",
                bearer: Some(access),
            });
        }
        run(addr, work, secs).await
    };
    let p4 = Server::new(config("sqlite::memory:"))
        .await
        .expect("server");
    let p4_limited = start(p4.clone()).await;
    let p4_plain = start_unlimited(p4).await;
    let url = format!("sqlite://{}", dir.join("p7-cost.db").display());
    let p5 = Server::new(config(&url)).await.expect("server");
    let p5_limited = start(p5.clone()).await;
    let p5_plain = start_unlimited(p5).await;
    // Four rounds, the order flipped every round (ABBA): whatever favours
    // the first or the second measurement of a round (a warmer cache, a
    // bigger database) favours both servers alike.
    const ROUNDS: usize = 4;
    // (limits on, plain) req/s of each round.
    let (mut r4, mut r5) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        let mut pair = [0.0; 2];
        for i in order {
            pair[i] = resources([p4_limited, p4_plain][i]).await;
        }
        r4.push(pair);
        let mut pair = [0.0; 2];
        for i in order {
            pair[i] = rotations([p5_limited, p5_plain][i], 32, secs).await;
        }
        r5.push(pair);
    }
    println!();
    println!(
        "| P7 cost of the limits (32 clients, {ROUNDS} rounds) | limits on req/s | plain axum::serve req/s | ratio of the means | per round: median (min–max) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (label, rounds) in [
        ("P4 GET /api/resources", &r4),
        ("P5 rotations, SQLite WAL NORMAL", &r5),
    ] {
        let mean = |i: usize| rounds.iter().map(|p| p[i]).sum::<f64>() / rounds.len() as f64;
        let mut ratios: Vec<f64> = rounds.iter().map(|p| 100.0 * p[0] / p[1]).collect();
        ratios.sort_by(f64::total_cmp);
        let median = (ratios[(ratios.len() - 1) / 2] + ratios[ratios.len() / 2]) / 2.0;
        println!(
            "| {label} | {:.0} | {:.0} | {:.1} % | {median:.1} % ({:.1}–{:.1} %) |",
            mean(0),
            mean(1),
            100.0 * mean(0) / mean(1),
            ratios[0],
            ratios[ratios.len() - 1],
        );
    }
}

fn main() {
    let opts = opts();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let secs = opts.secs;
        let opts = &opts;
        let mut rows = Vec::new();
        let hello_addr = hello_world().await;
        let dir = tempfile::tempdir().expect("tempdir");

        // P7 first: its peak RSS is measured in this process.
        if opts.wants("P7") {
            p7_logins(secs.max(3.0)).await;
            p7_cost(dir.path(), secs).await;
        }

        // P4 on an in-memory SQLite server (the resource path reads no database).
        if opts.wants("P4") {
        let server = Server::new(config("sqlite::memory:")).await.expect("server");
        let addr = start(server).await;
        for clients in [1, 32] {
            let hw = hello(hello_addr, clients, secs).await;
            let mut work = Vec::new();
            for _ in 0..clients {
                let (access, _) = login(addr).await;
                work.push(Get { addr, path: "/api/resources", bearer: Some(access) });
            }
            let res = run(addr, work, secs).await;
            eprintln!("P4 x{clients}: resources {res:.0}/s, hello {hw:.0}/s");
            rows.push(Row {
                figure: "P4 GET /api/resources".into(),
                clients,
                value: res,
                baseline_name: "hello-world",
                baseline: hw,
            });
        }
        }

        // P5 on SQLite files, NORMAL and FULL.
        for (label, sync) in [
            ("SQLite WAL NORMAL", SqliteSynchronous::Normal),
            ("SQLite WAL FULL", SqliteSynchronous::Full),
        ] {
            if !opts.wants(label) {
                continue;
            }
            let path = dir.path().join(format!("bench-{sync:?}.db"));
            let url = format!("sqlite://{}", path.display());
            let repo = SqliteRepository::connect(&url, sync).await.expect("sqlite");
            repo.with_connection(|conn| {
                conn.execute_batch("CREATE TABLE IF NOT EXISTS bench_commit (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")?;
                for id in 0..32 {
                    conn.execute("INSERT OR IGNORE INTO bench_commit (id, n) VALUES (?1, 0)", [id])?;
                }
                Ok::<_, rusqlite::Error>(())
            })
            .await
            .expect("database thread")
            .expect("bench table");
            let raw_repo = repo.clone();
            let repo: Arc<dyn Repository> = Arc::new(repo);
            let mut cfg = config(&url);
            cfg.sqlite_synchronous = sync;
            let keys = ServerKeys::generate();
            let server = Server::from_parts(cfg, repo, keys, Arc::new(SystemClock)).await.expect("server");
            let addr = start(server).await;
            let raw = move |tasks: usize| {
                let repo = raw_repo.clone();
                Box::pin(raw_commits(tasks, secs, move |row| {
                    let repo = repo.clone();
                    async move {
                        // One autocommit UPDATE on the repository's own database
                        // thread and connection, as a rotation runs.
                        repo.with_connection(move |conn| {
                            conn.prepare_cached("UPDATE bench_commit SET n = n + 1 WHERE id = ?1")?
                                .execute([row])
                        })
                        .await
                        .expect("database thread")
                        .expect("commit");
                    }
                })) as std::pin::Pin<Box<dyn std::future::Future<Output = f64> + Send>>
            };
            p5_for(label, addr, hello_addr, secs, raw, &mut rows).await;
        }

        // P5 on Postgres, when DATABASE_URL is set (own schema, dropped afterwards).
        match std::env::var("DATABASE_URL") {
            Ok(base) if base.starts_with("postgres") && opts.wants("Postgres") => {
                let schema = format!("reauth_bench_{}", std::process::id());
                let admin = sqlx::PgPool::connect(&base).await.expect("postgres");
                sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&admin).await.expect("schema");
                let sep = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
                let repo = PostgresRepository::connect(&url, 16, Duration::from_secs(5)).await.expect("postgres repo");
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(16)
                    .connect(&url)
                    .await
                    .expect("bench pool");
                sqlx::query("CREATE TABLE bench_commit (id INT PRIMARY KEY, n BIGINT NOT NULL)")
                    .execute(&pool)
                    .await
                    .expect("table");
                for id in 0..32 {
                    sqlx::query("INSERT INTO bench_commit (id, n) VALUES ($1, 0)")
                        .bind(id)
                        .execute(&pool)
                        .await
                        .expect("row");
                }
                let repo: Arc<dyn Repository> = Arc::new(repo);
                let server = Server::from_parts(config(&url), repo, ServerKeys::generate(), Arc::new(SystemClock))
                    .await
                    .expect("server");
                let addr = start(server).await;
                let raw = move |tasks: usize| {
                    let pool = pool.clone();
                    Box::pin(raw_commits(tasks, secs, move |row| {
                        let pool = pool.clone();
                        async move {
                            sqlx::query("UPDATE bench_commit SET n = n + 1 WHERE id = $1")
                                .bind(row)
                                .execute(&pool)
                                .await
                                .expect("commit");
                        }
                    })) as std::pin::Pin<Box<dyn std::future::Future<Output = f64> + Send>>
                };
                p5_for("Postgres", addr, hello_addr, secs, raw, &mut rows).await;
                pool_close(&admin, &schema).await;
            }
            _ => eprintln!("P5 Postgres skipped: set DATABASE_URL=postgres://… to measure it"),
        }
        print(&rows);
    });
}

async fn pool_close(admin: &sqlx::PgPool, schema: &str) {
    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(admin)
        .await;
}
