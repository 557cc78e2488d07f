//! Connecting: every URL is a typed error or a store, never a panic, and
//! `rediss://` (TLS) is understood.

use reauth::StoreError;
use reauth_redis::RedisStore;

#[tokio::test]
async fn an_unsupported_scheme_is_a_typed_error() {
    for url in ["http://127.0.0.1:6379/", "ftp://x/", "not a url"] {
        let got = RedisStore::connect(url, "t").await;
        assert!(matches!(got, Err(StoreError::Backend(_))), "{url}");
    }
}

#[tokio::test]
async fn rediss_urls_speak_tls() {
    // Nothing answers TLS here: the connection fails, but as a connection
    // failure, not as "TLS support not compiled in".
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let Err(StoreError::Backend(e)) =
        RedisStore::connect(&format!("rediss://127.0.0.1:{port}/"), "t").await
    else {
        panic!("connected to nothing?")
    };
    let text = format!("{e} {e:?}").to_lowercase();
    assert!(!text.contains("feature is not enabled"), "{text}");
    assert!(!text.contains("invalidclientconfig"), "{text}");
}
