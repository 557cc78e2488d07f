//! The SQLite repository: WAL journal, one `rusqlite` connection owned by a
//! database thread, group commit of rotations.
//!
//! Callers never touch the connection: each call becomes a job on a bounded
//! queue to the database thread ([`worker`]) and awaits its answer, so a
//! locked or slow database never blocks an async worker — endpoints that need
//! no database keep answering (DESIGN.md S14). A job waits at most the
//! configured wait (default 5 s), then fails with
//! [`StoreError::Unavailable`]; a full queue fails at once the same way.
//! An in-memory database lives as long as the repository.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::sync::oneshot;

mod error;
mod migrate;
mod sql;
mod worker;

use self::error::classify;
use self::worker::{Envelope, Job};
use super::{
    AuditEvent, Backend, ClientRecord, FamilyRecord, NewAuditEvent, NewClient, NewFamily,
    Repository, RevokedSession, RotateOutcome, Rotation, StoreCounts, StoreError, UserInfo,
    UserRecord, client_detail, join, join_uris, millis, split, split_uris,
};
use crate::clock::{Clock, SystemClock};
use crate::config::SqliteSynchronous;
use crate::error::ServerError;

/// Jobs that may wait for the database thread; beyond, calls fail at once.
const QUEUE_CAPACITY: usize = 4096;

/// The wait of [`SqliteRepository::connect`].
const DEFAULT_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(super) struct OwnedRotation {
    family_id: String,
    expected_generation: i64,
    absolute_lifetime_ms: i64,
    idle_timeout_ms: i64,
    client_id: Option<String>,
}

/// A [`Repository`] on SQLite. Cheap to clone (clones share the database
/// thread, which stops when the last clone is dropped).
#[derive(Debug, Clone)]
pub struct SqliteRepository {
    jobs: SyncSender<Envelope>,
    wait: Duration,
    /// The database file and its identity when it was opened (none in
    /// memory): readiness fails once the path names another file, or none.
    file: Option<(PathBuf, FileIdentity)>,
}

/// Which file a path named: device and inode (Unix), else nothing to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity(u64, u64);

impl FileIdentity {
    fn of(path: &std::path::Path) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt as _;
            Ok(Self(meta.dev(), meta.ino()))
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            Ok(Self(0, 0))
        }
    }
}

fn family_from_row(row: &rusqlite::Row<'_>, read_at: i64) -> rusqlite::Result<FamilyRecord> {
    // Column order of sql::family_columns!.
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
        read_at,
    })
}

fn client_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ClientRecord> {
    // Column order of sql::client_columns!.
    Ok(ClientRecord {
        client_id: row.get(0)?,
        secret_mac: row.get(1)?,
        public: row.get(2)?,
        grant_types: split(&row.get::<_, String>(3)?),
        scopes: split(&row.get::<_, String>(4)?),
        default_scope: split(&row.get::<_, String>(5)?),
        redirect_uris: split_uris(&row.get::<_, String>(6)?),
        introspection: row.get(7)?,
        created_at: row.get(8)?,
    })
}

