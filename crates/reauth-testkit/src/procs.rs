//! A harness for the multi-process and multi-replica tests (C15, C16, C18,
//! C19, C20).
//!
//! The parent test starts a [`RotatingServer`] — a real HTTP refresh endpoint
//! on `127.0.0.1` whose refresh tokens are one-time, that counts every refresh
//! that reaches it — writes an **expired** token set to the shared store, and
//! re-runs its own test binary P times as child processes ([`run_processes`]).
//! Each child ([`run_child`]) opens the shared store, restores the session,
//! waits at a barrier on the server so that all of them ask at once, calls
//! `access_token()` (the token has expired: each process needs a refresh) and
//! prints what it got. Optionally the first refresh hangs at the server and
//! the parent SIGKILLs the process that sent it, mid-refresh, while it holds
//! the lease (C15/C16); or the first refresh is answered late and every
//! write of the children is slow, so the work under the lease outlasts its
//! TTL (C18); or, while the children refresh, the parent — another process —
//! lands another login in the store (C19) or logs out (C20).
//!
//! A test file wires it up with one parent test and one child entry:
//!
//! ```no_run
//! use reauth_testkit::procs;
//!
//! #[test]
//! fn process_child() {
//!     // Not a child: nothing to do. A child: be one replica.
//!     procs::child_main(|spec| reauth::FileStore::new(spec));
//! }
//! ```

use std::collections::HashMap;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use reauth::RefreshAhead;
use reauth::RefreshError;
use reauth::Refresher;
use reauth::Session;
use reauth::SessionEvent;
use reauth::TokenStore;
use reauth::coord::{Coordinator, Lease};
use reauth::{Generation, Lineage, Stamp, StoreError, TokenSet};

const CHILD_ENV: &str = "REAUTH_TEST_CHILD";
const RESULT_PREFIX: &str = "REAUTH_CHILD_RESULT ";

/// Access tokens the server issues live this long.
pub const LIFETIME: Duration = Duration::from_secs(600);

#[derive(Debug, Default)]
struct ServerState {
    rotation: u64,
    calls: usize,
    /// The pid each refresh came from, in arrival order.
    callers: Vec<u32>,
    hang_first: bool,
    /// The first refresh rotates at once but is answered only after this.
    delay_first: Option<Duration>,
    arrived: usize,
    /// Refresh tokens revoked (RFC 7009 style), in order.
    revoked: Vec<String>,
}

/// A refresh endpoint on loopback with one-time refresh tokens: `refresh-n`
/// buys `access-(n+1)` / `refresh-(n+1)`; any other refresh token is
/// `invalid_grant` (HTTP 400), as on a strict server.
///
/// `POST /revoke` with a refresh token as the body revokes it (a later
/// refresh with it is `invalid_grant`). `GET /barrier` holds each caller until
/// `x-expected` callers arrived **and** the gate is open
/// ([`RotatingServer::open_gate`]; open unless started closed).
#[derive(Clone, Debug)]
pub struct RotatingServer {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<ServerState>>,
    barrier: Arc<tokio::sync::watch::Sender<usize>>,
    gate: Arc<tokio::sync::watch::Sender<bool>>,
}

impl RotatingServer {
    /// Starts the server on a free loopback port, on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// If it cannot bind.
    pub async fn start(hang_first: bool) -> Self {
        Self::start_with(hang_first, None, true).await
    }

