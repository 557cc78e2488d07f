//! S16: replicas whose clocks disagree judge grace windows and session
//! lifetimes on one clock — the database's — and refuse access tokens
//! issued (`iat`) or valid (`nbf`) further in the future than a small leeway.

use std::sync::Arc;
use std::time::Duration;

use reauth_server::store::SqliteRepository;
use reauth_server::{KeySource, ManualClock, Server, ServerConfig, ServerKeys, SqliteSynchronous};
use reqwest::StatusCode;

use crate::common::{PASSWORD, TestServer, USER, assert_error, test_config};

/// Replica clocks 40 s apart: more than the 10 s grace window, less than the
/// 60 s leeway on access tokens.
const SKEW: Duration = Duration::from_secs(20);

fn replica_config(url: &str, keys: &ServerKeys) -> ServerConfig {
    let mut config = test_config();
    config.database_url = url.to_owned();
    config.keys = KeySource::Provided(keys.clone());
    config.issuer = Some("http://reauth-s16".to_owned());
    config.idle_timeout = Duration::from_secs(3_600);
    config
}

fn ahead(by: Duration) -> ManualClock {
    let clock = ManualClock::new();
    clock.advance(by);
    clock
}

fn behind(by: Duration) -> ManualClock {
    let clock = ManualClock::new();
    clock.set_millis(clock_now() - i64::try_from(by.as_millis()).unwrap());
    clock
}

fn clock_now() -> i64 {
    use reauth_server::Clock;
    reauth_server::SystemClock.now_millis()
}

/// The scenario on replicas `a` (clock ahead) and `b` (clock behind);
/// `advance_db` moves the database's clock.
async fn skewed_replicas<F, Fut>(a: &TestServer, b: &TestServer, advance_db: F)
where
    F: Fn(Duration) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    // Rotated on the replica behind, replayed at once on the one ahead: a
    // duplicate inside the grace window by the database's clock, so the
    // same successor — not a reuse that revokes the family.
    let t1 = a.login().await;
    let t2 = b.refresh_ok(&t1.refresh_token).await;
    let replay = a.refresh_ok(&t1.refresh_token).await;
    assert_eq!(replay.refresh_token, t2.refresh_token);
    // And the other way round.
    let t3 = a.refresh_ok(&t2.refresh_token).await;
    let replay = b.refresh_ok(&t2.refresh_token).await;
    assert_eq!(replay.refresh_token, t3.refresh_token);
    // Access tokens of one replica are good on the other (skew < leeway).
    assert_eq!(b.resource(&t3.access_token).await.status(), StatusCode::OK);
    assert_eq!(
        a.resource(&replay.access_token).await.status(),
        StatusCode::OK
    );

    // Past the window by the database's clock, on either replica: reuse.
    advance_db(Duration::from_secs(11)).await;
    let (status, body) = b.refresh(&t2.refresh_token).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    let (status, body) = a.refresh(&t3.refresh_token).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");

    // The idle timeout (1 h) too: a session used 59 min ago by the
    // database's clock is live on both replicas, 61 min ago on neither.
    let u1 = b.login().await;
    advance_db(Duration::from_secs(59 * 60)).await;
    let u2 = a.refresh_ok(&u1.refresh_token).await;
    advance_db(Duration::from_secs(61 * 60)).await;
    let (status, body) = b.refresh(&u2.refresh_token).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s16_postgres_replicas_with_skewed_clocks_judge_by_the_database_clock() {
    let Some(pg) =
        crate::pg::schema("s16_postgres_replicas_with_skewed_clocks_judge_by_the_database_clock")
            .await
    else {
        return;
    };
    let keys = ServerKeys::generate();
    let a = TestServer::start_with_clock(replica_config(&pg.url, &keys), ahead(SKEW)).await;
    let b = TestServer::start_with_clock(replica_config(&pg.url, &keys), behind(SKEW)).await;
    pg.install_test_clock().await;
    skewed_replicas(&a, &b, |by| pg.advance_clock(by)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s16_sqlite_servers_with_skewed_clocks_judge_by_the_database_clock() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s16.db").display());
    let keys = ServerKeys::generate();
    // One database (one host clock); two server processes whose own clocks
    // disagree.
    let db_clock = ManualClock::new();
    let mut servers = Vec::new();
    for server_clock in [ahead(SKEW), behind(SKEW)] {
        let repo = SqliteRepository::connect_with(
            &url,
            SqliteSynchronous::Normal,
            Duration::from_secs(5),
            Arc::new(db_clock.clone()),
        )
        .await
        .unwrap();
        let server = Server::from_parts(
            replica_config(&url, &keys),
            Arc::new(repo),
            keys.clone(),
            Arc::new(server_clock.clone()),
        )
        .await
        .unwrap();
        let _ = server.add_user(USER, PASSWORD).await;
        servers.push(TestServer::serve(server, server_clock).await);
    }
    skewed_replicas(&servers[0], &servers[1], |by| {
        db_clock.advance(by);
        async {}
    })
    .await;
}

#[tokio::test]
async fn s16_access_token_from_the_future_is_refused() {
    let keys = ServerKeys::generate();
    let config = |keys: &ServerKeys| {
        let mut config = test_config();
        config.keys = KeySource::Provided(keys.clone());
        config.issuer = Some("http://reauth-s16".to_owned());
        config
    };
    let verifier = TestServer::start_with_clock(config(&keys), ManualClock::new()).await;
    // A signer 30 s ahead is within the leeway; 5 minutes ahead is not.
    let near = TestServer::start_with_clock(config(&keys), ahead(Duration::from_secs(30))).await;
    let far = TestServer::start_with_clock(config(&keys), ahead(Duration::from_secs(300))).await;
    let ok = near.login().await;
    assert_eq!(
        verifier.resource(&ok.access_token).await.status(),
        StatusCode::OK
    );
    let future = far.login().await;
    let response = verifier.resource(&future.access_token).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");
    assert_eq!(body["error_description"], "token issued in the future");
}
