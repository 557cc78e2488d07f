//! S13: slow clients — half-sent headers, half-sent bodies, crowds of idle
//! connections — are closed by header and body read timeouts, a connection
//! cap holds while legitimate requests keep being served, and shutdown ends
//! within its deadline whatever the clients do.
//!
//! Time is virtual: the server starts (database included) on real time, then
//! the test pauses tokio's clock, so the 10 s timeouts pass in no time and
//! are measured exactly. Only endpoints without database work are used
//! after the pause.

use std::time::Duration;

use reauth_server::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::common::{TestServer, test_config};

fn config() -> ServerConfig {
    let mut config = test_config();
    config.revocation_poll_interval = Duration::from_secs(24 * 3600);
    config
}

/// Reads until the server closes; what it sent, and when.
async fn until_closed(stream: &mut TcpStream) -> (String, Duration) {
    let start = Instant::now();
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3600), stream.read_to_end(&mut received))
        .await
        .expect("the server never closed the connection");
    if let Err(e) = read {
        // A reset is a close too.
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    }
    (
        String::from_utf8_lossy(&received).into_owned(),
        start.elapsed(),
    )
}

#[tokio::test]
async fn s13_half_sent_headers_are_closed_after_the_header_timeout() {
    let server = TestServer::start_with(config()).await;
    tokio::time::pause();
    let mut slow = TcpStream::connect(server.running.addr()).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (_, after) = until_closed(&mut slow).await;
    assert!(
        after >= Duration::from_secs(10) && after < Duration::from_secs(11),
        "closed after {after:?}"
    );
}

#[tokio::test]
async fn s13_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let server = TestServer::start_with(config()).await;
    tokio::time::pause();
    let mut idle = TcpStream::connect(server.running.addr()).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The answer comes at once; then the connection idles until closed.
    let (received, after) = until_closed(&mut idle).await;
    assert!(received.starts_with("HTTP/1.1 200"), "{received}");
    assert!(
        after >= Duration::from_secs(10) && after < Duration::from_secs(11),
        "closed after {after:?}"
    );
}

#[tokio::test]
async fn s13_half_sent_body_is_cut_off_with_408() {
    let server = TestServer::start_with(config()).await;
    tokio::time::pause();
    let mut slow = TcpStream::connect(server.running.addr()).await.unwrap();
    slow.write_all(
        b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"username\":",
    )
    .await
    .unwrap();
    let (response, after) = until_closed(&mut slow).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(
        response.contains("\"error\":\"invalid_request\""),
        "{response}"
    );
    assert!(
        after >= Duration::from_secs(10) && after < Duration::from_secs(11),
        "answered after {after:?}"
    );
}

#[tokio::test]
async fn s13_connection_cap_holds_and_idle_crowds_make_way_for_real_requests() {
    let mut config = config();
    config.limits.max_connections = 16;
    let server = TestServer::start_with(config).await;
    tokio::time::pause();
    // 100 clients connect and send nothing (beyond the cap they queue in
    // the listen backlog).
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(TcpStream::connect(server.running.addr()).await.unwrap());
    }
    // A real request: it waits for a slot (the cap holds), which the header
    // timeout frees by dropping the idle clients.
    let start = Instant::now();
    let mut real = TcpStream::connect(server.running.addr()).await.unwrap();
    real.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (response, _) = until_closed(&mut real).await;
    let waited = start.elapsed();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        waited >= Duration::from_secs(10),
        "answered after {waited:?}: the cap did not hold"
    );
    assert!(
        waited < Duration::from_secs(10 * 100 / 16 + 11),
        "answered after {waited:?}"
    );
    // Every idle client was dropped by the header timeout.
    for stream in &mut idle {
        let (sent, _) = until_closed(stream).await;
        assert!(sent.is_empty(), "{sent}");
    }
}

