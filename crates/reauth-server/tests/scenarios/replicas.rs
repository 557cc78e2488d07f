//! S3: two server instances, each with its own connection pool, on one
//! Postgres database: S1 and S2 hold across them.

use std::time::Duration;

use reauth_server::{KeySource, ManualClock, ServerKeys};
use reqwest::StatusCode;

use crate::common::{TestServer, assert_error, test_config};

async fn replica(url: &str, keys: &ServerKeys, clock: &ManualClock) -> TestServer {
    let mut config = test_config();
    config.database_url = url.to_owned();
    config.keys = KeySource::Provided(keys.clone());
    config.issuer = Some("http://reauth-replicas".to_owned());
    config.max_db_connections = 8;
    TestServer::start_with_clock(config, clock.clone()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_two_servers_on_one_postgres_share_one_successor() {
    let Some(pg) = crate::pg::schema("s3_two_servers_on_one_postgres_share_one_successor").await
    else {
        return;
    };
    let keys = ServerKeys::generate();
    let clock = ManualClock::new();
    let a = replica(&pg.url, &keys, &clock).await;
    let b = replica(&pg.url, &keys, &clock).await;
    // 50 refreshes of one token, alternating between the two servers.
    crate::rotation::assert_s1(&[&a, &b]).await;
    a.running.shutdown().await.unwrap();
    b.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_reuse_across_servers_revokes_family() {
    let Some(pg) = crate::pg::schema("s3_reuse_across_servers_revokes_family").await else {
        return;
    };
    let keys = ServerKeys::generate();
    let clock = ManualClock::new();
    let a = replica(&pg.url, &keys, &clock).await;
    let b = replica(&pg.url, &keys, &clock).await;
    pg.install_test_clock().await;

    // Parent after the grace window: rotated on B, replayed on A.
    let t1 = a.login().await;
    let t2 = b.refresh_ok(&t1.refresh_token).await;
    let replay = a.refresh_ok(&t1.refresh_token).await;
    assert_eq!(
        replay.refresh_token, t2.refresh_token,
        "grace holds across servers"
    );
    // The grace window is judged by the database's clock.
    clock.advance(Duration::from_secs(11));
    pg.advance_clock(Duration::from_secs(11)).await;
    let (status, body) = a.refresh(&t1.refresh_token).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    let (status, body) = b.refresh(&t2.refresh_token).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    // B learns of A's revocation and refuses the family's access token before `exp`.
    b.server().sync_revocations().await.unwrap();
    assert_eq!(
        b.resource(&t2.access_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        a.resource(&t2.access_token).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Grandparent inside the window, across servers.
    let u1 = b.login().await;
    let u2 = a.refresh_ok(&u1.refresh_token).await;
    let u3 = b.refresh_ok(&u2.refresh_token).await;
    let (status, body) = a.refresh(&u1.refresh_token).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    let (status, body) = b.refresh(&u3.refresh_token).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    let audit = a
        .server()
        .repository()
        .audit_events(Some(&u1.sid()))
        .await
        .unwrap();
    assert_eq!(
        audit.iter().filter(|e| e.kind == "reuse_detected").count(),
        1
    );
    a.running.shutdown().await.unwrap();
    b.running.shutdown().await.unwrap();
}
