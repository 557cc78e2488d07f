//! C23: a hostile or broken token endpoint — a redirect, a huge body, a
//! `Retry-After` of years, garbage — always gets a typed error, and the
//! refresher never re-sends its secrets elsewhere nor reads without bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reauth::{RefreshError, RefreshErrorKind, Refresher, TokenSet};
use reauth_reqwest::{ClientAuth, Error, JsonRefresher, OAuth2Refresher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn current() -> TokenSet {
    TokenSet::new("a0").with_refresh_token("the-refresh-token")
}

fn cause(e: &RefreshError) -> &Error {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<Error>())
        .expect("a reauth_reqwest::Error inside")
}

#[tokio::test]
async fn c23_a_redirect_is_not_followed_and_no_secret_is_resent() {
    let elsewhere = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"access_token": "x"})),
        )
        .mount(&elsewhere)
        .await;
    let endpoint = MockServer::start().await;
    for status in [301u16, 302, 303, 307, 308] {
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(status)
                    .insert_header("location", format!("{}/steal", elsewhere.uri())),
            )
            .up_to_n_times(1)
            .mount(&endpoint)
            .await;
        let refresher = OAuth2Refresher::new(
            format!("{}/token", endpoint.uri()).parse().unwrap(),
            "client",
        )
        .client_secret("client-secret")
        .client_auth(ClientAuth::Post);
        let err = refresher.refresh(&current()).await.unwrap_err();
        assert_eq!(
            err.kind(),
            RefreshErrorKind::Misconfigured,
            "{status}: {err}"
        );
        assert!(
            matches!(cause(&err), Error::Redirected { .. }),
            "{status}: {err}"
        );
    }
    assert!(
        elsewhere.received_requests().await.unwrap().is_empty(),
        "the refresh token or the client secret went to the redirect's target"
    );
}

/// A token endpoint on loopback that answers 200 with a valid JSON token
/// response padded to `size` bytes, sent in 64 KiB writes, and counts the
/// bytes it managed to write before the client went away.
async fn huge_endpoint(size: u64, declare_length: bool) -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let written = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&written);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let count = Arc::clone(&count);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = conn.read(&mut buf).await; // the request; its content is irrelevant
                let head = if declare_length {
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {size}\r\n\r\n"
                    )
                } else {
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n"
                        .to_owned()
                };
                if conn.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let prefix = br#"{"access_token":"a","padding":""#;
                let _ = conn.write_all(prefix).await;
                let chunk = vec![b'x'; 64 * 1024];
                let mut sent = prefix.len() as u64;
                while sent + 2 < size {
                    let n = chunk.len().min((size - 2 - sent) as usize);
                    if conn.write_all(&chunk[..n]).await.is_err() {
                        return; // the client stopped reading and closed
                    }
                    sent += n as u64;
                    count.store(sent, Ordering::SeqCst);
                }
                let _ = conn.write_all(b"\"}").await;
            });
        }
    });
    (url, written)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c23_a_huge_token_response_is_refused_unread() {
    const SIZE: u64 = 64 * 1024 * 1024;
    let (url, written) = huge_endpoint(SIZE, false).await;
    let refresher = JsonRefresher::new(url.parse().unwrap());
    let err = refresher.refresh(&current()).await.unwrap_err();
    assert_eq!(err.kind(), RefreshErrorKind::Misconfigured, "{err}");
    assert!(
        matches!(cause(&err), Error::ResponseTooLarge { limit } if *limit == 64 * 1024),
        "{err}"
    );
    // The client stopped after 64 KiB; the server got no further than what
    // the loopback socket buffers hold. (A client that read it all would have
    // returned only after every byte was written.)
    let sent = written.load(Ordering::SeqCst);
    assert!(
        sent < SIZE / 2,
        "the client kept reading: {sent} of {SIZE} bytes were taken"
    );
}

