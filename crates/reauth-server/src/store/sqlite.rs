//! The SQLite repository: WAL journal, one `rusqlite` connection driven
//! inline, group commit of rotations.
//!
//! Every statement runs on the calling thread under a `std::sync::Mutex` on
//! the one connection: a WAL commit with `synchronous=NORMAL` is tens of
//! microseconds, far less than the two thread wake-ups a hop to a database
//! worker thread costs (sqlx runs each SQLite connection on its own thread).
//! SQLite has one writer anyway, and waiting on the mutex is far cheaper than
//! SQLite's sleeping busy handler. An in-memory database lives as long as the
//! repository.
//!
//! Rotations are *group-committed* (leader / follower): a rotation is queued,
//! and whichever caller finds the connection free takes every rotation
//! waiting at that moment (up to [`MAX_BATCH`] per transaction), runs their
//! compare-and-sets in one transaction and answers each only after the
//! `COMMIT`; callers that find the connection busy wait for their answer
//! instead of blocking. One rotation alone is one autocommit statement; under
//! load, N rotations share one commit (one fsync with `synchronous=FULL`).
//! Two rotations of the same family in one batch behave exactly as in
//! sequence: the second finds the generation moved and returns `None`.
//!
//! The schema comes from the same `migrations/sqlite` files as before,
//! applied and recorded in `_sqlx_migrations` exactly as `sqlx migrate` does,
//! so databases created by either are interchangeable.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, named_params};
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::migrate::MigrateError;
use sqlx::sqlite::SqliteConnectOptions;
use tokio::sync::oneshot;

use super::{
    AuditEvent, Backend, FamilyRecord, NewFamily, Repository, Rotation, StoreCounts, UserInfo,
    UserRecord, sql,
};
use crate::config::SqliteSynchronous;
use crate::error::ServerError;

/// Most rotations committed together.
const MAX_BATCH: usize = 128;

/// Batches a leader commits before handing the rest of the queue to a task,
/// so that its own caller is not held up indefinitely under load.
const MAX_LEADER_ROUNDS: usize = 4;

type RotateResult = Result<Option<FamilyRecord>, sqlx::Error>;

#[derive(Debug)]
struct OwnedRotation {
    family_id: String,
    expected_generation: i64,
    now: i64,
    created_after: i64,
    used_after: i64,
    client_id: Option<String>,
}

impl OwnedRotation {
    fn borrow(&self) -> Rotation<'_> {
        Rotation {
            family_id: &self.family_id,
            expected_generation: self.expected_generation,
            now: self.now,
            created_after: self.created_after,
            used_after: self.used_after,
            client_id: self.client_id.as_deref(),
        }
    }
}

#[derive(Debug)]
struct Pending {
    rotation: OwnedRotation,
    reply: oneshot::Sender<RotateResult>,
}

#[derive(Debug)]
struct Inner {
    conn: Mutex<Connection>,
    queue: Mutex<Vec<Pending>>,
}

/// A [`Repository`] on SQLite.
#[derive(Debug, Clone)]
pub struct SqliteRepository {
    inner: Arc<Inner>,
}

/// A SQLite error as a [`sqlx::Error::Database`].
#[derive(Debug)]
struct SqliteError {
    message: String,
    code: Option<i32>,
}

impl fmt::Display for SqliteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SqliteError {}

