//! The storage conformance suite, run on every backend: SQLite in memory,
//! SQLite on a file, and Postgres (skipped without `DATABASE_URL` unless
//! `REAUTH_REQUIRE_SERVICES=1`). Times are the database's clock, which each
//! backend lets the test set (a `ManualClock` for SQLite, the test schema's
//! `reauth_now_ms()` for Postgres).

use std::sync::Arc;
use std::time::Duration;

use reauth_server::store::{
    NewAuditEvent, NewFamily, PostgresRepository, Repository, RotateOutcome, Rotation,
    SqliteRepository,
};
use reauth_server::{ManualClock, SqliteSynchronous};

use crate::pg::PgSchema;

/// The database clock of a suite run.
pub(crate) enum DbClock<'a> {
    Manual(ManualClock),
    Postgres(&'a PgSchema),
}

impl DbClock<'_> {
    pub(crate) async fn set(&self, ms: i64) {
        match self {
            Self::Manual(clock) => clock.set_millis(ms),
            Self::Postgres(pg) => pg.set_clock(ms).await,
        }
    }
}

const LONG: Duration = Duration::from_secs(1_000_000);

/// A rotation of a family issued to client `c1` (most of the suite's families).
fn rotation(family_id: &str, expected_generation: i64) -> Rotation<'_> {
    Rotation {
        family_id,
        expected_generation,
        absolute_lifetime: LONG,
        idle_timeout: LONG,
        client_id: Some("c1"),
    }
}

fn advanced(outcome: RotateOutcome) -> Option<reauth_server::store::FamilyRecord> {
    match outcome {
        RotateOutcome::Advanced(row) => Some(row),
        _ => None,
    }
}

