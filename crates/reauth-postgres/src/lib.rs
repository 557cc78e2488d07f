//! A Postgres [`TokenStore`](reauth::TokenStore) whose
//! [`Coordinator`](reauth::coord::Coordinator) makes one refresh across every replica
//! sharing a token (DESIGN.md C16).
//!
//! Every session takes a **lease** row before refreshing (an upsert that only
//! succeeds over a lapsed lease, timed by the database's clock) and renews it
//! while it works, **re-reads** the stored set and adopts it if another
//! replica of the same login already refreshed, and writes its result with a
//! **compare-and-swap** on the stored generation and lineage, **fenced by the
//! lease** (`UPDATE … WHERE generation = $g AND lineage = $l AND EXISTS (the
//! lease row, held by us, unexpired, FOR SHARE)`), so a holder whose lease
//! lapsed can never write anything (C18).
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
//! generation, lineage, tokens, updated_at)` and `reauth_leases (key, owner,
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
