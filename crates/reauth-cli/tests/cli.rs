//! The built `reauth` binary, run as a user would. No timing assertions; only
//! 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn reauth() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_reauth"));
    cmd.env_remove("REAUTH_DATABASE_URL")
        .env_remove("REAUTH_KEY_FILE")
        .env_remove("REAUTH_ADDR")
        .env("NO_COLOR", "1");
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the reauth binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}):\n{}\nstderr:\n{}",
            text(&output.stdout),
            text(&output.stderr)
        )
    })
}

#[test]
fn demo_json_500_requests_refreshes_once() {
    let output = run(reauth().args(["demo", "--requests", "500", "--json"]));
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let summary = json_of(&output);
    let run = &summary["reauth"];
    assert_eq!(run["refresh_calls"], 1, "{summary}");
    assert_eq!(run["ok"], 500, "{summary}");
    assert_eq!(run["failed"], 0, "{summary}");
    assert_eq!(run["logouts"], 0, "{summary}");
    // Every request went out once with the broken token before the refresh.
    assert_eq!(run["unauthorized"], 500, "{summary}");
    // The contrast: without coordination a strict server sees every refresh.
    let naive = &summary["uncoordinated"];
    assert_eq!(naive["refresh_calls"], 500, "{summary}");
    assert_eq!(naive["refresh_rejected"], 499, "{summary}");
    assert_eq!(naive["family_revoked"], true, "{summary}");
    // The client-side fix alone is enough even against the strict server.
    assert_eq!(summary["reauth_strict_server"]["refresh_calls"], 1);
    assert_eq!(summary["reauth_strict_server"]["ok"], 500);
}

#[test]
fn demo_prints_the_network_log() {
    let output = run(reauth().args(["demo"]));
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("3 × 401 → 1 refresh → 3 × 200"), "{stdout}");
    assert!(
        stdout.contains("strict server, no client coordination"),
        "{stdout}"
    );
    assert!(!stdout.contains('\x1b'), "no colour when not on a terminal");
}

#[test]
fn lab_json_passes_every_scenario() {
    let output = run(reauth().args(["lab", "--json"]));
    let report = json_of(&output);
    assert!(
        output.status.success(),
        "{report:#}\nstderr: {}",
        text(&output.stderr)
    );
    let scenarios = report["scenarios"].as_array().expect("a scenario list");
    let ids: Vec<&str> = scenarios.iter().filter_map(|s| s["id"].as_str()).collect();
    for id in [
        "C1", "C2", "C3", "C4a", "C4b", "C5", "C6", "C9", "C10", "C15", "C16",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    for s in scenarios {
        // Only C16 may be skipped, and only for want of its service (it runs
        // when REDIS_URL / DATABASE_URL are set); everything else passes.
        if s["result"] == "skipped" {
            assert_eq!(s["id"], "C16", "{s:#}");
            assert!(s["skip_reason"].is_string(), "{s:#}");
        } else {
            assert_eq!(s["result"], "pass", "{s:#}");
        }
    }
    assert_eq!(report["failed"], 0, "{report:#}");
}

#[test]
fn lab_c15_processes_share_one_refresh() {
    let output = run(reauth().args(["lab", "--scenario", "C15", "--json"]));
    let report = json_of(&output);
    assert!(
        output.status.success(),
        "{report:#}\nstderr: {}",
        text(&output.stderr)
    );
    let scenarios = report["scenarios"].as_array().expect("a scenario list");
    assert_eq!(scenarios.len(), 1, "{report:#}");
    let c15 = &scenarios[0];
    assert_eq!(c15["id"], "C15", "{c15:#}");
    assert_eq!(c15["store"], "file", "{c15:#}");
    assert_eq!(c15["result"], "pass", "{c15:#}");
    assert_eq!(c15["refresh_calls"], 1, "{c15:#}");
    assert_eq!(c15["processes"], 4, "{c15:#}");
    assert_eq!(c15["ok"], 4, "{c15:#}");
    assert_eq!(c15["failed"], 0, "{c15:#}");
    assert_eq!(c15["logouts"], 0, "{c15:#}");
}

/// `var` if set; otherwise a printed skip notice, or a failure under
/// `REAUTH_REQUIRE_SERVICES=1`.
fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                !std::env::var("REAUTH_REQUIRE_SERVICES").is_ok_and(|v| v == "1"),
                "REAUTH_REQUIRE_SERVICES=1 but {var} is not set"
            );
            eprintln!(
                "SKIPPED: {var} is not set; set it (and REAUTH_REQUIRE_SERVICES=1) to run this"
            );
            None
        }
    }
}

