//! The browser tests' world: the page built once, a real auth server on
//! loopback serving it (with counters and gates in front), and Chromium.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::{self, Next};
use reauth_server::{PasswordHashing, Server, ServerConfig};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::webdriver::Browser;

/// One browser test at a time: each drives a whole Chromium, and the machine
/// may have two cores.
pub(crate) static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Generous bound for any condition a test waits for (page load, a burst,
/// another tab catching up). Never a measure of speed: tests wait for
/// conditions, and fail only when one does not happen at all.
pub(crate) const PATIENCE: Duration = Duration::from_secs(90);

pub(crate) struct Tools {
    pub(crate) chromium: PathBuf,
    pub(crate) chromedriver: PathBuf,
    pub(crate) site: PathBuf,
}

/// Chromium, chromedriver and the built page — or why the browser tests
/// cannot run here. Missing pieces fail the test under
/// `REAUTH_REQUIRE_SERVICES=1` (as CI sets), and skip it otherwise.
pub(crate) fn tools() -> Option<&'static Tools> {
    static TOOLS: OnceLock<Result<Tools, String>> = OnceLock::new();
    match TOOLS.get_or_init(find_tools) {
        Ok(t) => Some(t),
        Err(why) => {
            if std::env::var("REAUTH_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("browser tests required (REAUTH_REQUIRE_SERVICES=1) but {why}");
            }
            eprintln!("SKIPPED: browser tests need {why}");
            None
        }
    }
}

fn find_tools() -> Result<Tools, String> {
    let find = |env: &str, names: &[&str]| -> Option<PathBuf> {
        if let Ok(p) = std::env::var(env) {
            return Some(PathBuf::from(p));
        }
        names.iter().map(PathBuf::from).find(|p| p.exists())
    };
    let chromium = find(
        "REAUTH_CHROMIUM",
        &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
    )
    .ok_or("Chromium (apt-get install chromium chromium-driver)")?;
    let chromedriver = find("REAUTH_CHROMEDRIVER", &["/usr/bin/chromedriver"])
        .ok_or("chromedriver (apt-get install chromium-driver)")?;
    let site = build_site()?;
    Ok(Tools {
        chromium,
        chromedriver,
        site,
    })
}

