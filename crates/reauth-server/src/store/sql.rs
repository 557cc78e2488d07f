//! The SQL shared by both backends (`$n` placeholders work in SQLite too) and
//! a macro that implements [`Repository`](super::Repository) for a pool type.

pub(super) const ADD_USER: &str = "INSERT INTO users (username, password_hash, created_at) VALUES ($1, $2, $3) ON CONFLICT (username) DO NOTHING";
pub(super) const FIND_USER: &str =
    "SELECT username, password_hash, created_at FROM users WHERE username = $1";
pub(super) const DELETE_USER: &str = "DELETE FROM users WHERE username = $1";
pub(super) const REVOKE_SUBJECT: &str = "UPDATE families SET revoked_at = $2, revoked_reason = 'user_removed' WHERE subject = $1 AND revoked_at IS NULL RETURNING id";
pub(super) const LIST_USERS: &str = "SELECT username, created_at FROM users ORDER BY username";
pub(super) const UPSERT_CLIENT: &str = "INSERT INTO clients (client_id, secret_mac, created_at) VALUES ($1, $2, $3) ON CONFLICT (client_id) DO UPDATE SET secret_mac = excluded.secret_mac";
pub(super) const CLIENT_SECRET: &str = "SELECT secret_mac FROM clients WHERE client_id = $1";
pub(super) const CREATE_FAMILY: &str = "INSERT INTO families (id, subject, client_id, scope, generation, created_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $6)";
pub(super) const LOAD_FAMILY: &str = "SELECT id, subject, client_id, scope, generation, created_at, last_used_at, rotated_at, revoked_at, revoked_reason FROM families WHERE id = $1";
/// The compare-and-set. One statement: atomic on both databases.
pub(super) const ROTATE: &str = "UPDATE families SET generation = generation + 1, rotated_at = $3, last_used_at = $3 \
     WHERE id = $1 AND generation = $2 AND revoked_at IS NULL AND created_at > $4 AND last_used_at > $5 \
     AND client_id IS NOT DISTINCT FROM CAST($6 AS TEXT) \
     RETURNING id, subject, client_id, scope, generation, created_at, last_used_at, rotated_at, revoked_at, revoked_reason";
pub(super) const REVOKE_FAMILY: &str = "UPDATE families SET revoked_at = $2, revoked_reason = $3 WHERE id = $1 AND revoked_at IS NULL RETURNING subject";
pub(super) const REVOKED_SINCE: &str = "SELECT id, revoked_at FROM families WHERE revoked_at >= $1";
pub(super) const INSERT_AUDIT: &str =
    "INSERT INTO audit_events (at, kind, family_id, subject, detail) VALUES ($1, $2, $3, $4, $5)";
pub(super) const AUDIT_ALL: &str =
    "SELECT at, kind, family_id, subject, detail FROM audit_events ORDER BY id";
pub(super) const AUDIT_FAMILY: &str = "SELECT at, kind, family_id, subject, detail FROM audit_events WHERE family_id = $1 ORDER BY id";
pub(super) const COUNTS: &str = "SELECT (SELECT COUNT(*) FROM users) AS users, (SELECT COUNT(*) FROM clients) AS clients, \
     (SELECT COUNT(*) FROM families) AS families, (SELECT COUNT(*) FROM audit_events) AS audit_events";