impl DatabaseError for SqliteError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        self.code.map(|c| Cow::Owned(c.to_string()))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        use rusqlite::ffi;
        match self.code {
            Some(ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => {
                ErrorKind::UniqueViolation
            }
            Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => ErrorKind::ForeignKeyViolation,
            Some(ffi::SQLITE_CONSTRAINT_NOTNULL) => ErrorKind::NotNullViolation,
            Some(ffi::SQLITE_CONSTRAINT_CHECK) => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

fn db_err(e: rusqlite::Error) -> sqlx::Error {
    let code = match &e {
        rusqlite::Error::SqliteFailure(failure, _) => Some(failure.extended_code),
        _ => None,
    };
    sqlx::Error::Database(Box::new(SqliteError {
        message: e.to_string(),
        code,
    }))
}

/// Locks `mutex`, ignoring poisoning (the data is a connection or a queue;
/// an interrupted transaction is rolled back by [`Inner::conn`]).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A connection left inside a transaction (a panic mid-transaction) is
/// rolled back before reuse.
fn clean(conn: MutexGuard<'_, Connection>) -> MutexGuard<'_, Connection> {
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    conn
}

fn family_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<FamilyRecord> {
    // Column order of sql::LOAD_FAMILY and sql::ROTATE's RETURNING.
    Ok(FamilyRecord {
        id: row.get(0)?,
        subject: row.get(1)?,
        client_id: row.get(2)?,
        scope: row.get(3)?,
        generation: row.get(4)?,
        created_at: row.get(5)?,
        last_used_at: row.get(6)?,
        rotated_at: row.get(7)?,
        revoked_at: row.get(8)?,
        revoked_reason: row.get(9)?,
    })
}

fn audit_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEvent> {
    Ok(AuditEvent {
        at: row.get(0)?,
        kind: row.get(1)?,
        family_id: row.get(2)?,
        subject: row.get(3)?,
        detail: row.get(4)?,
    })
}

/// The rotation compare-and-set (one statement).
fn rotate_on(conn: &Connection, r: &Rotation<'_>) -> rusqlite::Result<Option<FamilyRecord>> {
    conn.prepare_cached(sql::ROTATE)?
        .query_row(
            named_params! {
                "$1": r.family_id,
                "$2": r.expected_generation,
                "$3": r.now,
                "$4": r.created_after,
                "$5": r.used_after,
                "$6": r.client_id,
            },
            family_from_row,
        )
        .optional()
}

fn insert_audit(
    conn: &Connection,
    at: i64,
    kind: &str,
    family_id: Option<&str>,
    subject: Option<&str>,
    detail: Option<&str>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(sql::INSERT_AUDIT)?
        .execute(named_params! {
            "$1": at, "$2": kind, "$3": family_id, "$4": subject, "$5": detail,
        })?;
    Ok(())
}

/// Commits one batch of rotations and answers each after the `COMMIT`.
fn commit_batch(conn: &mut Connection, mut batch: Vec<Pending>) {
    if batch.len() == 1 {
        // One rotation: one autocommit statement, no BEGIN / COMMIT.
        let Pending { rotation, reply } = batch.pop().expect("one rotation");
        let _ = reply.send(rotate_on(conn, &rotation.borrow()).map_err(db_err));
        return;
    }
    let outcome = (|| {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let results: Vec<_> = batch
            .iter()
            .map(|p| rotate_on(&tx, &p.rotation.borrow()))
            .collect();
        tx.commit()?;
        Ok::<_, rusqlite::Error>(results)
    })();
    match outcome {
        Ok(results) => {
            for (pending, result) in batch.into_iter().zip(results) {
                let _ = pending.reply.send(result.map_err(db_err));
            }
        }
        Err(e) => {
            let reason = e.to_string();
            for pending in batch {
                let _ = pending.reply.send(Err(sqlx::Error::Protocol(format!(
                    "rotation batch failed: {reason}"
                ))));
            }
        }
    }
}

/// The connection, held for one short statement or transaction. Releasing
/// it runs the rotations queued meanwhile (their callers found the
/// connection busy and are waiting for an answer).
struct ConnGuard<'a> {
    inner: &'a Arc<Inner>,
    guard: Option<MutexGuard<'a, Connection>>,
}

impl std::ops::Deref for ConnGuard<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.guard.as_deref().expect("held until drop")
    }
}

impl std::ops::DerefMut for ConnGuard<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.guard.as_deref_mut().expect("held until drop")
    }
}

impl Drop for ConnGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.inner.drain();
    }
}

