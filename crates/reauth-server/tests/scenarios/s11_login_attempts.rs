//! S11: parallel wrong-password logins for one account, from one or many
//! addresses, evaluate at most the configured budget of password checks —
//! the (account, address) budget from one address, the account's ceiling
//! from many; an attempt is reserved atomically and given back only on
//! success. One address spending its budget does not lock the owner out.

use std::net::{IpAddr, Ipv4Addr};

use reqwest::StatusCode;

use crate::common::{PASSWORD, TestServer, USER, test_config};

async fn login_from(url: &str, from: IpAddr, password: &str) -> StatusCode {
    let client = reqwest::Client::builder()
        .local_address(from)
        .build()
        .unwrap();
    client
        .post(format!("{url}/auth/login"))
        .json(&serde_json::json!({"username": USER, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
}

/// 100 wrong guesses at once for one account, from `address(i)`; then the
/// right password from a fresh address. Answers the number of password
/// checks evaluated and the fresh login's status.
async fn parallel_guesses(address: impl Fn(u8) -> IpAddr) -> (u64, StatusCode) {
    let mut config = test_config();
    config.limits.password_hash_queue = 1_000; // S12's bound is not what this tests.
    config.login_rate_limit.burst = 10;
    config.login_account_limit.burst = 20;
    let server = TestServer::start_with(config).await;
    let guesses = (0..100u8).map(|i| login_from(&server.url, address(i), "guess"));
    let statuses = futures::future::join_all(guesses).await;
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::BAD_REQUEST)
        .count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    let checks = server.server().faults().counters().password_checks;
    assert_eq!((refused, limited), (checks as usize, 100 - checks as usize));
    let fresh = IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1));
    (checks, login_from(&server.url, fresh, PASSWORD).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s11_parallel_wrong_passwords_from_many_addresses_check_at_most_the_account_ceiling() {
    let (checks, fresh) = parallel_guesses(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 1, i + 1))).await;
    assert_eq!(checks, 20, "password checks evaluated");
    // The ceiling is the account's: the right password from a fresh address
    // is refused too until it refills.
    assert_eq!(fresh, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s11_parallel_wrong_passwords_from_one_address_check_at_most_its_budget_and_leave_the_owner_in()
 {
    let (checks, fresh) = parallel_guesses(|_| IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    assert_eq!(checks, 10, "password checks evaluated");
    // The attacker's address spent its own budget, not the account's.
    assert_eq!(fresh, StatusCode::OK);
}

#[tokio::test]
async fn s11_a_right_password_gives_its_attempt_back() {
    let mut config = test_config();
    config.login_rate_limit.burst = 3;
    let server = TestServer::start_with(config).await;
    for expected in [
        StatusCode::BAD_REQUEST,
        StatusCode::BAD_REQUEST,
        StatusCode::OK, // reserved, then refunded
        StatusCode::OK,
        StatusCode::BAD_REQUEST, // the last attempt of the budget
        StatusCode::TOO_MANY_REQUESTS,
    ] {
        let password = if expected == StatusCode::OK {
            PASSWORD
        } else {
            "guess"
        };
        let (status, body) = server.login_as(USER, password).await;
        assert_eq!(status, expected, "{body}");
    }
    assert_eq!(server.server().faults().counters().password_checks, 5);
}
