//! reauth in the browser (`wasm32-unknown-unknown`): one refresh across every
//! tab of an origin.
//!
//! * [`runtime()`]: the [`reauth::Runtime`] of a page — `Date.now()`,
//!   `setTimeout`, `spawn_local`.
//! * [`WebStorageStore`]: the token set in `localStorage`, persisted before any
//!   request sees it (C13), and a Web Lock as the cross-tab refresh lease.
//! * [`TabSync`]: adopts what another tab stored, ends with another tab's
//!   logout — without asking the server.
//!
//! # The cross-tab protocol
//!
//! Inside a tab the session's single flight makes one refresh per
//! generation. Across tabs, the tab whose flight runs:
//!
//! 1. takes the exclusive Web Lock `reauth:{name}` (non-blocking, polled with
//!    backoff by the session — every wait is bounded by the session's lease
//!    wait, two lease TTLs);
//! 2. re-reads the store: a newer generation was stored by another tab →
//!    adopt it, no request;
//! 3. otherwise refreshes, then compare-and-swaps the new set on the stamp
//!    (generation + lineage) it read — refused if it no longer holds the
//!    lock — announcing it on the `BroadcastChannel`;
//! 4. releases the lock, then publishes to its own requests.
//!
//! The other tabs hear the announcement and adopt the set at once; their own
//! flights, when they get the lock, find the newer generation and adopt too.
//! A logout clears the store and announces it; the other tabs end their
//! sessions without a second revocation.
//!
//! # Guarantees and limits
//!
//! * **One refresh per generation across tabs** while Web Locks and
//!   `localStorage` work. The lock of a tab that closes, reloads or crashes
//!   is released by the browser; a tab that stalls loses it after the lease
//!   TTL (1.5 × the refresh timeout, renewed while it works), and its late
//!   write is refused.
//! * **Another login** in another tab (another lineage) is never taken for a
//!   rotation: reported (`SessionEvent::ForeignSet`), this tab's session
//!   ends as superseded, then [`TabSync`] follows the new login as a new
//!   session ([`TabEvent::LoginFromTab`]).
//! * **A tab that dies after the server rotated but before it stored** takes
//!   the only copy of the new refresh token with it: the next tab refreshes
//!   with the old token. A server with a grace window (ours: 10 s by default)
//!   answers that duplicate with the *same* successor, so nobody is logged
//!   out; a strict server (grace 0) sees a reuse and ends the session — no
//!   client can do better, since the rotated token never reached storage.
//! * **Fallbacks.** Without `localStorage` the session lives in the tab's
//!   memory; without Web Locks tabs share the stored set but may refresh the
//!   same generation. Both are reported as [`TabEvent::CoordinationOff`].
//! * **Garbage** in storage is a typed error ([`WebError::Garbage`] inside
//!   [`reauth::StoreError::Corrupt`]), never a panic;
//!   [`WebStorageStore::set_aside_unreadable`] keeps it under another key so
//!   that a new login can be stored.
//! * Background tabs' timers are throttled by the browser: a refresh-ahead
//!   there fires late, and the 401 path covers it.
//!
//! On targets other than `wasm32-unknown-unknown` this crate is empty.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod error;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod events;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod locks;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod message;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod runtime;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod store;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod tabs;

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
pub use error::WebError;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
pub use events::{Coordination, OffReason, TabEvent};
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
pub use runtime::{LocalSpawn, TimeoutSleep, runtime};
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
pub use store::{TAB_EVENT_BUFFER, WebStorageStore};
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
pub use tabs::{TabEvents, TabSync};
