//! P6: the browser figures, written into BENCHMARKS.md.
//!
//! ```sh
//! cargo bench -p reauth-web-demo --bench p6_browser
//! ```
//!
//! 1. The page's size: its wasm and JS glue, gzipped (`gzip -9`), beside
//!    axios + axios-auth-refresh from npm (`npm pack`), for scale.
//! 2. A 100-request burst with a broken access token in headless Chromium:
//!    time from the burst's start to its last `200`, reauth (the page) beside
//!    an uncoordinated fetch client (each 401 refreshes on its own, then
//!    replays), both on the same page, same server (grace window on, so both
//!    finish), alternating, in the same run. Medians of `ROUNDS`.

#![allow(dead_code)] // the shared browser-test harness has more than this needs

#[path = "../tests/browser/harness.rs"]
mod harness;
#[path = "../tests/browser/webdriver.rs"]
mod webdriver;

use std::path::Path;
use std::process::Command;

use harness::{Setup, Tab, serve, tools};
use serde_json::{Value, json};
use webdriver::Browser;

const ROUNDS: usize = 9;
const BURST: usize = 100;

/// The uncoordinated client: plain `fetch`, each request that gets 401
/// refreshes with the stored refresh token on its own, then replays once.
const UNCOORDINATED: &str = r#"
const n = arguments[0], done = arguments[arguments.length - 1];
const set = JSON.parse(localStorage.getItem('reauth:demo'));
const t0 = performance.now(); let last = 0, ok = 0;
Promise.all([...Array(n)].map(async () => {
  let r = await fetch('/api/resources', { headers: { Authorization: 'Bearer sdf' } });
  if (r.status === 401) {
    const t = await fetch('/auth/refresh', { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ refresh_token: set.refresh_token }) });
    if (t.status === 200) {
      const body = await t.json();
      r = await fetch('/api/resources', { headers: { Authorization: 'Bearer ' + body.access_token } });
    }
  }
  if (r.status === 200) { ok++; last = performance.now() - t0; }
})).then(() => done(JSON.stringify({ ok, last })));
"#;

fn gzipped(path: &Path) -> u64 {
    let out = Command::new("gzip")
        .args(["-9", "-c"])
        .arg(path)
        .output()
        .expect("gzip");
    out.stdout.len() as u64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn npm_sizes() -> Option<(String, u64, String, u64)> {
    let dir = tempfile::tempdir().ok()?;
    let status = Command::new("npm")
        .args(["pack", "--silent", "axios@1", "axios-auth-refresh"])
        .current_dir(dir.path())
        .output()
        .ok()?;
    if !status.status.success() {
        return None;
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir.path()).ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".tgz") {
            let into = dir.path().join(stem);
            std::fs::create_dir_all(&into).ok()?;
            Command::new("tar")
                .arg("-xzf")
                .arg(entry.path())
                .arg("-C")
                .arg(&into)
                .status()
                .ok()?;
            found.push((stem.to_owned(), into));
        }
    }
    let axios = found.iter().find(|(n, _)| n.starts_with("axios-1"))?;
    let refresh = found
        .iter()
        .find(|(n, _)| n.starts_with("axios-auth-refresh"))?;
    Some((
        axios.0.clone(),
        gzipped(&axios.1.join("package/dist/axios.min.js")),
        refresh.0.clone(),
        gzipped(&refresh.1.join("package/dist/index.esm.js")),
    ))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(tools) = tools() else { return };
    let wasm = gzipped(&tools.site.join("reauth_web_demo_bg.wasm"));
    let js = gzipped(&tools.site.join("reauth_web_demo.js"));
    let html = gzipped(&tools.site.join("index.html"));
    println!("P6 size: page wasm {wasm} B + JS glue {js} B (+ index.html {html} B), gzip -9");
    match npm_sizes() {
        Some((a, asz, r, rsz)) => println!(
            "P6 size, for scale: {a} dist/axios.min.js {asz} B + {r} dist/index.esm.js {rsz} B = {} B, gzip -9",
            asz + rsz
        ),
        None => println!("P6 size, for scale: npm pack failed (no npm or no registry)"),
    }

    let site = serve(&tools.site, Setup::default()).await;
    let b = Browser::start(&tools.chromium, &tools.chromedriver)
        .await
        .expect("Chromium starts");
    let tab = Tab(b.current_tab().await.expect("tab"));
    tab.goto(&b, &site, "?ahead=0").await;
    let (mut reauth, mut plain) = (Vec::new(), Vec::new());
    let (mut reauth_refreshes, mut plain_refreshes) = (0, 0);
    for _ in 0..ROUNDS {
        // reauth: the page's own client.
        tab.login(&b).await;
        tab.break_token(&b).await;
        let before = site
            .counts
            .refreshes
            .load(std::sync::atomic::Ordering::SeqCst);
        let r = tab.run(&b, &format!("send({BURST})")).await;
        assert_eq!(r["ok"], BURST, "{r}");
        reauth_refreshes += site
            .counts
            .refreshes
            .load(std::sync::atomic::Ordering::SeqCst)
            - before;
        let state = tab.state(&b).await;
        let last = state["log"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["path"] == "/api/resources" && e["status"] == 200)
            .map(|e| e["at_ms"].as_f64().unwrap())
            .fold(0.0, f64::max);
        reauth.push(last);

        // Uncoordinated fetch client, fresh login, same page and server.
        tab.login(&b).await;
        let before = site
            .counts
            .refreshes
            .load(std::sync::atomic::Ordering::SeqCst);
        let v = b
            .call_async_script(UNCOORDINATED, json!([BURST]))
            .await
            .expect("uncoordinated burst");
        let v: Value = serde_json::from_str(v.as_str().unwrap()).unwrap();
        assert_eq!(
            v["ok"], BURST,
            "grace window on: every request ends 200: {v}"
        );
        plain_refreshes += site
            .counts
            .refreshes
            .load(std::sync::atomic::Ordering::SeqCst)
            - before;
        plain.push(v["last"].as_f64().unwrap());
    }
    let (r, p) = (median(reauth), median(plain));
    println!(
        "P6 burst of {BURST} with a broken token, Chromium, median of {ROUNDS}: \
         reauth {r:.1} ms to the last 200 ({} refreshes/burst), \
         uncoordinated fetch {p:.1} ms ({} refreshes/burst); ratio reauth/uncoordinated {:.2}",
        reauth_refreshes / ROUNDS as u64,
        plain_refreshes / ROUNDS as u64,
        r / p
    );
    b.quit().await;
}
