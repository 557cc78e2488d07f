//! A Postgres [`TokenStore`](reauth::TokenStore) whose
//! [`Coordinator`](reauth::Coordinator) makes one refresh across every replica
//! sharing a token (DESIGN.md C16).
//!
//! Every session takes a **lease** row before refreshing (an upsert that only
//! succeeds over a lapsed lease, timed by the database's clock), **re-reads**
//! the stored generation and adopts it if another replica already refreshed,
//! and writes its result with **compare-and-set** on the generation
//! (`UPDATE … WHERE generation = $expected`), so a holder whose lease lapsed
//! can never overwrite a newer set.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use reauth::{refresh_fn, Session, TokenSet};
//! use reauth_postgres::PostgresStore;
//!
//! let store = PostgresStore::connect("postgres://app@db/app", "billing-integration").await?;
//! let session = Session::builder(refresh_fn(|_current: TokenSet| async {
//!     Ok(TokenSet::new("new-access").with_refresh_token("new-refresh"))
//! }))
//! .store(store)
//! .build();
//! if !session.restore().await? {
//!     session.start(TokenSet::new("access").with_refresh_token("refresh")).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! # Tables
//!
//! [`PostgresStore::migrate`] creates (if absent) `reauth_tokens (key,
//! generation, tokens, updated_at)` and `reauth_leases (key, owner,
//! expires_at)`; [`SCHEMA`] holds the DDL if you manage migrations yourself.
//! One row per key: many sessions (accounts) share the tables.
//!
//! # Why a lease row, not a lock held for the refresh
//!
//! A row lock or a session-level advisory lock lives as long as a transaction
//! or a connection, so the holder would keep a pooled connection (and an open
//! transaction) across an HTTP call to the authorization server, and a wedged
//! holder would hold it forever. A lease row is held by nothing: it lapses at
//! `expires_at`, measured by the database's clock alone (replicas' clocks do
//! not matter), and only its owner token deletes it early.

mod store;

pub use store::{PostgresStore, SCHEMA};
