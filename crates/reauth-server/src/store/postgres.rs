//! The PostgreSQL repository, for several server replicas on one database.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};

use super::sql;
use crate::error::ServerError;

/// A [`Repository`](super::Repository) on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresRepository {
    pool: PgPool,
}

impl PostgresRepository {
    /// Connects to `url` with at most `max_connections` and migrates.
    ///
    /// # Errors
    ///
    /// [`ServerError::Database`] or [`ServerError::Migrate`].
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, ServerError> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(ServerError::Migrate)?;
        Ok(Self { pool })
    }

    /// The underlying pool (benchmarks use it for the raw commit rate).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Postgres serialises concurrent rotations of one family on the row
    /// lock and commits concurrent transactions together on its own.
    async fn rotate_impl(
        &self,
        r: &super::Rotation<'_>,
    ) -> Result<Option<super::FamilyRecord>, sqlx::Error> {
        rotate_on(&self.pool, r).await
    }
}

super::sql::impl_repository!(PostgresRepository, PgRow, super::Backend::Postgres);
