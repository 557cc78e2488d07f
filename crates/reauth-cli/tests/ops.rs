//! DESIGN.md §4.7 — operating the server, through the built `reauth` binary:
//! one test (or more) per row O1–O11, named after it.

mod support;

use std::process::Command;

use serde_json::{Value, json};
use support::{Served, Site, get, http, ok, one_line_error, post_form, post_json, reauth};

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery";

/// The `kid` in a JWT's header.
fn kid_of(jwt: &str) -> String {
    use base64::Engine as _;
    let header = jwt.split('.').next().expect("a JWT");
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .expect("base64url header");
    let header: Value = serde_json::from_slice(&header).expect("JSON header");
    header["kid"].as_str().expect("a kid").to_owned()
}

fn login(served: &Served) -> Value {
    let response = post_json(
        &served.addr,
        "/auth/login",
        &json!({"username": USER, "password": PASSWORD}),
    );
    assert_eq!(response.status, 200, "{}", response.body);
    response.json()
}

fn resource_status(served: &Served, access_token: &str) -> u16 {
    let bearer = format!("Bearer {access_token}");
    http(
        &served.addr,
        "GET",
        "/api/resources",
        &[("Authorization", &bearer)],
        "",
    )
    .status
}

// ---------------------------------------------------------------- O5 TLS

