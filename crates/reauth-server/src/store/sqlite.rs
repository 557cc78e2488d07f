//! The SQLite repository: WAL journal, one writer connection.
//!
//! All statements go through a single pooled connection: SQLite has one
//! writer anyway, and queueing in the pool is far cheaper than SQLite's
//! sleeping busy handler under contention. The connection is never recycled,
//! so an in-memory database lives as long as the repository.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous as Sync,
};

use super::sql;
use crate::config::SqliteSynchronous;
use crate::error::ServerError;

/// A [`Repository`](super::Repository) on SQLite.
#[derive(Debug, Clone)]
pub struct SqliteRepository {
    pool: SqlitePool,
}

impl SqliteRepository {
    /// Opens (creating if missing) and migrates the database at `url`
    /// (`sqlite::memory:`, `sqlite://file.db`, `sqlite:///abs/file.db`).
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
        Ok(Self { pool })
    }

    /// The underlying pool (benchmarks use it for the raw commit rate).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

super::sql::impl_repository!(SqliteRepository, SqliteRow, super::Backend::Sqlite);