impl Inner {
    /// The connection, for one short statement or transaction.
    fn conn(self: &Arc<Self>) -> ConnGuard<'_> {
        ConnGuard {
            inner: self,
            guard: Some(clean(lock(&self.conn))),
        }
    }

    /// Group commit, leader side. Whoever finds the connection free commits
    /// everything queued; a caller that finds it busy returns at once: every
    /// holder (a leader here, any other statement through [`ConnGuard`])
    /// checks the queue again after releasing the connection, so no queued
    /// rotation is left behind.
    fn drain(self: &Arc<Self>) {
        let mut rounds = 0;
        loop {
            if lock(&self.queue).is_empty() {
                return;
            }
            let conn = match self.conn.try_lock() {
                Ok(conn) => conn,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => return,
            };
            let mut conn = clean(conn);
            loop {
                let batch = {
                    let mut queue = lock(&self.queue);
                    let n = queue.len().min(MAX_BATCH);
                    queue.drain(..n).collect::<Vec<_>>()
                };
                if batch.is_empty() {
                    break;
                }
                commit_batch(&mut conn, batch);
                rounds += 1;
                if rounds >= MAX_LEADER_ROUNDS {
                    break;
                }
            }
            drop(conn);
            if rounds >= MAX_LEADER_ROUNDS {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    // Hand the rest of the queue to a task; our caller's
                    // answer is already sent.
                    let inner = Arc::clone(self);
                    runtime.spawn(async move { inner.drain() });
                    return;
                }
            }
        }
    }
}

/// Applies the embedded `migrations/sqlite`, recording them in
/// `_sqlx_migrations` exactly as `sqlx::migrate::Migrator::run` does.
fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    let exec = |e: rusqlite::Error| MigrateError::Execute(db_err(e));
    let migrator = sqlx::migrate!("./migrations/sqlite");
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    success BOOLEAN NOT NULL,
    checksum BLOB NOT NULL,
    execution_time BIGINT NOT NULL
);",
    )
    .map_err(exec)?;
    let dirty: Option<i64> = conn
        .query_row(
            "SELECT version FROM _sqlx_migrations WHERE success = false ORDER BY version LIMIT 1",
            [],
            |row| row.get(0),
        )
        .optional()
        .map_err(exec)?;
    if let Some(version) = dirty {
        return Err(MigrateError::Dirty(version));
    }
    let applied: HashMap<i64, Vec<u8>> = conn
        .prepare("SELECT version, checksum FROM _sqlx_migrations ORDER BY version")
        .and_then(|mut stmt| {
            stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect()
        })
        .map_err(exec)?;
    for version in applied.keys() {
        if !migrator.iter().any(|m| m.version == *version) {
            return Err(MigrateError::VersionMissing(*version));
        }
    }
    for migration in migrator.iter() {
        if migration.migration_type.is_down_migration() {
            continue;
        }
        if let Some(checksum) = applied.get(&migration.version) {
            if checksum.as_slice() != &*migration.checksum {
                return Err(MigrateError::VersionMismatch(migration.version));
            }
            continue;
        }
        let start = Instant::now();
        let tx = conn.transaction().map_err(exec)?;
        tx.execute_batch(&migration.sql)
            .map_err(|e| MigrateError::ExecuteMigration(db_err(e), migration.version))?;
        tx.execute(
            "INSERT INTO _sqlx_migrations ( version, description, success, checksum, execution_time ) \
             VALUES ( ?1, ?2, TRUE, ?3, -1 )",
            rusqlite::params![
                migration.version,
                &*migration.description,
                &*migration.checksum
            ],
        )
        .map_err(exec)?;
        tx.commit().map_err(exec)?;
        let elapsed = i64::try_from(start.elapsed().as_nanos()).unwrap_or(i64::MAX);
        conn.execute(
            "UPDATE _sqlx_migrations SET execution_time = ?1 WHERE version = ?2",
            rusqlite::params![elapsed, migration.version],
        )
        .map_err(exec)?;
    }
    Ok(())
}