/// Builds the page with `crates/reauth-web-demo/build` into its own target
/// directory (a nested cargo must not wait on the lock of the one running
/// the tests), installing nothing.
fn build_site() -> Result<PathBuf, String> {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-demo-target");
    let out = target.join("site");
    let output = std::process::Command::new(crate_dir.join("build"))
        .arg(&out)
        .env("CARGO_TARGET_DIR", &target)
        .env("REAUTH_WEB_NO_INSTALL", "1")
        .env_remove("RUSTFLAGS")
        .output()
        .map_err(|e| format!("running crates/reauth-web-demo/build: {e}"))?;
    match output.status.code() {
        Some(0) => Ok(out),
        Some(3) => Err(String::from_utf8_lossy(&output.stderr).trim().to_owned()),
        _ => panic!(
            "building the page failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// What the server under test saw, counted in front of its router.
#[derive(Default)]
pub(crate) struct Counts {
    pub(crate) refreshes: AtomicU64,
    pub(crate) logouts: AtomicU64,
    pub(crate) resources: AtomicU64,
}

/// Switches the tests use to hold requests at the server.
pub(crate) struct Gates {
    /// Hold the answers of the next K refreshes, *after* the server rotated,
    /// until [`Gates::release_held_refreshes`] (or for good).
    hold_refresh_answers: AtomicU32,
    refreshes_released: watch::Sender<bool>,
    /// Requests to `/api/resources?hold=1` wait until this turns true.
    release: watch::Sender<bool>,
}

impl Gates {
    pub(crate) fn hold_next_refresh_answers(&self, k: u32) {
        self.hold_refresh_answers.store(k, Ordering::SeqCst);
    }

    pub(crate) fn release_held_refreshes(&self) {
        let _ = self.refreshes_released.send(true);
    }

    pub(crate) fn release_held_resources(&self) {
        let _ = self.release.send(true);
    }
}

pub(crate) struct Site {
    pub(crate) url: String,
    pub(crate) server: Server,
    pub(crate) counts: Arc<Counts>,
    pub(crate) gates: Arc<Gates>,
    serving: tokio::task::JoinHandle<()>,
}

impl Drop for Site {
    fn drop(&mut self) {
        // Not graceful: held requests would keep a graceful shutdown waiting.
        self.serving.abort();
    }
}

/// The server's settings a test may change.
#[derive(Clone, Copy)]
pub(crate) struct Setup {
    pub(crate) grace: Duration,
    pub(crate) access_ttl: Duration,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(10),
            access_ttl: Duration::from_secs(300),
        }
    }
}

/// Starts the auth server on `127.0.0.1:0` with the page and the user
/// alice / wonderland.
pub(crate) async fn serve(site_dir: &Path, setup: Setup) -> Site {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("bound address");
    let url = format!("http://{addr}");
    let mut config = ServerConfig::default();
    config.issuer = Some(url.clone());
    config.web_dir = Some(site_dir.to_owned());
    config.demo_client = None;
    // The page logs in through /auth/login on its own origin.
    config.first_party_endpoints = true;
    config.password_hashing = PasswordHashing::InsecureFast;
    config.grace_window = setup.grace;
    config.access_token_ttl = setup.access_ttl;
    let server = Server::new(config).await.expect("server starts");
    server
        .add_user("alice", "wonderland")
        .await
        .expect("user added");

    let counts = Arc::new(Counts::default());
    let gates = Arc::new(Gates {
        hold_refresh_answers: AtomicU32::new(0),
        refreshes_released: watch::channel(false).0,
        release: watch::channel(false).0,
    });
    let (c, g) = (Arc::clone(&counts), Arc::clone(&gates));
    let front = middleware::from_fn(move |req: Request, next: Next| {
        let (counts, gates) = (Arc::clone(&c), Arc::clone(&g));
        async move {
            let path = req.uri().path().to_owned();
            let hold = req.uri().query().is_some_and(|q| q.contains("hold=1"));
            match path.as_str() {
                "/auth/refresh" => {
                    counts.refreshes.fetch_add(1, Ordering::SeqCst);
                    let answer = next.run(req).await;
                    let held = gates
                        .hold_refresh_answers
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |k| k.checked_sub(1))
                        .is_ok();
                    if held {
                        // The rotation is committed; its answer waits.
                        let mut rx = gates.refreshes_released.subscribe();
                        let _ = rx.wait_for(|open| *open).await;
                    }
                    answer
                }
                "/auth/logout" => {
                    counts.logouts.fetch_add(1, Ordering::SeqCst);
                    next.run(req).await
                }
                "/api/resources" => {
                    counts.resources.fetch_add(1, Ordering::SeqCst);
                    if hold {
                        let mut rx = gates.release.subscribe();
                        let _ = rx.wait_for(|open| *open).await;
                    }
                    next.run(req).await
                }
                _ => next.run(req).await,
            }
        }
    });
    let app = server.router().layer(front);
    let serving = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    Site {
        url: format!("{url}/"),
        server,
        counts,
        gates,
        serving,
    }
}