    /// As [`start`](Self::start); `delay_first`: the first refresh rotates at
    /// once but is answered only after this long; `gate_open`: whether the
    /// barrier opens as soon as everyone arrived.
    ///
    /// # Panics
    ///
    /// If it cannot bind.
    pub async fn start_with(
        hang_first: bool,
        delay_first: Option<Duration>,
        gate_open: bool,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(ServerState {
            hang_first,
            delay_first,
            ..ServerState::default()
        }));
        let (tx, _) = tokio::sync::watch::channel(0usize);
        let (gate, _) = tokio::sync::watch::channel(gate_open);
        let server = Self {
            addr,
            state,
            barrier: Arc::new(tx),
            gate: Arc::new(gate),
        };
        let s = server.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = s.serve(conn).await;
                });
            }
        });
        server
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ServerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Refresh requests that reached the server.
    pub fn calls(&self) -> usize {
        self.state().calls
    }

    /// Successful rotations.
    pub fn rotations(&self) -> u64 {
        self.state().rotation
    }

    /// The pids refreshes came from, in arrival order.
    pub fn callers(&self) -> Vec<u32> {
        self.state().callers.clone()
    }

    /// The refresh tokens revoked so far, in order.
    pub fn revoked(&self) -> Vec<String> {
        self.state().revoked.clone()
    }

    /// How many callers reached the barrier.
    pub fn arrived(&self) -> usize {
        self.state().arrived
    }

    /// Opens the barrier's gate.
    pub fn open_gate(&self) {
        self.gate.send_replace(true);
    }

    /// The token set a login would get now (rotation `n`), already expired,
    /// of generation 1 and a fresh lineage: every process that loads it must
    /// refresh.
    pub fn expired_login(&self) -> TokenSet {
        let n = self.state().rotation;
        let past = SystemTime::now() - Duration::from_secs(60);
        TokenSet::new(format!("access-{n}"))
            .with_refresh_token(format!("refresh-{n}"))
            .with_expires_in(past - LIFETIME, LIFETIME)
            .with_generation(Generation::new(1))
            .with_lineage(Lineage::generate())
    }

    async fn serve(&self, mut conn: TcpStream) -> std::io::Result<()> {
        let (head, body) = read_request(&mut conn).await?;
        let mut lines = head.lines();
        let request_line = lines.next().unwrap_or_default().to_owned();
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let (status, reply) = if request_line.starts_with("GET /barrier") {
            let expected: usize = headers
                .get("x-expected")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            let mut rx = self.barrier.subscribe();
            let mut gate = self.gate.subscribe();
            self.barrier.send_modify(|n| *n += 1);
            self.state().arrived += 1;
            let _ = rx.wait_for(|n| *n >= expected).await;
            let _ = gate.wait_for(|open| *open).await;
            (200, "{}".to_owned())
        } else if request_line.starts_with("POST /revoke") {
            let token = String::from_utf8_lossy(&body).trim().to_owned();
            self.state().revoked.push(token);
            (200, "{}".to_owned())
        } else if request_line.starts_with("POST /token") {
            let pid = headers
                .get("x-pid")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let (hang, delay) = {
                let mut st = self.state();
                st.calls += 1;
                st.callers.push(pid);
                (std::mem::take(&mut st.hang_first), st.delay_first.take())
            };
            if hang {
                // Hold the connection open and never answer; the parent kills
                // the caller meanwhile. Nothing rotates.
                futures::future::pending::<()>().await;
            }
            let presented = String::from_utf8_lossy(&body).trim().to_owned();
            let answer = {
                let mut st = self.state();
                let valid = presented == format!("refresh-{}", st.rotation)
                    && !st.revoked.contains(&presented);
                if valid {
                    st.rotation += 1;
                    let n = st.rotation;
                    let reply = serde_json::json!({
                        "access_token": format!("access-{n}"),
                        "refresh_token": format!("refresh-{n}"),
                        "expires_in": LIFETIME.as_secs(),
                    });
                    (200, reply.to_string())
                } else {
                    (400, r#"{"error":"invalid_grant"}"#.to_owned())
                }
            };
            if let Some(delay) = delay {
                // Rotated at once; the answer is in transit for `delay`.
                tokio::time::sleep(delay).await;
            }
            answer
        } else {
            (404, "{}".to_owned())
        };
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
            reply.len()
        );
        conn.write_all(response.as_bytes()).await?;
        conn.shutdown().await
    }
}

async fn read_request(conn: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((head, body))
}

