//! One seed: build the world, run the fault schedule, check the invariants.

use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::StreamExt;
use reauth::{
    Bearer, Clock, Jitter, RefreshAhead, RefreshError, RetryPolicy, Runtime, Session, SessionEvent,
    TokenSet,
};
use reauth_server::store::MemoryRepository;
use reauth_server::{PasswordHashing, Server, ServerConfig, ServerKeys};

use crate::monitor::{self, Monitor, Shared};
use crate::net::{self, HttpReq, HttpResp, SimStore, StoreData};
use crate::pause::{PausableSleep, Pause};

/// What a seed runs with.
#[derive(Clone, Debug)]
pub struct Options {
    /// Client processes sharing the store.
    pub clients: usize,
    /// Server replicas on the one database.
    pub replicas: usize,
    /// Simulated seconds of workload under faults (then the faults heal).
    pub workload_secs: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            clients: 3,
            replicas: 2,
            workload_secs: 20,
        }
    }
}

/// How one seed went.
#[derive(Debug)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// The broken invariants (empty: the schedule passed).
    pub violations: Vec<String>,
    /// The schedule: every fault and client operation, in simulated time.
    pub schedule: Vec<String>,
    /// Simulation steps run.
    pub steps: u64,
}

const TICK_MS: u64 = 20;
const TICK: Duration = Duration::from_millis(TICK_MS);
const WAIT_TIMEOUT: Duration = Duration::from_secs(4);
const REFRESH_TIMEOUT: Duration = Duration::from_secs(1);
const RPC_LIMIT: Duration = Duration::from_millis(800);
const EPOCH_SECS: u64 = 1_767_225_600; // 2026-01-01
const RUN: u8 = 0;
const CHECK: u8 = 1;

fn outer() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for building servers")
    })
}

/// Simulated wall time: the driver's elapsed time plus a clock offset.
#[derive(Debug, Clone)]
struct SimClock {
    now_ms: Arc<AtomicI64>,
    offset_ms: Arc<AtomicI64>,
}

impl SimClock {
    fn ms(&self) -> i64 {
        i64::try_from(EPOCH_SECS * 1000).unwrap_or(0)
            + self.now_ms.load(Ordering::Relaxed)
            + self.offset_ms.load(Ordering::Relaxed)
    }
}

impl Clock for SimClock {
    fn now(&self) -> SystemTime {
        let ms = u64::try_from(self.ms()).unwrap_or(0);
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
    }
}

impl reauth_server::Clock for SimClock {
    fn now_millis(&self) -> i64 {
        self.ms()
    }
}

struct SeededJitter(Mutex<fastrand::Rng>);

impl Jitter for SeededJitter {
    fn jitter(&self, max: Duration) -> Duration {
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        let mut rng = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Duration::from_nanos(rng.u64(0..=nanos))
    }
}

/// The refresher of a client process: `/auth/refresh` at a replica.
struct SimRefresher {
    replicas: usize,
    rng: Mutex<fastrand::Rng>,
    clock: SimClock,
    /// This process (host and incarnation), the store's data and the
    /// monitor: a refresh is checked against the store's lease (C18).
    who: String,
    store: Arc<Mutex<StoreData>>,
    monitor: Shared,
    /// A fault: refresh requests go out this many ms late (a slow
    /// connection to the replica), inside the refresh timeout.
    slow_ms: Arc<AtomicI64>,
    /// A fault: the process pauses (no request goes out while it does).
    pause: Pause,
}

impl SimRefresher {
    fn replica(&self) -> String {
        let i = self
            .rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .usize(0..self.replicas);
        format!("replica{i}")
    }
}

async fn http(host: &str, req: HttpReq) -> Result<HttpResp, String> {
    net::rpc(host, &req, RPC_LIMIT).await
}