/// Waits until `check` returns `Some`, polling; panics with `what` after
/// [`PATIENCE`].
pub(crate) async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up after {PATIENCE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A tab of the browser, showing the page.
#[derive(Clone)]
pub(crate) struct Tab(pub String);

impl Tab {
    /// Opens the page (with `query`) in a new tab, and waits until it runs.
    pub(crate) async fn open(b: &Browser, site: &Site, query: &str) -> Tab {
        let handle = b.new_tab().await.expect("new tab");
        let tab = Tab(handle);
        tab.goto(b, site, query).await;
        tab
    }

    pub(crate) async fn goto(&self, b: &Browser, site: &Site, query: &str) {
        b.switch_to(&self.0).await.expect("switch tab");
        b.goto(&format!("{}{query}", site.url))
            .await
            .expect("navigate");
        self.wait_started(b).await;
    }

    pub(crate) async fn wait_started(&self, b: &Browser) {
        wait_for("the page to start", || async {
            b.switch_to(&self.0).await.ok()?;
            let v = b.eval("return typeof window.reauthDemo === 'object' && window.reauthDemo.state() !== 'null';", json!([])).await.ok()?;
            v.as_bool().filter(|ok| *ok)
        })
        .await;
    }

    pub(crate) async fn state(&self, b: &Browser) -> Value {
        b.switch_to(&self.0).await.expect("switch tab");
        let text = b
            .eval("return window.reauthDemo.state();", json!([]))
            .await
            .expect("state()");
        serde_json::from_str(text.as_str().unwrap_or("null")).expect("state() is JSON")
    }

    /// Calls `window.reauthDemo.<call>` (a promise of a JSON string) and waits for it.
    pub(crate) async fn run(&self, b: &Browser, call: &str) -> Value {
        b.switch_to(&self.0).await.expect("switch tab");
        let text = b
            .eval_async(&format!("window.reauthDemo.{call}"), json!([]))
            .await
            .unwrap_or_else(|e| panic!("{call}: {e}"));
        let text = text.as_str().unwrap_or("null");
        serde_json::from_str(text).unwrap_or_else(|_| panic!("{call} answered {text}"))
    }

    /// Starts `window.reauthDemo.<call>` without waiting; [`Tab::result`] collects it.
    pub(crate) async fn start(&self, b: &Browser, call: &str) {
        b.switch_to(&self.0).await.expect("switch tab");
        b.eval(
            &format!("window.__result = undefined; window.reauthDemo.{call}.then((r) => {{ window.__result = r; }});"),
            json!([]),
        )
        .await
        .unwrap_or_else(|e| panic!("{call}: {e}"));
    }

    /// The result of the call [`Tab::start`] began, once it is there.
    pub(crate) async fn result(&self, b: &Browser) -> Value {
        let text: String = wait_for("a call started in a tab to finish", || async {
            b.switch_to(&self.0).await.ok()?;
            b.eval(
                "return window.__result === undefined ? null : window.__result;",
                json!([]),
            )
            .await
            .ok()?
            .as_str()
            .map(str::to_owned)
        })
        .await;
        serde_json::from_str(&text).expect("a JSON result")
    }

    pub(crate) async fn login(&self, b: &Browser) {
        let r = self.run(b, "login('alice', 'wonderland')").await;
        assert_eq!(r["ok"], true, "login: {r}");
    }

    pub(crate) async fn break_token(&self, b: &Browser) {
        b.switch_to(&self.0).await.expect("switch tab");
        let r = b
            .eval("return window.reauthDemo.breakToken();", json!([]))
            .await
            .expect("breakToken");
        assert_eq!(r, true, "there was a token to break");
    }

    /// The session events of the page of `kind`.
    pub(crate) async fn events(&self, b: &Browser, kind: &str) -> Vec<Value> {
        let state = self.state(b).await;
        state["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["kind"] == kind)
            .cloned()
            .collect()
    }

    pub(crate) async fn stored(&self, b: &Browser) -> Value {
        b.switch_to(&self.0).await.expect("switch tab");
        b.eval("return localStorage.getItem('reauth:demo');", json!([]))
            .await
            .expect("read localStorage")
    }
}

/// The network log of a state: how many entries of `path` with `status`.
pub(crate) fn logged(state: &Value, path: &str, status: u64) -> usize {
    state["log"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["path"] == path && e["status"] == status)
        .count()
}