#[tokio::test]
async fn c23_a_declared_oversized_body_is_refused_before_reading() {
    let (url, _) = huge_endpoint(512 * 1024 * 1024, true).await;
    let refresher = OAuth2Refresher::new(url.parse().unwrap(), "client");
    let err = refresher.refresh(&current()).await.unwrap_err();
    assert_eq!(err.kind(), RefreshErrorKind::Misconfigured, "{err}");
    assert!(
        matches!(cause(&err), Error::ResponseTooLarge { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn c23_an_oversized_error_body_is_refused_too() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_string("e".repeat(100 * 1024)))
        .mount(&mock)
        .await;
    let refresher = OAuth2Refresher::new(mock.uri().parse().unwrap(), "client");
    let err = refresher.refresh(&current()).await.unwrap_err();
    assert!(
        matches!(cause(&err), Error::ResponseTooLarge { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn c23_retry_after_of_years_and_garbage_are_typed_errors() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "4000000000"))
        .up_to_n_times(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![0xff, 0x00, b'{', 0x80]))
        .mount(&mock)
        .await;
    let refresher = OAuth2Refresher::new(mock.uri().parse().unwrap(), "client");
    let err = refresher.refresh(&current()).await.unwrap_err();
    assert_eq!(err.kind(), RefreshErrorKind::Transient);
    // Reported as sent; the session cuts it to its `max_retry_after`.
    assert_eq!(err.retry_after(), Some(Duration::from_secs(4_000_000_000)));
    let garbage = refresher.refresh(&current()).await.unwrap_err();
    assert_eq!(garbage.kind(), RefreshErrorKind::Misconfigured);
    assert!(
        matches!(cause(&garbage), Error::InvalidResponse { .. }),
        "{garbage}"
    );
}

/// A token endpoint giving every request `template`, and a refresher for it
/// (the server lives as long as the pair).
async fn endpoint_answering(template: ResponseTemplate) -> (MockServer, OAuth2Refresher) {
    let endpoint = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(template)
        .mount(&endpoint)
        .await;
    let url = format!("{}/token", endpoint.uri()).parse().unwrap();
    (endpoint, OAuth2Refresher::new(url, "client"))
}

#[tokio::test]
async fn c23_a_huge_error_description_is_cut_in_errors_and_logs() {
    let description = format!("line one\nline two {}", "x".repeat(60_000));
    let (_server, refresher) = endpoint_answering(ResponseTemplate::new(400).set_body_json(
        serde_json::json!({"error": "invalid_grant", "error_description": description}),
    ))
    .await;
    let err = refresher.refresh(&current()).await.unwrap_err();
    assert_eq!(err.kind(), RefreshErrorKind::Rejected);
    let shown = format!("{err}: {}", cause(&err));
    assert!(shown.len() < 1_000, "{} bytes shown", shown.len());
    assert!(!shown.contains('\n'), "no forged log lines: {shown:?}");
    let Error::Endpoint { description, .. } = cause(&err) else {
        panic!("{err}")
    };
    let d = description.as_deref().unwrap();
    assert!(d.starts_with("line one"), "{d:?}");
    assert!(d.ends_with('…'), "marked as cut: {d:?}");
}

#[tokio::test]
async fn c6_an_html_401_from_a_proxy_is_transient_not_a_rejection() {
    // A proxy or WAF in front of the token endpoint: not an RFC 6749 §5.2
    // answer, so not a verdict on the refresh token — no logout.
    for status in [400u16, 401, 403] {
        let (_server, refresher) = endpoint_answering(
            ResponseTemplate::new(status)
                .insert_header("content-type", "text/html; charset=utf-8")
                .set_body_string("<html><body><h1>401 Authorization Required</h1></body></html>"),
        )
        .await;
        let err = refresher.refresh(&current()).await.unwrap_err();
        assert_eq!(err.kind(), RefreshErrorKind::Transient, "{status}: {err}");
    }
    // The server's own verdicts keep their meaning.
    let (_server, refresher) = endpoint_answering(
        ResponseTemplate::new(401).set_body_json(serde_json::json!({"error": "invalid_grant"})),
    )
    .await;
    let err = refresher.refresh(&current()).await.unwrap_err();
    assert_eq!(err.kind(), RefreshErrorKind::Rejected);
    let (_server, refresher) = endpoint_answering(ResponseTemplate::new(401)).await;
    let err = refresher.refresh(&current()).await.unwrap_err();
    assert_eq!(err.kind(), RefreshErrorKind::Rejected, "a bare 401: {err}");
}

/// C23: an endpoint that accepts the connection and never answers. A login
/// (`password_grant`) has no session timeout around it; the default client
/// gives up after its own 60 s (virtual time here) with a transient error,
/// instead of hanging its caller forever.
#[tokio::test(start_paused = true)]
async fn c23_a_login_against_an_endpoint_that_never_answers_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts, reads the request, never answers; holds every connection.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            held.push(socket);
        }
    });
    let refresher = OAuth2Refresher::new(
        format!("http://{addr}/oauth/token").parse().unwrap(),
        "demo",
    );
    let began = tokio::time::Instant::now();
    let login = refresher.password_grant("alice", "correct horse");
    let err = tokio::time::timeout(Duration::from_secs(600), login)
        .await
        .expect("the client gives up by itself, well before 10 minutes")
        .expect_err("no answer is not a login");
    let waited = began.elapsed();
    assert_eq!(err.kind(), RefreshErrorKind::Transient, "{err:?}");
    let Error::Http(http) = cause(&err) else {
        panic!("an HTTP error, not {err:?}");
    };
    assert!(http.is_timeout(), "{http:?}");
    assert!(
        (Duration::from_secs(60)..Duration::from_secs(61)).contains(&waited),
        "gave up after {waited:?}"
    );
}
