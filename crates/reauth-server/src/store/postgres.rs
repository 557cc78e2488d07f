//! The PostgreSQL repository, for several server replicas on one database.
//!
//! Times come from the database (`reauth_now_ms()`, migration 0002), so
//! replicas whose clocks disagree judge grace windows and lifetimes alike.
//! Waits are bounded: the pool's acquire timeout, and `lock_timeout` and
//! `statement_timeout` on every connection, all set to the configured wait; a
//! statement that runs out answers [`StoreError::Unavailable`].

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection as _, Row};

use super::{
    AuditEvent, Backend, ClientRecord, FamilyRecord, NewAuditEvent, NewClient, NewFamily,
    Repository, RevokedSession, RotateOutcome, Rotation, StoreCounts, StoreError, UserInfo,
    UserRecord, client_detail, join, join_uris, millis, split, split_uris,
};
use crate::error::ServerError;

const FAMILY_COLUMNS: &str = "id, subject, client_id, scope, generation, created_at, last_used_at, rotated_at, revoked_at, revoked_reason";

/// A [`Repository`] on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresRepository {
    pool: PgPool,
}

/// Classifies a sqlx error by SQLSTATE (and transport failures).
fn classify(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            match code.as_str() {
                // character_not_in_repertoire (NUL), untranslatable_character,
                // string_data_right_truncation, program_limit_exceeded (index row too big),
                // invalid_text_representation, numeric_value_out_of_range.
                "22021" | "22P05" | "22001" | "54000" | "22P02" | "22003" => {
                    StoreError::InvalidInput(Box::new(e))
                }
                // query_canceled (statement_timeout), lock_not_available, serialization
                // failure, deadlock, insufficient resources (disk full, out of memory,
                // too many connections), read-only transaction, shutting down,
                // connection exceptions.
                c if c == "57014"
                    || c == "55P03"
                    || c == "40001"
                    || c == "40P01"
                    || c == "25006"
                    || c.starts_with("53")
                    || c.starts_with("57P")
                    || c.starts_with("08") =>
                {
                    StoreError::Unavailable(Box::new(e))
                }
                _ => StoreError::Backend(Box::new(e)),
            }
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(Box::new(e)),
        _ => StoreError::Backend(Box::new(e)),
    }
}

fn family_from_row(row: &PgRow) -> Result<FamilyRecord, sqlx::Error> {
    Ok(FamilyRecord {
        id: row.try_get("id")?,
        subject: row.try_get("subject")?,
        client_id: row.try_get("client_id")?,
        scope: row.try_get("scope")?,
        generation: row.try_get("generation")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        rotated_at: row.try_get("rotated_at")?,
        revoked_at: row.try_get("revoked_at")?,
        revoked_reason: row.try_get("revoked_reason")?,
        read_at: row.try_get("read_at")?,
    })
}

const CLIENT_COLUMNS: &str = "client_id, secret_mac, public, grant_types, scopes, default_scope, redirect_uris, introspection, created_at";

fn client_from_row(row: &PgRow) -> Result<ClientRecord, sqlx::Error> {
    Ok(ClientRecord {
        client_id: row.try_get("client_id")?,
        secret_mac: row.try_get("secret_mac")?,
        public: row.try_get("public")?,
        grant_types: split(row.try_get("grant_types")?),
        scopes: split(row.try_get("scopes")?),
        default_scope: split(row.try_get("default_scope")?),
        redirect_uris: split_uris(row.try_get("redirect_uris")?),
        introspection: row.try_get("introspection")?,
        created_at: row.try_get("created_at")?,
    })
}

/// `$1` id, `$2` secret MAC, `$3` public, `$4` grant types, `$5` scopes,
/// `$6` default scope, `$7` redirect URIs, `$8` introspection.
const INSERT_CLIENT: &str = "INSERT INTO clients (client_id, secret_mac, created_at, public, grant_types, scopes, default_scope, redirect_uris, introspection) \
     VALUES ($1, $2, reauth_now_ms(), $3, $4, $5, $6, $7, $8) ON CONFLICT (client_id) ";