#[test]
fn lab_c16_replicas_share_one_refresh() {
    let redis = service_url("REDIS_URL");
    let database = service_url("DATABASE_URL");
    if redis.is_none() && database.is_none() {
        return;
    }
    let mut cmd = reauth();
    // The URLs go in as flags; nothing comes from the environment.
    cmd.env_remove("REDIS_URL")
        .env_remove("DATABASE_URL")
        .args(["lab", "--scenario", "C16", "--json"]);
    if let Some(url) = &redis {
        cmd.args(["--redis-url", url]);
    }
    if let Some(url) = &database {
        cmd.args(["--database-url", url]);
    }
    let output = run(&mut cmd);
    let report = json_of(&output);
    assert!(
        output.status.success(),
        "{report:#}\nstderr: {}",
        text(&output.stderr)
    );
    let scenarios = report["scenarios"].as_array().expect("a scenario list");
    let stores: Vec<&str> = scenarios
        .iter()
        .filter_map(|s| s["store"].as_str())
        .collect();
    assert_eq!(stores, ["redis", "postgres"], "{report:#}");
    for (s, given) in scenarios.iter().zip([redis.is_some(), database.is_some()]) {
        assert_eq!(s["id"], "C16", "{s:#}");
        if !given {
            // Never a failure for a missing service.
            assert_eq!(s["result"], "skipped", "{s:#}");
            continue;
        }
        assert_eq!(s["result"], "pass", "{s:#}");
        assert_eq!(s["refresh_calls"], 1, "{s:#}");
        assert_eq!(s["processes"], 4, "{s:#}");
        assert_eq!(s["ok"], 4, "{s:#}");
        assert_eq!(s["failed"], 0, "{s:#}");
        assert_eq!(s["logouts"], 0, "{s:#}");
    }
}

#[test]
fn lab_runs_only_the_scenarios_asked_for() {
    let output = run(reauth().args(["lab", "--json", "--scenario", "C1", "--scenario", "c3"]));
    let report = json_of(&output);
    assert!(output.status.success(), "{report:#}");
    let ids: Vec<&str> = report["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(ids, ["C1", "C3"]);
}

#[test]
fn lab_rejects_an_unknown_scenario() {
    let output = run(reauth().args(["lab", "--scenario", "C99"]));
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("C99"),
        "{}",
        text(&output.stderr)
    );
}

fn one_line_error(output: &Output) -> String {
    assert!(!output.status.success(), "expected a failure");
    let stderr = text(&output.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("reauth: "), "{stderr:?}");
    stderr
}

#[test]
fn serve_with_bad_database_url_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    let output = run(reauth()
        .args(["serve", "--addr", "127.0.0.1:0", "--db", "mysql://nope/db"])
        .arg("--key-file")
        .arg(&keys));
    let stderr = one_line_error(&output);
    assert!(
        stderr.contains("cannot open database mysql://nope/db"),
        "{stderr}"
    );

    // A SQLite file in a directory that does not exist.
    let output = run(reauth()
        .args(["serve", "--addr", "127.0.0.1:0", "--db"])
        .arg(format!(
            "sqlite://{}",
            dir.path().join("missing/dir/reauth.db").display()
        ))
        .arg("--key-file")
        .arg(&keys));
    let stderr = one_line_error(&output);
    assert!(stderr.contains("cannot open database"), "{stderr}");
}

#[test]
fn serve_with_unreadable_key_file_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    // A directory cannot be read as a file, even by root.
    let output = run(reauth()
        .args(["serve", "--addr", "127.0.0.1:0", "--db", "sqlite::memory:"])
        .arg("--key-file")
        .arg(dir.path()));
    let stderr = one_line_error(&output);
    assert!(stderr.contains("cannot use key file"), "{stderr}");

    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "not json").unwrap();
    let output = run(reauth()
        .args(["serve", "--addr", "127.0.0.1:0", "--db", "sqlite::memory:"])
        .arg("--key-file")
        .arg(&garbage));
    let stderr = one_line_error(&output);
    assert!(stderr.contains("cannot use key file"), "{stderr}");
}

fn user(db: &str, args: &[&str]) -> Output {
    run(reauth().arg("user").args(args).args(["--db", db]))
}

