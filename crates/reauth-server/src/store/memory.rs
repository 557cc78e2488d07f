//! [`MemoryRepository`]: the [`Repository`] contract in memory, for the
//! deterministic simulation (`crates/reauth-sim`). Feature `test-util` only.
//!
//! It applies the same conditions as the SQLite statements (`sqlite/sql.rs`)
//! — the rotation compare-and-set, the revocations, the database's clock —
//! under one mutex, so every call is atomic and answers without a thread or a
//! real clock: a simulation that runs on virtual time stays deterministic.
//! What it does not model is durability: nothing is written anywhere.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use super::{
    AuditEvent, Backend, ClientRecord, FamilyRecord, NewAuditEvent, NewClient, NewFamily,
    Repository, RevokedSession, RotateOutcome, Rotation, StoreCounts, StoreError, UserInfo,
    UserRecord, millis,
};
use crate::clock::Clock;

/// An in-memory [`Repository`] on an injected database clock. Clones share
/// the same data: hand one clone to every replica of a simulation to model
/// "R replicas on one database". **Test helper** (feature `test-util`).
#[derive(Clone, Debug)]
pub struct MemoryRepository {
    clock: Arc<dyn Clock>,
    data: Arc<Mutex<Data>>,
}

#[derive(Debug, Default)]
struct Data {
    users: BTreeMap<String, UserRecord>,
    clients: BTreeMap<String, ClientRecord>,
    families: BTreeMap<String, FamilyRecord>,
    audit: Vec<AuditEvent>,
    settings: BTreeMap<String, String>,
}

impl MemoryRepository {
    /// An empty database whose clock is `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            data: Arc::default(),
        }
    }

    fn data(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_millis()
    }

    /// Every family row, by id (for a simulation's invariant checks).
    pub fn families(&self) -> Vec<FamilyRecord> {
        let now = self.now_ms();
        self.data()
            .families
            .values()
            .map(|f| FamilyRecord {
                read_at: now,
                ..f.clone()
            })
            .collect()
    }
}

fn audit(data: &mut Data, at: i64, e: &NewAuditEvent<'_>) {
    data.audit.push(AuditEvent {
        at,
        kind: e.kind.to_owned(),
        family_id: e.family_id.map(str::to_owned),
        subject: e.subject.map(str::to_owned),
        detail: e.detail.map(str::to_owned),
    });
}

fn revoke_where(
    data: &mut Data,
    now: i64,
    reason: &str,
    matches: impl Fn(&FamilyRecord) -> bool,
) -> Vec<String> {
    let mut ids = Vec::new();
    for f in data.families.values_mut() {
        if f.revoked_at.is_none() && matches(f) {
            f.revoked_at = Some(now);
            f.revoked_reason = Some(reason.to_owned());
            ids.push(f.id.clone());
        }
    }
    ids
}

fn client_record(c: &NewClient, created_at: i64) -> ClientRecord {
    ClientRecord {
        client_id: c.client_id.clone(),
        secret_mac: c.secret_mac.clone(),
        public: c.public,
        grant_types: c.grant_types.clone(),
        scopes: c.scopes.clone(),
        default_scope: c.default_scope.clone(),
        redirect_uris: c.redirect_uris.clone(),
        introspection: c.introspection,
        created_at,
    }
}

#[async_trait]
impl Repository for MemoryRepository {
    /// Reported as SQLite: like it, an embedded database on one injected clock.
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn now(&self) -> Result<i64, StoreError> {
        Ok(self.now_ms())
    }

