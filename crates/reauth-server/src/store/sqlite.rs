//! The SQLite repository: WAL journal, one connection, group commit of
//! rotations.
//!
//! All statements go through a single pooled connection: SQLite has one
//! writer anyway, and queueing in the pool is far cheaper than SQLite's
//! sleeping busy handler under contention. The connection is never recycled,
//! so an in-memory database lives as long as the repository.
//!
//! Rotations go through a *group commit*: a background task takes every
//! rotation waiting at that moment (up to [`MAX_BATCH`]), runs their
//! compare-and-sets in one transaction and answers each only after the
//! `COMMIT`. One rotation alone is one autocommit statement; under load, N
//! rotations share one commit (one fsync with `synchronous=FULL`). Two
//! rotations of the same family in one batch behave exactly as in sequence:
//! the second finds the generation moved and returns `None`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous as Sync,
};
use tokio::sync::{mpsc, oneshot};

use super::{FamilyRecord, Rotation, sql};
use crate::config::SqliteSynchronous;
use crate::error::ServerError;

/// Most rotations committed together.
const MAX_BATCH: usize = 128;

type Reply = oneshot::Sender<Result<Option<FamilyRecord>, sqlx::Error>>;

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

/// A [`Repository`](super::Repository) on SQLite.
#[derive(Debug, Clone)]
pub struct SqliteRepository {
    pool: SqlitePool,
    rotations: mpsc::UnboundedSender<(OwnedRotation, Reply)>,
}

impl SqliteRepository {
    /// Opens (creating if missing) and migrates the database at `url`
    /// (`sqlite::memory:`, `sqlite://file.db`, `sqlite:///abs/file.db`), and
    /// starts the group-commit task on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// [`ServerError::Database`] or [`ServerError::Migrate`].
    pub async fn connect(url: &str, synchronous: SqliteSynchronous) -> Result<Self, ServerError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match synchronous {
                SqliteSynchronous::Normal => Sync::Normal,
                SqliteSynchronous::Full => Sync::Full,
            })
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(ServerError::Migrate)?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(group_commit(pool.clone(), rx));
        Ok(Self {
            pool,
            rotations: tx,
        })
    }

    /// The underlying pool (benchmarks use it for the raw commit rate).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn rotate_impl(&self, r: &Rotation<'_>) -> Result<Option<FamilyRecord>, sqlx::Error> {
        let owned = OwnedRotation {
            family_id: r.family_id.to_owned(),
            expected_generation: r.expected_generation,
            now: r.now,
            created_after: r.created_after,
            used_after: r.used_after,
            client_id: r.client_id.map(str::to_owned),
        };
        let (reply, answer) = oneshot::channel();
        self.rotations
            .send((owned, reply))
            .map_err(|_| sqlx::Error::PoolClosed)?;
        answer.await.map_err(|_| sqlx::Error::PoolClosed)?
    }
}

/// The group-commit loop; ends when every repository handle is dropped.
async fn group_commit(
    pool: SqlitePool,
    mut queue: mpsc::UnboundedReceiver<(OwnedRotation, Reply)>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        match commit_batch(&pool, &batch).await {
            Ok(results) => {
                for ((_, reply), result) in batch.drain(..).zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                let reason = e.to_string();
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(sqlx::Error::Protocol(format!(
                        "rotation batch failed: {reason}"
                    ))));
                }
            }
        }
    }
}

type BatchResults = Vec<Result<Option<FamilyRecord>, sqlx::Error>>;

async fn commit_batch(
    pool: &SqlitePool,
    batch: &[(OwnedRotation, Reply)],
) -> Result<BatchResults, sqlx::Error> {
    if let [(only, _)] = batch {
        return Ok(vec![rotate_on(pool, &only.borrow()).await]);
    }
    let mut tx = pool.begin().await?;
    let mut results = Vec::with_capacity(batch.len());
    for (rotation, _) in batch {
        results.push(rotate_on(&mut *tx, &rotation.borrow()).await);
    }
    tx.commit().await?;
    Ok(results)
}

super::sql::impl_repository!(SqliteRepository, SqliteRow, super::Backend::Sqlite);
