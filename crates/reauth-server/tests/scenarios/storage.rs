//! The storage conformance suite, run on every backend: SQLite in memory,
//! SQLite on a file, and Postgres (skipped without `DATABASE_URL` unless
//! `REAUTH_REQUIRE_SERVICES=1`). Times are the database's clock, which each
//! backend lets the test set (a `ManualClock` for SQLite, the test schema's
//! `reauth_now_ms()` for Postgres).

use std::sync::Arc;
use std::time::Duration;

use reauth_server::store::{
    NewAuditEvent, NewClient, NewFamily, PostgresRepository, Repository, RevokedSession,
    RotateOutcome, Rotation, SqliteRepository,
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

    // Clients (O1): registration with its audit event, secret rotation,
    // the demo client's upsert.
    let strings = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let mut c1 = NewClient::new("c1");
    c1.secret_mac = "mac-1".into();
    c1.grant_types = strings(&["password", "refresh_token"]);
    c1.scopes = strings(&["read", "write"]);
    c1.default_scope = strings(&["read"]);
    // Stored unambiguously (RFC 9700 §4.1): a list element holding a space
    // comes back as one element, never as two URIs nobody registered.
    c1.redirect_uris = strings(&["https://app.example/cb", "https://app.example/a b"]);
    assert!(repo.add_client(&c1).await.unwrap());
    assert!(!repo.add_client(&c1).await.unwrap(), "duplicate refused");
    let stored = repo.find_client("c1").await.unwrap().unwrap();
    assert_eq!(
        (
            stored.secret_mac.as_str(),
            stored.public,
            stored.introspection,
            stored.created_at
        ),
        ("mac-1", false, false, 12)
    );
    assert_eq!(
        (
            stored.grant_types,
            stored.scopes,
            stored.default_scope,
            stored.redirect_uris
        ),
        (
            c1.grant_types,
            c1.scopes,
            c1.default_scope,
            c1.redirect_uris
        )
    );
    assert!(repo.set_client_secret("c1", "mac-2").await.unwrap());
    assert_eq!(
        repo.find_client("c1").await.unwrap().unwrap().secret_mac,
        "mac-2"
    );
    assert!(!repo.set_client_secret("c9", "mac").await.unwrap());
    let mut p1 = NewClient::new("p1");
    p1.public = true;
    p1.grant_types = strings(&["authorization_code"]);
    repo.upsert_client(&p1).await.unwrap();
    clock.set(13).await;
    p1.introspection = true;
    repo.upsert_client(&p1).await.unwrap();
    let stored = repo.find_client("p1").await.unwrap().unwrap();
    assert_eq!(
        (stored.public, stored.introspection, stored.created_at),
        (true, true, 12),
        "an upsert replaces the fields, keeps the registration time"
    );
    assert!(
        !repo.set_client_secret("p1", "mac").await.unwrap(),
        "a public client has no secret"
    );
    let ids: Vec<String> = repo
        .list_clients()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.client_id)
        .collect();
    assert_eq!(ids, ["c1", "p1"]);
    assert_eq!(repo.find_client("c2").await.unwrap(), None);

    // Families and the rotation compare-and-set.
    clock.set(1_000).await;
    let f1 = NewFamily {
        id: "f1",
        subject: "u1",
        client_id: Some("c1"),
        scope: Some("read"),
        generation: 1,
    };
    assert!(repo.create_family(&f1).await.unwrap());
    assert!(
        !repo.create_family(&f1).await.unwrap(),
        "an existing family is not created again"
    );
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

    // Revoking a session with no family (a client_credentials token) leaves
    // a revoked row; one with a live family revokes it.
    clock.set(7_500).await;
    let cc = RevokedSession {
        id: "s-cc",
        subject: "client:c1",
        client_id: Some("c1"),
        kind: "revoked",
        detail: Some("access token revoked"),
    };
    assert!(repo.revoke_session(&cc).await.unwrap());
    assert!(!repo.revoke_session(&cc).await.unwrap(), "already revoked");
    let row = repo.load_family("s-cc").await.unwrap().unwrap();
    assert_eq!(
        (
            row.subject.as_str(),
            row.generation,
            row.revoked_at,
            row.revoked_reason.as_deref()
        ),
        ("client:c1", 0, Some(7_500), Some("revoked"))
    );
    assert!(advanced(repo.rotate(&rotation("s-cc", 0)).await.unwrap()).is_none());
    let logout = RevokedSession {
        id: "f3",
        subject: "u0",
        client_id: None,
        kind: "logout",
        detail: None,
    };
    assert!(repo.revoke_session(&logout).await.unwrap());
    let f3 = repo.load_family("f3").await.unwrap().unwrap();
    assert_eq!(
        (f3.subject.as_str(), f3.generation, f3.revoked_at),
        ("u0", 1, Some(7_500))
    );
    let mut recent: Vec<String> = repo
        .revoked_within(Duration::from_millis(1_000))
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    recent.sort();
    assert_eq!(recent, ["f2", "f3", "s-cc"]);

    // Removing a client revokes its live families.
    clock.set(7_600).await;
    assert!(
        repo.create_family(&NewFamily {
            id: "f4",
            subject: "u0",
            client_id: Some("c1"),
            scope: None,
            generation: 1,
        })
        .await
        .unwrap()
    );
    assert_eq!(
        repo.remove_client("c1").await.unwrap(),
        Some(vec!["f4".to_owned()])
    );
    assert_eq!(repo.remove_client("c1").await.unwrap(), None);
    assert_eq!(repo.find_client("c1").await.unwrap(), None);
    let f4 = repo.load_family("f4").await.unwrap().unwrap();
    assert_eq!(
        (f4.revoked_at, f4.revoked_reason.as_deref()),
        (Some(7_600), Some("client_removed"))
    );

    // Settings: the first value claimed stays.
    assert_eq!(
        repo.claim_setting("key_fingerprint", "aaa").await.unwrap(),
        "aaa"
    );
    assert_eq!(
        repo.claim_setting("key_fingerprint", "bbb").await.unwrap(),
        "aaa"
    );
    repo.ping().await.expect("ping");

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
            ("client_added", 12),
            ("client_secret_rotated", 12),
            ("reuse_detected", 5_000),
            ("user_removed", 7_000),
            ("revoked", 7_500),
            ("logout", 7_500),
            ("client_removed", 7_600),
            ("custom", 8_000)
        ]
    );
    let counts = repo.counts().await.unwrap();
    assert_eq!((counts.users, counts.clients, counts.families), (1, 1, 25));
    assert_eq!(counts.audit_events, 8);
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
    assert_eq!(again.counts().await.unwrap().families, 25);
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
