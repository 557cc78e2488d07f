//! `reauth lab --against` an OAuth2 server it did not come with:
//! django-oauth-toolkit (PyPI), started by this test from `tests/dot/server.py`
//! on 127.0.0.1. Its token endpoint is found by discovery (OpenID Connect, as
//! it serves no RFC 8414 document); the revocation endpoint is given; the lab
//! logs in once by the password grant and once from a refresh token handed to
//! it. Rotation is on there (a spent refresh token is `invalid_grant`), so one
//! refresh per generation is what keeps every scenario green.
//!
//! Needs a Python with `django-oauth-toolkit` (`.ci/run` installs one and sets
//! `REAUTH_DOT_PYTHON`); skipped without one unless `REAUTH_REQUIRE_SERVICES=1`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The python that has django-oauth-toolkit, or why there is none.
fn dot_python() -> Result<PathBuf, String> {
    let candidates = std::env::var_os("REAUTH_DOT_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("python3")]);
    for python in candidates {
        let ok = Command::new(&python)
            .args(["-c", "import oauth2_provider, jwcrypto"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(python);
        }
    }
    Err("no python with django-oauth-toolkit (set REAUTH_DOT_PYTHON)".to_owned())
}

/// The server, killed when dropped.
struct Dot {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Dot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dot {
    fn start(python: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dot/server.py");
        let child = Command::new(python)
            .arg(script)
            .arg(&port_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the django-oauth-toolkit server");
        let mut dot = Self {
            child,
            port: 0,
            _dir: dir,
        };
        let until = Instant::now() + Duration::from_secs(120);
        dot.port = loop {
            if let Ok(p) = std::fs::read_to_string(&port_file) {
                break p.trim().parse().expect("a port number");
            }
            if let Ok(Some(status)) = dot.child.try_wait() {
                panic!("the django-oauth-toolkit server exited: {status}");
            }
            assert!(
                Instant::now() < until,
                "the server did not start within 2 minutes"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        dot
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A refresh token from a password-grant login (what a user would hand over).
    fn refresh_token(&self) -> String {
        let answer: Value = form::password_login(&self.url("/o/token/"));
        answer["refresh_token"]
            .as_str()
            .expect("a refresh token")
            .to_owned()
    }
}

/// A tiny blocking HTTP/1.1 client for one form POST, so the test needs no
/// async runtime of its own.
mod form {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    pub(super) fn password_login(url: &str) -> serde_json::Value {
        let rest = url.trim_start_matches("http://");
        let (host, path) = rest.split_once('/').unwrap();
        let body = "grant_type=password&username=demo&password=demo-password";
        // reauth-lab:lab-secret
        let basic = "cmVhdXRoLWxhYjpsYWItc2VjcmV0";
        let mut conn = TcpStream::connect(host).unwrap();
        write!(
            conn,
            "POST /{path} HTTP/1.1\r\nhost: {host}\r\nauthorization: Basic {basic}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        conn.read_to_string(&mut out).unwrap();
        let json = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default();
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {out}"))
    }
}

fn lab(dot: &Dot, extra: &[&str]) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_reauth"));
    cmd.env("NO_COLOR", "1")
        .env_remove("REDIS_URL")
        .env_remove("DATABASE_URL")
        .args(["lab", "--json", "--requests", "20", "--against"])
        .arg(dot.url("/o"))
        .args(["--client-id", "reauth-lab", "--client-secret", "lab-secret"])
        .arg("--revocation-url")
        .arg(dot.url("/o/revoke_token/"))
        .args(extra);
    let output = cmd.output().expect("the reauth binary runs");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not one JSON object ({e}):\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(output.status.success(), "{report:#}");
    report
}

fn assert_passes(report: &Value) {
    assert_eq!(report["failed"], 0, "{report:#}");
    let passed: Vec<&str> = report["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["result"] == "pass")
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    for id in ["C1", "C2", "C6", "C15"] {
        assert!(passed.contains(&id), "{id} did not pass: {report:#}");
    }
    // Against a server it did not come with, the lab skips only what needs
    // fault injection (and C16 without its services).
    for s in report["scenarios"].as_array().unwrap() {
        if s["result"] == "skipped" {
            let why = s["skip_reason"].as_str().unwrap();
            assert!(why.contains("fault injection") || s["id"] == "C16", "{s:#}");
        }
    }
}

#[test]
fn lab_passes_against_django_oauth_toolkit_by_discovery_and_password_grant() {
    let python = match dot_python() {
        Ok(p) => p,
        Err(why) => return skip_or_panic(&why),
    };
    let dot = Dot::start(&python);
    let report = lab(&dot, &["--username", "demo", "--password", "demo-password"]);
    assert!(
        report["target"]
            .as_str()
            .unwrap()
            .contains(&dot.url("/o/token/")),
        "the token endpoint was discovered: {report:#}"
    );
    assert_passes(&report);
}

#[test]
fn lab_passes_against_django_oauth_toolkit_from_a_handed_over_refresh_token() {
    let python = match dot_python() {
        Ok(p) => p,
        Err(why) => return skip_or_panic(&why),
    };
    let dot = Dot::start(&python);
    let refresh_token = dot.refresh_token();
    let report = lab(&dot, &["--refresh-token", &refresh_token]);
    assert_passes(&report);
}

fn skip_or_panic(why: &str) {
    if std::env::var("REAUTH_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
        panic!("REAUTH_REQUIRE_SERVICES=1 but {why}");
    }
    eprintln!("SKIPPED: {why}");
}
