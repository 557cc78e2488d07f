//! A minimal W3C WebDriver client for Debian's `chromedriver` + `chromium`:
//! sessions, tabs, navigation, scripts, and one CDP command (init scripts).

use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// Chromium flags: headless, no sandbox (root in CI), nothing that talks to
/// the network, and no throttling of background tabs (each test drives
/// several tabs, only one of which is in front).
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--disable-popup-blocking",
];

pub(crate) struct Browser {
    driver: Child,
    http: reqwest::Client,
    base: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a fresh Chromium session.
    pub(crate) async fn start(chromium: &Path, chromedriver: &Path) -> Result<Self, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", chromedriver.display()))?;
        let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut browser = Self {
            driver,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(180))
                .build()
                .map_err(|e| e.to_string())?,
            base: format!("http://127.0.0.1:{port}"),
            _profile: profile,
        };
        // chromedriver answers /status once it listens.
        let mut ready = false;
        for _ in 0..200 {
            if let Ok(r) = browser
                .http
                .get(format!("{}/status", browser.base))
                .send()
                .await
                && r.status().is_success()
            {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !ready {
            return Err("chromedriver did not start within 10 s".into());
        }
        let mut args: Vec<String> = FLAGS.iter().map(|s| (*s).to_owned()).collect();
        args.push(format!(
            "--user-data-dir={}",
            browser._profile.path().display()
        ));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium.display().to_string(), "args": args},
            "timeouts": {"script": 120_000, "pageLoad": 60_000},
        }}});
        let session = browser.call("POST", "/session", caps).await?;
        let id = session["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session id in {session}"))?;
        browser.base = format!("{}/session/{id}", browser.base);
        Ok(browser)
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url).json(&body),
        };
        let response = request
            .send()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = response.status();
        let value: Value = response
            .json()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{method} {path}: {status} {}", value["value"]));
        }
        Ok(value["value"].clone())
    }

    pub(crate) async fn goto(&self, url: &str) -> Result<(), String> {
        self.call("POST", "/url", json!({ "url": url }))
            .await
            .map(drop)
    }

    /// Runs `body` as a function in the current tab and returns its value.
    pub(crate) async fn eval(&self, body: &str, args: Value) -> Result<Value, String> {
        self.call(
            "POST",
            "/execute/sync",
            json!({"script": body, "args": args}),
        )
        .await
    }

    /// Awaits the promise `expr` evaluates to (in the current tab).
    pub(crate) async fn eval_async(&self, expr: &str, args: Value) -> Result<Value, String> {
        let script = format!(
            "const done = arguments[arguments.length - 1];\
             Promise.resolve().then(() => {expr}).then(done, (e) => done('error: ' + e));"
        );
        self.call_async_script(&script, args).await
    }

    /// Runs `script` (a WebDriver async script: it calls its last argument
    /// when done) in the current tab.
    pub(crate) async fn call_async_script(
        &self,
        script: &str,
        args: Value,
    ) -> Result<Value, String> {
        self.call(
            "POST",
            "/execute/async",
            json!({"script": script, "args": args}),
        )
        .await
    }

    pub(crate) async fn current_tab(&self) -> Result<String, String> {
        self.call("GET", "/window", Value::Null)
            .await?
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "no window handle".into())
    }

    pub(crate) async fn new_tab(&self) -> Result<String, String> {
        let v = self
            .call("POST", "/window/new", json!({"type": "tab"}))
            .await?;
        v["handle"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no handle in {v}"))
    }

    pub(crate) async fn switch_to(&self, handle: &str) -> Result<(), String> {
        self.call("POST", "/window", json!({ "handle": handle }))
            .await
            .map(drop)
    }

    /// Closes the current tab (the caller switches to another one next).
    pub(crate) async fn close_tab(&self) -> Result<(), String> {
        self.call("DELETE", "/window", Value::Null).await.map(drop)
    }

    /// Runs `source` in every document before the page's own scripts (CDP
    /// `Page.addScriptToEvaluateOnNewDocument`, for the current tab).
    pub(crate) async fn init_script(&self, source: &str) -> Result<(), String> {
        self.call(
            "POST",
            "/goog/cdp/execute",
            json!({"cmd": "Page.addScriptToEvaluateOnNewDocument", "params": {"source": source}}),
        )
        .await
        .map(drop)
    }

    pub(crate) async fn quit(mut self) {
        let _ = self.call("DELETE", "", Value::Null).await;
        let _ = self.driver.kill().await;
    }
}
