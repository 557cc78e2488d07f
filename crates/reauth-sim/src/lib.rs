//! Deterministic simulation of reauth (DESIGN.md §7, SIM1–SIM3).
//!
//! One seed builds one world on [turmoil](https://docs.rs/turmoil): `P`
//! client processes (turmoil hosts `client0…`) each run the **real**
//! [`reauth::Session`] — single flight, fenced coordination, refresh-ahead —
//! against a shared token store (host `store`, a lease + compare-and-set
//! store spoken to over simulated TCP), and `R` server replicas (hosts
//! `replica0…`) each run the **real** `reauth-server` router (handlers,
//! rotation with its grace window and reuse detection) on one database (a
//! [`MemoryRepository`] on the database's clock). The network drops, delays,
//! holds and partitions; client processes crash, restart and pause; replicas
//! crash and restart; clocks jump.
//! Every schedule is checked against the invariants of SIM1 (see
//! [`Monitor`]). See the crate README for what is and is not simulated.

mod monitor;
mod net;
mod pause;
mod world;

pub use monitor::Monitor;
pub use world::{Options, Report, run_seed};