fn bind_client<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    c: &'q NewClient,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(&c.client_id)
        .bind(&c.secret_mac)
        .bind(c.public)
        .bind(join(&c.grant_types))
        .bind(join(&c.scopes))
        .bind(join(&c.default_scope))
        .bind(join_uris(&c.redirect_uris))
        .bind(c.introspection)
}

fn audit_from_row(row: &PgRow) -> Result<AuditEvent, sqlx::Error> {
    Ok(AuditEvent {
        at: row.try_get("at")?,
        kind: row.try_get("kind")?,
        family_id: row.try_get("family_id")?,
        subject: row.try_get("subject")?,
        detail: row.try_get("detail")?,
    })
}

const INSERT_AUDIT: &str = "INSERT INTO audit_events (at, kind, family_id, subject, detail) VALUES (reauth_now_ms(), $1, $2, $3, $4)";

impl PostgresRepository {
    /// Connects to `url` with at most `max_connections`, every wait bounded
    /// by `wait`, and migrates.
    ///
    /// # Errors
    ///
    /// [`ServerError::Database`] or [`ServerError::Migrate`].
    pub async fn connect(
        url: &str,
        max_connections: u32,
        wait: Duration,
    ) -> Result<Self, ServerError> {
        let base =
            PgConnectOptions::from_str(url).map_err(|e| ServerError::Database(classify(e)))?;
        // Migrations on a connection of their own, without the request
        // timeouts: a migration on a large table may take longer than a
        // request may wait.
        let mut conn = sqlx::PgConnection::connect_with(&base)
            .await
            .map_err(|e| ServerError::Database(classify(e)))?;
        sqlx::migrate!("./migrations/postgres")
            .run(&mut conn)
            .await
            .map_err(|e| ServerError::Migrate(StoreError::backend(e)))?;
        let _ = sqlx::Connection::close(conn).await;
        let wait_ms = millis(wait).max(1).to_string();
        let options = base.options([
            ("lock_timeout", wait_ms.as_str()),
            ("statement_timeout", wait_ms.as_str()),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(wait)
            .connect_with(options)
            .await
            .map_err(|e| ServerError::Database(classify(e)))?;
        Ok(Self { pool })
    }

    /// Closes the pool (waits for connections in use to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait::async_trait]
impl Repository for PostgresRepository {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn now(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT reauth_now_ms()")
            .fetch_one(&self.pool)
            .await
            .map_err(classify)
    }

    async fn add_user(&self, username: &str, password_hash: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("INSERT INTO users (username, password_hash, created_at) VALUES ($1, $2, reauth_now_ms()) ON CONFLICT (username) DO NOTHING")
            .bind(username)
            .bind(password_hash)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected() == 1)
    }

    async fn find_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT username, password_hash, created_at FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        row.map(|row| {
            Ok(UserRecord {
                username: row.try_get("username")?,
                password_hash: row.try_get("password_hash")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .transpose()
        .map_err(classify)
    }

    async fn remove_user(&self, username: &str) -> Result<Option<Vec<String>>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let deleted = sqlx::query("DELETE FROM users WHERE username = $1")
            .bind(username)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        if deleted.rows_affected() == 0 {
            tx.rollback().await.map_err(classify)?;
            return Ok(None);
        }
        let ids: Vec<String> = sqlx::query_scalar("UPDATE families SET revoked_at = reauth_now_ms(), revoked_reason = 'user_removed' WHERE subject = $1 AND revoked_at IS NULL RETURNING id")
            .bind(username)
            .fetch_all(&mut *tx)
            .await
            .map_err(classify)?;
        sqlx::query(INSERT_AUDIT)
            .bind("user_removed")
            .bind(Option::<&str>::None)
            .bind(username)
            .bind(format!("{} families revoked", ids.len()))
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(Some(ids))
    }

    async fn list_users(&self) -> Result<Vec<UserInfo>, StoreError> {
        let rows = sqlx::query("SELECT username, created_at FROM users ORDER BY username")
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(|row| {
                Ok(UserInfo {
                    username: row.try_get("username")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(classify)
    }

    async fn add_client(&self, client: &NewClient) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let sql = format!("{INSERT_CLIENT}DO NOTHING");
        let done = bind_client(sqlx::query(&sql), client)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        if done.rows_affected() == 0 {
            tx.rollback().await.map_err(classify)?;
            return Ok(false);
        }
        sqlx::query(INSERT_AUDIT)
            .bind("client_added")
            .bind(Option::<&str>::None)
            .bind(&client.client_id)
            .bind(client_detail(client))
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(true)
    }

    async fn upsert_client(&self, client: &NewClient) -> Result<(), StoreError> {
        let sql = format!(
            "{INSERT_CLIENT}DO UPDATE SET secret_mac = excluded.secret_mac, public = excluded.public, \
             grant_types = excluded.grant_types, scopes = excluded.scopes, \
             default_scope = excluded.default_scope, redirect_uris = excluded.redirect_uris, \
             introspection = excluded.introspection"
        );
        bind_client(sqlx::query(&sql), client)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn find_client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id = $1"
        ))
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        row.as_ref()
            .map(client_from_row)
            .transpose()
            .map_err(classify)
    }

    async fn list_clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CLIENT_COLUMNS} FROM clients ORDER BY client_id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(client_from_row)
            .collect::<Result<_, _>>()
            .map_err(classify)
    }

    async fn remove_client(&self, client_id: &str) -> Result<Option<Vec<String>>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let deleted = sqlx::query("DELETE FROM clients WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        if deleted.rows_affected() == 0 {
            tx.rollback().await.map_err(classify)?;
            return Ok(None);
        }
        let ids: Vec<String> = sqlx::query_scalar("UPDATE families SET revoked_at = reauth_now_ms(), revoked_reason = 'client_removed' WHERE client_id = $1 AND revoked_at IS NULL RETURNING id")
            .bind(client_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(classify)?;
        sqlx::query(INSERT_AUDIT)
            .bind("client_removed")
            .bind(Option::<&str>::None)
            .bind(client_id)
            .bind(format!("{} families revoked", ids.len()))
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(Some(ids))
    }

    async fn set_client_secret(
        &self,
        client_id: &str,
        secret_mac: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let changed = sqlx::query(
            "UPDATE clients SET secret_mac = $2 WHERE client_id = $1 AND public = FALSE",
        )
        .bind(client_id)
        .bind(secret_mac)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        if changed.rows_affected() == 0 {
            tx.rollback().await.map_err(classify)?;
            return Ok(false);
        }
        sqlx::query(INSERT_AUDIT)
            .bind("client_secret_rotated")
            .bind(Option::<&str>::None)
            .bind(client_id)
            .bind(Option::<&str>::None)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(true)
    }

    async fn create_family(&self, f: &NewFamily<'_>) -> Result<bool, StoreError> {
        let done = sqlx::query("INSERT INTO families (id, subject, client_id, scope, generation, created_at, last_used_at) VALUES ($1, $2, $3, $4, $5, reauth_now_ms(), reauth_now_ms()) ON CONFLICT (id) DO NOTHING")
            .bind(f.id)
            .bind(f.subject)
            .bind(f.client_id)
            .bind(f.scope)
            .bind(f.generation)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected() == 1)
    }

    async fn load_family(&self, id: &str) -> Result<Option<FamilyRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {FAMILY_COLUMNS}, reauth_now_ms() AS read_at FROM families WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        row.as_ref()
            .map(family_from_row)
            .transpose()
            .map_err(classify)
    }

    /// Postgres serialises concurrent rotations of one family on the row
    /// lock and commits concurrent transactions together on its own.
    async fn rotate(&self, r: &Rotation<'_>) -> Result<RotateOutcome, StoreError> {
        let row = sqlx::query(
            "WITH clock AS (SELECT reauth_now_ms() AS now) \
             UPDATE families SET generation = generation + 1, rotated_at = clock.now, last_used_at = clock.now \
             FROM clock \
             WHERE id = $1 AND generation = $2 AND revoked_at IS NULL \
             AND created_at > clock.now - $3 AND last_used_at > clock.now - $4 \
             AND client_id IS NOT DISTINCT FROM CAST($5 AS TEXT) \
             RETURNING id, subject, client_id, scope, generation, created_at, last_used_at, \
             rotated_at, revoked_at, revoked_reason, clock.now AS read_at",
        )
        .bind(r.family_id)
        .bind(r.expected_generation)
        .bind(millis(r.absolute_lifetime))
        .bind(millis(r.idle_timeout))
        .bind(r.client_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        match row {
            Some(row) => Ok(RotateOutcome::Advanced(
                family_from_row(&row).map_err(classify)?,
            )),
            None => Ok(RotateOutcome::Unchanged(
                self.load_family(r.family_id).await?,
            )),
        }
    }

    async fn revoke_family(
        &self,
        id: &str,
        kind: &str,
        detail: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let subject: Option<String> = sqlx::query_scalar("UPDATE families SET revoked_at = reauth_now_ms(), revoked_reason = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING subject")
            .bind(id)
            .bind(kind)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        let Some(subject) = subject else {
            tx.rollback().await.map_err(classify)?;
            return Ok(false);
        };
        sqlx::query(INSERT_AUDIT)
            .bind(kind)
            .bind(id)
            .bind(subject)
            .bind(detail)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(true)
    }

    async fn revoke_session(&self, r: &RevokedSession<'_>) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let subject: Option<String> = sqlx::query_scalar(
            "INSERT INTO families (id, subject, client_id, scope, generation, created_at, last_used_at, revoked_at, revoked_reason) \
             VALUES ($1, $2, $3, NULL, 0, reauth_now_ms(), reauth_now_ms(), reauth_now_ms(), $4) \
             ON CONFLICT (id) DO UPDATE SET revoked_at = excluded.revoked_at, revoked_reason = excluded.revoked_reason \
             WHERE families.revoked_at IS NULL RETURNING subject",
        )
        .bind(r.id)
        .bind(r.subject)
        .bind(r.client_id)
        .bind(r.kind)
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?;
        let Some(subject) = subject else {
            tx.rollback().await.map_err(classify)?;
            return Ok(false);
        };
        sqlx::query(INSERT_AUDIT)
            .bind(r.kind)
            .bind(r.id)
            .bind(subject)
            .bind(r.detail)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(true)
    }

    async fn revoked_within(&self, window: Duration) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, revoked_at FROM families WHERE revoked_at >= reauth_now_ms() - $1",
        )
        .bind(millis(window))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get("revoked_at")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(classify)
    }

    async fn record_audit(&self, e: &NewAuditEvent<'_>) -> Result<(), StoreError> {
        sqlx::query(INSERT_AUDIT)
            .bind(e.kind)
            .bind(e.family_id)
            .bind(e.subject)
            .bind(e.detail)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn audit_events(&self, family_id: Option<&str>) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = match family_id {
            Some(id) => {
                sqlx::query("SELECT at, kind, family_id, subject, detail FROM audit_events WHERE family_id = $1 ORDER BY id")
                    .bind(id)
                    .fetch_all(&self.pool)
                    .await
            }
            None => {
                sqlx::query("SELECT at, kind, family_id, subject, detail FROM audit_events ORDER BY id")
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(classify)?;
        rows.iter()
            .map(audit_from_row)
            .collect::<Result<_, _>>()
            .map_err(classify)
    }

    async fn counts(&self) -> Result<StoreCounts, StoreError> {
        let row = sqlx::query("SELECT (SELECT COUNT(*) FROM users) AS users, (SELECT COUNT(*) FROM clients) AS clients, \
             (SELECT COUNT(*) FROM families) AS families, (SELECT COUNT(*) FROM audit_events) AS audit_events")
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        let get = |name: &str| row.try_get::<i64, _>(name).map_err(classify);
        Ok(StoreCounts {
            users: get("users")?,
            clients: get("clients")?,
            families: get("families")?,
            audit_events: get("audit_events")?,
        })
    }

    async fn claim_setting(&self, name: &str, value: &str) -> Result<String, StoreError> {
        // One statement: the insert's row, or the row that was there.
        sqlx::query_scalar(
            "WITH claimed AS (INSERT INTO settings (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO NOTHING RETURNING value) \
             SELECT value FROM claimed UNION ALL SELECT value FROM settings WHERE name = $1 LIMIT 1",
        )
        .bind(name)
        .bind(value)
        .fetch_one(&self.pool)
        .await
        .map_err(classify)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM settings")
            .fetch_one(&self.pool)
            .await
            .map_err(classify)
            .map(drop)
    }
}