#[async_trait]
impl reauth::Refresher for SimRefresher {
    async fn refresh(&self, current: &TokenSet) -> Result<TokenSet, RefreshError> {
        let Some(rt) = &current.refresh_token else {
            return Err(RefreshError::rejected("no refresh token"));
        };
        self.pause.gate().await;
        let _out = self.pause.calling();
        let late = u64::try_from(self.slow_ms.load(Ordering::Relaxed)).unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(late)).await;
        let now = self.clock.now_ms.load(Ordering::Relaxed);
        let holder = self
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .lease_holder(now)
            .map(str::to_owned);
        monitor::with(&self.monitor, |m| {
            m.refreshing(
                &self.who,
                holder.as_deref(),
                current.lineage.as_str(),
                current.generation.get(),
            );
        });
        let body = serde_json::json!({ "refresh_token": rt.secret() }).to_string();
        let req = HttpReq {
            method: "POST".into(),
            path: "/auth/refresh".into(),
            bearer: None,
            json: Some(body),
        };
        let resp = http(&self.replica(), req)
            .await
            .map_err(RefreshError::transient)?;
        // The answer arrived: the call ran inside the lease (C18).
        let done = self.clock.now_ms.load(Ordering::Relaxed);
        let holder = self
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .lease_holder(done)
            .map(str::to_owned);
        monitor::with(&self.monitor, |m| {
            m.refreshed(
                &self.who,
                holder.as_deref(),
                current.lineage.as_str(),
                current.generation.get(),
                (now, done),
                resp.status == 200,
            );
        });
        match resp.status {
            200 => parse_tokens(&resp.body, Clock::now(&self.clock))
                .ok_or_else(|| RefreshError::misconfigured("unreadable token response")),
            400 | 401 if resp.body.contains("invalid_grant") => {
                Err(RefreshError::rejected(resp.body))
            }
            _ => Err(RefreshError::transient(format!(
                "status {}: {}",
                resp.status, resp.body
            ))),
        }
    }

    async fn revoke(&self, tokens: &TokenSet) -> Result<(), RefreshError> {
        let Some(rt) = &tokens.refresh_token else {
            return Ok(());
        };
        let req = HttpReq {
            method: "POST".into(),
            path: "/auth/logout".into(),
            bearer: None,
            json: Some(serde_json::json!({ "refresh_token": rt.secret() }).to_string()),
        };
        http(&self.replica(), req)
            .await
            .map(drop)
            .map_err(RefreshError::transient)
    }
}

fn parse_tokens(body: &str, now: SystemTime) -> Option<TokenSet> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let mut t = TokenSet::new(v["access_token"].as_str()?.to_owned());
    if let Some(rt) = v["refresh_token"].as_str() {
        t = t.with_refresh_token(rt.to_owned());
    }
    if let Some(secs) = v["expires_in"].as_u64() {
        t = t.with_expires_in(now, Duration::from_secs(secs));
    }
    Some(t)
}

/// Everything a client host needs; cloned into each incarnation.
#[derive(Clone)]
struct ClientCtx {
    name: String,
    seed: u64,
    replicas: usize,
    clock: SimClock,
    monitor: Shared,
    phase: Arc<AtomicU8>,
    incarnation: Arc<AtomicI64>,
    done: Arc<AtomicI64>,
    /// The login this process chose (by `start` or `restore`), and whether
    /// it is choosing one right now.
    login: Arc<Mutex<(Option<String>, bool)>>,
    /// The store's data (the monitor reads it when a caller gets a bearer).
    store: Arc<Mutex<StoreData>>,
    /// This incarnation: host and incarnation number.
    who: String,
    /// A fault: store calls and refresh requests of this host go out late.
    slow_store_ms: Arc<AtomicI64>,
    slow_refresh_ms: Arc<AtomicI64>,
    /// A fault: the process pauses.
    pause: Pause,
}

fn note(m: &Shared, line: String) {
    monitor::with(m, |m| m.note(line));
}

async fn timed<T>(ctx: &ClientCtx, what: &str, f: impl std::future::Future<Output = T>) -> T {
    let t0 = tokio::time::Instant::now();
    let paused_before = ctx.pause.paused_so_far();
    let out = f.await;
    // A paused process keeps no deadline: its time paused is not waiting.
    let paused = ctx.pause.paused_so_far() - paused_before;
    let waited = t0
        .elapsed()
        .saturating_sub(Duration::from_millis(paused.unsigned_abs()));
    if waited > WAIT_TIMEOUT + TICK * 2 {
        monitor::with(&ctx.monitor, |m| {
            m.violate(format!(
                "deadline: {} waited {waited:?} in {what} (wait_timeout {WAIT_TIMEOUT:?}), not counting {paused}ms paused",
                ctx.name
            ));
        });
    }
    out
}

