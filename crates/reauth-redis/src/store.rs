//! The store, its lease and its compare-and-set.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use reauth::coord::{Coordinator, Lease};
use reauth::{Stamp, StoreError, TokenSet, TokenStore};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

/// Compare-and-swap on the token hash `KEYS[1]`, fenced by the lease `KEYS[2]`.
///
/// `ARGV[1]`: the fence owner (`""`: unfenced); `ARGV[2]`, `ARGV[3]`: the
/// expected generation and lineage (`ARGV[2] == ""`: nothing stored);
/// `ARGV[4]`: `"1"` to write `ARGV[5]` (generation), `ARGV[6]` (lineage),
/// `ARGV[7]` (the set as JSON), `"0"` to remove. A lapsed lease is gone from
/// Redis (`PX`), so the fence also refuses an expired holder.
const CAS: &str = r"
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
local g = redis.call('HGET', KEYS[1], 'generation')
if not g then
  if ARGV[2] ~= '' then return 0 end
else
  if g ~= ARGV[2] then return 0 end
  local l = redis.call('HGET', KEYS[1], 'lineage') or ''
  if l ~= ARGV[3] then return 0 end
end
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[1], 'generation', ARGV[5], 'lineage', ARGV[6], 'tokens', ARGV[7])
else
  redis.call('DEL', KEYS[1])
end
return 1
";

/// Extends the lease `KEYS[1]` to `ARGV[2]` ms if `ARGV[1]` still owns it.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Deletes the lease only if `ARGV[1]` still owns it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// A [`TokenStore`] and [`Coordinator`] in Redis, shared by every replica that
/// uses the same key prefix.
///
/// Cheap to clone: clones share one multiplexed, auto-reconnecting connection.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    tokens_key: String,
    lease_key: String,
    cas: redis::Script,
    renew: redis::Script,
    release: redis::Script,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("tokens_key", &self.tokens_key)
            .finish_non_exhaustive()
    }
}

fn backend(e: redis::RedisError) -> StoreError {
    StoreError::Backend(Box::new(e))
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port/db`, or `rediss://…` for TLS)
    /// and uses the keys under `prefix`.
    ///
    /// TLS runs on rustls with the platform's root certificates. rustls needs
    /// a process-wide crypto provider: if none is installed yet, a
    /// `rediss://` URL installs *ring*'s (install your own first to choose).
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if the URL is invalid (another scheme than
    /// `redis`, `rediss`, `redis+unix`, `unix`) or Redis cannot be reached.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        if url.trim_start().to_ascii_lowercase().starts_with("rediss:")
            && rustls::crypto::CryptoProvider::get_default().is_none()
        {
            // Losing a race with another installer is fine: one is installed.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = redis::Client::open(url).map_err(backend)?;
        let conn = ConnectionManager::new(client).await.map_err(backend)?;
        Ok(Self::new(conn, prefix))
    }

    /// A store on an existing connection, using the keys under `prefix`.
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self {
            conn,
            tokens_key: format!("{{{prefix}}}:tokens"),
            lease_key: format!("{{{prefix}}}:lease"),
            cas: redis::Script::new(CAS),
            renew: redis::Script::new(RENEW),
            release: redis::Script::new(RELEASE),
        }
    }

    /// The key of the token hash.
    pub fn tokens_key(&self) -> &str {
        &self.tokens_key
    }

    /// The key of the refresh lease.
    pub fn lease_key(&self) -> &str {
        &self.lease_key
    }
}

fn encode(tokens: &TokenSet) -> Result<String, StoreError> {
    serde_json::to_string(tokens).map_err(|e| StoreError::Backend(Box::new(e)))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl TokenStore for RedisStore {
    async fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        let mut conn = self.conn.clone();
        let json: Option<String> = conn
            .hget(&self.tokens_key, "tokens")
            .await
            .map_err(backend)?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| StoreError::Corrupt(Box::new(e))))
            .transpose()
    }

    async fn store(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let fields = [
            ("generation", tokens.generation.get().to_string()),
            ("lineage", tokens.lineage.as_str().to_owned()),
            ("tokens", encode(tokens)?),
        ];
        conn.hset_multiple::<_, _, _, ()>(&self.tokens_key, &fields)
            .await
            .map_err(backend)
    }

    async fn clear(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        conn.del::<_, ()>(&self.tokens_key).await.map_err(backend)
    }

    fn coordinator(&self) -> Option<&dyn Coordinator> {
        Some(self)
    }
}

#[async_trait]
impl Coordinator for RedisStore {
    async fn try_acquire(&self, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let mut conn = self.conn.clone();
        let lease = Lease::generate(ttl);
        let set: Option<String> = redis::cmd("SET")
            .arg(&self.lease_key)
            .arg(lease.owner())
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(set.map(|_| lease))
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let renewed: i64 = self
            .renew
            .key(&self.lease_key)
            .arg(lease.owner())
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(renewed == 1)
    }

    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        self.release
            .key(&self.lease_key)
            .arg(lease.owner())
            .invoke_async::<i64>(&mut conn)
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
        let mut conn = self.conn.clone();
        let mut call = self.cas.key(&self.tokens_key);
        call.key(&self.lease_key)
            .arg(fence.map(Lease::owner).unwrap_or_default());
        match expected {
            Some(s) => call
                .arg(s.generation.get().to_string())
                .arg(s.lineage.as_str()),
            None => call.arg("").arg(""),
        };
        match new {
            Some(t) => call
                .arg("1")
                .arg(t.generation.get().to_string())
                .arg(t.lineage.as_str())
                .arg(encode(t)?),
            None => call.arg("0"),
        };
        let swapped: i64 = call.invoke_async(&mut conn).await.map_err(backend)?;
        Ok(swapped == 1)
    }
}