/// One HTTP/1.1 exchange with `Connection: close`; returns status and body.
async fn http(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    let host = url.trim_start_matches("http://");
    let mut conn = TcpStream::connect(host).await?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    conn.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    conn.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// A [`Refresher`] calling a [`RotatingServer`] over HTTP.
#[derive(Clone, Debug)]
pub struct HttpRefresher {
    url: String,
}

impl HttpRefresher {
    /// A refresher for the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into() }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    refresh_token: Option<String>,
    expires_in: u64,
}

#[async_trait]
impl Refresher for HttpRefresher {
    async fn refresh(&self, current: &TokenSet) -> Result<TokenSet, RefreshError> {
        let presented = current
            .refresh_token
            .as_ref()
            .map(|r| r.secret().to_owned())
            .unwrap_or_default();
        let pid = [("x-pid", std::process::id().to_string())];
        let (status, body) = http(&self.url, "POST", "/token", &pid, &presented)
            .await
            .map_err(RefreshError::transient)?;
        match status {
            200 => {
                let r: TokenResponse =
                    serde_json::from_str(&body).map_err(RefreshError::misconfigured)?;
                let mut t = TokenSet::new(r.access_token)
                    .with_expires_in(SystemTime::now(), Duration::from_secs(r.expires_in));
                if let Some(rt) = r.refresh_token {
                    t = t.with_refresh_token(rt);
                }
                Ok(t)
            }
            400 | 401 => Err(RefreshError::rejected(body)),
            _ => Err(RefreshError::transient(format!("HTTP {status}"))),
        }
    }

    async fn revoke(&self, tokens: &TokenSet) -> Result<(), RefreshError> {
        let Some(refresh) = &tokens.refresh_token else {
            return Ok(());
        };
        http(&self.url, "POST", "/revoke", &[], refresh.secret())
            .await
            .map(drop)
            .map_err(RefreshError::transient)
    }
}

/// What the parent passes to each child.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChildConfig {
    /// The [`RotatingServer`]'s URL.
    pub server: String,
    /// Which store to open; the child's `open` closure interprets it (a path, a URL + key).
    pub store: String,
    /// The session's refresh timeout, in milliseconds (the lease TTL follows from it).
    pub refresh_timeout_ms: u64,
    /// How many processes meet at the barrier.
    pub processes: usize,
    /// Every compare-and-swap of the child's store first waits this long.
    pub slow_writes_ms: u64,
}

/// What a child reports.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChildResult {
    /// The child's pid.
    pub pid: u32,
    /// The generation it ended with, if it has a token.
    pub generation: Option<u64>,
    /// The access token it got, or the error.
    pub access: Result<String, String>,
    /// Whether it called the refresher and published the result itself.
    pub refreshed: bool,
    /// Whether it adopted a set another process stored.
    pub adopted: bool,
    /// Whether its session ended, and why (`Debug` of the [`reauth::EndReason`]).
    pub ended: Option<String>,
    /// Whether it reported another login's set in the store (C19).
    pub foreign: bool,
}

/// What the parent — another process of the same app — does while the
/// children refresh.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Meanwhile {
    /// Nothing.
    #[default]
    Nothing,
    /// Once every child restored the session, another login lands in the
    /// store (`Session::start` of another session, C19).
    ForeignLogin,
    /// Once the first refresh reached the server, it logs the shared session
    /// out (`Session::logout` of its own restored session, C20).
    Logout,
}

/// The scenario the parent runs.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The name of the test function that calls [`child_main`], run with `--exact`.
    pub child_test: &'static str,
    /// The store spec handed to every child.
    pub store: String,
    /// Number of processes (≥ 4 for C15/C16).
    pub processes: usize,
    /// The first refresh hangs at the server and its sender is SIGKILLed.
    pub kill_first_refresher: bool,
    /// Each child's refresh timeout.
    pub refresh_timeout: Duration,
    /// The first refresh rotates at once and is answered after this (C18).
    pub first_refresh_delay: Option<Duration>,
    /// Every compare-and-swap of the children first waits this long (C18).
    pub slow_writes: Duration,
    /// What the parent does meanwhile.
    pub meanwhile: Meanwhile,
}

impl Scenario {
    /// `processes` children started as `child_test`, sharing the store `store`,
    /// refresh timeout 2 s, nothing else happening.
    pub fn new(child_test: &'static str, store: impl Into<String>, processes: usize) -> Self {
        Self {
            child_test,
            store: store.into(),
            processes,
            kill_first_refresher: false,
            refresh_timeout: Duration::from_secs(2),
            first_refresh_delay: None,
            slow_writes: Duration::ZERO,
            meanwhile: Meanwhile::Nothing,
        }
    }
}

