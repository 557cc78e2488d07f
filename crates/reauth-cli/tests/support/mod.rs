//! Running the built `reauth` binary as an operator would: `serve` in the
//! background, one-shot commands, and plain or TLS HTTP/1.1 requests to it.
//! Every server listens on 127.0.0.1 with port 0; nothing depends on timing
//! except generous upper bounds.

#![allow(dead_code, unreachable_pub)]

pub mod pg;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every `REAUTH_*` variable a developer may have set, so that tests see only
/// what they pass.
const REAUTH_ENV: &[&str] = &[
    "REAUTH_ADDR",
    "REAUTH_DATABASE_URL",
    "REAUTH_KEY_FILE",
    "REAUTH_ISSUER",
    "REAUTH_AUDIENCE",
    "REAUTH_TLS_CERT",
    "REAUTH_TLS_KEY",
    "REAUTH_METRICS_ADDR",
    "REAUTH_DEMO_CLIENT",
    "REAUTH_LOG_FORMAT",
    "REAUTH_ACCESS_TTL",
    "REAUTH_GRACE_WINDOW",
    "REAUTH_IDLE_TIMEOUT",
    "REAUTH_ABSOLUTE_LIFETIME",
    "REAUTH_SQLITE_SYNCHRONOUS",
    "REAUTH_JSON",
    "RUST_LOG",
];

/// The `reauth` binary with a clean environment and no colour.
pub fn reauth() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_reauth"));
    for var in REAUTH_ENV {
        cmd.env_remove(var);
    }
    cmd.env("NO_COLOR", "1");
    cmd
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a one-shot command to completion, with `stdin` as its input.
pub fn run_with_stdin(cmd: &mut Command, stdin: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the reauth binary runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("the reauth binary runs")
}

/// Runs a one-shot command that must succeed; its stdout.
pub fn ok(cmd: &mut Command) -> String {
    let output = cmd.output().expect("the reauth binary runs");
    assert!(
        output.status.success(),
        "{cmd:?} failed: {}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// A failing command's one-line error on stderr.
pub fn one_line_error(output: &Output) -> String {
    assert!(!output.status.success(), "expected a failure");
    let stderr = text(&output.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("reauth: "), "{stderr:?}");
    stderr
}

/// A scratch directory with a database and a key file path.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub db: String,
    pub keys: PathBuf,
}

impl Site {
    /// A SQLite database file and a key file in a fresh directory.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = format!("sqlite://{}", dir.path().join("reauth.db").display());
        let keys = dir.path().join("reauth-keys.json");
        Self { dir, db, keys }
    }

    /// The same, on another database (e.g. a Postgres schema).
    pub fn with_db(db: &str) -> Self {
        let mut site = Self::sqlite();
        site.db = db.to_owned();
        site
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `reauth ARGS… --db DB --key-file KEYS`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = reauth();
        cmd.args(args)
            .args(["--db", &self.db])
            .arg("--key-file")
            .arg(&self.keys);
        cmd
    }

    /// `reauth user add NAME --password-stdin`.
    pub fn add_user(&self, name: &str, password: &str) {
        let mut cmd = reauth();
        cmd.args(["user", "add", name, "--password-stdin", "--db", &self.db]);
        let output = run_with_stdin(&mut cmd, &format!("{password}\n"));
        assert!(output.status.success(), "{}", text(&output.stderr));
    }

    /// `reauth client add NAME ARGS… --json`: the registered client (with
    /// its `client_secret` if confidential).
    pub fn add_client(&self, name: &str, args: &[&str]) -> serde_json::Value {
        let out = ok(self.cmd(&["client", "add", name, "--json"]).args(args));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    /// `reauth serve --first-party-endpoints` on 127.0.0.1:0 with `extra` flags.
    pub fn serve(&self, extra: &[&str]) -> Served {
        // The tests log in through the first-party /auth/login.
        let mut cmd = self.cmd(&["serve", "--addr", "127.0.0.1:0", "--first-party-endpoints"]);
        cmd.args(extra);
        Served::spawn(cmd)
    }
}

/// A running `reauth serve`, killed when dropped.
pub struct Served {
    child: Child,
    /// `host:port` of the public listener.
    pub addr: String,
    /// `host:port` of the metrics listener, if any.
    pub metrics_addr: Option<String>,
    /// The first stdout line.
    pub banner: String,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("reauth serve starts");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_reader = {
            let mut pipe = child.stderr.take().expect("stderr");
            let sink = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            })
        };
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let Some(Ok(banner)) = lines.next() else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "reauth serve printed nothing: {}",
                text(&stderr.lock().unwrap())
            );
        };
        let addr = banner
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {banner:?}"))
            .to_owned();
        let mut metrics_addr = None;
        if cmd.get_args().any(|a| a == "--metrics-addr")
            || cmd
                .get_envs()
                .any(|(k, v)| k == "REAUTH_METRICS_ADDR" && v.is_some())
        {
            let line = lines.next().expect("a metrics line").expect("stdout");
            metrics_addr = line
                .split("http://")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .map(str::to_owned);
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            addr,
            metrics_addr,
            banner,
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit; the stderr.
    pub fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let until = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < until, "reauth serve ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "reauth serve exited with {status:?}");
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        self.stderr()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        text(&self.stderr.lock().unwrap())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One request: `Connection: close`, the body read to the end.
pub fn request(
    stream: &mut impl ReadWrite,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    stream.flush().unwrap();
    let mut raw = Vec::new();
    // A TLS peer may close without close_notify after a complete response.
    let _ = stream.read_to_end(&mut raw);
    parse(&text(&raw))
}

fn parse(raw: &str) -> Response {
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {raw:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Response {
        status,
        head: head.to_owned(),
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// `Read + Write`, for plain and TLS streams alike.
pub trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn connect(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
}

/// A plain HTTP request to `addr`.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    request(&mut connect(addr), addr, method, path, headers, body)
}

pub fn get(addr: &str, path: &str) -> Response {
    http(addr, "GET", path, &[], "")
}

/// A form POST.
pub fn post_form(addr: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
    let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    http(addr, "POST", path, &all, body)
}

/// A JSON POST.
pub fn post_json(addr: &str, path: &str, body: &serde_json::Value) -> Response {
    http(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        &body.to_string(),
    )
}

/// `Authorization: Basic` for a client id and secret (form-urlencoded
/// first, RFC 6749 §2.3.1).
pub fn basic(client_id: &str, secret: &str) -> String {
    use base64::Engine as _;
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", enc(client_id), enc(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM
/// files into `dir`: `(cert.pem, key.pem, der)`.
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf, Vec<u8>) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("a self-signed certificate");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert, key, certified.cert.der().to_vec())
}

/// An HTTPS request to `addr`, trusting only `ca_der`, for server name `name`.
pub fn https(
    addr: &str,
    name: &str,
    ca_der: &[u8],
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Response, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca_der.to_vec()))
        .map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name =
        rustls::pki_types::ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), server_name).map_err(|e| e.to_string())?;
    let mut tcp = connect(addr);
    conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    Ok(request(&mut tls, addr, method, path, headers, body))
}

/// Asserts mode `0600` (Unix).
pub fn assert_private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", path.display());
    }
}

/// The claims of a JWT (unverified).
pub fn claims(jwt: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}