#[test]
fn user_add_list_remove_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("users.db").display());

    let mut child = reauth()
        .args(["user", "add", "alice", "--password-stdin", "--db", &db])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));

    let listed = user(&db, &["list"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert!(
        text(&listed.stdout).starts_with("alice\t"),
        "{}",
        text(&listed.stdout)
    );

    // Adding the same user again fails, on one line.
    let mut again = reauth();
    again
        .args(["user", "add", "alice", "--password-stdin", "--db", &db])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = again.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"x\n").unwrap();
    let stderr = one_line_error(&child.wait_with_output().unwrap());
    assert!(stderr.contains("already exists"), "{stderr}");

    let removed = user(&db, &["remove", "alice"]);
    assert!(removed.status.success(), "{}", text(&removed.stderr));
    let listed = user(&db, &["list"]);
    assert_eq!(text(&listed.stdout), "");
    let stderr = one_line_error(&user(&db, &["remove", "alice"]));
    assert!(stderr.contains("no user"), "{stderr}");
}

#[test]
fn user_add_without_a_terminal_asks_for_password_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("users.db").display());
    let output = run(reauth()
        .args(["user", "add", "bob", "--db", &db])
        .stdin(Stdio::null()));
    let stderr = one_line_error(&output);
    assert!(stderr.contains("--password-stdin"), "{stderr}");
}

/// Kills the child if the test fails before it exits.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn post_form(addr: &str, path: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn wait_for_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let until = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < until,
            "reauth serve did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(unix)]
#[test]
fn serve_answers_healthz_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.json");
    let child = reauth()
        .args(["serve", "--addr", "127.0.0.1:0"])
        .arg("--db")
        .arg(format!(
            "sqlite://{}",
            dir.path().join("serve.db").display()
        ))
        .arg("--key-file")
        .arg(&keys)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = Guard(child);
    let mut lines = BufReader::new(guard.0.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a first line").unwrap();
    let addr = first
        .split("listening on http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_owned();

    let response = get(&addr, "/healthz");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_key_file_is_private(&keys);
    // The demo client's secret is public: `serve` registers it only when asked.
    let demo = post_form(
        &addr,
        "/oauth/token",
        "grant_type=client_credentials&client_id=reauth-demo&client_secret=reauth-demo-secret",
    );
    assert!(demo.starts_with("HTTP/1.1 401"), "{demo}");
    assert!(demo.contains("invalid_client"), "{demo}");

    let pid = guard.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let status = wait_for_exit(&mut guard.0, Duration::from_secs(60));
    assert!(status.success(), "exit status {status:?}");
}

/// S13: SIGTERM ends `reauth serve` within its shutdown deadline even while
/// clients hold connections open (one half-way through a request line, one
/// idle) — before, one half-sent request line kept it running forever.
#[cfg(unix)]
#[test]
fn s13_sigterm_exits_within_the_deadline_whatever_the_clients_do() {
    let dir = tempfile::tempdir().unwrap();
    let child = reauth()
        .args(["serve", "--addr", "127.0.0.1:0", "--db", "sqlite::memory:"])
        .args(["--shutdown-deadline", "2s", "--header-timeout", "1h"])
        .arg("--key-file")
        .arg(dir.path().join("keys.json"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = Guard(child);
    let mut lines = BufReader::new(guard.0.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a first line").unwrap();
    let addr = first
        .split("listening on http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_owned();
    let mut half = TcpStream::connect(&addr).unwrap();
    half.write_all(b"GET /heal").unwrap();
    let _idle = TcpStream::connect(&addr).unwrap();
    // Make sure the server has taken both connections in.
    assert!(get(&addr, "/healthz").starts_with("HTTP/1.1 200"));

    let pid = guard.0.id().to_string();
    let sent = Instant::now();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    // 2 s deadline; the rest is slack for a loaded machine.
    let status = wait_for_exit(&mut guard.0, Duration::from_secs(30));
    assert!(status.success(), "exit status {status:?}");
    assert!(
        sent.elapsed() >= Duration::from_secs(2),
        "did not wait for the clients at all"
    );
}

#[cfg(unix)]
fn assert_key_file_is_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
}

#[test]
fn o6_help_never_shows_the_database_password_from_the_environment() {
    for command in [
        &["serve", "--help"][..],
        &["user", "add", "--help"],
        &["client", "list", "--help"],
    ] {
        let output = run(reauth().args(command).env(
            "REAUTH_DATABASE_URL",
            "postgres://app:hunter2@db.local/reauth",
        ));
        assert!(
            output.status.success(),
            "{command:?}: {}",
            text(&output.stderr)
        );
        let help = text(&output.stdout);
        assert!(help.contains("REAUTH_DATABASE_URL"), "{command:?}: {help}");
        assert!(!help.contains("hunter2"), "{command:?}: {help}");
    }
}