/// Inserts (`sql::ADD_CLIENT`) or upserts (`sql::UPSERT_CLIENT`) a client.
fn put_client(
    conn: &Connection,
    statement: &str,
    c: &NewClient,
    now: i64,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(statement)?.execute(rusqlite::params![
        c.client_id,
        c.secret_mac,
        now,
        c.public,
        join(&c.grant_types),
        join(&c.scopes),
        join(&c.default_scope),
        join_uris(&c.redirect_uris),
        c.introspection,
    ])
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

fn insert_audit(conn: &Connection, at: i64, e: &NewAuditEvent<'_>) -> rusqlite::Result<()> {
    conn.prepare_cached(sql::INSERT_AUDIT)?
        .execute(rusqlite::params![
            at,
            e.kind,
            e.family_id,
            e.subject,
            e.detail
        ])?;
    Ok(())
}

/// Creates the database file with mode `0600` before SQLite opens it (SQLite
/// creates its `-wal` and `-shm` files with the database file's mode). An
/// existing file keeps its mode, with a warning if others may read it.
fn create_private(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        match created {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if let Ok(meta) = std::fs::metadata(path) {
                    let mode = meta.permissions().mode() & 0o777;
                    if mode & 0o077 != 0 {
                        tracing::warn!(
                            path = %path.display(),
                            mode = format!("{mode:o}"),
                            "the database file is readable by other users; chmod 600 it"
                        );
                    }
                }
            }
            // Let SQLite report a missing directory and the like.
            Err(_) => {}
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Where a `sqlite:` URL points.
#[derive(Debug, PartialEq, Eq)]
enum Location {
    Memory,
    File(PathBuf),
}

/// Parses `sqlite::memory:`, `sqlite://file.db`, `sqlite:file.db`,
/// `sqlite:///abs/file.db` (query parameters: `mode=memory` only).
fn location(url: &str) -> Result<Location, ServerError> {
    let rest = url
        .strip_prefix("sqlite:")
        .ok_or_else(|| ServerError::Config("a SQLite URL starts with sqlite:".to_owned()))?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.split('&').any(|p| p == "mode=memory") {
        return Ok(Location::Memory);
    }
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| ServerError::Config("the SQLite path is not UTF-8".to_owned()))?;
    Ok(Location::File(PathBuf::from(decoded.as_ref())))
}

fn open(location: &Location, synchronous: SqliteSynchronous) -> Result<Connection, StoreError> {
    let mut conn = match location {
        Location::Memory => Connection::open_in_memory().map_err(classify)?,
        Location::File(path) => {
            create_private(path);
            Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_CREATE
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(classify)?
        }
    };
    conn.busy_timeout(DEFAULT_WAIT).map_err(classify)?;
    let _mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(classify)?;
    conn.execute_batch(match synchronous {
        SqliteSynchronous::Normal => "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        SqliteSynchronous::Full => "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
    })
    .map_err(classify)?;
    conn.set_prepared_statement_cache_capacity(32);
    migrate::migrate(&mut conn)?;
    Ok(conn)
}

impl SqliteRepository {
    /// Opens (creating if missing) and migrates the database at `url`
    /// (`sqlite::memory:`, `sqlite://file.db`, `sqlite:///abs/file.db`), with
    /// the system clock and a 5 s wait.
    ///
    /// # Errors
    ///
    /// [`ServerError::Config`] for a malformed URL, [`ServerError::Database`]
    /// or [`ServerError::Migrate`].
    pub async fn connect(url: &str, synchronous: SqliteSynchronous) -> Result<Self, ServerError> {
        Self::connect_with(url, synchronous, DEFAULT_WAIT, Arc::new(SystemClock)).await
    }

    /// Like [`connect`](Self::connect) with the longest a call may wait for
    /// the database (a lock held by another process, a queue of work) and
    /// the clock that stamps and judges rows.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn connect_with(
        url: &str,
        synchronous: SqliteSynchronous,
        wait: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ServerError> {
        let location = location(url)?;
        let (conn, file) = tokio::task::spawn_blocking(move || {
            let conn = open(&location, synchronous)?;
            let file = match location {
                Location::Memory => None,
                Location::File(path) => {
                    let identity = FileIdentity::of(&path).map_err(StoreError::unavailable)?;
                    Some((path, identity))
                }
            };
            Ok::<_, StoreError>((conn, file))
        })
        .await
        .map_err(|e| ServerError::Task(e.to_string()))?
        .map_err(|e| match e {
            StoreError::Backend(_) => ServerError::Migrate(e),
            e => ServerError::Database(e),
        })?;
        let (jobs, queue) = sync_channel(QUEUE_CAPACITY);
        std::thread::Builder::new()
            .name("reauth-sqlite".to_owned())
            .spawn(move || worker::run(conn, queue, clock, wait))?;
        Ok(Self { jobs, wait, file })
    }

    /// The file a SQLite URL names: `None` for an in-memory database or a
    /// URL that is not SQLite's. Lets a tool check that a database exists
    /// before it opens (and so creates) it.
    pub fn file_path(url: &str) -> Option<PathBuf> {
        match location(url) {
            Ok(Location::File(path)) => Some(path),
            _ => None,
        }
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        let envelope = Envelope {
            job,
            deadline: Instant::now() + self.wait,
        };
        self.jobs.try_send(envelope).map_err(|e| match e {
            TrySendError::Full(_) => StoreError::unavailable("the database queue is full"),
            TrySendError::Disconnected(_) => StoreError::backend("the database thread stopped"),
        })
    }

    /// Runs `f` on the database thread with the connection and the clock's
    /// now; its result comes back here.
    async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, i64) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Run(Box::new(move |conn| {
            let _ = reply.send(conn.and_then(|(conn, now)| f(conn, now)));
        })))?;
        answer
            .await
            .map_err(|_| StoreError::backend("the database job was dropped"))?
    }

    /// Runs `f` on the database thread's connection. For tests and
    /// benchmarks (fault injection, raw commit rates): **not for production**.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the queue is full or the wait ran out.
    #[cfg(feature = "test-util")]
    #[doc(hidden)]
    pub async fn with_connection<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> R + Send + 'static,
    ) -> Result<R, StoreError> {
        self.call(move |conn, _| Ok(f(conn))).await
    }
}