    async fn add_user(&self, username: &str, password_hash: &str) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let mut d = self.data();
        if d.users.contains_key(username) {
            return Ok(false);
        }
        d.users.insert(
            username.to_owned(),
            UserRecord {
                username: username.to_owned(),
                password_hash: password_hash.to_owned(),
                created_at: now,
            },
        );
        Ok(true)
    }

    async fn find_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.data().users.get(username).cloned())
    }

    async fn remove_user(&self, username: &str) -> Result<Option<Vec<String>>, StoreError> {
        let now = self.now_ms();
        let mut d = self.data();
        if d.users.remove(username).is_none() {
            return Ok(None);
        }
        Ok(Some(revoke_where(&mut d, now, "user_removed", |f| {
            f.subject == username
        })))
    }

    async fn list_users(&self) -> Result<Vec<UserInfo>, StoreError> {
        Ok(self
            .data()
            .users
            .values()
            .map(|u| UserInfo {
                username: u.username.clone(),
                created_at: u.created_at,
            })
            .collect())
    }

    async fn add_client(&self, client: &NewClient) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let mut d = self.data();
        if d.clients.contains_key(&client.client_id) {
            return Ok(false);
        }
        d.clients
            .insert(client.client_id.clone(), client_record(client, now));
        let event = NewAuditEvent {
            kind: "client_added",
            family_id: None,
            subject: Some(&client.client_id),
            detail: None,
        };
        audit(&mut d, now, &event);
        Ok(true)
    }

    async fn upsert_client(&self, client: &NewClient) -> Result<(), StoreError> {
        let now = self.now_ms();
        let mut d = self.data();
        let created_at = d
            .clients
            .get(&client.client_id)
            .map_or(now, |c| c.created_at);
        d.clients
            .insert(client.client_id.clone(), client_record(client, created_at));
        Ok(())
    }

    async fn find_client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        Ok(self.data().clients.get(client_id).cloned())
    }

    async fn list_clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        Ok(self.data().clients.values().cloned().collect())
    }

    async fn remove_client(&self, client_id: &str) -> Result<Option<Vec<String>>, StoreError> {
        let now = self.now_ms();
        let mut d = self.data();
        if d.clients.remove(client_id).is_none() {
            return Ok(None);
        }
        let ids = revoke_where(&mut d, now, "client_removed", |f| {
            f.client_id.as_deref() == Some(client_id)
        });
        let event = NewAuditEvent {
            kind: "client_removed",
            family_id: None,
            subject: Some(client_id),
            detail: None,
        };
        audit(&mut d, now, &event);
        Ok(Some(ids))
    }

    async fn set_client_secret(
        &self,
        client_id: &str,
        secret_mac: &str,
    ) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let mut d = self.data();
        match d.clients.get_mut(client_id) {
            Some(c) if !c.public => c.secret_mac = secret_mac.to_owned(),
            _ => return Ok(false),
        }
        let event = NewAuditEvent {
            kind: "client_secret_rotated",
            family_id: None,
            subject: Some(client_id),
            detail: None,
        };
        audit(&mut d, now, &event);
        Ok(true)
    }

    async fn create_family(&self, family: &NewFamily<'_>) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let mut d = self.data();
        if d.families.contains_key(family.id) {
            return Ok(false);
        }
        d.families.insert(
            family.id.to_owned(),
            FamilyRecord {
                id: family.id.to_owned(),
                subject: family.subject.to_owned(),
                client_id: family.client_id.map(str::to_owned),
                scope: family.scope.map(str::to_owned),
                generation: family.generation,
                created_at: now,
                last_used_at: now,
                rotated_at: None,
                revoked_at: None,
                revoked_reason: None,
                read_at: now,
            },
        );
        Ok(true)
    }

    async fn load_family(&self, id: &str) -> Result<Option<FamilyRecord>, StoreError> {
        let now = self.now_ms();
        Ok(self.data().families.get(id).map(|f| FamilyRecord {
            read_at: now,
            ..f.clone()
        }))
    }

    async fn rotate(&self, r: &Rotation<'_>) -> Result<RotateOutcome, StoreError> {
        let now = self.now_ms();
        let mut d = self.data();
        let Some(f) = d.families.get_mut(r.family_id) else {
            return Ok(RotateOutcome::Unchanged(None));
        };
        // The conditions of sql::ROTATE.
        let advances = f.generation == r.expected_generation
            && f.revoked_at.is_none()
            && f.created_at > now - millis(r.absolute_lifetime)
            && f.last_used_at > now - millis(r.idle_timeout)
            && f.client_id.as_deref() == r.client_id;
        if advances {
            f.generation += 1;
            f.rotated_at = Some(now);
            f.last_used_at = now;
        }
        let row = FamilyRecord {
            read_at: now,
            ..f.clone()
        };
        Ok(if advances {
            RotateOutcome::Advanced(row)
        } else {
            RotateOutcome::Unchanged(Some(row))
        })
    }

    async fn revoke_family(
        &self,
        id: &str,
        kind: &str,
        detail: Option<&str>,
    ) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let mut d = self.data();
        let subject = match d.families.get_mut(id) {
            Some(f) if f.revoked_at.is_none() => {
                f.revoked_at = Some(now);
                f.revoked_reason = Some(kind.to_owned());
                f.subject.clone()
            }
            _ => return Ok(false),
        };
        let event = NewAuditEvent {
            kind,
            family_id: Some(id),
            subject: Some(&subject),
            detail,
        };
        audit(&mut d, now, &event);
        Ok(true)
    }

    async fn revoke_session(&self, s: &RevokedSession<'_>) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let mut d = self.data();
        let f = d
            .families
            .entry(s.id.to_owned())
            .or_insert_with(|| FamilyRecord {
                id: s.id.to_owned(),
                subject: s.subject.to_owned(),
                client_id: s.client_id.map(str::to_owned),
                scope: None,
                generation: 0,
                created_at: now,
                last_used_at: now,
                rotated_at: None,
                revoked_at: None,
                revoked_reason: None,
                read_at: now,
            });
        if f.revoked_at.is_some() {
            return Ok(false);
        }
        f.revoked_at = Some(now);
        f.revoked_reason = Some(s.kind.to_owned());
        let subject = f.subject.clone();
        let event = NewAuditEvent {
            kind: s.kind,
            family_id: Some(s.id),
            subject: Some(&subject),
            detail: s.detail,
        };
        audit(&mut d, now, &event);
        Ok(true)
    }

    async fn revoked_within(&self, window: Duration) -> Result<Vec<(String, i64)>, StoreError> {
        let since = self.now_ms() - millis(window);
        Ok(self
            .data()
            .families
            .values()
            .filter_map(|f| {
                f.revoked_at
                    .filter(|t| *t >= since)
                    .map(|t| (f.id.clone(), t))
            })
            .collect())
    }

    async fn record_audit(&self, event: &NewAuditEvent<'_>) -> Result<(), StoreError> {
        let now = self.now_ms();
        audit(&mut self.data(), now, event);
        Ok(())
    }

    async fn audit_events(&self, family_id: Option<&str>) -> Result<Vec<AuditEvent>, StoreError> {
        Ok(self
            .data()
            .audit
            .iter()
            .filter(|e| family_id.is_none_or(|id| e.family_id.as_deref() == Some(id)))
            .cloned()
            .collect())
    }

    async fn counts(&self) -> Result<StoreCounts, StoreError> {
        let d = self.data();
        let n = |len: usize| i64::try_from(len).unwrap_or(i64::MAX);
        Ok(StoreCounts {
            users: n(d.users.len()),
            clients: n(d.clients.len()),
            families: n(d.families.len()),
            audit_events: n(d.audit.len()),
        })
    }

    async fn claim_setting(&self, name: &str, value: &str) -> Result<String, StoreError> {
        Ok(self
            .data()
            .settings
            .entry(name.to_owned())
            .or_insert_with(|| value.to_owned())
            .clone())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