/// What happened.
#[derive(Debug)]
pub struct Outcome {
    /// The reports of the children that exited (the killed one has none).
    pub results: Vec<ChildResult>,
    /// Refresh requests that reached the server.
    pub calls: usize,
    /// Successful rotations at the server.
    pub rotations: u64,
    /// The pid killed mid-refresh, if the scenario kills.
    pub killed: Option<u32>,
    /// Refresh tokens revoked at the server, in order.
    pub revoked: Vec<String>,
    /// The set the shared store holds at the end.
    pub stored: Option<TokenSet>,
    /// The foreign login the parent stored (C19).
    pub foreign: Option<TokenSet>,
}

/// Runs `scenario`: writes an expired login through `store`, starts the
/// children, does what the scenario says meanwhile, and collects the reports.
///
/// # Panics
///
/// If a child fails, or anything takes longer than two minutes.
pub async fn run_processes<S: TokenStore + Clone>(scenario: &Scenario, store: &S) -> Outcome {
    let exe = std::env::current_exe().expect("current exe");
    run_processes_with(scenario, store, || {
        let mut command = Command::new(&exe);
        command.args([
            scenario.child_test,
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ]);
        command
    })
    .await
}

/// Like [`run_processes`], but each child is started from `child()` instead
/// of re-running this test binary with `--exact` — for a binary whose own
/// entry (a hidden subcommand, say) calls [`child_main`]. `child_test` is not
/// used; the child's configuration, stdio and spawning are added here.
///
/// # Panics
///
/// If a child fails, or anything takes longer than two minutes.
pub async fn run_processes_with<S: TokenStore + Clone>(
    scenario: &Scenario,
    store: &S,
    child: impl Fn() -> Command,
) -> Outcome {
    let gate_open = scenario.meanwhile != Meanwhile::ForeignLogin;
    let server = RotatingServer::start_with(
        scenario.kill_first_refresher,
        scenario.first_refresh_delay,
        gate_open,
    )
    .await;
    store
        .store(&server.expired_login())
        .await
        .expect("write the expired login to the shared store");
    // The parent's own session on the shared store, for what it does meanwhile.
    let parent = Session::builder(HttpRefresher::new(server.url()))
        .store(store.clone())
        .refresh_ahead(RefreshAhead::disabled())
        .build();
    if scenario.meanwhile == Meanwhile::Logout {
        assert!(
            parent.restore().await.expect("restore"),
            "the login is stored"
        );
    }
    let config = ChildConfig {
        server: server.url(),
        store: scenario.store.clone(),
        refresh_timeout_ms: u64::try_from(scenario.refresh_timeout.as_millis()).unwrap_or(u64::MAX),
        processes: scenario.processes,
        slow_writes_ms: u64::try_from(scenario.slow_writes.as_millis()).unwrap_or(u64::MAX),
    };
    let mut children: Vec<Child> = (0..scenario.processes)
        .map(|_| {
            child()
                .env(CHILD_ENV, serde_json::to_string(&config).expect("json"))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn child process")
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut foreign = None;
    match scenario.meanwhile {
        Meanwhile::Nothing => {}
        Meanwhile::ForeignLogin => {
            let all = scenario.processes;
            wait_until(deadline, "the children never restored", || {
                server.arrived() >= all
            })
            .await;
            let login = TokenSet::new("foreign-access")
                .with_refresh_token("foreign-refresh")
                .with_expires_in(SystemTime::now(), LIFETIME);
            parent.start(login).await.expect("another login");
            foreign = parent.tokens();
            server.open_gate();
        }
        Meanwhile::Logout => {
            wait_until(deadline, "no refresh reached the server", || {
                server.calls() > 0
            })
            .await;
            parent.logout().await.expect("logout elsewhere");
        }
    }
    let mut killed = None;
    if scenario.kill_first_refresher {
        wait_until(deadline, "no refresh reached the server", || {
            !server.callers().is_empty()
        })
        .await;
        let pid = server.callers()[0];
        let child = children
            .iter_mut()
            .find(|c| c.id() == pid)
            .expect("the first refresher is one of ours");
        child.kill().expect("SIGKILL the lease holder"); // SIGKILL on Unix
        let _ = child.wait();
        killed = Some(pid);
    }
    let mut results = Vec::new();
    for mut child in children {
        let pid = child.id();
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("child {pid} did not finish within two minutes");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if Some(pid) == killed {
            continue;
        }
        let mut out = String::new();
        let mut err = String::new();
        child
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out)
            .expect("read stdout");
        child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut err)
            .expect("read stderr");
        assert!(
            status.success(),
            "child {pid} failed: {status}\n--- stdout\n{out}\n--- stderr\n{err}"
        );
        let line = out
            .lines()
            .find_map(|l| l.split_once(RESULT_PREFIX).map(|(_, r)| r))
            .unwrap_or_else(|| {
                panic!("child {pid} reported nothing\n--- stdout\n{out}\n--- stderr\n{err}")
            });
        results.push(serde_json::from_str(line).expect("child result json"));
    }
    Outcome {
        results,
        calls: server.calls(),
        rotations: server.rotations(),
        killed,
        revoked: server.revoked(),
        stored: store.load().await.expect("load the shared store"),
        foreign,
    }
}

