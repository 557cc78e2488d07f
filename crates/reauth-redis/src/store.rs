//! The store, its lease and its compare-and-set.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use reauth::{Coordinator, Generation, Lease, StoreError, TokenSet, TokenStore};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

/// Stores `tokens` only if the stored generation is `ARGV[1]` (`""`: nothing stored).
const CAS: &str = r"
local g = redis.call('HGET', KEYS[1], 'generation')
if not g then g = '' end
if g ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'generation', ARGV[2], 'tokens', ARGV[3])
return 1
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
    /// Connects to `url` (`redis://host:port/db`) and uses the keys under `prefix`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] if the URL is invalid or Redis cannot be reached.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
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

    async fn compare_and_store(
        &self,
        expected: Option<Generation>,
        tokens: &TokenSet,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let expected = expected.map(|g| g.get().to_string()).unwrap_or_default();
        let stored: i64 = self
            .cas
            .key(&self.tokens_key)
            .arg(expected)
            .arg(tokens.generation.get().to_string())
            .arg(encode(tokens)?)
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(stored == 1)
    }
}
