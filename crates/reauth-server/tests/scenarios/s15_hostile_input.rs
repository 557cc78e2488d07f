//! S15: NUL bytes, invalid UTF-8 and very long values in any parameter, on
//! SQLite and Postgres: `400 invalid_request` with an RFC 6749 body, never a
//! 500, and nothing written.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reauth_server::{KeySource, ManualClock, ServerKeys};
use reqwest::StatusCode;

use crate::common::{CLIENT_ID, CLIENT_SECRET, TestServer, test_config};

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";

struct Case {
    name: String,
    path: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
    /// `Authorization: Basic` credentials as sent (already URL-encoded).
    basic: Option<(String, String)>,
}

fn long(n: usize) -> String {
    "a".repeat(n)
}

/// Every parameter of every endpoint, with each kind of hostile value.
fn cases() -> Vec<Case> {
    // Values as they appear in a form body (URL-encoded) and as JSON text.
    let form_values = [
        ("NUL", "a%00b".to_owned()),
        ("invalid UTF-8", "%FF%FEa".to_owned()),
        ("very long", long(10_000)),
    ];
    let json_values: [(&str, &[u8]); 3] = [
        ("NUL", br#""a\u0000b""#),
        ("invalid UTF-8", b"\"\xff\xfea\""),
        ("very long", b""),
    ];
    let demo = || Some((CLIENT_ID.to_owned(), CLIENT_SECRET.to_owned()));
    let mut cases = Vec::new();
    let forms: [(&'static str, &[(&str, &str)]); 5] = [
        (
            "/oauth/token",
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", "wonderland"),
                ("scope", "read"),
            ],
        ),
        (
            "/oauth/token",
            &[("grant_type", "refresh_token"), ("refresh_token", "rt1_x")],
        ),
        ("/oauth/token", &[("grant_type", "client_credentials")]),
        (
            "/oauth/revoke",
            &[("token", "t"), ("token_type_hint", "refresh_token")],
        ),
        ("/oauth/introspect", &[("token", "t")]),
    ];
    for (path, params) in forms {
        for (bad_index, (bad_name, _)) in params.iter().enumerate() {
            for (kind, bad) in &form_values {
                let body: Vec<String> = params
                    .iter()
                    .enumerate()
                    .map(|(i, (k, v))| {
                        if i == bad_index {
                            format!("{k}={bad}")
                        } else {
                            format!("{k}={v}")
                        }
                    })
                    .collect();
                cases.push(Case {
                    name: format!("{path} {bad_name} {kind}"),
                    path,
                    content_type: FORM,
                    body: body.join("&").into_bytes(),
                    basic: demo(),
                });
            }
        }
        // Client credentials in the body, and in the Basic header.
        for (kind, bad) in &form_values {
            let base: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            for (id, secret) in [
                (bad.clone(), CLIENT_SECRET.to_owned()),
                (CLIENT_ID.to_owned(), bad.clone()),
            ] {
                let mut body = base.clone();
                body.push(format!("client_id={id}"));
                body.push(format!("client_secret={secret}"));
                cases.push(Case {
                    name: format!("{path} form client credentials {kind}"),
                    path,
                    content_type: FORM,
                    body: body.join("&").into_bytes(),
                    basic: None,
                });
                cases.push(Case {
                    name: format!("{path} Basic client credentials {kind}"),
                    path,
                    content_type: FORM,
                    body: base.join("&").into_bytes(),
                    basic: Some((id, secret)),
                });
            }
        }
    }
    let jsons: [(&'static str, &[&str]); 3] = [
        ("/auth/login", &["username", "password"]),
        ("/auth/refresh", &["refresh_token"]),
        ("/auth/logout", &["refresh_token"]),
    ];
    for (path, fields) in jsons {
        for bad_field in fields {
            for (kind, bad) in &json_values {
                let bad = if bad.is_empty() {
                    format!("\"{}\"", long(10_000)).into_bytes()
                } else {
                    bad.to_vec()
                };
                let mut body = b"{".to_vec();
                for (i, field) in fields.iter().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(format!("\"{field}\":").as_bytes());
                    if field == bad_field {
                        body.extend_from_slice(&bad);
                    } else {
                        body.extend_from_slice(b"\"x\"");
                    }
                }
                body.push(b'}');
                cases.push(Case {
                    name: format!("{path} {bad_field} {kind}"),
                    path,
                    content_type: JSON,
                    body,
                    basic: None,
                });
            }
        }
    }
    cases
}

async fn s15_scenario(server: &TestServer) {
    let before = server.server().repository().counts().await.unwrap();
    let cases = cases();
    assert!(cases.len() > 80, "{} cases", cases.len());
    for case in cases {
        let mut request = server
            .http
            .post(format!("{}{}", server.url, case.path))
            .header("content-type", case.content_type)
            .body(case.body);
        if let Some((id, secret)) = &case.basic {
            let credentials = STANDARD.encode(format!("{id}:{secret}"));
            request = request.header("authorization", format!("Basic {credentials}"));
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{}: {body}", case.name);
        assert_eq!(body["error"], "invalid_request", "{}: {body}", case.name);
    }
    let after = server.server().repository().counts().await.unwrap();
    assert_eq!(before, after, "nothing written");
}

#[tokio::test]
async fn s15_sqlite_hostile_parameters_are_400_never_500() {
    let server = TestServer::start().await;
    s15_scenario(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s15_postgres_hostile_parameters_are_400_never_500() {
    let Some(pg) = crate::pg::schema("s15_postgres_hostile_parameters_are_400_never_500").await
    else {
        return;
    };
    let mut config = test_config();
    config.database_url = pg.url.clone();
    config.keys = KeySource::Provided(ServerKeys::generate());
    let server = TestServer::start_with_clock(config, ManualClock::new()).await;
    s15_scenario(&server).await;
}

#[tokio::test]
async fn s15_a_huge_content_length_is_413_on_every_route_before_the_body_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start().await;
    tokio::time::pause();
    let routes = [
        ("POST", "/auth/login", "application/json"),
        ("POST", "/auth/refresh", "application/json"),
        ("POST", "/auth/logout", "application/json"),
        ("POST", "/oauth/token", "application/x-www-form-urlencoded"),
        ("POST", "/oauth/revoke", "application/x-www-form-urlencoded"),
        (
            "POST",
            "/oauth/introspect",
            "application/x-www-form-urlencoded",
        ),
        (
            "POST",
            "/oauth/authorize",
            "application/x-www-form-urlencoded",
        ),
        ("GET", "/api/resources", "application/json"),
        ("GET", "/healthz", "text/plain"),
    ];
    for (method, path, kind) in routes {
        let start = tokio::time::Instant::now();
        let mut stream = tokio::net::TcpStream::connect(server.running.addr())
            .await
            .unwrap();
        // Headers only: the promised gigabyte never comes.
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {kind}\r\n\
             Content-Length: 1000000000\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(3600), stream.read_to_end(&mut response))
                .await
                .expect("no answer");
        if let Err(e) = read {
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
        }
        let response = String::from_utf8_lossy(&response);
        assert!(
            response.starts_with("HTTP/1.1 413"),
            "{method} {path}: {response}"
        );
        assert!(
            response.contains("\"error\":\"invalid_request\""),
            "{method} {path}: {response}"
        );
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "{method} {path}: answered after {took:?}"
        );
    }
}
