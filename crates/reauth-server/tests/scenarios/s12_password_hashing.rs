//! S12: hundreds of concurrent logins, known and unknown users: password
//! hashing runs under a concurrency bound with a bounded queue, and beyond
//! it logins are turned away at once with `503` and `Retry-After` — so the
//! memory argon2id takes (19 MiB a hash) stays bounded. (The memory itself
//! is measured in BENCHMARKS.md, P7.)

use reauth_server::PasswordHashing;
use reqwest::StatusCode;

use crate::common::{PASSWORD, TestServer, USER, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s12_login_flood_is_hashed_under_a_bound_and_turned_away_beyond_the_queue() {
    let mut config = test_config();
    config.password_hashing = PasswordHashing::Default; // real argon2id, 19 MiB
    config.login_rate_limit.burst = 0; // S11 is not what this tests
    config.login_account_limit.burst = 0;
    config.limits.password_hash_concurrency = 2;
    config.limits.password_hash_queue = 4;
    let server = TestServer::start_with(config).await;
    let logins = (0..200).map(|i| {
        let (user, password) = match i % 4 {
            0 => (USER.to_owned(), PASSWORD),
            1 => (USER.to_owned(), "guess"),
            _ => (format!("nobody{i}"), "guess"),
        };
        let http = server.http.clone();
        let url = format!("{}/auth/login", server.url);
        async move {
            let response = http
                .post(url)
                .json(&serde_json::json!({"username": user, "password": password}))
                .send()
                .await
                .unwrap();
            let status = response.status();
            let retry_after = response.headers().contains_key("retry-after");
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            (status, retry_after, body)
        }
    });
    let answers = futures::future::join_all(logins).await;
    let mut busy = 0;
    for (status, retry_after, body) in &answers {
        match *status {
            StatusCode::SERVICE_UNAVAILABLE => {
                busy += 1;
                assert!(retry_after, "503 without Retry-After");
                assert_eq!(body["error"], "temporarily_unavailable");
            }
            StatusCode::OK | StatusCode::BAD_REQUEST => {}
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let counters = server.server().faults().counters();
    assert!(busy > 0, "nobody was turned away");
    assert!(
        counters.password_hashing_peak <= 2,
        "{} hashes at once",
        counters.password_hashing_peak
    );
    assert_eq!(
        counters.password_checks,
        200 - busy,
        "one check per admitted login"
    );
    // Once the flood is over, logins are served again.
    server.login().await;
}
