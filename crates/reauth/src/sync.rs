//! Synchronisation primitives, swapped for shuttle's when model checking.
//!
//! Build with `RUSTFLAGS="--cfg reauth_shuttle"` to run the single flight under
//! the shuttle model checker (see `tests/shuttle_single_flight.rs`); normal
//! builds use `std`.

#[cfg(not(reauth_shuttle))]
pub(crate) use std::sync::atomic::AtomicBool;
#[cfg(not(reauth_shuttle))]
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(reauth_shuttle)]
pub(crate) use shuttle::sync::atomic::AtomicBool;
#[cfg(reauth_shuttle)]
pub(crate) use shuttle::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning: every critical section in this crate leaves
/// the state consistent before anything that could panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
