//! A Redis [`TokenStore`](reauth::TokenStore) whose [`Coordinator`](reauth::coord::Coordinator)
//! makes one refresh across every replica sharing a token (DESIGN.md C16).
//!
//! Many workers sharing one integration account's rotating refresh token race
//! exactly like browser tabs: each sees the token expire, each refreshes, the
//! first rotation wins and the rest are told `invalid_grant`. With a
//! [`RedisStore`] every session takes a **lease** in Redis (`SET NX PX` with a
//! random owner token) before refreshing, **re-reads** the stored generation
//! and adopts it if another replica already refreshed, and writes its result
//! with **compare-and-set** on the generation (a Lua script), so a holder whose
//! lease lapsed can never overwrite a newer set.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use reauth::{refresh_fn, Session, TokenSet};
//! use reauth_redis::RedisStore;
//!
//! let store = RedisStore::connect("redis://127.0.0.1:6379", "billing-integration").await?;
//! let session = Session::builder(refresh_fn(|_current: TokenSet| async {
//!     Ok(TokenSet::new("new-access").with_refresh_token("new-refresh"))
//! }))
//! .store(store)
//! .build();
//! if !session.restore().await? {
//!     session.start(TokenSet::new("access").with_refresh_token("refresh")).await?;
//! }
//! let bearer = session.access_token().await?;
//! # let _ = bearer; Ok(()) }
//! ```
//!
//! # Keys
//!
//! For a key prefix `p`: `{p}:tokens` (a hash: `generation`, `lineage`, `tokens` as JSON)
//! and `{p}:lease` (the owner token, with a TTL). The braces are a hash tag, so
//! both land in one Redis Cluster slot and the Lua scripts may touch them.
//!
//! # Guarantees and what they depend on
//!
//! * The lease expiry is measured by the Redis server's clock alone, so
//!   replicas' clocks do not matter. Its TTL is the session's lease TTL
//!   ([`reauth::coord::lease_ttl`]`(refresh_timeout)` by default, never under
//!   1.5 × the refresh timeout: [`reauth::coord::clamp_lease_ttl`]); the holder
//!   renews it (`PEXPIRE`, owner-checked) every third of it while it works.
//! * Waiters poll the lease (one `SET NX` each, backing off from 10 ms to
//!   200 ms), never the tokens; they read the tokens once, when they hold it.
//! * Redis replication is asynchronous: after a failover a lease (or a write)
//!   may be lost. The compare-and-swap still prevents a stale overwrite on the
//!   new primary, but two refreshes may then happen once. Use one primary (or
//!   `WAIT`-backed durability) if that matters.
//! * **Redis must not evict these keys: set `maxmemory-policy noeviction`**
//!   (or give the instance no `maxmemory`). Under an evicting policy
//!   (`allkeys-lru`, `volatile-ttl` …) a full Redis may drop the lease — a
//!   second replica then refreshes the same token while the first is still
//!   at it — or drop `{p}:tokens`, which every replica then reads as a
//!   logout elsewhere. `noeviction` makes a full Redis fail writes instead:
//!   a transient store error the session retries.

mod store;

pub use store::RedisStore;