impl SqliteRepository {
    /// Opens (creating if missing) and migrates the database at `url`
    /// (`sqlite::memory:`, `sqlite://file.db`, `sqlite:///abs/file.db`).
    ///
    /// # Errors
    ///
    /// [`ServerError::Database`] or [`ServerError::Migrate`].
    pub async fn connect(url: &str, synchronous: SqliteSynchronous) -> Result<Self, ServerError> {
        let options = SqliteConnectOptions::from_str(url)?;
        let filename = options.get_filename();
        let in_memory = filename
            .to_str()
            .is_some_and(|f| f.starts_with("file:sqlx-in-memory-") || f == ":memory:")
            || url.contains("mode=memory");
        let sql_err = |e: rusqlite::Error| ServerError::Database(db_err(e));
        let mut conn = if in_memory {
            Connection::open_in_memory()
        } else {
            Connection::open_with_flags(
                filename,
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_CREATE
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
        }
        .map_err(sql_err)?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(sql_err)?;
        let _mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(sql_err)?;
        conn.execute_batch(match synchronous {
            SqliteSynchronous::Normal => "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
            SqliteSynchronous::Full => "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        })
        .map_err(sql_err)?;
        conn.set_prepared_statement_cache_capacity(32);
        migrate(&mut conn).map_err(ServerError::Migrate)?;
        Ok(Self {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                queue: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Runs `f` on the connection, holding it (benchmarks measure the raw
    /// commit rate with it).
    pub fn with_connection<R>(&self, f: impl FnOnce(&Connection) -> R) -> R {
        f(&self.inner.conn())
    }
}

#[async_trait::async_trait]
impl Repository for SqliteRepository {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn add_user(
        &self,
        username: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let conn = self.inner.conn();
        let n = conn
            .prepare_cached(sql::ADD_USER)
            .and_then(|mut s| {
                s.execute(named_params! { "$1": username, "$2": password_hash, "$3": now })
            })
            .map_err(db_err)?;
        Ok(n == 1)
    }

    async fn find_user(&self, username: &str) -> Result<Option<UserRecord>, sqlx::Error> {
        let conn = self.inner.conn();
        conn.prepare_cached(sql::FIND_USER)
            .and_then(|mut s| {
                s.query_row(named_params! { "$1": username }, |row| {
                    Ok(UserRecord {
                        username: row.get(0)?,
                        password_hash: row.get(1)?,
                        created_at: row.get(2)?,
                    })
                })
                .optional()
            })
            .map_err(db_err)
    }

    async fn remove_user(
        &self,
        username: &str,
        now: i64,
    ) -> Result<Option<Vec<String>>, sqlx::Error> {
        let mut conn = self.inner.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let deleted = tx
            .prepare_cached(sql::DELETE_USER)
            .and_then(|mut s| s.execute(named_params! { "$1": username }))
            .map_err(db_err)?;
        if deleted == 0 {
            tx.rollback().map_err(db_err)?;
            return Ok(None);
        }
        let ids = tx
            .prepare_cached(sql::REVOKE_SUBJECT)
            .and_then(|mut s| {
                s.query_map(named_params! { "$1": username, "$2": now }, |row| {
                    row.get(0)
                })?
                .collect::<rusqlite::Result<Vec<String>>>()
            })
            .map_err(db_err)?;
        let detail = format!("{} families revoked", ids.len());
        insert_audit(
            &tx,
            now,
            "user_removed",
            None,
            Some(username),
            Some(&detail),
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(Some(ids))
    }

    async fn list_users(&self) -> Result<Vec<UserInfo>, sqlx::Error> {
        let conn = self.inner.conn();
        conn.prepare_cached(sql::LIST_USERS)
            .and_then(|mut s| {
                s.query_map([], |row| {
                    Ok(UserInfo {
                        username: row.get(0)?,
                        created_at: row.get(1)?,
                    })
                })?
                .collect()
            })
            .map_err(db_err)
    }

    async fn upsert_client(
        &self,
        client_id: &str,
        secret_mac: &str,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        let conn = self.inner.conn();
        conn.prepare_cached(sql::UPSERT_CLIENT)
            .and_then(|mut s| {
                s.execute(named_params! { "$1": client_id, "$2": secret_mac, "$3": now })
            })
            .map_err(db_err)?;
        Ok(())
    }

    async fn client_secret_mac(&self, client_id: &str) -> Result<Option<String>, sqlx::Error> {
        let conn = self.inner.conn();
        conn.prepare_cached(sql::CLIENT_SECRET)
            .and_then(|mut s| {
                s.query_row(named_params! { "$1": client_id }, |row| row.get(0))
                    .optional()
            })
            .map_err(db_err)
    }

    async fn create_family(&self, f: &NewFamily<'_>) -> Result<(), sqlx::Error> {
        let conn = self.inner.conn();
        conn.prepare_cached(sql::CREATE_FAMILY)
            .and_then(|mut s| {
                s.execute(named_params! {
                    "$1": f.id,
                    "$2": f.subject,
                    "$3": f.client_id,
                    "$4": f.scope,
                    "$5": f.generation,
                    "$6": f.now,
                })
            })
            .map_err(db_err)?;
        Ok(())
    }

    async fn load_family(&self, id: &str) -> Result<Option<FamilyRecord>, sqlx::Error> {
        let conn = self.inner.conn();
        conn.prepare_cached(sql::LOAD_FAMILY)
            .and_then(|mut s| {
                s.query_row(named_params! { "$1": id }, family_from_row)
                    .optional()
            })
            .map_err(db_err)
    }

    async fn rotate(&self, r: &Rotation<'_>) -> Result<Option<FamilyRecord>, sqlx::Error> {
        let (reply, answer) = oneshot::channel();
        lock(&self.inner.queue).push(Pending {
            rotation: OwnedRotation {
                family_id: r.family_id.to_owned(),
                expected_generation: r.expected_generation,
                now: r.now,
                created_after: r.created_after,
                used_after: r.used_after,
                client_id: r.client_id.map(str::to_owned),
            },
            reply,
        });
        self.inner.drain();
        answer.await.map_err(|_| sqlx::Error::PoolClosed)?
    }

    async fn revoke_family(
        &self,
        id: &str,
        now: i64,
        kind: &str,
        detail: Option<&str>,
    ) -> Result<bool, sqlx::Error> {
        let mut conn = self.inner.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let subject: Option<String> = tx
            .prepare_cached(sql::REVOKE_FAMILY)
            .and_then(|mut s| {
                s.query_row(named_params! { "$1": id, "$2": now, "$3": kind }, |row| {
                    row.get(0)
                })
                .optional()
            })
            .map_err(db_err)?;
        let Some(subject) = subject else {
            tx.rollback().map_err(db_err)?;
            return Ok(false);
        };
        insert_audit(&tx, now, kind, Some(id), Some(&subject), detail).map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(true)
    }

    async fn revoked_since(&self, since: i64) -> Result<Vec<(String, i64)>, sqlx::Error> {
        let conn = self.inner.conn();
        conn.prepare_cached(sql::REVOKED_SINCE)
            .and_then(|mut s| {
                s.query_map(named_params! { "$1": since }, |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?
                .collect()
            })
            .map_err(db_err)
    }

    async fn record_audit(&self, e: &AuditEvent) -> Result<(), sqlx::Error> {
        let conn = self.inner.conn();
        insert_audit(
            &conn,
            e.at,
            &e.kind,
            e.family_id.as_deref(),
            e.subject.as_deref(),
            e.detail.as_deref(),
        )
        .map_err(db_err)
    }

    async fn audit_events(&self, family_id: Option<&str>) -> Result<Vec<AuditEvent>, sqlx::Error> {
        let conn = self.inner.conn();
        match family_id {
            Some(id) => conn.prepare_cached(sql::AUDIT_FAMILY).and_then(|mut s| {
                s.query_map(named_params! { "$1": id }, audit_from_row)?
                    .collect()
            }),
            None => conn
                .prepare_cached(sql::AUDIT_ALL)
                .and_then(|mut s| s.query_map([], audit_from_row)?.collect()),
        }
        .map_err(db_err)
    }

    async fn counts(&self) -> Result<StoreCounts, sqlx::Error> {
        let conn = self.inner.conn();
        conn.query_row(sql::COUNTS, [], |row| {
            Ok(StoreCounts {
                users: row.get(0)?,
                clients: row.get(1)?,
                families: row.get(2)?,
                audit_events: row.get(3)?,
            })
        })
        .map_err(db_err)
    }
}
