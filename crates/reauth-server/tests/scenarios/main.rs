//! Scenario tests of DESIGN.md §4.4, one or more per row S1–S9, the rows of
//! §4.7 the library owns (O2–O4, O7–O10, in `ops`), plus the storage
//! conformance suite and an off-the-shelf OAuth2 client.
//!
//! Time is injected: the server reads a `ManualClock`, so grace windows, idle
//! timeouts and expiries are crossed by advancing the clock, never by
//! sleeping. (`tokio::time::pause` is not used with a database: sqlx waits
//! on worker threads, which a paused runtime would take for idleness and
//! auto-advance past pool timeouts.)

mod common;
mod crash_restart;
mod jwt_attacks;
mod malformed;
mod metrics_faults;
mod oauth2_client;
mod ops;
mod pg;
mod rate_limit;
mod replicas;
mod revocation;
mod rotation;
mod router;
mod s10_durability;
mod s11_login_attempts;
mod s12_password_hashing;
mod s13_slow_clients;
mod s14_locked_database;
mod s15_hostile_input;
mod s16_clocks;
mod storage;
mod test_util_gate;