/// Implements `Repository` for `$ty` whose field `pool` is a `sqlx::Pool`.
macro_rules! impl_repository {
    ($ty:ty, $row:ty, $backend:expr) => {
        fn family_from_row(row: &$row) -> Result<$crate::store::FamilyRecord, ::sqlx::Error> {
            Ok($crate::store::FamilyRecord {
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
            })
        }

        fn audit_from_row(row: &$row) -> Result<$crate::store::AuditEvent, ::sqlx::Error> {
            Ok($crate::store::AuditEvent {
                at: row.try_get("at")?,
                kind: row.try_get("kind")?,
                family_id: row.try_get("family_id")?,
                subject: row.try_get("subject")?,
                detail: row.try_get("detail")?,
            })
        }

        /// The rotation compare-and-set on one connection or pool.
        async fn rotate_on<'e, E>(
            executor: E,
            r: &$crate::store::Rotation<'_>,
        ) -> Result<Option<$crate::store::FamilyRecord>, ::sqlx::Error>
        where
            E: ::sqlx::Executor<'e, Database = <$row as ::sqlx::Row>::Database>,
        {
            let row = ::sqlx::query(sql::ROTATE)
                .bind(r.family_id)
                .bind(r.expected_generation)
                .bind(r.now)
                .bind(r.created_after)
                .bind(r.used_after)
                .bind(r.client_id)
                .fetch_optional(executor)
                .await?;
            row.as_ref().map(family_from_row).transpose()
        }

        #[::async_trait::async_trait]
        impl $crate::store::Repository for $ty {
            fn backend(&self) -> $crate::store::Backend {
                $backend
            }

            async fn add_user(
                &self,
                username: &str,
                password_hash: &str,
                now: i64,
            ) -> Result<bool, ::sqlx::Error> {
                let done = ::sqlx::query(sql::ADD_USER)
                    .bind(username)
                    .bind(password_hash)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn find_user(
                &self,
                username: &str,
            ) -> Result<Option<$crate::store::UserRecord>, ::sqlx::Error> {
                let row = ::sqlx::query(sql::FIND_USER)
                    .bind(username)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|row| {
                    Ok($crate::store::UserRecord {
                        username: row.try_get("username")?,
                        password_hash: row.try_get("password_hash")?,
                        created_at: row.try_get("created_at")?,
                    })
                })
                .transpose()
            }

            async fn remove_user(
                &self,
                username: &str,
                now: i64,
            ) -> Result<Option<Vec<String>>, ::sqlx::Error> {
                let mut tx = self.pool.begin().await?;
                let deleted = ::sqlx::query(sql::DELETE_USER)
                    .bind(username)
                    .execute(&mut *tx)
                    .await?;
                if deleted.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Ok(None);
                }
                let rows = ::sqlx::query(sql::REVOKE_SUBJECT)
                    .bind(username)
                    .bind(now)
                    .fetch_all(&mut *tx)
                    .await?;
                let mut ids = Vec::with_capacity(rows.len());
                for row in rows {
                    ids.push(row.try_get::<String, _>("id")?);
                }
                ::sqlx::query(sql::INSERT_AUDIT)
                    .bind(now)
                    .bind("user_removed")
                    .bind(Option::<&str>::None)
                    .bind(username)
                    .bind(format!("{} families revoked", ids.len()))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Some(ids))
            }

            async fn list_users(&self) -> Result<Vec<$crate::store::UserInfo>, ::sqlx::Error> {
                let rows = ::sqlx::query(sql::LIST_USERS).fetch_all(&self.pool).await?;
                rows.iter()
                    .map(|row| {
                        Ok($crate::store::UserInfo {
                            username: row.try_get("username")?,
                            created_at: row.try_get("created_at")?,
                        })
                    })
                    .collect()
            }

            async fn upsert_client(
                &self,
                client_id: &str,
                secret_mac: &str,
                now: i64,
            ) -> Result<(), ::sqlx::Error> {
                ::sqlx::query(sql::UPSERT_CLIENT)
                    .bind(client_id)
                    .bind(secret_mac)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn client_secret_mac(
                &self,
                client_id: &str,
            ) -> Result<Option<String>, ::sqlx::Error> {
                let row = ::sqlx::query(sql::CLIENT_SECRET)
                    .bind(client_id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|row| row.try_get("secret_mac")).transpose()
            }

            async fn create_family(
                &self,
                f: &$crate::store::NewFamily<'_>,
            ) -> Result<(), ::sqlx::Error> {
                ::sqlx::query(sql::CREATE_FAMILY)
                    .bind(f.id)
                    .bind(f.subject)
                    .bind(f.client_id)
                    .bind(f.scope)
                    .bind(f.generation)
                    .bind(f.now)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn load_family(
                &self,
                id: &str,
            ) -> Result<Option<$crate::store::FamilyRecord>, ::sqlx::Error> {
                let row = ::sqlx::query(sql::LOAD_FAMILY)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(family_from_row).transpose()
            }

            async fn rotate(
                &self,
                r: &$crate::store::Rotation<'_>,
            ) -> Result<Option<$crate::store::FamilyRecord>, ::sqlx::Error> {
                self.rotate_impl(r).await
            }

            async fn revoke_family(
                &self,
                id: &str,
                now: i64,
                kind: &str,
                detail: Option<&str>,
            ) -> Result<bool, ::sqlx::Error> {
                let mut tx = self.pool.begin().await?;
                let row = ::sqlx::query(sql::REVOKE_FAMILY)
                    .bind(id)
                    .bind(now)
                    .bind(kind)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(row) = row else {
                    tx.rollback().await?;
                    return Ok(false);
                };
                let subject: String = row.try_get("subject")?;
                ::sqlx::query(sql::INSERT_AUDIT)
                    .bind(now)
                    .bind(kind)
                    .bind(id)
                    .bind(subject)
                    .bind(detail)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn revoked_since(&self, since: i64) -> Result<Vec<(String, i64)>, ::sqlx::Error> {
                let rows = ::sqlx::query(sql::REVOKED_SINCE)
                    .bind(since)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|row| Ok((row.try_get("id")?, row.try_get("revoked_at")?)))
                    .collect()
            }

            async fn record_audit(
                &self,
                e: &$crate::store::AuditEvent,
            ) -> Result<(), ::sqlx::Error> {
                ::sqlx::query(sql::INSERT_AUDIT)
                    .bind(e.at)
                    .bind(&e.kind)
                    .bind(&e.family_id)
                    .bind(&e.subject)
                    .bind(&e.detail)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn audit_events(
                &self,
                family_id: Option<&str>,
            ) -> Result<Vec<$crate::store::AuditEvent>, ::sqlx::Error> {
                let rows = match family_id {
                    Some(id) => {
                        ::sqlx::query(sql::AUDIT_FAMILY)
                            .bind(id)
                            .fetch_all(&self.pool)
                            .await?
                    }
                    None => ::sqlx::query(sql::AUDIT_ALL).fetch_all(&self.pool).await?,
                };
                rows.iter().map(audit_from_row).collect()
            }

            async fn counts(&self) -> Result<$crate::store::StoreCounts, ::sqlx::Error> {
                let row = ::sqlx::query(sql::COUNTS).fetch_one(&self.pool).await?;
                Ok($crate::store::StoreCounts {
                    users: row.try_get("users")?,
                    clients: row.try_get("clients")?,
                    families: row.try_get("families")?,
                    audit_events: row.try_get("audit_events")?,
                })
            }
        }
    };
}

pub(super) use impl_repository;