/// Nothing is answered as done before it is durable: when a caller gets
/// `b`, the store holds its set, a newer one of its login, another login or
/// nothing — unless this process's write of it failed (C13).
fn answered(ctx: &ClientCtx, session: &Session, b: &Bearer) {
    let Some(t) = session.tokens().filter(|t| t.access_token == *b.token()) else {
        return;
    };
    let stored = ctx
        .store
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .tokens
        .as_ref()
        .map(|s| (s.lineage.as_str().to_owned(), s.generation.get()));
    monitor::with(&ctx.monitor, |m| {
        m.answered(&ctx.who, t.lineage.as_str(), t.generation.get(), stored);
    });
}

/// A request to the protected resource with `b`; `Some(status)`.
async fn resource(ctx: &ClientCtx, rng: &mut fastrand::Rng, b: &Bearer) -> Option<u16> {
    let host = format!("replica{}", rng.usize(0..ctx.replicas));
    ctx.pause.gate().await;
    let req = HttpReq {
        method: "GET".into(),
        path: "/api/resources".into(),
        bearer: Some(b.token().secret().to_owned()),
        json: None,
    };
    http(&host, req).await.ok().map(|r| r.status)
}

/// One request through the session: token, request, on 401 refuse and replay once.
async fn request(ctx: &ClientCtx, session: &Session, rng: &mut fastrand::Rng) -> bool {
    let b = match timed(ctx, "access_token", session.access_token()).await {
        Ok(b) => b,
        Err(e) => {
            note(&ctx.monitor, format!("{}: access_token → {e}", ctx.name));
            return false;
        }
    };
    answered(ctx, session, &b);
    // Some requests take a while to go out (a long upload, a queue): their
    // token may be replaced, or expire, before the server sees it.
    if rng.u32(0..10) < 3 {
        tokio::time::sleep(Duration::from_millis(rng.u64(0..4000))).await;
    }
    let first = resource(ctx, rng, &b).await;
    if first != Some(200) {
        note(
            &ctx.monitor,
            format!("{}: request with g{} → {first:?}", ctx.name, b.generation()),
        );
    }
    match first {
        Some(200) => true,
        Some(401) => {
            // C3: a 401 concerns the set it was sent with, nothing newer:
            // it never starts a refresh of another set.
            let mut watch = session.events();
            let cur = session.tokens();
            session.refused(&b);
            while let Some(e) = watch.try_next() {
                if let SessionEvent::RefreshStarted { generation, .. } = e
                    && let Some(cur) = &cur
                    && (generation != b.generation() || cur.access_token != *b.token())
                {
                    monitor::with(&ctx.monitor, |m| {
                        m.violate(format!(
                            "C3: {}: a late 401 for g{} started a refresh of g{generation}",
                            ctx.name,
                            b.generation()
                        ));
                    });
                }
            }
            let Ok(b2) = timed(ctx, "access_token after 401", session.access_token()).await else {
                return false;
            };
            answered(ctx, session, &b2);
            match resource(ctx, rng, &b2).await {
                Some(200) => true,
                Some(401) => {
                    session.replay_rejected(&b2);
                    false
                }
                _ => false,
            }
        }
        _ => false,
    }
}

fn observe(ctx: &ClientCtx, session: &Session) {
    if let Some(t) = session.tokens() {
        monitor::with(&ctx.monitor, |m| m.observe(&ctx.name, &t));
        // C19: only `start` and `restore` change the login a session holds.
        let login = ctx.login.lock().map(|l| l.clone()).unwrap_or_default();
        if let (Some(chosen), false) = login
            && chosen != t.lineage.as_str()
        {
            monitor::with(&ctx.monitor, |m| {
                m.violate(format!(
                    "C19: {} holds login {} without having started or restored it (chose {chosen})",
                    ctx.name, t.lineage
                ));
            });
        }
    }
}

/// Runs `start` or `restore` (`choose`), recording the login it leaves the session on.
async fn choosing<T>(
    ctx: &ClientCtx,
    session: &Session,
    choose: impl std::future::Future<Output = T>,
) -> T {
    if let Ok(mut l) = ctx.login.lock() {
        l.1 = true;
    }
    let out = choose.await;
    if let Ok(mut l) = ctx.login.lock() {
        *l = (
            session.tokens().map(|t| t.lineage.as_str().to_owned()),
            false,
        );
    }
    out
}

