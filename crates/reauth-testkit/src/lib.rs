//! Test helpers for reauth — a **dev-dependency only**; no shipped binary
//! may depend on it.
//!
//! * [`runtime`] — a session runtime on tokio's (pausable) clock, no jitter;
//! * [`FakeServer`] — a [`Refresher`](reauth::Refresher) with one-time
//!   refresh tokens and scripted faults, like a strict authorization server;
//! * [`FlakyStore`] — a memory store that counts writes and fails on request;
//! * [`JumpClock`] — wall time that jumps (suspend, NTP) while timers do not;
//! * [`TimedStore`] — a coordinating memory store whose lease lapses on
//!   tokio's (virtual) clock, with slow loads and failing renewals on request;
//! * [`conformance`] — the suite every [`TokenStore`](reauth::TokenStore) and
//!   [`Coordinator`](reauth::Coordinator) backend runs;
//! * [`procs`] — the multi-process harness of the cross-process rows (C15,
//!   C16, C18–C20): a counting refresh endpoint on loopback and child
//!   processes sharing one store.

mod fake_server;
mod flaky_store;
mod jump_clock;
mod timed_store;

pub mod conformance;
pub mod procs;

pub use fake_server::{FakeServer, Step};
pub use flaky_store::FlakyStore;
pub use jump_clock::JumpClock;
pub use timed_store::TimedStore;

use reauth::{NoJitter, Runtime, TokioClock, TokioSleep, TokioSpawn};

/// A runtime on tokio's clock, without jitter. Under `tokio::time::pause` its
/// clock is virtual.
pub fn runtime() -> Runtime {
    Runtime::new(TokioClock::default(), TokioSleep, TokioSpawn, NoJitter)
}
