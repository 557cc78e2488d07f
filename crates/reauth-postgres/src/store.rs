//! The store, its lease and its compare-and-set.

use std::time::Duration;

use async_trait::async_trait;
use reauth::coord::{Coordinator, Lease};
use reauth::{Generation, Stamp, StoreError, TokenSet, TokenStore};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// The tables, created by [`PostgresStore::migrate`] if absent.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS reauth_tokens (
    key        text PRIMARY KEY,
    generation bigint NOT NULL,
    tokens     text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS reauth_leases (
    key        text PRIMARY KEY,
    owner      text NOT NULL,
    expires_at timestamptz NOT NULL
);
ALTER TABLE reauth_tokens ADD COLUMN IF NOT EXISTS lineage text NOT NULL DEFAULT '';
";

/// The fence of a compare-and-swap (`$2`: the owner, `NULL` for none): the
/// lease row must be held by the owner and unexpired by the database's clock.
/// `FOR SHARE` locks that row until the statement's transaction commits, so a
/// takeover of the lapsed lease (an `UPDATE` of the row) waits for this write
/// to be committed — and the new holder's re-read sees it.
const FENCE: &str = "($2::text IS NULL OR EXISTS (
    SELECT 1 FROM reauth_leases
    WHERE key = $1 AND owner = $2 AND expires_at > clock_timestamp()
    FOR SHARE))";

/// Serialises concurrent `migrate` calls (`CREATE TABLE IF NOT EXISTS` races).
const MIGRATE_LOCK: i64 = 0x7265_6175_7468; // "reauth"

/// A [`TokenStore`] and [`Coordinator`] in Postgres, shared by every replica
/// that uses the same key.
///
/// Cheap to clone: clones share one connection pool.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    key: String,
}

fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(Box::new(e))
}

fn generation(g: Generation) -> Result<i64, StoreError> {
    i64::try_from(g.get()).map_err(|e| StoreError::Backend(Box::new(e)))
}

fn encode(tokens: &TokenSet) -> Result<String, StoreError> {
    serde_json::to_string(tokens).map_err(|e| StoreError::Backend(Box::new(e)))
}

impl PostgresStore {
    /// Connects to `url` with a small pool, creates the tables if absent, and
    /// uses the row `key`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if the URL is not a `postgres://` (or
    /// `postgresql://`) URL, or the database cannot be reached or migrated.
    ///
    /// TLS (`sslmode=require`, `verify-full` …) runs on rustls with the
    /// webpki roots.
    pub async fn connect(url: &str, key: &str) -> Result<Self, StoreError> {
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("postgres" | "postgresql")) {
            return Err(StoreError::Backend(Box::new(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a postgres:// URL",
            ))));
        }
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(url)
            .await
            .map_err(backend)?;
        Self::migrate(&pool).await?;
        Ok(Self::new(pool, key))
    }

    /// A store on an existing pool, using the row `key`. The tables must exist
    /// (see [`migrate`](Self::migrate) and [`SCHEMA`]).
    pub fn new(pool: PgPool, key: &str) -> Self {
        Self {
            pool,
            key: key.to_owned(),
        }
    }

    /// Creates the tables if absent. Safe to run from many replicas at once.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if the DDL failed.
    pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
        let mut tx = pool.begin().await.map_err(backend)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATE_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::raw_sql(SCHEMA)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)
    }

    /// The row key.
    pub fn key(&self) -> &str {
        &self.key
    }
}

#[async_trait]
impl TokenStore for PostgresStore {
    async fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        let json: Option<String> =
            sqlx::query_scalar("SELECT tokens FROM reauth_tokens WHERE key = $1")
                .bind(&self.key)
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| StoreError::Corrupt(Box::new(e))))
            .transpose()
    }

    async fn store(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO reauth_tokens (key, generation, lineage, tokens) VALUES ($1, $2, $3, $4)
             ON CONFLICT (key) DO UPDATE SET generation = EXCLUDED.generation,
                 lineage = EXCLUDED.lineage, tokens = EXCLUDED.tokens, updated_at = now()",
        )
        .bind(&self.key)
        .bind(generation(tokens.generation)?)
        .bind(tokens.lineage.as_str())
        .bind(encode(tokens)?)
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(backend)
    }

    async fn clear(&self) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM reauth_tokens WHERE key = $1")
            .bind(&self.key)
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(backend)
    }

    fn coordinator(&self) -> Option<&dyn Coordinator> {
        Some(self)
    }
}