async fn client(mut ctx: ClientCtx) -> turmoil::Result {
    let inc = ctx.incarnation.fetch_add(1, Ordering::Relaxed);
    ctx.who = format!("{}#{inc}", ctx.name);
    let mut rng = fastrand::Rng::with_seed(
        ctx.seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(u64::try_from(inc).unwrap_or(0) * 7919)
            .wrapping_add(ctx.name.len() as u64 * 104_729 + ctx.name.as_bytes()[6] as u64),
    );
    let jitter = SeededJitter(Mutex::new(rng.fork()));
    let runtime = Runtime::new(
        ctx.clock.clone(),
        PausableSleep(ctx.pause.clone()),
        reauth::TokioSpawn,
        jitter,
    );
    let refresher = SimRefresher {
        replicas: ctx.replicas,
        rng: Mutex::new(rng.fork()),
        clock: ctx.clock.clone(),
        who: ctx.who.clone(),
        store: Arc::clone(&ctx.store),
        monitor: Arc::clone(&ctx.monitor),
        slow_ms: Arc::clone(&ctx.slow_refresh_ms),
        pause: ctx.pause.clone(),
    };
    let lineage: Arc<Mutex<String>> = Arc::default();
    let (cb_lineage, cb_monitor, cb_name) = (
        Arc::clone(&lineage),
        Arc::clone(&ctx.monitor),
        ctx.name.clone(),
    );
    let session = Session::builder(refresher)
        .store(SimStore {
            limit: RPC_LIMIT,
            who: ctx.who.clone(),
            monitor: Arc::clone(&ctx.monitor),
            slow_ms: Arc::clone(&ctx.slow_store_ms),
            pause: ctx.pause.clone(),
            data: Arc::clone(&ctx.store),
        })
        .runtime(runtime)
        .refresh_timeout(REFRESH_TIMEOUT)
        .wait_timeout(WAIT_TIMEOUT)
        .retry(RetryPolicy::default().with_budget(Duration::from_secs(6)))
        .refresh_ahead(RefreshAhead::default().with_skew(Duration::from_secs(3)))
        .on_session_ended(move |reason| {
            let l = cb_lineage.lock().map(|l| l.clone()).unwrap_or_default();
            monitor::with(&cb_monitor, |m| m.ended(&cb_name, &l, reason));
        })
        .build();
    // Every set the session publishes is checked against every other.
    let mut events = session.events();
    let (ev_session, ev_ctx, ev_lineage) = (session.clone(), ctx.clone(), Arc::clone(&lineage));
    tokio::task::spawn_local(async move {
        while let Some(e) = events.next().await {
            if !matches!(e, SessionEvent::JoinedFlight { .. }) {
                note(&ev_ctx.monitor, format!("{}: event {e:?}", ev_ctx.name));
            }
            if matches!(
                e,
                SessionEvent::Started { .. }
                    | SessionEvent::Refreshed { .. }
                    | SessionEvent::Adopted { .. }
            ) && let Some(t) = ev_session.tokens()
            {
                if let Ok(mut l) = ev_lineage.lock() {
                    *l = t.lineage.as_str().to_owned();
                }
                monitor::with(&ev_ctx.monitor, |m| m.observe(&ev_ctx.name, &t));
            }
        }
    });
    // Two more callers of the same process, making requests concurrently:
    // their 401s for one token race each other and the refresh (C3).
    for _ in 0..2 {
        let (session, ctx, mut rng) = (session.clone(), ctx.clone(), rng.fork());
        tokio::task::spawn_local(async move {
            while ctx.phase.load(Ordering::Relaxed) != CHECK {
                tokio::time::sleep(Duration::from_millis(rng.u64(0..800))).await;
                if session.is_active() {
                    request(&ctx, &session, &mut rng).await;
                }
            }
        });
    }
    note(
        &ctx.monitor,
        format!("{} (incarnation {inc}) starts", ctx.name),
    );
    let restored = choosing(&ctx, &session, session.restore()).await;
    note(
        &ctx.monitor,
        format!("{}: restore → {restored:?}", ctx.name),
    );
    loop {
        if ctx.phase.load(Ordering::Relaxed) == CHECK {
            final_check(&ctx, &session, &mut rng).await;
            ctx.done.fetch_add(1, Ordering::Relaxed);
            std::future::pending::<()>().await;
        }
        let pause = Duration::from_millis(rng.u64(0..1500));
        tokio::time::sleep(pause).await;
        // A process without a session picks up the stored one now and then.
        let op = if session.is_active() || rng.u32(0..3) > 0 {
            rng.u32(0..100)
        } else {
            80
        };
        match op {
            0..70 => {
                request(&ctx, &session, &mut rng).await;
            }
            70..76 => {
                let login = monitor::with(&ctx.monitor, |m| m.logins.pop());
                if let Some(tokens) = login {
                    // A failed login is retried with the same tokens, as the
                    // docs of `Session::start` allow.
                    for attempt in 1..=3 {
                        let r = choosing(&ctx, &session, session.start(tokens.clone())).await;
                        note(
                            &ctx.monitor,
                            format!("{}: login attempt {attempt} → {r:?}", ctx.name),
                        );
                        if r.is_ok() {
                            break;
                        }
                    }
                }
            }
            76..78 => {
                if let Some(t) = session.tokens() {
                    monitor::with(&ctx.monitor, |m| m.logging_out(t.lineage.as_str()));
                    let r = session.logout().await;
                    monitor::with(&ctx.monitor, |m| match &r {
                        Ok(()) => m.logged_out_ok(t.lineage.as_str()),
                        Err(_) => m.logout_failed(t.lineage.as_str()),
                    });
                    note(
                        &ctx.monitor,
                        format!(
                            "{}: logout g{} of {} → {r:?}",
                            ctx.name, t.generation, t.lineage
                        ),
                    );
                }
            }
            78..92 => {
                let r = choosing(&ctx, &session, session.restore()).await;
                note(&ctx.monitor, format!("{}: restore → {r:?}", ctx.name));
            }
            _ => {}
        }
        observe(&ctx, &session);
    }
}

