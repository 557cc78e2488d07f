//! Applies the embedded `migrations/sqlite` in order, each in its own
//! transaction, recorded in `_sqlx_migrations` exactly as `sqlx migrate`
//! records them (version, description, SHA-384 checksum), so a database
//! created by either tool is accepted by the other.

use std::collections::HashMap;
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension};
use sha2::{Digest, Sha384};

use super::error::classify;
use crate::store::StoreError;

/// `(version, description, sql)` of every file in `migrations/sqlite`, by version.
const MIGRATIONS: &[(i64, &str, &str)] =
    include!(concat!(env!("OUT_DIR"), "/sqlite_migrations.rs"));

#[derive(Debug, thiserror::Error)]
enum MigrateError {
    #[error("migration {0} was left half-applied")]
    Dirty(i64),
    #[error("the database has migration {0}, which this build does not know")]
    Unknown(i64),
    #[error("migration {0} was changed after it was applied")]
    Changed(i64),
}

fn refused(e: MigrateError) -> StoreError {
    StoreError::Backend(Box::new(e))
}

/// Brings the schema up to date.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
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
    .map_err(classify)?;
    let dirty: Option<i64> = conn
        .query_row(
            "SELECT version FROM _sqlx_migrations WHERE success = false ORDER BY version LIMIT 1",
            [],
            |row| row.get(0),
        )
        .optional()
        .map_err(classify)?;
    if let Some(version) = dirty {
        return Err(refused(MigrateError::Dirty(version)));
    }
    let applied: HashMap<i64, Vec<u8>> = conn
        .prepare("SELECT version, checksum FROM _sqlx_migrations ORDER BY version")
        .and_then(|mut stmt| {
            stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect()
        })
        .map_err(classify)?;
    if let Some(version) = applied
        .keys()
        .find(|v| !MIGRATIONS.iter().any(|(known, _, _)| known == *v))
    {
        return Err(refused(MigrateError::Unknown(*version)));
    }
    for &(version, description, sql) in MIGRATIONS {
        let checksum = Sha384::digest(sql.as_bytes()).to_vec();
        if let Some(stored) = applied.get(&version) {
            if *stored != checksum {
                return Err(refused(MigrateError::Changed(version)));
            }
            continue;
        }
        let start = Instant::now();
        let tx = conn.transaction().map_err(classify)?;
        tx.execute_batch(sql).map_err(classify)?;
        let elapsed = i64::try_from(start.elapsed().as_nanos()).unwrap_or(i64::MAX);
        tx.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (?1, ?2, TRUE, ?3, ?4)",
            rusqlite::params![version, description, checksum, elapsed],
        )
        .map_err(classify)?;
        tx.commit().map_err(classify)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_embedded_in_order_and_applied_once() {
        assert!(!MIGRATIONS.is_empty());
        assert!(MIGRATIONS.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!((MIGRATIONS[0].0, MIGRATIONS[0].1), (1, "init"));
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM _sqlx_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, i64::try_from(MIGRATIONS.len()).unwrap());
        conn.execute("UPDATE _sqlx_migrations SET checksum = x'00'", [])
            .unwrap();
        assert!(
            migrate(&mut conn).is_err(),
            "a changed migration is refused"
        );
    }
}