async fn storage_suite(repo: Arc<dyn Repository>, clock: DbClock<'_>) {
    // Users.
    clock.set(10).await;
    assert_eq!(repo.now().await.unwrap(), 10, "the database clock");
    assert!(repo.add_user("u1", "hash-1").await.unwrap());
    assert!(
        !repo.add_user("u1", "hash-2").await.unwrap(),
        "duplicate refused"
    );
    clock.set(12).await;
    assert!(repo.add_user("u0", "hash-0").await.unwrap());
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
    repo.upsert_client("c1", "mac-1").await.unwrap();
    repo.upsert_client("c1", "mac-2").await.unwrap();
    assert_eq!(
        repo.client_secret_mac("c1").await.unwrap().as_deref(),
        Some("mac-2")
    );
    assert_eq!(repo.client_secret_mac("c2").await.unwrap(), None);

    // Families and the rotation compare-and-set.
    clock.set(1_000).await;
    repo.create_family(&NewFamily {
        id: "f1",
        subject: "u1",
        client_id: Some("c1"),
        scope: Some("read"),
        generation: 1,
    })
    .await
    .unwrap();
    clock.set(1_500).await;
    let f = repo.load_family("f1").await.unwrap().unwrap();
    assert_eq!(
        (
            f.generation,
            f.created_at,
            f.last_used_at,
            f.rotated_at,
            f.read_at
        ),
        (1, 1_000, 1_000, None, 1_500)
    );
    assert_eq!(
        (f.client_id.as_deref(), f.scope.as_deref()),
        (Some("c1"), Some("read"))
    );

    clock.set(2_000).await;
    let rotated = advanced(repo.rotate(&rotation("f1", 1)).await.unwrap()).unwrap();
    assert_eq!(
        (
            rotated.generation,
            rotated.rotated_at,
            rotated.last_used_at,
            rotated.read_at
        ),
        (2, Some(2_000), 2_000, 2_000)
    );
    clock.set(2_001).await;
    match repo.rotate(&rotation("f1", 1)).await.unwrap() {
        RotateOutcome::Unchanged(Some(row)) => {
            assert_eq!(
                (row.generation, row.read_at),
                (2, 2_001),
                "stale generation"
            );
        }
        other => panic!("stale generation: {other:?}"),
    }
    assert_eq!(
        repo.rotate(&rotation("nope", 1)).await.unwrap(),
        RotateOutcome::Unchanged(None),
        "unknown family"
    );
    clock.set(2_100).await;
    let wrong_client = Rotation {
        client_id: Some("c2"),
        ..rotation("f1", 2)
    };
    assert!(advanced(repo.rotate(&wrong_client).await.unwrap()).is_none());
    let first_party = Rotation {
        client_id: None,
        ..rotation("f1", 2)
    };
    assert!(
        advanced(repo.rotate(&first_party).await.unwrap()).is_none(),
        "a client's family is not rotated as a first-party one"
    );
    assert_eq!(
        advanced(repo.rotate(&rotation("f1", 2)).await.unwrap())
            .unwrap()
            .generation,
        3
    );
    // Lifetimes are judged by the database's clock: created at 1 000, last
    // used at 2 100, now 2 200.
    clock.set(2_200).await;
    let too_old = Rotation {
        absolute_lifetime: Duration::from_millis(1_200),
        ..rotation("f1", 3)
    };
    assert!(
        advanced(repo.rotate(&too_old).await.unwrap()).is_none(),
        "absolute lifetime"
    );
    let idle = Rotation {
        idle_timeout: Duration::from_millis(100),
        ..rotation("f1", 3)
    };
    assert!(
        advanced(repo.rotate(&idle).await.unwrap()).is_none(),
        "idle timeout"
    );
    assert_eq!(
        repo.load_family("f1").await.unwrap().unwrap().generation,
        3,
        "failed CAS wrote nothing"
    );

    // N concurrent compare-and-sets on one generation: exactly one wins.
    clock.set(3_000).await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let repo = repo.clone();
        tasks.push(tokio::spawn(async move {
            advanced(repo.rotate(&rotation("f1", 3)).await.unwrap()).is_some()
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
    clock.set(1_000).await;
    for i in 0..20 {
        let id = format!("g{i}");
        repo.create_family(&NewFamily {
            id: &id,
            subject: "u0",
            client_id: None,
            scope: None,
            generation: 7,
        })
        .await
        .unwrap();
    }
    clock.set(3_000).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let repo = repo.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("g{i}");
            let first_party = Rotation {
                client_id: None,
                ..rotation(&id, 7)
            };
            advanced(repo.rotate(&first_party).await.unwrap()).map(|f| f.generation)
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), Some(8));
    }

    // Revocation with its audit event, in one transaction.
    clock.set(5_000).await;
    assert!(
        repo.revoke_family("f1", "reuse_detected", Some("gen 1 at 4"))
            .await
            .unwrap()
    );
    clock.set(5_001).await;
    assert!(
        !repo.revoke_family("f1", "revoked", None).await.unwrap(),
        "already revoked"
    );
    assert!(!repo.revoke_family("nope", "revoked", None).await.unwrap());
    assert!(
        advanced(repo.rotate(&rotation("f1", 4)).await.unwrap()).is_none(),
        "revoked family does not rotate"
    );
    let f = repo.load_family("f1").await.unwrap().unwrap();
    assert_eq!(
        (f.revoked_at, f.revoked_reason.as_deref()),
        (Some(5_000), Some("reuse_detected"))
    );
    assert_eq!(
        repo.revoked_within(Duration::from_millis(1_000))
            .await
            .unwrap(),
        vec![("f1".to_owned(), 5_000)]
    );
    clock.set(6_001).await;
    assert!(
        repo.revoked_within(Duration::from_millis(1_000))
            .await
            .unwrap()
            .is_empty()
    );
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
    clock.set(6_000).await;
    for (id, subject) in [("f2", "u1"), ("f3", "u0")] {
        repo.create_family(&NewFamily {
            id,
            subject,
            client_id: None,
            scope: None,
            generation: 1,
        })
        .await
        .unwrap();
    }
    clock.set(7_000).await;
    assert_eq!(
        repo.remove_user("u1").await.unwrap(),
        Some(vec!["f2".to_owned()])
    );
    assert_eq!(repo.remove_user("u1").await.unwrap(), None);
    let f2 = repo.load_family("f2").await.unwrap().unwrap();
    assert_eq!(
        (f2.revoked_at, f2.revoked_reason.as_deref()),
        (Some(7_000), Some("user_removed"))
    );
    assert!(
        repo.load_family("f3")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );

    clock.set(8_000).await;
    repo.record_audit(&NewAuditEvent {
        kind: "custom",
        family_id: None,
        subject: None,
        detail: None,
    })
    .await
    .expect("record_audit");
    let all = repo.audit_events(None).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|e| (e.kind.as_str(), e.at))
            .collect::<Vec<_>>(),
        [
            ("reuse_detected", 5_000),
            ("user_removed", 7_000),
            ("custom", 8_000)
        ]
    );
    let counts = repo.counts().await.unwrap();
    assert_eq!((counts.users, counts.clients, counts.families), (1, 1, 23));
    assert_eq!(counts.audit_events, 3);
}

async fn sqlite(url: &str, sync: SqliteSynchronous, clock: &ManualClock) -> SqliteRepository {
    SqliteRepository::connect_with(url, sync, Duration::from_secs(5), Arc::new(clock.clone()))
        .await
        .unwrap()
}

#[tokio::test]
async fn storage_suite_sqlite_memory() {
    let clock = ManualClock::starting_at(0);
    let repo = sqlite("sqlite::memory:", SqliteSynchronous::Normal, &clock).await;
    storage_suite(Arc::new(repo), DbClock::Manual(clock)).await;
}

#[tokio::test]
async fn storage_suite_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("suite.db").display());
    let clock = ManualClock::starting_at(0);
    let repo = sqlite(&url, SqliteSynchronous::Full, &clock).await;
    storage_suite(Arc::new(repo), DbClock::Manual(clock)).await;
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
    let repo = PostgresRepository::connect(&pg.url, 8, Duration::from_secs(5))
        .await
        .unwrap();
    pg.install_test_clock().await;
    storage_suite(Arc::new(repo.clone()), DbClock::Postgres(&pg)).await;
    repo.close().await;
}
