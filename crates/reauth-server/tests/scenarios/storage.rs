//! The storage conformance suite, run on every backend: SQLite in memory,
//! SQLite on a file, and Postgres (skipped without `DATABASE_URL` unless
//! `REAUTH_REQUIRE_SERVICES=1`).

use std::sync::Arc;

use reauth_server::SqliteSynchronous;
use reauth_server::store::{
    AuditEvent, NewFamily, PostgresRepository, Repository, Rotation, SqliteRepository,
};

/// A rotation of a family issued to client `c1` (most of the suite's families).
fn rotation(family_id: &str, expected_generation: i64, now: i64) -> Rotation<'_> {
    Rotation {
        family_id,
        expected_generation,
        now,
        created_after: 0,
        used_after: 0,
        client_id: Some("c1"),
    }
}

async fn storage_suite(repo: Arc<dyn Repository>) {
    // Users.
    assert!(repo.add_user("u1", "hash-1", 10).await.unwrap());
    assert!(
        !repo.add_user("u1", "hash-2", 11).await.unwrap(),
        "duplicate refused"
    );
    assert!(repo.add_user("u0", "hash-0", 12).await.unwrap());
    let user = repo.find_user("u1").await.unwrap().unwrap();
    assert_eq!(
        (
            user.username.as_str(),
            user.password_hash.as_str(),
            user.created_at
        ),
        ("u1", "hash-1", 10)
    );
    assert!(repo.find_user("nobody").await.unwrap().is_none());
    let names: Vec<String> = repo
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["u0", "u1"]);

    // Clients.
    repo.upsert_client("c1", "mac-1", 1).await.unwrap();
    repo.upsert_client("c1", "mac-2", 2).await.unwrap();
    assert_eq!(
        repo.client_secret_mac("c1").await.unwrap().as_deref(),
        Some("mac-2")
    );
    assert_eq!(repo.client_secret_mac("c2").await.unwrap(), None);

    // Families and the rotation compare-and-set.
    repo.create_family(&NewFamily {
        id: "f1",
        subject: "u1",
        client_id: Some("c1"),
        scope: Some("read"),
        generation: 1,
        now: 1_000,
    })
    .await
    .unwrap();
    let f = repo.load_family("f1").await.unwrap().unwrap();
    assert_eq!(
        (f.generation, f.created_at, f.last_used_at, f.rotated_at),
        (1, 1_000, 1_000, None)
    );
    assert_eq!(
        (f.client_id.as_deref(), f.scope.as_deref()),
        (Some("c1"), Some("read"))
    );

    let rotated = repo
        .rotate(&rotation("f1", 1, 2_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (rotated.generation, rotated.rotated_at, rotated.last_used_at),
        (2, Some(2_000), 2_000)
    );
    assert!(
        repo.rotate(&rotation("f1", 1, 2_001))
            .await
            .unwrap()
            .is_none(),
        "stale generation"
    );
    assert!(
        repo.rotate(&rotation("nope", 1, 2_001))
            .await
            .unwrap()
            .is_none(),
        "unknown family"
    );
    let wrong_client = Rotation {
        client_id: Some("c2"),
        ..rotation("f1", 2, 2_100)
    };
    assert!(
        repo.rotate(&wrong_client).await.unwrap().is_none(),
        "wrong client"
    );
    let first_party = Rotation {
        client_id: None,
        ..rotation("f1", 2, 2_100)
    };
    assert!(
        repo.rotate(&first_party).await.unwrap().is_none(),
        "a client's family is not rotated as a first-party one"
    );
    let right_client = Rotation {
        client_id: Some("c1"),
        ..rotation("f1", 2, 2_100)
    };
    assert_eq!(
        repo.rotate(&right_client)
            .await
            .unwrap()
            .unwrap()
            .generation,
        3
    );
    let too_old = Rotation {
        created_after: 1_000,
        ..rotation("f1", 3, 2_200)
    };
    assert!(
        repo.rotate(&too_old).await.unwrap().is_none(),
        "absolute lifetime"
    );
    let idle = Rotation {
        used_after: 2_100,
        ..rotation("f1", 3, 2_200)
    };
    assert!(repo.rotate(&idle).await.unwrap().is_none(), "idle timeout");
    assert_eq!(
        repo.load_family("f1").await.unwrap().unwrap().generation,
        3,
        "failed CAS wrote nothing"
    );

    // N concurrent compare-and-sets on one generation: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let repo = repo.clone();
        tasks.push(tokio::spawn(async move {
            repo.rotate(&rotation("f1", 3, 3_000 + i))
                .await
                .unwrap()
                .is_some()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
    assert_eq!(repo.load_family("f1").await.unwrap().unwrap().generation, 4);

    // Concurrent rotations of different families all win (SQLite commits
    // them as one group; Postgres on separate connections).
    for i in 0..20 {
        let id = format!("g{i}");
        repo.create_family(&NewFamily {
            id: &id,
            subject: "u0",
            client_id: None,
            scope: None,
            generation: 7,
            now: 1_000,
        })
        .await
        .unwrap();
    }
    let mut tasks = Vec::new();
    for i in 0..20 {
        let repo = repo.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("g{i}");
            let first_party = Rotation {
                client_id: None,
                ..rotation(&id, 7, 3_000)
            };
            repo.rotate(&first_party)
                .await
                .unwrap()
                .map(|f| f.generation)
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), Some(8));
    }

    // Revocation with its audit event, in one transaction.
    assert!(
        repo.revoke_family("f1", 5_000, "reuse_detected", Some("gen 1 at 4"))
            .await
            .unwrap()
    );
    assert!(
        !repo
            .revoke_family("f1", 5_001, "revoked", None)
            .await
            .unwrap(),
        "already revoked"
    );
    assert!(
        !repo
            .revoke_family("nope", 5_001, "revoked", None)
            .await
            .unwrap()
    );
    assert!(
        repo.rotate(&rotation("f1", 4, 5_002))
            .await
            .unwrap()
            .is_none(),
        "revoked family does not rotate"
    );
    let f = repo.load_family("f1").await.unwrap().unwrap();
    assert_eq!(
        (f.revoked_at, f.revoked_reason.as_deref()),
        (Some(5_000), Some("reuse_detected"))
    );
    assert_eq!(
        repo.revoked_since(4_000).await.unwrap(),
        vec![("f1".to_owned(), 5_000)]
    );
    assert!(repo.revoked_since(5_001).await.unwrap().is_empty());
    let audit = repo.audit_events(Some("f1")).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (
            audit[0].kind.as_str(),
            audit[0].subject.as_deref(),
            audit[0].detail.as_deref(),
            audit[0].at
        ),
        ("reuse_detected", Some("u1"), Some("gen 1 at 4"), 5_000)
    );

    // Removing a user revokes their live families.
    repo.create_family(&NewFamily {
        id: "f2",
        subject: "u1",
        client_id: None,
        scope: None,
        generation: 1,
        now: 6_000,
    })
    .await
    .unwrap();
    repo.create_family(&NewFamily {
        id: "f3",
        subject: "u0",
        client_id: None,
        scope: None,
        generation: 1,
        now: 6_000,
    })
    .await
    .unwrap();
    assert_eq!(
        repo.remove_user("u1", 7_000).await.unwrap(),
        Some(vec!["f2".to_owned()])
    );
    assert_eq!(repo.remove_user("u1", 7_001).await.unwrap(), None);
    assert_eq!(
        repo.load_family("f2")
            .await
            .unwrap()
            .unwrap()
            .revoked_reason
            .as_deref(),
        Some("user_removed")
    );
    assert!(
        repo.load_family("f3")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );

    repo.record_audit(&AuditEvent {
        at: 8_000,
        kind: "custom".into(),
        family_id: None,
        subject: None,
        detail: None,
    })
    .await
    .expect("record_audit");
    let counts = repo.counts().await.unwrap();
    assert_eq!((counts.users, counts.clients, counts.families), (1, 1, 23));
    assert_eq!(counts.audit_events, 3);
}

#[tokio::test]
async fn storage_suite_sqlite_memory() {
    let repo = SqliteRepository::connect("sqlite::memory:", SqliteSynchronous::Normal)
        .await
        .unwrap();
    storage_suite(Arc::new(repo)).await;
}

#[tokio::test]
async fn storage_suite_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("suite.db").display());
    let repo = SqliteRepository::connect(&url, SqliteSynchronous::Full)
        .await
        .unwrap();
    storage_suite(Arc::new(repo)).await;
    // Reopening runs no migration twice and sees the data.
    let again = SqliteRepository::connect(&url, SqliteSynchronous::Normal)
        .await
        .unwrap();
    assert_eq!(again.counts().await.unwrap().families, 23);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_suite_postgres() {
    let Some(pg) = crate::pg::schema("storage_suite_postgres").await else {
        return;
    };
    let repo = PostgresRepository::connect(&pg.url, 8).await.unwrap();
    storage_suite(Arc::new(repo.clone())).await;
    repo.pool().close().await;
}