#[async_trait::async_trait]
impl Repository for SqliteRepository {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn now(&self) -> Result<i64, StoreError> {
        self.call(|_, now| Ok(now)).await
    }

    async fn add_user(&self, username: &str, password_hash: &str) -> Result<bool, StoreError> {
        let (username, hash) = (username.to_owned(), password_hash.to_owned());
        self.call(move |conn, now| {
            let n = conn
                .prepare_cached(sql::ADD_USER)
                .and_then(|mut s| s.execute(rusqlite::params![username, hash, now]))
                .map_err(classify)?;
            Ok(n == 1)
        })
        .await
    }

    async fn find_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let username = username.to_owned();
        self.call(move |conn, _| {
            conn.prepare_cached(sql::FIND_USER)
                .and_then(|mut s| {
                    s.query_row([&username], |row| {
                        Ok(UserRecord {
                            username: row.get(0)?,
                            password_hash: row.get(1)?,
                            created_at: row.get(2)?,
                        })
                    })
                    .optional()
                })
                .map_err(classify)
        })
        .await
    }

    async fn remove_user(&self, username: &str) -> Result<Option<Vec<String>>, StoreError> {
        let username = username.to_owned();
        self.call(move |conn, now| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(classify)?;
            let deleted = tx
                .prepare_cached(sql::DELETE_USER)
                .and_then(|mut s| s.execute([&username]))
                .map_err(classify)?;
            if deleted == 0 {
                return Ok(None);
            }
            let ids = tx
                .prepare_cached(sql::REVOKE_SUBJECT)
                .and_then(|mut s| {
                    s.query_map(rusqlite::params![username, now], |row| row.get(0))?
                        .collect::<rusqlite::Result<Vec<String>>>()
                })
                .map_err(classify)?;
            let detail = format!("{} families revoked", ids.len());
            let event = NewAuditEvent {
                kind: "user_removed",
                family_id: None,
                subject: Some(&username),
                detail: Some(&detail),
            };
            insert_audit(&tx, now, &event).map_err(classify)?;
            tx.commit().map_err(classify)?;
            Ok(Some(ids))
        })
        .await
    }

    async fn list_users(&self) -> Result<Vec<UserInfo>, StoreError> {
        self.call(|conn, _| {
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
                .map_err(classify)
        })
        .await
    }

    async fn add_client(&self, client: &NewClient) -> Result<bool, StoreError> {
        let client = client.clone();
        self.call(move |conn, now| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(classify)?;
            if put_client(&tx, sql::ADD_CLIENT, &client, now).map_err(classify)? == 0 {
                return Ok(false);
            }
            let detail = client_detail(&client);
            let event = NewAuditEvent {
                kind: "client_added",
                family_id: None,
                subject: Some(&client.client_id),
                detail: Some(&detail),
            };
            insert_audit(&tx, now, &event).map_err(classify)?;
            tx.commit().map_err(classify)?;
            Ok(true)
        })
        .await
    }

    async fn upsert_client(&self, client: &NewClient) -> Result<(), StoreError> {
        let client = client.clone();
        self.call(move |conn, now| {
            put_client(conn, sql::UPSERT_CLIENT, &client, now).map_err(classify)?;
            Ok(())
        })
        .await
    }

    async fn find_client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        let client_id = client_id.to_owned();
        self.call(move |conn, _| {
            conn.prepare_cached(sql::FIND_CLIENT)
                .and_then(|mut s| s.query_row([&client_id], client_from_row).optional())
                .map_err(classify)
        })
        .await
    }

    async fn list_clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        self.call(|conn, _| {
            conn.prepare_cached(sql::LIST_CLIENTS)
                .and_then(|mut s| s.query_map([], client_from_row)?.collect())
                .map_err(classify)
        })
        .await
    }

    async fn remove_client(&self, client_id: &str) -> Result<Option<Vec<String>>, StoreError> {
        let client_id = client_id.to_owned();
        self.call(move |conn, now| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(classify)?;
            let deleted = tx
                .prepare_cached(sql::DELETE_CLIENT)
                .and_then(|mut s| s.execute([&client_id]))
                .map_err(classify)?;
            if deleted == 0 {
                return Ok(None);
            }
            let ids = tx
                .prepare_cached(sql::REVOKE_CLIENT_FAMILIES)
                .and_then(|mut s| {
                    s.query_map(rusqlite::params![client_id, now], |row| row.get(0))?
                        .collect::<rusqlite::Result<Vec<String>>>()
                })
                .map_err(classify)?;
            let detail = format!("{} families revoked", ids.len());
            let event = NewAuditEvent {
                kind: "client_removed",
                family_id: None,
                subject: Some(&client_id),
                detail: Some(&detail),
            };
            insert_audit(&tx, now, &event).map_err(classify)?;
            tx.commit().map_err(classify)?;
            Ok(Some(ids))
        })
        .await
    }

    async fn set_client_secret(
        &self,
        client_id: &str,
        secret_mac: &str,
    ) -> Result<bool, StoreError> {
        let (client_id, mac) = (client_id.to_owned(), secret_mac.to_owned());
        self.call(move |conn, now| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(classify)?;
            let changed = tx
                .prepare_cached(sql::SET_CLIENT_SECRET)
                .and_then(|mut s| s.execute(rusqlite::params![client_id, mac]))
                .map_err(classify)?;
            if changed == 0 {
                return Ok(false);
            }
            let event = NewAuditEvent {
                kind: "client_secret_rotated",
                family_id: None,
                subject: Some(&client_id),
                detail: None,
            };
            insert_audit(&tx, now, &event).map_err(classify)?;
            tx.commit().map_err(classify)?;
            Ok(true)
        })
        .await
    }

    async fn create_family(&self, f: &NewFamily<'_>) -> Result<bool, StoreError> {
        let (id, subject) = (f.id.to_owned(), f.subject.to_owned());
        let (client_id, scope) = (f.client_id.map(str::to_owned), f.scope.map(str::to_owned));
        let generation = f.generation;
        self.call(move |conn, now| {
            let inserted = conn
                .prepare_cached(sql::CREATE_FAMILY)
                .and_then(|mut s| {
                    s.execute(rusqlite::params![
                        id, subject, client_id, scope, generation, now
                    ])
                })
                .map_err(classify)?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn load_family(&self, id: &str) -> Result<Option<FamilyRecord>, StoreError> {
        let id = id.to_owned();
        self.call(move |conn, now| {
            conn.prepare_cached(sql::LOAD_FAMILY)
                .and_then(|mut s| {
                    s.query_row([&id], |row| family_from_row(row, now))
                        .optional()
                })
                .map_err(classify)
        })
        .await
    }

    async fn rotate(&self, r: &Rotation<'_>) -> Result<RotateOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Rotate {
            rotation: OwnedRotation {
                family_id: r.family_id.to_owned(),
                expected_generation: r.expected_generation,
                absolute_lifetime_ms: millis(r.absolute_lifetime),
                idle_timeout_ms: millis(r.idle_timeout),
                client_id: r.client_id.map(str::to_owned),
            },
            reply,
        })?;
        answer
            .await
            .map_err(|_| StoreError::backend("the database job was dropped"))?
    }

    async fn revoke_family(
        &self,
        id: &str,
        kind: &str,
        detail: Option<&str>,
    ) -> Result<bool, StoreError> {
        let (id, kind, detail) = (id.to_owned(), kind.to_owned(), detail.map(str::to_owned));
        self.call(move |conn, now| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(classify)?;
            let subject: Option<String> = tx
                .prepare_cached(sql::REVOKE_FAMILY)
                .and_then(|mut s| {
                    s.query_row(rusqlite::params![id, now, kind], |row| row.get(0))
                        .optional()
                })
                .map_err(classify)?;
            let Some(subject) = subject else {
                return Ok(false);
            };
            let event = NewAuditEvent {
                kind: &kind,
                family_id: Some(&id),
                subject: Some(&subject),
                detail: detail.as_deref(),
            };
            insert_audit(&tx, now, &event).map_err(classify)?;
            tx.commit().map_err(classify)?;
            Ok(true)
        })
        .await
    }

    async fn revoke_session(&self, r: &RevokedSession<'_>) -> Result<bool, StoreError> {
        let (id, subject) = (r.id.to_owned(), r.subject.to_owned());
        let client_id = r.client_id.map(str::to_owned);
        let (kind, detail) = (r.kind.to_owned(), r.detail.map(str::to_owned));
        self.call(move |conn, now| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(classify)?;
            let revoked: Option<String> = tx
                .prepare_cached(sql::REVOKE_SESSION)
                .and_then(|mut s| {
                    s.query_row(
                        rusqlite::params![id, subject, client_id, now, kind],
                        |row| row.get(0),
                    )
                    .optional()
                })
                .map_err(classify)?;
            let Some(subject) = revoked else {
                return Ok(false);
            };
            let event = NewAuditEvent {
                kind: &kind,
                family_id: Some(&id),
                subject: Some(&subject),
                detail: detail.as_deref(),
            };
            insert_audit(&tx, now, &event).map_err(classify)?;
            tx.commit().map_err(classify)?;
            Ok(true)
        })
        .await
    }

    async fn revoked_within(&self, window: Duration) -> Result<Vec<(String, i64)>, StoreError> {
        let window = millis(window);
        self.call(move |conn, now| {
            conn.prepare_cached(sql::REVOKED_SINCE)
                .and_then(|mut s| {
                    s.query_map([now.saturating_sub(window)], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })?
                    .collect()
                })
                .map_err(classify)
        })
        .await
    }

    async fn record_audit(&self, e: &NewAuditEvent<'_>) -> Result<(), StoreError> {
        let kind = e.kind.to_owned();
        let family_id = e.family_id.map(str::to_owned);
        let subject = e.subject.map(str::to_owned);
        let detail = e.detail.map(str::to_owned);
        self.call(move |conn, now| {
            let event = NewAuditEvent {
                kind: &kind,
                family_id: family_id.as_deref(),
                subject: subject.as_deref(),
                detail: detail.as_deref(),
            };
            insert_audit(conn, now, &event).map_err(classify)
        })
        .await
    }

    async fn audit_events(&self, family_id: Option<&str>) -> Result<Vec<AuditEvent>, StoreError> {
        let family_id = family_id.map(str::to_owned);
        self.call(move |conn, _| {
            match &family_id {
                Some(id) => conn
                    .prepare_cached(sql::AUDIT_FAMILY)
                    .and_then(|mut s| s.query_map([id], audit_from_row)?.collect()),
                None => conn
                    .prepare_cached(sql::AUDIT_ALL)
                    .and_then(|mut s| s.query_map([], audit_from_row)?.collect()),
            }
            .map_err(classify)
        })
        .await
    }

    async fn counts(&self) -> Result<StoreCounts, StoreError> {
        self.call(|conn, _| {
            conn.query_row(sql::COUNTS, [], |row| {
                Ok(StoreCounts {
                    users: row.get(0)?,
                    clients: row.get(1)?,
                    families: row.get(2)?,
                    audit_events: row.get(3)?,
                })
            })
            .map_err(classify)
        })
        .await
    }

    async fn claim_setting(&self, name: &str, value: &str) -> Result<String, StoreError> {
        let (name, value) = (name.to_owned(), value.to_owned());
        self.call(move |conn, _| {
            conn.prepare_cached(sql::CLAIM_SETTING)
                .and_then(|mut s| s.execute([&name, &value]))
                .and_then(|_| {
                    conn.prepare_cached(sql::GET_SETTING)?
                        .query_row([&name], |row| row.get(0))
                })
                .map_err(classify)
        })
        .await
    }

    /// Also fails when the database file was deleted or replaced under the
    /// server (a restore, a stray `rm`): the open connection would go on
    /// answering from the unlinked file, and every write would be lost.
    async fn ping(&self) -> Result<(), StoreError> {
        self.call(|conn, _| {
            conn.query_row(sql::PING, [], |row| row.get::<_, i64>(0))
                .map(drop)
                .map_err(classify)
        })
        .await?;
        if let Some((path, opened)) = &self.file {
            match FileIdentity::of(path) {
                Ok(now) if now == *opened => {}
                Ok(_) => {
                    return Err(StoreError::unavailable(format!(
                        "the database file {} was replaced since it was opened",
                        path.display()
                    )));
                }
                Err(e) => {
                    return Err(StoreError::unavailable(format!(
                        "the database file {} is gone since it was opened: {e}",
                        path.display()
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls() {
        for url in [
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite://x.db?mode=memory",
        ] {
            assert_eq!(location(url).unwrap(), Location::Memory, "{url}");
        }
        assert_eq!(
            location("sqlite://reauth.db").unwrap(),
            Location::File("reauth.db".into())
        );
        assert_eq!(
            location("sqlite:///var/lib/a%20b.db").unwrap(),
            Location::File("/var/lib/a b.db".into())
        );
        assert_eq!(
            location("sqlite:rel/x.db?mode=rwc").unwrap(),
            Location::File("rel/x.db".into())
        );
    }
}
