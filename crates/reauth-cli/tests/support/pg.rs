//! A fresh Postgres schema per test on `DATABASE_URL` (dropped afterwards),
//! or `None` with a printed notice — a failure under
//! `REAUTH_REQUIRE_SERVICES=1`.

use sqlx::Connection as _;

pub struct PgSchema {
    /// A URL whose connections use the schema (`search_path`).
    pub url: String,
    base_url: String,
    schema: String,
}

fn required() -> bool {
    std::env::var("REAUTH_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

fn skip(test: &str, why: &str) -> Option<PgSchema> {
    assert!(
        !required(),
        "{test}: Postgres required (REAUTH_REQUIRE_SERVICES=1) but {why}"
    );
    eprintln!("SKIPPED {test}: {why} (set DATABASE_URL=postgres://… to run it)");
    None
}

/// A fresh schema, or `None` (the test is skipped).
pub fn schema(test: &str) -> Option<PgSchema> {
    let Ok(base_url) = std::env::var("DATABASE_URL") else {
        return skip(test, "DATABASE_URL is not set");
    };
    if !base_url.starts_with("postgres") {
        return skip(test, "DATABASE_URL is not a postgres:// URL");
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let schema = format!("reauth_cli_{:x}_{}", nanos, std::process::id());
    if let Err(e) = execute(&base_url, &format!("CREATE SCHEMA {schema}")) {
        return skip(test, &format!("cannot use DATABASE_URL: {e}"));
    }
    let sep = if base_url.contains('?') { '&' } else { '?' };
    let url = format!("{base_url}{sep}options=-c%20search_path%3D{schema}");
    Some(PgSchema {
        url,
        base_url,
        schema,
    })
}

/// Runs `sql` on a connection of its own (a runtime of its own too: tests
/// call this from plain threads).
pub fn execute(url: &str, sql: &str) -> Result<(), sqlx::Error> {
    let url = url.to_owned();
    let sql = sql.to_owned();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let mut conn = sqlx::PgConnection::connect(&url).await?;
                sqlx::raw_sql(&sql).execute(&mut conn).await?;
                conn.close().await
            })
    })
    .join()
    .unwrap()
}

/// A connection held open by a thread of its own, running `sql` in a
/// transaction until dropped (e.g. to hold a lock).
pub struct Held {
    release: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PgSchema {
    /// Begins a transaction, runs `sql` in it and keeps it open until the
    /// returned guard is dropped.
    pub fn hold(&self, sql: &str) -> Held {
        let (url, sql) = (self.url.clone(), sql.to_owned());
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (ready, is_ready) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
                    sqlx::raw_sql("BEGIN").execute(&mut conn).await.unwrap();
                    sqlx::raw_sql(&sql).execute(&mut conn).await.unwrap();
                    ready.send(()).unwrap();
                    let _ = tokio::task::spawn_blocking(move || released.recv()).await;
                    let _ = sqlx::raw_sql("ROLLBACK").execute(&mut conn).await;
                    let _ = conn.close().await;
                });
        });
        is_ready.recv().expect("the lock is taken");
        Held {
            release: Some(release),
            thread: Some(thread),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let _ = execute(
            &self.base_url,
            &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema),
        );
    }
}
