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
    let metadata = get(&served.addr, "/.well-known/oauth-authorization-server").json();
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

// ---------------------------------------------------------------- O9 demo client

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
