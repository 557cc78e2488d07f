//! Coordinating one refresh across processes and replicas that share a store
//! (C15, C16), without ever spending one refresh token twice (C18) or
//! adopting another login's tokens (C19, C20).
//!
//! The in-process single flight makes one refresh per generation *inside* a
//! process. Processes and replicas sharing a store need the same among
//! themselves; a store that can give it implements [`Coordinator`] and
//! returns it from [`TokenStore::coordinator`](crate::TokenStore::coordinator).
//!
//! # The fenced protocol (run by the refresh task, behind the single flight)
//!
//! 1. **Lease.** [`Coordinator::try_acquire`] with a TTL
//!    ([`lease_ttl`]`(refresh_timeout)` by default, never under 1.5 × the
//!    refresh timeout: [`clamp_lease_ttl`]), polled with bounded
//!    backoff plus jitter while someone else holds it. The holder keeps a
//!    **deadline** — the instant *before* it asked plus the TTL, so it is
//!    never later than the store's own expiry — and **renews** the lease every
//!    third of the TTL while it works ([`Coordinator::renew`]). If the
//!    deadline passes without a renewal, the work is dropped where it stands:
//!    no step of it, and in particular **no refresher call, starts after the
//!    deadline** — a refresher call starts only while the lease has at least
//!    the refresh timeout left (renewed first if need be). A call that is
//!    already out is never dropped, whatever happens to the lease: it spent
//!    the one-time refresh token, and its answer is the only copy of the
//!    rotation (kept, and written under the next lease if the fence refuses
//!    it). The keep-alive stops when the lease is released. A lease the platform holds until its holder releases it or
//!    dies (a browser's Web Lock) has no deadline and needs no renewal.
//! 2. **Re-read** the store, and decide by the stored set's [`Stamp`](crate::Stamp)
//!    (generation + [`Lineage`](crate::Lineage)):
//!    * same lineage, newer generation: another process refreshed —
//!      **adopt** it, without calling the refresher (C15);
//!    * another lineage: another login replaced this one — report it
//!      ([`SessionEvent::ForeignSet`](crate::SessionEvent::ForeignSet)),
//!      never adopt it, end this session as
//!      [`EndReason::Superseded`](crate::EndReason::Superseded) (C19);
//!    * nothing: another process logged out — end this session as
//!      [`EndReason::EndedElsewhere`](crate::EndReason::EndedElsewhere);
//!      never write it back (C20);
//!    * otherwise refresh.
//! 3. **Refresh** with the tokens held, bounded by the refresh timeout.
//! 4. **Fenced compare-and-set** ([`Coordinator::compare_and_swap`] with the
//!    lease as the fence): the store writes only if the lease is still held
//!    and unexpired **and** the stored stamp is still the one read in step 2.
//!    A holder whose lease lapsed can never overwrite anything (C18). A lost
//!    CAS re-reads and decides as in step 2; a rotated set that could not be
//!    stored because another login or a logout took the store is revoked at
//!    the server, never left live; one that could not be stored because this
//!    holder's lease lapsed with the store unchanged is kept and written under
//!    the next lease (it is the only copy of a one-time token).
//! 5. **Release** the lease, then publish.
//!
//! A rejected refresh (`invalid_grant`) re-reads under the lease and decides
//! as in step 2; if the store still holds the rejected set, it is removed with
//! a **fenced clear** (a compare-and-swap to nothing) so that a successor
//! another process wrote meanwhile is never wiped (C20).
//!
//! `Session::start` writes with a compare-and-set on whatever it read (no
//! lease: a login must not wait behind a refresh), with a fresh lineage and a
//! generation above everything seen; `logout` removes the stored set only if
//! it is of its own lineage (a fenced clear). Neither ever silently replaces a
//! set it has not read.
//!
//! # What it assumes
//!
//! * Every process uses the same store location/key.
//! * Clocks advance at the same rate while a lease is held (the holder's
//!   deadline is measured on its clock from before its request; the store's
//!   expiry on the store's). Their absolute values may differ.
//! * A holder that stalls past its deadline (a paused VM) loses the lease:
//!   another process may then refresh too; the fence keeps the store
//!   consistent, but a request the stalled holder had already sent may have
//!   rotated the token at the server (a grace window there absorbs it).
//!
//! Only one task per process ever asks for the lease for a given generation
//! (the single flight is in front of it), and waiters poll the *lease*, not
//! the tokens: P processes waiting on one refresh cost P small lease requests
//! per poll interval and one store read each when they get it.

mod coordinator;
pub(crate) mod guard;

pub(crate) use coordinator::lease_poll_delay;
pub use coordinator::{Coordinator, Lease, clamp_lease_ttl, lease_ttl, new_owner_token};