#[tokio::test]
async fn s13_shutdown_ends_within_the_deadline_whatever_the_clients_do() {
    let TestServer { running, .. } = TestServer::start_with(config()).await;
    let server = running.server().clone();
    // A request that never finishes (the handler sleeps an hour), a client
    // half-way through its headers, and an idle keep-alive connection.
    server
        .faults()
        .set_resource_delay(Duration::from_secs(3600));
    tokio::time::pause();
    let mut stuck = TcpStream::connect(running.addr()).await.unwrap();
    stuck
        .write_all(b"GET /api/resources HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer x\r\n\r\n")
        .await
        .unwrap();
    let mut half = TcpStream::connect(running.addr()).await.unwrap();
    half.write_all(b"GET /heal").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    running.shutdown().await.unwrap();
    let took = start.elapsed();
    assert!(took <= Duration::from_secs(11), "shutdown took {took:?}");
    // And the clients were let go.
    for stream in [&mut stuck, &mut half] {
        until_closed(stream).await;
    }
    assert!(start.elapsed() <= Duration::from_secs(11));
}

#[tokio::test]
async fn s13_stalled_tls_handshake_is_dropped_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let tls = reauth_server::TlsConfig::from_pem_files(&cert, &key).unwrap();
    let server = reauth_server::Server::new(config()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        server
            .serve_tls(listener, &tls, async move {
                let _ = stopped.await;
            })
            .await
    });
    tokio::time::pause();
    // A client that opens TCP and never starts its TLS handshake.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    let (_, after) = until_closed(&mut stalled).await;
    assert!(
        after >= Duration::from_secs(10) && after < Duration::from_secs(11),
        "closed after {after:?}"
    );
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}

/// Sends one request on `stream` and reads its answer to `GET /healthz`
/// (`ok\n`); `None` when the server closed the connection instead.
async fn healthz_on(stream: &mut TcpStream) -> Option<String> {
    if stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .is_err()
    {
        return None;
    }
    let mut received = Vec::new();
    let mut chunk = [0_u8; 1024];
    while !received.ends_with(b"\r\n\r\nok\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
        }
    }
    Some(String::from_utf8_lossy(&received).into_owned())
}

#[tokio::test]
async fn s13_a_client_that_stops_reading_frees_its_connection_after_the_write_timeout() {
    // A 64 MiB page (sparse: no disk written), far more than the socket
    // buffers of both ends hold, so the server's writes stall.
    let site = tempfile::tempdir().unwrap();
    std::fs::File::create(site.path().join("index.html"))
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let mut config = config();
    config.web_dir = Some(site.path().to_owned());
    config.limits.max_connections = 1;
    let server = TestServer::start_with(config).await;
    tokio::time::pause();
    // The slow reader takes the only slot, asks for the page and never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(server.running.addr()).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // A real client is served once the stalled write times out.
    let start = Instant::now();
    let mut real = TcpStream::connect(server.running.addr()).await.unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(3600), healthz_on(&mut real))
        .await
        .expect("the slow reader held the only connection slot for an hour");
    assert!(answered.is_some_and(|r| r.starts_with("HTTP/1.1 200")));
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(12),
        "served after {waited:?}"
    );
    drop(slow);
}

#[tokio::test]
async fn s13_a_busy_keep_alive_connection_is_closed_at_its_maximum_age() {
    let mut config = config();
    config.limits.max_connection_age = Duration::from_secs(60);
    let server = TestServer::start_with(config).await;
    tokio::time::pause();
    let start = Instant::now();
    let mut busy = TcpStream::connect(server.running.addr()).await.unwrap();
    // One request every 5 s: never idle long enough for the header timeout.
    let mut served = 0;
    for _ in 0..60 {
        if healthz_on(&mut busy).await.is_none() {
            break;
        }
        served += 1;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let closed_after = start.elapsed();
    assert!(served < 60, "still open after {closed_after:?}");
    assert!(
        closed_after >= Duration::from_secs(60) && closed_after < Duration::from_secs(66),
        "closed after {closed_after:?} ({served} requests)"
    );
    // A fresh connection is served as usual.
    let mut fresh = TcpStream::connect(server.running.addr()).await.unwrap();
    assert!(healthz_on(&mut fresh).await.is_some());
}