/// Polls `cond` every 5 ms until it holds; panics with `what` at `deadline`.
async fn wait_until(deadline: tokio::time::Instant, what: &str, cond: impl Fn() -> bool) {
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The child's entry: if this process is a child of [`run_processes`], opens
/// the store with `open(spec)` on a fresh tokio runtime and runs
/// [`run_child`]; otherwise returns at once.
pub fn child_main<S: TokenStore, F: std::future::Future<Output = S>>(
    open: impl FnOnce(String) -> F,
) {
    let Ok(json) = std::env::var(CHILD_ENV) else {
        return;
    };
    let config: ChildConfig = serde_json::from_str(&json).expect("child config");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let store = open(config.store.clone()).await;
        let slow = Duration::from_millis(config.slow_writes_ms);
        run_child(config, SlowWrites::new(store, slow)).await;
    });
}

/// A store whose compare-and-swap waits `delay` before it is sent: a slow
/// store (a stalled disk, a congested database) under the refresh lease (C18).
#[derive(Debug)]
pub struct SlowWrites<S> {
    inner: S,
    delay: Duration,
}

impl<S> SlowWrites<S> {
    /// `inner`, with every compare-and-swap delayed by `delay`.
    pub fn new(inner: S, delay: Duration) -> Self {
        Self { inner, delay }
    }

    fn coord(&self) -> &dyn Coordinator
    where
        S: TokenStore,
    {
        self.inner
            .coordinator()
            .expect("a coordinating store under SlowWrites")
    }
}

#[async_trait]
impl<S: TokenStore> TokenStore for SlowWrites<S> {
    async fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        self.inner.load().await
    }

    async fn store(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        self.inner.store(tokens).await
    }

    async fn clear(&self) -> Result<(), StoreError> {
        self.inner.clear().await
    }

    fn coordinator(&self) -> Option<&dyn Coordinator> {
        self.inner.coordinator().map(|_| self as &dyn Coordinator)
    }
}

#[async_trait]
impl<S: TokenStore> Coordinator for SlowWrites<S> {
    async fn try_acquire(&self, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        self.coord().try_acquire(ttl).await
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool, StoreError> {
        self.coord().renew(lease, ttl).await
    }

    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        self.coord().release(lease).await
    }

    async fn compare_and_swap(
        &self,
        fence: Option<&Lease>,
        expected: Option<&Stamp>,
        new: Option<&TokenSet>,
    ) -> Result<bool, StoreError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.coord().compare_and_swap(fence, expected, new).await
    }
}

/// One process: restore from the shared store, meet the others, ask for a
/// token (the stored one has expired), report.
///
/// # Panics
///
/// If the store holds no session or the server is unreachable.
pub async fn run_child<S: TokenStore>(config: ChildConfig, store: S) {
    let session = Session::builder(HttpRefresher::new(config.server.clone()))
        .store(store)
        .refresh_ahead(RefreshAhead::disabled())
        .refresh_timeout(Duration::from_millis(config.refresh_timeout_ms))
        .wait_timeout(Duration::from_secs(90))
        .build();
    let mut events = session.events();
    assert!(
        session.restore().await.expect("restore"),
        "the parent stored a session"
    );
    let expected = [("x-expected", config.processes.to_string())];
    let (status, _) = http(&config.server, "GET", "/barrier", &expected, "")
        .await
        .expect("barrier");
    assert_eq!(status, 200);
    let got = session.access_token().await;
    let mut result = ChildResult {
        pid: std::process::id(),
        generation: session.generation().map(Generation::get),
        access: got
            .map(|b| b.token().secret().to_owned())
            .map_err(|e| e.to_string()),
        refreshed: false,
        adopted: false,
        ended: None,
        foreign: false,
    };
    // Events are sent before the waiters they explain are woken: everything
    // that decided this process is queued already.
    while let Some(event) = events.try_next() {
        match event {
            SessionEvent::Refreshed { .. } => result.refreshed = true,
            SessionEvent::Adopted { .. } => result.adopted = true,
            SessionEvent::SessionEnded { reason } => result.ended = Some(format!("{reason:?}")),
            SessionEvent::ForeignSet { .. } => result.foreign = true,
            _ => {}
        }
    }
    println!(
        "\n{RESULT_PREFIX}{}",
        serde_json::to_string(&result).expect("json")
    );
}

