//! What both load benches need: a keep-alive client connection, a sign-in,
//! and a field of a JSON answer.

use std::net::SocketAddr;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// One keep-alive HTTP/1.1 connection to `addr`, without Nagle's delay.
pub(crate) async fn connect(addr: SocketAddr) -> SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

/// The string value of `field` in a flat JSON answer.
pub(crate) fn json_field<'a>(body: &'a [u8], field: &str) -> &'a str {
    let text = std::str::from_utf8(body).expect("utf-8");
    let key = format!("\"{field}\":\"");
    let start = text.find(&key).expect("field present") + key.len();
    let end = start + text[start..].find('"').expect("closing quote");
    &text[start..end]
}

/// Signs in as the bench user (`bench`/`bench`, first-party endpoint) on a
/// connection of its own: (access token, refresh token).
pub(crate) async fn login(addr: SocketAddr) -> (String, String) {
    let mut sender = connect(addr).await;
    let request = http::Request::post("/auth/login")
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"username":"bench","password":"bench"}"#,
        )))
        .expect("request");
    let response = sender.send_request(request).await.expect("login");
    assert!(response.status().is_success());
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        json_field(&body, "access_token").to_owned(),
        json_field(&body, "refresh_token").to_owned(),
    )
}