#[async_trait]
impl Coordinator for PostgresStore {
    async fn try_acquire(&self, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let lease = Lease::generate(ttl);
        let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        // Inserts a lease, or takes over a lapsed one; a live lease makes the
        // WHERE false and nothing is returned. Concurrent callers serialise on
        // the row, and each re-checks the WHERE against the winner's version.
        let won: Option<String> = sqlx::query_scalar(
            "INSERT INTO reauth_leases (key, owner, expires_at)
             VALUES ($1, $2, clock_timestamp() + $3 * interval '1 millisecond')
             ON CONFLICT (key) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
             WHERE reauth_leases.expires_at <= clock_timestamp()
             RETURNING owner",
        )
        .bind(&self.key)
        .bind(lease.owner())
        .bind(ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        Ok(won.map(|_| lease))
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool, StoreError> {
        let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        let done = sqlx::query(
            "UPDATE reauth_leases SET expires_at = clock_timestamp() + $3 * interval '1 millisecond'
             WHERE key = $1 AND owner = $2 AND expires_at > clock_timestamp()",
        )
        .bind(&self.key)
        .bind(lease.owner())
        .bind(ms)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM reauth_leases WHERE key = $1 AND owner = $2")
            .bind(&self.key)
            .bind(lease.owner())
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(backend)
    }

    async fn compare_and_swap(
        &self,
        fence: Option<&Lease>,
        expected: Option<&Stamp>,
        new: Option<&TokenSet>,
    ) -> Result<bool, StoreError> {
        let owner = fence.map(Lease::owner);
        // $1 key, $2 fence owner, then the expected stamp, then the new set.
        let done = match (expected, new) {
            (Some(e), Some(t)) => sqlx::query(&format!(
                "UPDATE reauth_tokens SET generation = $5, lineage = $6, tokens = $7, updated_at = now()
                 WHERE key = $1 AND generation = $3 AND lineage = $4 AND {FENCE}"
            ))
            .bind(&self.key)
            .bind(owner)
            .bind(generation(e.generation)?)
            .bind(e.lineage.as_str())
            .bind(generation(t.generation)?)
            .bind(t.lineage.as_str())
            .bind(encode(t)?)
            .execute(&self.pool)
            .await,
            (None, Some(t)) => sqlx::query(&format!(
                "INSERT INTO reauth_tokens (key, generation, lineage, tokens)
                 SELECT $1, $3, $4, $5 WHERE {FENCE}
                 ON CONFLICT (key) DO NOTHING"
            ))
            .bind(&self.key)
            .bind(owner)
            .bind(generation(t.generation)?)
            .bind(t.lineage.as_str())
            .bind(encode(t)?)
            .execute(&self.pool)
            .await,
            (Some(e), None) => sqlx::query(&format!(
                "DELETE FROM reauth_tokens
                 WHERE key = $1 AND generation = $3 AND lineage = $4 AND {FENCE}"
            ))
            .bind(&self.key)
            .bind(owner)
            .bind(generation(e.generation)?)
            .bind(e.lineage.as_str())
            .execute(&self.pool)
            .await,
            (None, None) => {
                // "Remove nothing, if nothing is stored": true iff nothing is.
                let empty: bool = sqlx::query_scalar(&format!(
                    "SELECT NOT EXISTS (SELECT 1 FROM reauth_tokens WHERE key = $1) AND {FENCE}"
                ))
                .bind(&self.key)
                .bind(owner)
                .fetch_one(&self.pool)
                .await
                .map_err(backend)?;
                return Ok(empty);
            }
        }
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }
}