#[test]
fn o5_tls_serves_https_and_the_metadata_names_https_endpoints() {
    let site = Site::sqlite();
    let (cert, key, ca) = support::self_signed(site.dir.path());
    let served = site.serve(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    assert!(
        served.banner.contains("https://127.0.0.1:"),
        "{}",
        served.banner
    );
    let issuer = format!("https://{}", served.addr);

    let response = support::https(
        &served.addr,
        "localhost",
        &ca,
        "GET",
        "/.well-known/oauth-authorization-server",
        &[],
        "",
    )
    .expect("a TLS connection trusting the certificate");
    assert_eq!(response.status, 200, "{}", response.body);
    // HSTS with TLS (RFC 6797): no later visit over plain HTTP.
    assert_eq!(
        response.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    let metadata = response.json();
    assert_eq!(metadata["issuer"], issuer.as_str());
    for endpoint in [
        "token_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
        "jwks_uri",
    ] {
        let url = metadata[endpoint].as_str().unwrap();
        assert!(url.starts_with(&issuer), "{endpoint}: {url}");
    }
    let health =
        support::https(&served.addr, "127.0.0.1", &ca, "GET", "/healthz", &[], "").unwrap();
    assert_eq!(health.status, 200);

    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut stream = std::net::TcpStream::connect(&served.addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    use std::io::{Read as _, Write as _};
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/1.1 200"),
        "plain HTTP was served"
    );

    // A client that does not trust the certificate cannot connect.
    let (_, _, other_ca) = support::self_signed(&site.path(""));
    assert!(
        support::https(
            &served.addr,
            "localhost",
            &other_ca,
            "GET",
            "/healthz",
            &[],
            ""
        )
        .is_err()
    );
    served.stop();
}

#[test]
fn o5_a_wildcard_address_needs_an_explicit_issuer() {
    let site = Site::sqlite();
    for addr in ["0.0.0.0:0", "[::]:0"] {
        // Refused before anything is bound or created.
        let output = site.cmd(&["serve", "--addr", addr]).output().unwrap();
        let stderr = one_line_error(&output);
        assert!(stderr.contains("--issuer"), "{stderr}");
        assert!(!site.keys.exists());
    }
    // An explicit issuer is what clients and tokens see.
    let served = site.serve(&["--issuer", "https://auth.example.test/"]);
    let response = get(&served.addr, "/.well-known/oauth-authorization-server");
    // No HSTS over plain HTTP (it would be ignored, and TLS is a proxy's).
    assert_eq!(response.header("strict-transport-security"), None);
    let metadata = response.json();
    assert_eq!(metadata["issuer"], "https://auth.example.test");
    assert_eq!(
        metadata["token_endpoint"],
        "https://auth.example.test/oauth/token"
    );
    served.stop();

    let output = site
        .cmd(&[
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--issuer",
            "https://x.test/?a=b",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(support::text(&output.stderr).contains("no query"));
}

#[test]
fn o5_unusable_tls_files_fail_on_one_line() {
    let site = Site::sqlite();
    let garbage = site.path("garbage.pem");
    std::fs::write(&garbage, "not pem").unwrap();
    let (cert, _, _) = support::self_signed(site.dir.path());
    for (c, k) in [
        (&garbage, &garbage),
        (&cert, &site.path("missing.pem")),
        (&cert, &cert),
    ] {
        let output = site
            .cmd(&["serve", "--addr", "127.0.0.1:0"])
            .arg("--tls-cert")
            .arg(c)
            .arg("--tls-key")
            .arg(k)
            .output()
            .unwrap();
        let stderr = one_line_error(&output);
        assert!(stderr.contains("cannot use TLS"), "{stderr}");
    }
    // One without the other is a usage error.
    let output = site
        .cmd(&["serve", "--addr", "127.0.0.1:0"])
        .arg("--tls-cert")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(support::text(&output.stderr).contains("--tls-key"));
}

// ---------------------------------------------------------------- O7 health

#[test]
fn o7_metrics_can_be_kept_off_the_public_listener() {
    let site = Site::sqlite();
    // By default /metrics is public.
    let served = site.serve(&[]);
    assert_eq!(get(&served.addr, "/healthz").status, 200);
    let metrics = get(&served.addr, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("reauth_"), "{}", metrics.body);
    served.stop();

    let served = site.serve(&["--metrics-addr", "127.0.0.1:0"]);
    assert_eq!(get(&served.addr, "/healthz").status, 200);
    let private = served.metrics_addr.clone().expect("a metrics address");
    assert_ne!(private, served.addr);
    let public = get(&served.addr, "/metrics");
    assert_eq!(public.status, 404, "{}", public.body);
    assert_eq!(public.json()["error"], "invalid_request");
    let metrics = get(&private, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .body
            .contains("reauth_http_request_duration_seconds")
    );
    assert_eq!(get(&private, "/healthz").status, 200);
    assert_eq!(get(&served.addr, "/healthz").status, 200);
    // Only the operator's endpoints are on the private listener.
    assert_eq!(get(&private, "/.well-known/jwks.json").status, 404);
    served.stop();
}

// ---------------------------------------------------------------- O8 keys

#[test]
fn o8_key_rotation_keeps_old_tokens_verifying_and_nobody_logged_out() {
    let site = Site::sqlite();
    site.add_user(USER, PASSWORD);
    // The issuer is fixed (as in production): the port changes between runs.
    let issuer = ["--issuer", "http://reauth.test"];
    let served = site.serve(&issuer);
    let before = login(&served);
    let old_access = before["access_token"].as_str().unwrap().to_owned();
    let old_kid = kid_of(&old_access);
    served.stop();

    let rotated = ok(reauth()
        .args(["keys", "rotate", "--key-file"])
        .arg(&site.keys));
    assert!(rotated.contains(&old_kid), "{rotated}");
    let listed: Value = serde_json::from_str(&ok(reauth()
        .args(["keys", "list", "--json", "--key-file"])
        .arg(&site.keys)))
    .unwrap();
    let keys = listed["signing_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{listed}");
    assert_eq!(keys[1]["kid"], old_kid.as_str());
    assert_eq!(keys[1]["active"], false);
    let new_kid = keys[0]["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    support::assert_private(&site.keys);

    let served = site.serve(&issuer);
    // The JWKS publishes both keys; the old access token still verifies.
    let jwks = get(&served.addr, "/.well-known/jwks.json").json();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [new_kid.as_str(), old_kid.as_str()]);
    assert_eq!(resource_status(&served, &old_access), 200);
    // The refresh token from before the rotation still refreshes, and the new
    // access token is signed with the new key.
    let refreshed = post_json(
        &served.addr,
        "/auth/refresh",
        &json!({"refresh_token": before["refresh_token"]}),
    );
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    let new_access = refreshed.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(kid_of(&new_access), new_kid);
    assert_eq!(resource_status(&served, &new_access), 200);
    served.stop();
}

/// Two-phase rotation for several replicas: `keys stage` publishes a key
/// that signs nothing; `keys rotate` then activates that very key.
#[test]
fn o8_keys_stage_publishes_a_key_that_rotate_then_activates() {
    let site = Site::sqlite();
    site.add_user(USER, PASSWORD);
    let issuer = ["--issuer", "http://reauth.test"];
    let served = site.serve(&issuer);
    let old_kid = kid_of(login(&served)["access_token"].as_str().unwrap());
    served.stop();
    let list = || -> Value {
        serde_json::from_str(&ok(reauth()
            .args(["keys", "list", "--json", "--key-file"])
            .arg(&site.keys)))
        .unwrap()
    };

    ok(reauth()
        .args(["keys", "stage", "--key-file"])
        .arg(&site.keys));
    support::assert_private(&site.keys);
    let listed = list();
    let keys = listed["signing_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{listed}");
    assert_eq!(keys[0]["kid"], old_kid.as_str());
    assert_eq!(keys[0]["active"], true);
    assert_eq!(keys[1]["staged"], true);
    let next = keys[1]["kid"].as_str().unwrap().to_owned();
    // Published and verifying, but the old key still signs.
    let served = site.serve(&issuer);
    let jwks = get(&served.addr, "/.well-known/jwks.json").json();
    assert!(jwks.to_string().contains(&next), "{jwks}");
    assert_eq!(
        kid_of(login(&served)["access_token"].as_str().unwrap()),
        old_kid
    );
    served.stop();

    let rotated = ok(reauth()
        .args(["keys", "rotate", "--key-file"])
        .arg(&site.keys));
    assert!(rotated.contains(&next), "{rotated}");
    let served = site.serve(&issuer);
    assert_eq!(
        kid_of(login(&served)["access_token"].as_str().unwrap()),
        next
    );
    served.stop();
}

/// A key file that group or others may read is refused, on one line.
#[cfg(unix)]
#[test]
fn o8_a_key_file_others_may_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let site = Site::sqlite();
    site.serve(&[]).stop();
    std::fs::set_permissions(&site.keys, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = site
        .cmd(&["serve", "--addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = one_line_error(&output);
    assert!(stderr.contains("chmod 600"), "{stderr}");
}

// ---------------------------------------------------------------- O11 files

/// Listing reads: with a mistyped --db or --key-file it fails on one line
/// and creates nothing.
#[test]
fn o11_list_commands_create_no_database_or_key_file() {
    let site = Site::sqlite();
    let user_list = || {
        let mut cmd = reauth();
        cmd.args(["user", "list", "--db", &site.db]);
        cmd
    };
    for output in [
        site.cmd(&["client", "list"]).output().unwrap(),
        user_list().output().unwrap(),
    ] {
        let stderr = one_line_error(&output);
        assert!(stderr.contains("no database"), "{stderr}");
    }
    assert!(std::fs::read_dir(site.dir.path()).unwrap().next().is_none());
    // With the database there but no key file, client list says so.
    site.add_user(USER, PASSWORD);
    assert!(!site.keys.exists());
    let output = site.cmd(&["client", "list"]).output().unwrap();
    assert!(one_line_error(&output).contains("no key file"));
    assert!(!site.keys.exists());
    assert!(ok(&mut user_list()).contains(USER));
}

// ---------------------------------------------------------------- O9 demo client

/// `reauth serve` has no /auth/* unless --first-party-endpoints is given.
#[test]
fn o9_first_party_endpoints_need_their_flag() {
    let site = Site::sqlite();
    site.add_user(USER, PASSWORD);
    let served = Served::spawn(site.cmd(&["serve", "--addr", "127.0.0.1:0"]));
    let response = post_json(
        &served.addr,
        "/auth/login",
        &json!({"username": USER, "password": PASSWORD}),
    );
    assert_eq!(response.status, 404, "{}", response.body);
    served.stop();
    let served = site.serve(&[]);
    login(&served);
    served.stop();
}

#[test]
fn o9_the_demo_client_works_only_with_demo_client() {
    let site = Site::sqlite();
    let demo = support::basic("reauth-demo", "reauth-demo-secret");
    let credentials = |served: &Served| {
        post_form(
            &served.addr,
            "/oauth/token",
            &[("Authorization", &demo)],
            "grant_type=client_credentials",
        )
    };
    let served = site.serve(&["--demo-client"]);
    let response = credentials(&served);
    assert_eq!(response.status, 200, "{}", response.body);
    served.stop();

    // The same database, without the flag: the stored demo client is dead.
    let served = site.serve(&[]);
    let response = credentials(&served);
    assert_eq!(response.status, 401, "{}", response.body);
    assert_eq!(response.json()["error"], "invalid_client");
    served.stop();
}

// ---------------------------------------------------------------- O11 files

/// Every option of every operator command names its environment variable in
/// `--help` (clap prints `[env: NAME=…]` for options that have one).
#[test]
fn o11_every_flag_has_an_environment_variable() {
    let commands: &[&[&str]] = &[
        &["serve"],
        &["user", "add"],
        &["user", "remove"],
        &["user", "list"],
        &["keys", "list"],
        &["keys", "rotate"],
        &["client", "add"],
        &["client", "list"],
        &["client", "remove"],
        &["client", "rotate-secret"],
    ];
    for command in commands {
        let help = ok(reauth().args(*command).arg("--help"));
        let options = help
            .split("Options:")
            .nth(1)
            .unwrap_or_else(|| panic!("no options in {command:?} --help"));
        // One entry per option: its first line starts with `-x, --name` or `--name`.
        let mut entries: Vec<String> = Vec::new();
        for line in options.lines() {
            let trimmed = line.trim_start();
            if trimmed.starts_with('-') && line.len() - trimmed.len() <= 6 {
                entries.push(String::new());
            }
            if let Some(entry) = entries.last_mut() {
                entry.push_str(trimmed);
                entry.push(' ');
            }
        }
        assert!(!entries.is_empty(), "{help}");
        for entry in entries {
            if entry.starts_with("-h, --help") || entry.starts_with("-V, --version") {
                continue;
            }
            assert!(
                entry.contains("[env: "),
                "`reauth {}` option without an environment variable: {entry}",
                command.join(" ")
            );
        }
    }
}

#[test]
fn o11_the_database_and_key_file_are_created_0600_at_the_documented_paths() {
    let dir = tempfile::tempdir().unwrap();
    // No --db, no --key-file: the documented defaults, in the working directory.
    let mut cmd = reauth();
    cmd.args(["serve", "--addr", "127.0.0.1:0"])
        .current_dir(dir.path());
    let served = Served::spawn(cmd);
    assert!(
        served.banner.contains("database sqlite://reauth.db"),
        "{}",
        served.banner
    );
    // A write, so that SQLite's -wal and -shm files exist too.
    assert_eq!(get(&served.addr, "/readyz").status, 200);
    served.stop();
    for name in [
        "reauth.db",
        "reauth.db-wal",
        "reauth.db-shm",
        "reauth-keys.json",
    ] {
        let path = dir.path().join(name);
        if name.ends_with("-wal") || name.ends_with("-shm") {
            // Checkpointed away at a clean shutdown, or still there: private if so.
            if !path.exists() {
                continue;
            }
        }
        support::assert_private(&path);
    }
}

#[test]
fn o11_serve_is_configured_by_environment_alone() {
    let site = Site::sqlite();
    let (cert, key, ca) = support::self_signed(site.dir.path());
    let mut cmd: Command = reauth();
    cmd.arg("serve")
        .env("REAUTH_ADDR", "127.0.0.1:0")
        .env("REAUTH_DATABASE_URL", &site.db)
        .env("REAUTH_KEY_FILE", &site.keys)
        .env("REAUTH_TLS_CERT", &cert)
        .env("REAUTH_TLS_KEY", &key)
        .env("REAUTH_METRICS_ADDR", "127.0.0.1:0")
        .env("REAUTH_ISSUER", "https://auth.example.test")
        .env("REAUTH_AUDIENCE", "my-api")
        .env("REAUTH_ACCESS_TTL", "90s")
        .env("REAUTH_LOG_FORMAT", "json")
        .env("REAUTH_DEMO_CLIENT", "true");
    let served = Served::spawn(cmd);
    let metadata = support::https(
        &served.addr,
        "localhost",
        &ca,
        "GET",
        "/.well-known/oauth-authorization-server",
        &[],
        "",
    )
    .unwrap()
    .json();
    assert_eq!(metadata["issuer"], "https://auth.example.test");
    let demo = support::basic("reauth-demo", "reauth-demo-secret");
    let token = support::https(
        &served.addr,
        "localhost",
        &ca,
        "POST",
        "/oauth/token",
        &[
            ("Authorization", &demo),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        "grant_type=client_credentials",
    )
    .unwrap();
    assert_eq!(token.status, 200, "{}", token.body);
    let claims = support::claims(token.json()["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "my-api");
    assert_eq!(claims["iss"], "https://auth.example.test");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        90
    );
    let private = served.metrics_addr.clone().expect("REAUTH_METRICS_ADDR");
    assert_eq!(get(&private, "/metrics").status, 200);
    support::assert_private(&site.keys);
    let stderr = served.stop();
    let first = stderr.lines().next().expect("a log line");
    let line: Value = serde_json::from_str(first).expect("REAUTH_LOG_FORMAT=json");
    assert!(line["level"].is_string(), "{line}");
}

// ---------------------------------------------------------------- O1 clients

/// A password grant at `/oauth/token` with HTTP Basic (or the public
/// client's id in the form): the status and body.
fn password_grant(served: &Served, client_id: &str, secret: Option<&str>) -> support::Response {
    let body = format!("grant_type=password&username={USER}&password=correct%20horse%20battery");
    match secret {
        Some(secret) => post_form(
            &served.addr,
            "/oauth/token",
            &[("Authorization", &support::basic(client_id, secret))],
            &body,
        ),
        None => post_form(
            &served.addr,
            "/oauth/token",
            &[],
            &format!("{body}&client_id={client_id}"),
        ),
    }
}

/// A redirect URI may hold a comma: `--redirect-uri` splits lists on
/// spaces (which no URI holds), so it is registered whole.
#[test]
fn o1_a_redirect_uri_with_a_comma_is_registered_whole() {
    let site = Site::sqlite();
    let spa = site.add_client(
        "spa",
        &[
            "--public",
            "--redirect-uri",
            "https://app.example/cb?tabs=a,b https://app.example/other",
        ],
    );
    assert_eq!(
        spa["redirect_uris"],
        json!([
            "https://app.example/cb?tabs=a,b",
            "https://app.example/other"
        ])
    );
}

/// `reauth client update` changes only what it is given, keeps the secret
/// and the sessions, and a running server sees it at once.
#[test]
fn o1_client_update_changes_a_running_servers_client() {
    let site = Site::sqlite();
    site.add_user(USER, PASSWORD);
    let served = site.serve(&[]);
    let app = site.add_client("app", &["--scope", "read"]);
    let secret = app["client_secret"].as_str().unwrap().to_owned();
    let granted = password_grant(&served, "app", Some(&secret));
    assert_eq!(granted.json()["scope"], "read");
    let session = granted.json();

    let updated: Value = serde_json::from_str(&ok(&mut site.cmd(&[
        "client",
        "update",
        "app",
        "--scope",
        "read write",
        "--default-scope",
        "read write",
        "--json",
    ])))
    .unwrap();
    assert_eq!(updated["scope"], "read write");
    assert_eq!(updated["grant_types"], json!(["password", "refresh_token"]));
    assert!(updated.get("client_secret").is_none(), "{updated}");
    // The secret still works; the new default is granted; the old session
    // refreshes.
    let granted = password_grant(&served, "app", Some(&secret));
    assert_eq!(granted.status, 200, "{}", granted.body);
    assert_eq!(granted.json()["scope"], "read write");
    let refreshed = post_form(
        &served.addr,
        "/oauth/token",
        &[("Authorization", &support::basic("app", &secret))],
        &format!(
            "grant_type=refresh_token&refresh_token={}",
            session["refresh_token"].as_str().unwrap()
        ),
    );
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    // Only what is given changes: grant types now, scopes kept.
    let updated: Value = serde_json::from_str(&ok(&mut site.cmd(&[
        "client",
        "update",
        "app",
        "--grant-type",
        "client_credentials",
        "--json",
    ])))
    .unwrap();
    assert_eq!(updated["grant_types"], json!(["client_credentials"]));
    assert_eq!(updated["scope"], "read write");
    assert_eq!(password_grant(&served, "app", Some(&secret)).status, 400);
    // Refused, on one line: no such client, a bad redirect URI.
    let missing = site
        .cmd(&["client", "update", "nobody", "--scope", "x"])
        .output()
        .unwrap();
    assert!(one_line_error(&missing).contains("no client"));
    let bad = site
        .cmd(&[
            "client",
            "update",
            "app",
            "--redirect-uri",
            "http://evil.example/cb",
        ])
        .output()
        .unwrap();
    assert!(one_line_error(&bad).contains("redirect URI"));
    served.stop();
}

/// O1 on one database: every `reauth client` command takes effect on the
/// running server at once.
fn clients_take_effect_without_restart(site: &Site) {
    site.add_user(USER, PASSWORD);
    let served = site.serve(&[]);

    let app = site.add_client("app", &["--scope", "read write", "--default-scope", "read"]);
    let secret = app["client_secret"]
        .as_str()
        .expect("a secret, once")
        .to_owned();
    assert_eq!(app["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(app["grant_types"], json!(["password", "refresh_token"]));
    let granted = password_grant(&served, "app", Some(&secret));
    assert_eq!(granted.status, 200, "{}", granted.body);
    assert_eq!(granted.json()["scope"], "read");
    let session = granted.json();

    let spa = site.add_client(
        "spa",
        &["--public", "--redirect-uri", "http://127.0.0.1/callback"],
    );
    assert!(spa.get("client_secret").is_none(), "{spa}");
    assert_eq!(spa["token_endpoint_auth_method"], "none");
    // A public client gets the password grant only when listed (anyone
    // can pose as it).
    assert_eq!(
        spa["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    let public = password_grant(&served, "spa", None);
    assert_eq!(public.status, 400, "{}", public.body);
    assert_eq!(public.json()["error"], "unauthorized_client");

    // Listed, never with a secret.
    let listed = ok(&mut site.cmd(&["client", "list", "--json"]));
    let list: Value = serde_json::from_str(&listed).unwrap();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["app", "spa"]);
    assert!(!listed.contains(&secret));
    let text = ok(&mut site.cmd(&["client", "list"]));
    assert!(text.starts_with("app\tconfidential\t"), "{text}");
    assert!(!text.contains(&secret));
    // A second `add` of the same id fails on one line.
    let again = site.cmd(&["client", "add", "app"]).output().unwrap();
    assert!(one_line_error(&again).contains("already exists"));

    // A rotated secret replaces the old one at once.
    let rotated: Value = serde_json::from_str(&ok(&mut site.cmd(&[
        "client",
        "rotate-secret",
        "app",
        "--json",
    ])))
    .unwrap();
    let new_secret = rotated["client_secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    let old = password_grant(&served, "app", Some(&secret));
    assert_eq!(old.status, 401, "{}", old.body);
    assert_eq!(old.json()["error"], "invalid_client");
    assert_eq!(
        password_grant(&served, "app", Some(&new_secret)).status,
        200
    );
    // A public client has no secret to rotate.
    let refused = site
        .cmd(&["client", "rotate-secret", "spa"])
        .output()
        .unwrap();
    let why = one_line_error(&refused);
    assert!(why.contains("public") && why.contains("no secret"), "{why}");

    // Removal: no new tokens, the client's sessions revoked.
    ok(&mut site.cmd(&["client", "remove", "app"]));
    assert_eq!(
        password_grant(&served, "app", Some(&new_secret)).status,
        401
    );
    let refresh = post_form(
        &served.addr,
        "/oauth/token",
        &[("Authorization", &support::basic("app", &new_secret))],
        &format!(
            "grant_type=refresh_token&refresh_token={}",
            session["refresh_token"].as_str().unwrap()
        ),
    );
    assert_eq!(refresh.status, 401, "{}", refresh.body);
    // Its access tokens are refused once the server has polled the revocations.
    let access = session["access_token"].as_str().unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while resource_status(&served, access) != 401 {
        assert!(
            std::time::Instant::now() < until,
            "a removed client's access token is still accepted"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let missing = site.cmd(&["client", "remove", "app"]).output().unwrap();
    assert!(one_line_error(&missing).contains("no client"));
    served.stop();
}

#[test]
fn o1_reauth_client_commands_take_effect_on_a_running_server_sqlite() {
    let site = Site::sqlite();
    clients_take_effect_without_restart(&site);
    // The secret is stored keyed-hashed: it is nowhere in the database files.
    let app = site.add_client("stored", &[]);
    let secret = app["client_secret"].as_str().unwrap();
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(site.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains("reauth.db") {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(!bytes.is_empty());
    assert!(
        !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the client secret is stored in clear"
    );
}

#[test]
fn o1_reauth_client_commands_take_effect_on_a_running_server_postgres() {
    let Some(pg) =
        support::pg::schema("o1_reauth_client_commands_take_effect_on_a_running_server_postgres")
    else {
        return;
    };
    clients_take_effect_without_restart(&Site::with_db(&pg.url));
}

// ---------------------------------------------------------------- O6 logs

#[test]
fn o6_logs_carry_audit_events_and_never_a_secret() {
    let site = Site::sqlite();
    site.add_user(USER, PASSWORD);
    let add = site
        .cmd(&["client", "add", "app", "--json", "--log-format", "json"])
        .output()
        .unwrap();
    assert!(add.status.success(), "{}", support::text(&add.stderr));
    let secret = serde_json::from_slice::<Value>(&add.stdout).unwrap()["client_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin_log = support::text(&add.stderr);

    let mut cmd = site.cmd(&[
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--grace-window",
        "0",
        "--log-format",
        "json",
    ]);
    cmd.env("RUST_LOG", "debug");
    let served = Served::spawn(cmd);
    let basic = support::basic("app", &secret);
    let token = |body: &str| {
        post_form(
            &served.addr,
            "/oauth/token",
            &[("Authorization", &basic)],
            body,
        )
    };
    // A failed login, a failed client authentication, a reuse.
    let wrong = token(&format!(
        "grant_type=password&username={USER}&password=not-it"
    ));
    assert_eq!(wrong.status, 400);
    let bad_client = post_form(
        &served.addr,
        "/oauth/token",
        &[("Authorization", &support::basic("app", "wrong-secret"))],
        "grant_type=password&username=alice&password=x",
    );
    assert_eq!(bad_client.status, 401);
    let first = token(&format!(
        "grant_type=password&username={USER}&password=correct%20horse%20battery"
    ))
    .json();
    let t1 = first["refresh_token"].as_str().unwrap().to_owned();
    let second = token(&format!("grant_type=refresh_token&refresh_token={t1}")).json();
    let reuse = token(&format!("grant_type=refresh_token&refresh_token={t1}"));
    assert_eq!(reuse.json()["error"], "invalid_grant");
    // A revocation by the client.
    let third = token(&format!(
        "grant_type=password&username={USER}&password=correct%20horse%20battery"
    ))
    .json();
    let t3 = third["refresh_token"].as_str().unwrap().to_owned();
    let revoked = post_form(
        &served.addr,
        "/oauth/revoke",
        &[("Authorization", &basic)],
        &format!("token={t3}"),
    );
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let log = served.stop();

    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let audit = |event: &str| {
        lines
            .iter()
            .chain(
                admin_log
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .collect::<Vec<_>>()
                    .iter(),
            )
            .filter(|l| l["target"] == "reauth::audit" && l["event"] == event)
            .cloned()
            .collect::<Vec<Value>>()
    };
    let failed = audit("login_failed");
    assert_eq!(failed.len(), 1, "{log}");
    assert_eq!(failed[0]["username"], USER);
    assert_eq!(failed[0]["client_id"], "app");
    assert_eq!(audit("client_auth_failed").len(), 1, "{log}");
    let reuse = audit("reuse_detected");
    assert_eq!(reuse.len(), 1, "{log}");
    assert_eq!(reuse[0]["level"], "WARN");
    assert_eq!(
        (reuse[0]["presented"].as_i64(), reuse[0]["current"].as_i64()),
        (Some(1), Some(2))
    );
    let revoked = audit("family_revoked");
    assert_eq!(revoked.len(), 2, "{log}");
    assert_eq!(revoked[0]["reason"], "reuse_detected");
    assert_eq!(revoked[1]["reason"], "revoked");
    // Successes too: logins, sessions, tokens issued (grant and client).
    let logins = audit("login_succeeded");
    assert_eq!(logins.len(), 2, "{log}");
    assert_eq!(
        (&logins[0]["username"], &logins[0]["client_id"]),
        (&json!(USER), &json!("app"))
    );
    assert_eq!(audit("session_started").len(), 2, "{log}");
    let issued: Vec<String> = audit("token_issued")
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["grant_type"].as_str().unwrap(),
                e["client_id"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        issued,
        ["password app", "refresh_token app", "password app"],
        "{log}"
    );
    assert_eq!(audit("client_added").len(), 1, "{admin_log}");

    // No secret anywhere: passwords, client secrets, tokens, keys.
    let keys: Value = serde_json::from_slice(&std::fs::read(&site.keys).unwrap()).unwrap();
    let mut secrets = vec![
        PASSWORD.to_owned(),
        "correct horse battery".to_owned(),
        "not-it".to_owned(),
        "wrong-secret".to_owned(),
        secret.clone(),
        keys["refresh_mac_key"].as_str().unwrap().to_owned(),
        keys["client_pepper"].as_str().unwrap().to_owned(),
        keys["signing_keys"][0]["ed25519_seed"]
            .as_str()
            .unwrap()
            .to_owned(),
    ];
    for body in [&first, &second, &third] {
        for field in ["access_token", "refresh_token"] {
            secrets.push(body[field].as_str().unwrap().to_owned());
        }
    }
    for s in &secrets {
        assert!(
            !log.contains(s.as_str()),
            "a secret is in the server log: {s}"
        );
        assert!(
            !admin_log.contains(s.as_str()),
            "a secret is in the admin log"
        );
        // Nor a recognisable piece of a token (a signature, a MAC).
        if s.len() > 40 {
            assert!(
                !log.contains(&s[s.len() - 32..]),
                "part of a secret is logged"
            );
        }
    }
}

#[test]
fn o6_rust_log_filters_text_logs() {
    let site = Site::sqlite();
    site.add_user(USER, PASSWORD);
    let app = site.add_client("app", &[]);
    let secret = app["client_secret"].as_str().unwrap();
    let mut cmd = site.cmd(&["serve", "--addr", "127.0.0.1:0"]);
    cmd.env("RUST_LOG", "warn");
    let served = Served::spawn(cmd);
    let wrong = password_grant(&served, "app", Some("wrong"));
    assert_eq!(wrong.status, 401);
    // A burst of failed logins ends rate limited: a warning.
    for _ in 0..20 {
        let response = post_form(
            &served.addr,
            "/oauth/token",
            &[("Authorization", &support::basic("app", secret))],
            &format!("grant_type=password&username={USER}&password=nope"),
        );
        if response.status == 429 {
            break;
        }
    }
    let log = served.stop();
    assert!(
        !log.contains(" INFO "),
        "RUST_LOG=warn shows no info: {log}"
    );
    assert!(log.contains("WARN"), "{log}");
    assert!(log.contains("login rate limited"), "{log}");
    assert!(
        serde_json::from_str::<Value>(log.lines().next().unwrap()).is_err(),
        "text, not JSON"
    );
}

// ---------------------------------------------------------------- O7 readiness

#[test]
fn o7_readiness_follows_the_database_postgres() {
    let Some(pg) = support::pg::schema("o7_readiness_follows_the_database_postgres") else {
        return;
    };
    let site = Site::with_db(&pg.url);
    let served = site.serve(&["--metrics-addr", "127.0.0.1:0"]);
    let private = served.metrics_addr.clone().unwrap();
    assert_eq!(get(&served.addr, "/readyz").status, 200);
    assert_eq!(get(&private, "/readyz").status, 200);
    {
        // Another session locks the table readiness reads: the database
        // does not answer within the server's wait.
        let _lock = pg.hold("LOCK TABLE settings IN ACCESS EXCLUSIVE MODE");
        let response = get(&served.addr, "/readyz");
        assert_eq!(response.status, 503, "{}", response.body);
        assert_eq!(response.json()["error"], "temporarily_unavailable");
        assert!(response.header("retry-after").is_some());
        // Liveness is not readiness.
        assert_eq!(get(&served.addr, "/healthz").status, 200);
    }
    assert_eq!(get(&served.addr, "/readyz").status, 200);
    served.stop();
}

// ---------------------------------------------------------------- O8 keys

#[test]
fn o8_a_server_with_another_key_file_refuses_to_start() {
    let site = Site::sqlite();
    site.serve(&[]).stop();
    let other = site.path("other-keys.json");
    let output = reauth()
        .args(["serve", "--addr", "127.0.0.1:0", "--db", &site.db])
        .arg("--key-file")
        .arg(&other)
        .output()
        .unwrap();
    let stderr = one_line_error(&output);
    assert!(stderr.contains("other keys"), "{stderr}");
    assert!(stderr.contains("same key file"), "{stderr}");
    assert!(!other.exists(), "the refused key file is not left behind");
    // A key file that cannot be created leaves nothing behind either.
    let output = reauth()
        .args(["serve", "--addr", "127.0.0.1:0", "--db", &site.db])
        .arg("--key-file")
        .arg(site.path("missing/keys.json"))
        .output()
        .unwrap();
    assert!(one_line_error(&output).contains("cannot use key file"));
    assert!(!site.path("missing").exists());
}

#[test]
fn o8_a_replica_with_another_key_file_refuses_to_start_postgres() {
    let Some(pg) =
        support::pg::schema("o8_a_replica_with_another_key_file_refuses_to_start_postgres")
    else {
        return;
    };
    let site = Site::with_db(&pg.url);
    site.add_user(USER, PASSWORD);
    let app = site.add_client("app", &[]);
    let secret = app["client_secret"].as_str().unwrap().to_owned();
    let issuer = ["--issuer", "http://reauth.test"];
    let first = site.serve(&issuer);
    // A second replica started without the first one's key file is refused
    // (before, it silently re-keyed the database: every client secret broke).
    let output = reauth()
        .args(["serve", "--addr", "127.0.0.1:0", "--db", &pg.url])
        .arg("--key-file")
        .arg(site.path("fresh-keys.json"))
        .output()
        .unwrap();
    assert!(one_line_error(&output).contains("other keys"));
    let granted = password_grant(&first, "app", Some(&secret));
    assert_eq!(granted.status, 200, "{}", granted.body);
    // With the same key file it serves the first one's tokens.
    let second = site.serve(&issuer);
    let access = granted.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(resource_status(&second, &access), 200);
    assert_eq!(password_grant(&second, "app", Some(&secret)).status, 200);
    second.stop();
    first.stop();
}

// ---------------------------------------------------------------- O10 strict validators

/// The Python with authlib: `REAUTH_PYTHON`, else `python3`; `None` (test
/// skipped) if authlib is not importable — a failure under
/// `REAUTH_REQUIRE_SERVICES=1` (CI installs it: `.ci/run`).
fn python_with_authlib() -> Option<String> {
    let python = std::env::var("REAUTH_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let found = Command::new(&python)
        .args(["-c", "import authlib"])
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(python);
    }
    assert!(
        !std::env::var("REAUTH_REQUIRE_SERVICES").is_ok_and(|v| v == "1"),
        "REAUTH_REQUIRE_SERVICES=1 but {python} cannot import authlib \
         (pip install authlib, or set REAUTH_PYTHON)"
    );
    eprintln!(
        "SKIPPED: {python} cannot import authlib (pip install authlib, or set REAUTH_PYTHON)"
    );
    None
}

/// Fetches the discovery document over TLS (trusting only our certificate)
/// and runs authlib's RFC 8414 validator on it.
const VALIDATE: &str = r#"
import json, ssl, sys, urllib.request
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
issuer, cafile = sys.argv[1], sys.argv[2]
context = ssl.create_default_context(cafile=cafile)
with urllib.request.urlopen(issuer + "/.well-known/oauth-authorization-server", context=context, timeout=30) as r:
    metadata = AuthorizationServerMetadata(json.load(r))
metadata.validate()
assert metadata["issuer"] == issuer, metadata["issuer"]
print("valid", ",".join(metadata["grant_types_supported"]))
"#;

#[test]
fn o10_authlibs_rfc8414_validator_accepts_the_discovery_document() {
    let Some(python) = python_with_authlib() else {
        return;
    };
    let site = Site::sqlite();
    let (cert, key, _) = support::self_signed(site.dir.path());
    let served = site.serve(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    // The default issuer of a TLS listener: https://127.0.0.1:PORT (the
    // certificate names 127.0.0.1 too).
    let issuer = format!("https://{}", served.addr);
    let mut child = Command::new(&python)
        .arg("-c")
        .arg(VALIDATE)
        .arg(&issuer)
        .arg(&cert)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < until, "the validator hangs");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "authlib refused the metadata: {}{}",
        support::text(&output.stdout),
        support::text(&output.stderr)
    );
    let stdout = support::text(&output.stdout);
    assert!(stdout.starts_with("valid authorization_code,"), "{stdout}");
    served.stop();
}