/// The common assertions of C15/C16: exactly one rotation reached the server,
/// every surviving process holds its result at the same generation, exactly
/// one of them refreshed and the rest adopted, nobody logged out.
///
/// # Panics
///
/// When one of them does not hold.
pub fn assert_one_refresh(outcome: &Outcome, processes: usize) {
    let survivors = processes - usize::from(outcome.killed.is_some());
    assert_eq!(outcome.results.len(), survivors, "{outcome:#?}");
    assert_eq!(
        outcome.rotations, 1,
        "exactly one rotation across processes: {outcome:#?}"
    );
    let expected_calls = if outcome.killed.is_some() { 2 } else { 1 };
    assert_eq!(
        outcome.calls, expected_calls,
        "refreshes that reached the server: {outcome:#?}"
    );
    for r in &outcome.results {
        assert_eq!(r.access.as_deref(), Ok("access-1"), "{r:?}");
        assert_eq!(r.generation, Some(2), "{r:?}");
        assert!(r.ended.is_none(), "no process logs out: {r:?}");
        assert!(
            r.refreshed ^ r.adopted,
            "refreshed or adopted, not both: {r:?}"
        );
    }
    let refreshed = outcome.results.iter().filter(|r| r.refreshed).count();
    assert_eq!(
        refreshed, 1,
        "one process refreshed, the others adopted: {outcome:#?}"
    );
}

/// C18's scenario: the first refresh rotates at once but its answer takes
/// 3.5 s, and every compare-and-swap of the children takes 3.5 s more, with a
/// 4 s refresh timeout — a lease TTL of 6 s. The holder's work (7 s) outlasts
/// the TTL; without renewal another process takes the lapsed lease, reads
/// the old set (the holder's write has not landed) and spends the same
/// refresh token again: a second call at the server, and a logout.
pub fn c18_scenario(
    child_test: &'static str,
    store: impl Into<String>,
    processes: usize,
) -> Scenario {
    Scenario {
        refresh_timeout: Duration::from_secs(4),
        first_refresh_delay: Some(Duration::from_millis(3500)),
        slow_writes: Duration::from_millis(3500),
        ..Scenario::new(child_test, store, processes)
    }
}

/// C19's scenario: once every child restored the login, another login lands
/// in the shared store before any of them refreshes.
pub fn c19_scenario(
    child_test: &'static str,
    store: impl Into<String>,
    processes: usize,
) -> Scenario {
    Scenario {
        meanwhile: Meanwhile::ForeignLogin,
        ..Scenario::new(child_test, store, processes)
    }
}

/// C20's scenario: the first refresh rotates at once but its answer takes
/// 1.5 s; meanwhile another process logs the shared session out.
pub fn c20_scenario(
    child_test: &'static str,
    store: impl Into<String>,
    processes: usize,
) -> Scenario {
    Scenario {
        first_refresh_delay: Some(Duration::from_millis(1500)),
        meanwhile: Meanwhile::Logout,
        ..Scenario::new(child_test, store, processes)
    }
}