/// Once the faults healed: a live client must get a token the server takes.
async fn final_check(ctx: &ClientCtx, session: &Session, rng: &mut fastrand::Rng) {
    for _ in 0..4 {
        if !session.is_active() {
            let _ = choosing(ctx, session, session.restore()).await;
        }
        if !session.is_active() {
            note(&ctx.monitor, format!("{}: check: no session", ctx.name));
            return;
        }
        if request(ctx, session, rng).await {
            note(&ctx.monitor, format!("{}: check: working token", ctx.name));
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    monitor::with(&ctx.monitor, |m| {
        m.violate(format!(
            "lost rotation: {} holds no working token after the faults healed",
            ctx.name
        ));
    });
}

/// Runs one seed and reports what broke.
///
/// # Panics
///
/// If the servers cannot be built (a bug of the simulation).
pub fn run_seed(seed: u64, opts: &Options) -> Report {
    fastrand::seed(seed);
    let mut rng = fastrand::Rng::with_seed(seed);
    let now_ms = Arc::new(AtomicI64::new(0));
    let clock = |offset: &Arc<AtomicI64>| SimClock {
        now_ms: Arc::clone(&now_ms),
        offset_ms: Arc::clone(offset),
    };
    let monitor: Shared = Arc::new(Mutex::new(Monitor::default()));
    let db = MemoryRepository::new(Arc::new(clock(&Arc::default())));
    monitor::with(&monitor, |m| m.repo = Some(db.clone()));

    // R replicas on one database, with one set of keys.
    let keys = ServerKeys::generate();
    let replica_offsets: Vec<Arc<AtomicI64>> = (0..opts.replicas).map(|_| Arc::default()).collect();
    let servers: Vec<Server> = replica_offsets
        .iter()
        .map(|off| {
            let mut config = ServerConfig::default();
            config.password_hashing = PasswordHashing::InsecureFast;
            config.access_token_ttl = Duration::from_secs(8);
            config.grace_window = Duration::from_secs(10);
            // The simulation signs in through the first-party endpoint.
            config.first_party_endpoints = true;
            let repo: Arc<dyn reauth_server::Repository> = Arc::new(db.clone());
            outer()
                .block_on(Server::from_parts(
                    config,
                    repo,
                    keys.clone(),
                    Arc::new(clock(off)),
                ))
                .expect("a replica")
        })
        .collect();
    // The logins of this schedule, made up front (argon2 runs on threads,
    // outside simulated time); the sessions start them during the run.
    let logins: Vec<TokenSet> = outer().block_on(async {
        servers[0].add_user("alice", "pw").await.expect("a user");
        let mut out = Vec::new();
        for _ in 0..8 {
            use tower::ServiceExt;
            let req = http::Request::post("/auth/login")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(
                    r#"{"username":"alice","password":"pw"}"#,
                ))
                .expect("a request");
            let resp = servers[0].router().oneshot(req).await.expect("infallible");
            let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
                .await
                .expect("a body");
            let now = Clock::now(&clock(&Arc::default()));
            out.push(parse_tokens(&String::from_utf8_lossy(&body), now).expect("tokens"));
        }
        out
    });
    let first_login = logins[0].clone();
    monitor::with(&monitor, |m| m.logins = logins[1..].to_vec());
    let mut reuse_before: u64 = servers.iter().map(|s| s.faults().reuse_detections()).sum();

    let mut sim = turmoil::Builder::new()
        .tick_duration(TICK)
        .simulation_duration(Duration::from_secs(opts.workload_secs + 120))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(40))
        .rng_seed(seed)
        .build();

    let store = Arc::new(Mutex::new(StoreData::default()));
    {
        let fenced = !cfg!(reauth_sim_mutants)
            || std::env::var("REAUTH_SIM_MUTANT").as_deref() != Ok("lease_fence");
        let (store, now_ms, m) = (
            Arc::clone(&store),
            Arc::clone(&now_ms),
            Arc::clone(&monitor),
        );
        sim.host("store", move || {
            net::store_host(
                Arc::clone(&store),
                Arc::clone(&now_ms),
                fenced,
                Arc::clone(&m),
            )
        });
    }
    for (i, s) in servers.iter().enumerate() {
        let router = s.router();
        sim.host(format!("replica{i}"), move || {
            net::replica_host(router.clone())
        });
    }
    let phase = Arc::new(AtomicU8::new(RUN));
    let done = Arc::new(AtomicI64::new(0));
    let client_offsets: Vec<Arc<AtomicI64>> = (0..opts.clients).map(|_| Arc::default()).collect();
    let names: Vec<String> = (0..opts.clients).map(|i| format!("client{i}")).collect();
    // (store calls, refresh requests) of each client go out this late (ms).
    let slow_offsets: Vec<(Arc<AtomicI64>, Arc<AtomicI64>)> = (0..opts.clients)
        .map(|_| (Arc::default(), Arc::default()))
        .collect();
    let pauses: Vec<Pause> = (0..opts.clients).map(|_| Pause::new(&now_ms)).collect();
    for (i, name) in names.iter().enumerate() {
        let ctx = ClientCtx {
            name: name.clone(),
            seed,
            replicas: opts.replicas,
            clock: clock(&client_offsets[i]),
            monitor: Arc::clone(&monitor),
            phase: Arc::clone(&phase),
            incarnation: Arc::default(),
            done: Arc::clone(&done),
            login: Arc::default(),
            store: Arc::clone(&store),
            who: name.clone(),
            slow_store_ms: Arc::clone(&slow_offsets[i].0),
            slow_refresh_ms: Arc::clone(&slow_offsets[i].1),
            pause: pauses[i].clone(),
        };
        let first = (i == 0).then(|| first_login.clone());
        sim.host(name.as_str(), move || {
            let ctx = ctx.clone();
            let first = first.clone();
            async move {
                if let Some(t) = first
                    && ctx.incarnation.load(Ordering::Relaxed) == 0
                {
                    // client0's first incarnation logs in before it runs.
                    let s =
                        Session::builder(reauth::refresh_fn(|t: TokenSet| async move { Ok(t) }))
                            .store(SimStore {
                                limit: RPC_LIMIT,
                                who: format!("{}#boot", ctx.name),
                                monitor: Arc::clone(&ctx.monitor),
                                slow_ms: Arc::default(),
                                pause: Pause::default(),
                                data: Arc::clone(&ctx.store),
                            })
                            .runtime(Runtime::new(
                                ctx.clock.clone(),
                                reauth::TokioSleep,
                                reauth::TokioSpawn,
                                reauth::NoJitter,
                            ))
                            .refresh_ahead(RefreshAhead::disabled())
                            .build();
                    let _ = s.start(t).await;
                }
                client(ctx).await
            }
        });
    }

    // The fault schedule: one decision per simulated 250 ms of the workload.
    let workload_steps = opts.workload_secs * 1000 / TICK_MS;
    let steps_of = |ms: u64| ms / TICK_MS;
    let mut crashed: Vec<(usize, u64)> = Vec::new();
    let mut crashed_replicas: Vec<(usize, u64)> = Vec::new();
    let mut slow: Vec<(usize, u64)> = Vec::new();
    let mut slow_clients: Vec<(usize, u64)> = Vec::new();
    let mut links: Vec<(String, String, u64, bool)> = Vec::new(); // (a, b, until step, held)
    let mut steps = 0u64;
    let set_now = |sim: &turmoil::Sim<'_>, m: &Shared| {
        let t = i64::try_from(sim.elapsed().as_millis()).unwrap_or(i64::MAX);
        now_ms.store(t, Ordering::Relaxed);
        monitor::with(m, |m| m.now_ms = t);
    };
    let check_deadline = steps_of((opts.workload_secs + 60) * 1000);
    let mut failed = None;
    let mut reported = std::collections::BTreeSet::new();
    loop {
        set_now(&sim, &monitor);
        if steps < workload_steps && steps.is_multiple_of(steps_of(250)) {
            let c = rng.usize(0..opts.clients);
            let client = names[c].clone();
            match rng.u32(0..100) {
                0..8 => {
                    let peer = if rng.bool() {
                        "store".to_owned()
                    } else {
                        format!("replica{}", rng.usize(0..opts.replicas))
                    };
                    let d = steps_of(rng.u64(500..3000));
                    let held = rng.bool();
                    monitor::with(&monitor, |m| {
                        m.note(format!(
                            "fault: {} {client} <-> {peer} for {}ms",
                            if held { "hold" } else { "partition" },
                            d * TICK_MS
                        ));
                    });
                    if held {
                        sim.hold(client.as_str(), peer.as_str());
                    } else {
                        sim.partition(client.as_str(), peer.as_str());
                    }
                    links.push((client, peer, steps + d, held));
                }
                8..11 if !crashed.iter().any(|(i, _)| *i == c) => {
                    let d = steps_of(rng.u64(200..2500));
                    monitor::with(&monitor, |m| {
                        m.note(format!("fault: crash {client} for {}ms", d * TICK_MS));
                    });
                    sim.crash(client.as_str());
                    crashed.push((c, steps + d));
                }
                25..32 => {
                    // A slow resource server: answers (and 401s) arrive late.
                    let r = rng.usize(0..opts.replicas);
                    let delay = Duration::from_millis(rng.u64(200..2500));
                    let d = steps_of(rng.u64(500..3000));
                    monitor::with(&monitor, |m| {
                        m.note(format!(
                            "fault: replica{r} answers resource requests after {delay:?} for {}ms",
                            d * TICK_MS
                        ));
                    });
                    servers[r].faults().set_resource_delay(delay);
                    slow.push((r, steps + d));
                }
                32..38 if !slow_clients.iter().any(|(i, _)| *i == c) => {
                    // A slow client: its store calls and its refresh requests
                    // leave late (a slow connection), inside their limits.
                    let store_ms = rng.i64(100..350);
                    let refresh_ms = rng.i64(200..950);
                    let d = steps_of(rng.u64(500..3000));
                    monitor::with(&monitor, |m| {
                        m.note(format!(
                            "fault: {client} sends store calls {store_ms}ms and refreshes {refresh_ms}ms late for {}ms",
                            d * TICK_MS
                        ));
                    });
                    slow_offsets[c].0.store(store_ms, Ordering::Relaxed);
                    slow_offsets[c].1.store(refresh_ms, Ordering::Relaxed);
                    slow_clients.push((c, steps + d));
                }
                38..44 => {
                    // A process pause (GC, suspended VM), armed to start
                    // right after a re-read under the lease: often longer
                    // than the lease (2 s) — the holder must notice.
                    let ms = rng.i64(500..6000);
                    if pauses[c].arm(ms) {
                        monitor::with(&monitor, |m| {
                            m.note(format!(
                                "fault: {client} will pause for {ms}ms after its next read under the lease"
                            ));
                        });
                    }
                }
                44..47 => {
                    // A replica crashes: requests it was serving lose their
                    // answers (a rotation may have committed), new ones are
                    // refused until it restarts on the same database.
                    let r = rng.usize(0..opts.replicas);
                    if !crashed_replicas.iter().any(|(i, _)| *i == r) {
                        let d = steps_of(rng.u64(200..2500));
                        monitor::with(&monitor, |m| {
                            m.note(format!("fault: crash replica{r} for {}ms", d * TICK_MS));
                        });
                        sim.crash(format!("replica{r}").as_str());
                        crashed_replicas.push((r, steps + d));
                    }
                }
                11..25 => {
                    let jump = rng.i64(-20_000..20_000);
                    let (who, off) = if rng.bool() {
                        (client.clone(), &client_offsets[c])
                    } else {
                        let r = rng.usize(0..opts.replicas);
                        (format!("replica{r}"), &replica_offsets[r])
                    };
                    monitor::with(&monitor, |m| {
                        m.note(format!("fault: clock of {who} jumps {jump}ms"));
                    });
                    off.fetch_add(jump, Ordering::Relaxed);
                }
                _ => {}
            }
        }
        if steps == workload_steps {
            monitor::with(&monitor, |m| {
                m.note("faults heal; replica clocks resynchronised")
            });
            for (_, _, until, _) in &mut links {
                *until = steps;
            }
            for (_, until) in &mut crashed {
                *until = steps;
            }
            for (_, until) in &mut crashed_replicas {
                *until = steps;
            }
            for (_, until) in &mut slow {
                *until = steps;
            }
            for (_, until) in &mut slow_clients {
                *until = steps;
            }
            for off in &replica_offsets {
                off.store(0, Ordering::Relaxed);
            }
            for p in &pauses {
                p.disarm();
            }
        }
        links.retain(|(a, b, until, held)| {
            if *until > steps {
                return true;
            }
            if *held {
                sim.release(a.as_str(), b.as_str());
            } else {
                sim.repair(a.as_str(), b.as_str());
            }
            false
        });
        slow.retain(|(r, until)| {
            if *until > steps {
                return true;
            }
            servers[*r].faults().set_resource_delay(Duration::ZERO);
            false
        });
        slow_clients.retain(|(c, until)| {
            if *until > steps {
                return true;
            }
            slow_offsets[*c].0.store(0, Ordering::Relaxed);
            slow_offsets[*c].1.store(0, Ordering::Relaxed);
            false
        });
        crashed_replicas.retain(|(r, until)| {
            if *until > steps {
                return true;
            }
            monitor::with(&monitor, |m| m.note(format!("restart replica{r}")));
            sim.bounce(format!("replica{r}").as_str());
            false
        });
        crashed.retain(|(c, until)| {
            if *until > steps {
                return true;
            }
            monitor::with(&monitor, |m| m.note(format!("restart {}", names[*c])));
            pauses[*c].clear();
            sim.bounce(names[*c].as_str());
            false
        });
        // After the heal, time for the clients to settle, then the check.
        if steps == workload_steps + steps_of(8000) {
            monitor::with(&monitor, |m| {
                m.note("check: every live client needs a working token")
            });
            phase.store(CHECK, Ordering::Relaxed);
        }
        if phase.load(Ordering::Relaxed) == CHECK
            && done.load(Ordering::Relaxed) >= i64::try_from(opts.clients).unwrap_or(0)
        {
            break;
        }
        if steps >= check_deadline {
            monitor::with(&monitor, |m| {
                m.violate("deadline: the final check did not finish in time");
            });
            break;
        }
        match sim.step() {
            Ok(_) => {}
            Err(e) => {
                failed = Some(format!("a host failed: {e}"));
                break;
            }
        }
        steps += 1;
        let reuse: u64 = servers.iter().map(|s| s.faults().reuse_detections()).sum();
        if reuse > reuse_before {
            use reauth_server::Repository;
            reuse_before = reuse;
            let events = futures::executor::block_on(db.audit_events(None)).unwrap_or_default();
            for e in events.iter().filter(|e| e.kind == "reuse_detected") {
                let family = e.family_id.clone().unwrap_or_default();
                if !reported.insert(family.clone()) {
                    continue;
                }
                monitor::with(&monitor, |m| {
                    if m.reuse_excused(&family) {
                        m.note(format!("reuse on family {family} ({:?}) after a logout that reported the store uncleared", e.detail));
                    } else {
                        m.violate(format!("spent twice: the server detected reuse on family {family}: {:?} (a generation presented again outside the grace window)", e.detail));
                    }
                });
            }
        }
        if monitor::with(&monitor, |m| !m.violations.is_empty()) {
            break;
        }
    }
    drop(sim);
    let mut m = std::mem::take(
        &mut *monitor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    if let Some(f) = failed {
        m.violate(f);
    }
    m.repo = None;
    Report {
        seed,
        violations: m.violations,
        schedule: m.log,
        steps,
    }
}
