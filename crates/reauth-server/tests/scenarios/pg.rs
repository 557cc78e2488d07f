//! Postgres for tests: `DATABASE_URL`, one fresh schema per test.
//!
//! Without `DATABASE_URL` (or when it is unreachable) a Postgres test prints
//! why and returns early — unless `REAUTH_REQUIRE_SERVICES=1`, then it fails.

use sqlx::Connection;

pub(crate) struct PgSchema {
    /// A URL whose connections use the test's schema (`search_path`).
    pub(crate) url: String,
    base_url: String,
    schema: String,
}

fn required() -> bool {
    std::env::var("REAUTH_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

fn skip(test: &str, why: &str) -> Option<PgSchema> {
    if required() {
        panic!("{test}: Postgres required (REAUTH_REQUIRE_SERVICES=1) but {why}");
    }
    eprintln!("SKIPPED {test}: {why} (set DATABASE_URL=postgres://… to run it)");
    None
}

/// A fresh schema on the test database, or `None` (test skipped).
pub(crate) async fn schema(test: &str) -> Option<PgSchema> {
    let Ok(base_url) = std::env::var("DATABASE_URL") else {
        return skip(test, "DATABASE_URL is not set");
    };
    if !base_url.starts_with("postgres") {
        return skip(test, "DATABASE_URL is not a postgres:// URL");
    }
    let mut conn = match sqlx::PgConnection::connect(&base_url).await {
        Ok(c) => c,
        Err(e) => return skip(test, &format!("cannot connect to DATABASE_URL: {e}")),
    };
    let suffix: u64 = rand_suffix();
    let schema = format!("reauth_test_{suffix:016x}");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .expect("create schema");
    let _ = conn.close().await;
    let sep = if base_url.contains('?') { '&' } else { '?' };
    let url = format!("{base_url}{sep}options=-c%20search_path%3D{schema}");
    Some(PgSchema {
        url,
        base_url,
        schema,
    })
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

impl PgSchema {
    /// Replaces the schema's `reauth_now_ms()` (the database clock every
    /// repository reads) by one the test sets: a fixed time when
    /// [`set_clock`](Self::set_clock) was called, else the real clock plus
    /// whatever [`advance_clock`](Self::advance_clock) added. Call after the
    /// migrations ran.
    pub(crate) async fn install_test_clock(&self) {
        let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE reauth_test_clock (fixed_ms BIGINT, offset_ms BIGINT NOT NULL);
             INSERT INTO reauth_test_clock VALUES (NULL, 0);
             CREATE OR REPLACE FUNCTION reauth_now_ms() RETURNS BIGINT LANGUAGE sql VOLATILE AS
             $$ SELECT COALESCE(fixed_ms, (extract(epoch FROM clock_timestamp()) * 1000)::bigint + offset_ms)
                FROM reauth_test_clock $$;",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        let _ = conn.close().await;
    }

    /// Stops the database clock at `ms`.
    pub(crate) async fn set_clock(&self, ms: i64) {
        self.clock_sql(&format!("UPDATE reauth_test_clock SET fixed_ms = {ms}"))
            .await;
    }

    /// Moves the (running) database clock forward by `by`.
    pub(crate) async fn advance_clock(&self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap();
        self.clock_sql(&format!(
            "UPDATE reauth_test_clock SET offset_ms = offset_ms + {ms}"
        ))
        .await;
    }

    async fn clock_sql(&self, sql: &str) {
        self.execute(sql).await;
    }

    /// Runs `sql` (one or more statements) in the test's schema.
    pub(crate) async fn execute(&self, sql: &str) {
        let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        let _ = conn.close().await;
    }

    /// [`execute`](Self::execute) with an owned statement (for closures).
    pub(crate) async fn execute_owned(&self, sql: String) {
        self.execute(&sql).await;
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let base = self.base_url.clone();
        let schema = self.schema.clone();
        // Drop the schema from a thread of its own: Drop may run inside a runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&base).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}