/// C19: every process reported the foreign set and none adopted it (no
/// process switched to the other login's tokens); none spent its own refresh
/// token; each ended as superseded; the other login's set is untouched.
///
/// # Panics
///
/// When one of them does not hold.
pub fn assert_foreign_reported_not_adopted(outcome: &Outcome, processes: usize) {
    assert_eq!(outcome.results.len(), processes, "{outcome:#?}");
    let foreign = outcome
        .foreign
        .as_ref()
        .expect("the parent stored another login");
    for r in &outcome.results {
        assert!(
            r.access.as_deref() != Ok(foreign.access_token.secret()),
            "a process adopted the other login's tokens: {r:?}"
        );
        assert!(r.access.is_err(), "{r:?}");
        assert!(r.foreign, "the foreign set is reported: {r:?}");
        assert!(!r.adopted && !r.refreshed, "{r:?}");
        assert_eq!(r.ended.as_deref(), Some("Superseded"), "{r:?}");
    }
    assert_eq!(
        outcome.calls, 0,
        "nobody spent the old login's refresh token: {outcome:#?}"
    );
    let stored = outcome
        .stored
        .as_ref()
        .expect("the other login's set is left in the store");
    assert_eq!(
        stored.stamp(),
        foreign.stamp(),
        "the other login's set is left in the store"
    );
    assert_eq!(stored.access_token, foreign.access_token);
}

/// C20: the logout another process made is not undone: the store stays
/// empty, no process holds a token, each ended as logged out elsewhere, and
/// every rotation the server made meanwhile was revoked.
///
/// # Panics
///
/// When one of them does not hold.
pub fn assert_logout_not_undone(outcome: &Outcome, processes: usize) {
    assert_eq!(outcome.results.len(), processes, "{outcome:#?}");
    assert_eq!(outcome.stored, None, "the logout was undone: {outcome:#?}");
    for r in &outcome.results {
        assert!(r.access.is_err(), "{r:?}");
        assert!(!r.adopted, "{r:?}");
        assert_eq!(r.ended.as_deref(), Some("EndedElsewhere"), "{r:?}");
    }
    for n in 1..=outcome.rotations {
        let token = format!("refresh-{n}");
        assert!(
            outcome.revoked.contains(&token),
            "{token} was rotated during the logout and left live: {outcome:#?}"
        );
    }
}

/// "Rotated elsewhere" (C16): a session on handle `a` refreshes; meanwhile a
/// writer on handle `b` that ignored the lease (a replica whose lease lapsed,
/// an old client) rotates the token and stores a newer generation, so the
/// server answers `a` with `invalid_grant`. The session must adopt the stored
/// set, not log out.
///
/// # Panics
///
/// When the session ends or does not adopt.
pub async fn rejected_while_store_moved_is_adopted<S: TokenStore>(a: S, b: S) {
    let b = Arc::new(b);
    let writer = Arc::clone(&b);
    let refresher = reauth::refresh_fn(move |current: TokenSet| {
        let writer = Arc::clone(&writer);
        async move {
            let elsewhere = TokenSet::new("access-elsewhere")
                .with_refresh_token("refresh-elsewhere")
                .with_expires_in(SystemTime::now(), LIFETIME)
                .with_generation(current.generation.next())
                .with_lineage(current.lineage.clone());
            writer
                .store(&elsewhere)
                .await
                .map_err(RefreshError::transient)?;
            Err(RefreshError::rejected("invalid_grant"))
        }
    });
    let session = Session::builder(refresher)
        .store(a)
        .refresh_ahead(RefreshAhead::disabled())
        .build();
    let mut events = session.events();
    let g = session
        .start(
            TokenSet::new("access-0")
                .with_refresh_token("refresh-0")
                .with_expires_in(SystemTime::now(), LIFETIME),
        )
        .await
        .expect("start");
    let sent = session.access_token().await.expect("token");
    let replay = session
        .invalidate(&sent)
        .await
        .expect("adopted, not logged out");
    assert_eq!(replay.token().secret(), "access-elsewhere");
    assert_eq!(replay.generation(), g.next());
    assert!(session.is_active());
    // The event is sent by the refresh task right after it wakes the waiters,
    // possibly on another worker thread: wait for it (bounded).
    let adopted = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(e) = futures::StreamExt::next(&mut events).await {
            assert!(
                !matches!(e, SessionEvent::SessionEnded { .. }),
                "no logout: {e:?}"
            );
            if matches!(e, SessionEvent::Adopted { .. }) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(adopted, "an Adopted event");
    let stored = b.load().await.expect("load").expect("still stored");
    assert_eq!(
        stored.access_token.secret(),
        "access-elsewhere",
        "the store was not cleared"
    );
    b.clear().await.expect("clear");
}
