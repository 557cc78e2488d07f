//! Connecting: a URL asking for TLS is served by rustls (built in), and a
//! bad URL is a typed error, never a panic.

use reauth::StoreError;
use reauth_postgres::PostgresStore;
use reauth_testkit::conformance;

#[tokio::test]
async fn an_unsupported_scheme_is_a_typed_error() {
    for url in ["http://127.0.0.1:5432/test", "not a url"] {
        let got = PostgresStore::connect(url, "t").await;
        assert!(matches!(got, Err(StoreError::Backend(_))), "{url}");
    }
}

#[tokio::test]
async fn sslmode_require_is_understood() {
    let Some(url) = conformance::service_url("DATABASE_URL") else {
        return;
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{sep}sslmode=require");
    // The test server may or may not offer TLS; either way the answer is
    // not "built without TLS support".
    if let Err(e) = PostgresStore::connect(&url, "tls-probe").await {
        let text = format!("{e} {:?}", std::error::Error::source(&e)).to_lowercase();
        assert!(!text.contains("without tls support"), "{text}");
    }
}
