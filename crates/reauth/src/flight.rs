//! The single flight: one refresh per token generation, shared by everybody.
//!
//! # The state
//!
//! * `current` — the published token set, in an [`ArcSwapOption`]. Readers load
//!   it without a lock; the fast path of [`Session::access_token`] is this load
//!   and one time compare.
//! * `state` — a short, never-held-across-`.await` mutex over the session phase
//!   (no session / active / ended), its epoch (bumped by every `start`), and the
//!   refresh in flight, if any.
//! * `persist` — an async lock that orders **store writes with publication**:
//!   whoever writes the store and then publishes (a refresh, `start`,
//!   `restore`) or clears it after an end (`logout`) holds it from its "still
//!   current?" check through the write to the publication, so the store never
//!   ends up holding a set older than, or from another session than, what was
//!   published last.
//!
//! # The invariants
//!
//! 1. At most one flight exists, and while it exists it refreshes **the
//!    generation in `current`**: `flight.from == current.generation`. Both are
//!    changed together under the lock ([`Cell::finish`], [`Cell::start`],
//!    [`Cell::end`]), so the invariant holds whenever the lock is free.
//! 2. A caller asks for a refresh *of the generation it saw* ([`Cell::join`]).
//!    Under the lock that generation is re-checked against `current` (the
//!    smithy-rs `ExpiringCache` trick): if the session moved on meanwhile, the
//!    caller is told to look again ([`Join::Newer`]) and **no refresh starts**.
//!    A late 401 for an old token therefore never refreshes twice (C3).
//! 3. Whoever finds no flight installs one and is handed the [`Ticket`]; the
//!    session *spawns* the refresh for it, so cancelling that caller cannot
//!    cancel the refresh the others wait for (C8). Everybody else clones the
//!    shared waiter (C1).
//! 4. Only the holder of the flight's ticket can complete it, and only while the
//!    flight is still installed: a `logout` or a new `start` removes the flight
//!    (waking its waiters at once) and the old refresh's result is discarded.
//! 5. The phase moves `Active → Ended` exactly once per epoch, under the lock;
//!    only the caller that moved it reports the end (C6, C17).
//! 6. **Lock order**: the cross-process lease (if any) → `persist` → `state`.
//!    `state` is never held across an `.await`; `persist` is held across the
//!    store write but never while waiting for the lease. The order is in the
//!    types: publishing ([`Cell::finish`], [`Cell::start`]) needs a
//!    [`Persist`] proof, and what a publication wakes and announces runs
//!    through [`Wake::deliver`], which **consumes** the `Persist` first — so
//!    events, callbacks and woken waiters never run under any lock of the
//!    session, and a callback that calls back into the session cannot
//!    deadlock it (C24).
//!
//! [`Session::access_token`]: crate::Session::access_token

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use futures::channel::oneshot;
use futures::future::{BoxFuture, FutureExt, Shared};

use crate::error::{EndReason, Error, RefreshError};
use crate::events::Trigger;
use crate::sync::{AsyncMutex, AsyncMutexGuard, AtomicBool, Mutex, lock};
use crate::token::{Bearer, Generation, Lineage, TokenSet};

/// A published token set.
#[derive(Debug)]
pub(crate) struct Published {
    pub(crate) tokens: TokenSet,
    /// Expiry minus leeway, precomputed so the fast path is one compare.
    usable_until: Option<SystemTime>,
    /// Set when a request was refused with this token: readers must wait for
    /// the refresh instead of sending a doomed request (C4a).
    rejected: AtomicBool,
}

impl Published {
    pub(crate) fn new(tokens: TokenSet, usable_until: Option<SystemTime>) -> Self {
        Self {
            tokens,
            usable_until,
            rejected: AtomicBool::new(false),
        }
    }

    pub(crate) fn generation(&self) -> Generation {
        self.tokens.generation
    }

    /// The bearer whatever the clock says, unless a request was refused with it.
    pub(crate) fn unless_refused(&self) -> Option<Bearer> {
        (!self.rejected.load(Ordering::Acquire)).then(|| Bearer::of(&self.tokens))
    }

    /// The bearer, if this set may still be used at `now`.
    #[inline]
    pub(crate) fn usable(&self, now: SystemTime) -> Option<Bearer> {
        if self.rejected.load(Ordering::Acquire) {
            return None;
        }
        match self.usable_until {
            Some(until) if now >= until => None,
            _ => Some(Bearer::of(&self.tokens)),
        }
    }
}

/// What waiters of a flight learn when it completes.
#[derive(Clone, Debug)]
pub(crate) enum Outcome {
    /// Look at `current` again: a new set was published, or the flight was
    /// superseded by a new session.
    LookAgain,
    /// The refresh failed; every waiter gets this error.
    Failed(Error),
}

pub(crate) type Waiter = Shared<BoxFuture<'static, Outcome>>;

/// The right (and duty) to run the refresh of one flight.
#[derive(Clone, Debug)]
pub(crate) struct Ticket {
    id: u64,
    pub(crate) from: Arc<Published>,
}

/// What [`Cell::join`] tells its caller.
pub(crate) enum Join {
    /// A refresh of the generation is in flight; wait for it.
    Wait(Waiter),
    /// No refresh was in flight; the caller must spawn one for `ticket`.
    Start(Ticket, Waiter),
    /// The session has moved past the generation the caller saw: look again.
    Newer,
}

/// How a flight ends when it changes what is published (under [`Persist`]).
pub(crate) enum Finish {
    /// Publish a new set (refreshed, or adopted from the store).
    Publish(Arc<Published>),
    /// End the session.
    End(EndReason),
}

/// A `Retry-After` that outlasted the retry budget: no new refresh starts
/// before `until`; callers get `RefreshUnavailable` at once meanwhile (C5).
/// Until when (a reading of the runtime's monotonic clock), and why.
pub(crate) type CoolDown = (Duration, Arc<RefreshError>);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    NoSession,
    Active,
    Ended(EndReason),
}

struct InFlight {
    id: u64,
    tx: oneshot::Sender<Outcome>,
    waiter: Waiter,
}

struct State {
    phase: Phase,
    epoch: u64,
    /// The highest generation ever published, so a new session continues above it.
    last_generation: Generation,
    flight: Option<InFlight>,
    next_id: u64,
    /// After a refresh gave up on a `Retry-After`: no new refresh before then.
    cool_down: Option<CoolDown>,
}

/// The published token set and the flight that replaces it.
pub(crate) struct Cell {
    current: ArcSwapOption<Published>,
    state: Mutex<State>,
    persist: AsyncMutex,
}

/// Proof of holding the cell's persist lock (invariant 6). Dropping it, or
/// handing it to [`Wake::deliver`], unlocks.
#[must_use]
pub(crate) struct Persist<'a> {
    _guard: AsyncMutexGuard<'a>,
}

/// What a state change owes the outside world: the waiters to wake and the
/// outcome to wake them with. Deliver it with [`Wake::deliver`] once every
/// lock is released.
#[must_use = "the waiters must be woken"]
pub(crate) struct Wake {
    flight: Option<InFlight>,
    outcome: Outcome,
}

impl Wake {
    /// Releases `persist`, then runs `announce` (events, metrics, callbacks),
    /// then wakes the waiters: an observer never sees a waiter resume ahead
    /// of the event that explains it, and nothing runs under a lock.
    pub(crate) fn deliver(self, persist: Option<Persist<'_>>, announce: impl FnOnce()) {
        drop(persist);
        announce();
        if let Some(f) = self.flight {
            let _ = f.tx.send(self.outcome);
        }
    }
}

impl Cell {
    pub(crate) fn new() -> Self {
        Self {
            current: ArcSwapOption::empty(),
            state: Mutex::new(State {
                phase: Phase::NoSession,
                epoch: 0,
                last_generation: Generation::default(),
                flight: None,
                next_id: 0,
                cool_down: None,
            }),
            persist: AsyncMutex::default(),
        }
    }

    /// Takes the persist lock (invariant 6).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a caller that stops waiting holds nothing.
    pub(crate) async fn persist(&self) -> Persist<'_> {
        Persist {
            _guard: self.persist.lock().await,
        }
    }

    /// The published set, lock-free.
    #[inline]
    pub(crate) fn load(&self) -> arc_swap::Guard<Option<Arc<Published>>> {
        self.current.load()
    }

    /// The published set, or why there is none.
    pub(crate) fn current(&self) -> Result<Arc<Published>, Error> {
        if let Some(p) = self.current.load_full() {
            return Ok(p);
        }
        match lock(&self.state).phase {
            Phase::Ended(reason) => Err(Error::SessionEnded(reason)),
            _ => Err(Error::NoSession),
        }
    }

    /// The current epoch (incremented by every [`Cell::start`]).
    pub(crate) fn epoch(&self) -> u64 {
        lock(&self.state).epoch
    }

    pub(crate) fn last_generation(&self) -> Generation {
        lock(&self.state).last_generation
    }

    /// Joins the refresh of generation `seen`, or starts it. See the module docs.
    ///
    /// `of`: the login (lineage) the caller's set came from, if it knows:
    /// a set of another login is not the one the caller saw, whatever its
    /// generation number (C3 across logins).
    ///
    /// A `trigger` other than [`Trigger::Ahead`] marks the set as refused, so
    /// that new readers wait for the flight rather than use the token (C4a); a
    /// refresh-ahead leaves readers on the old, still valid token (C4b).
    ///
    /// While a `Retry-After` cool-down runs (see [`Cell::fail`]) and
    /// no refresh is in flight, it answers `RefreshUnavailable` at once
    /// instead of starting one (C5).
    pub(crate) fn join(
        &self,
        seen: Generation,
        of: Option<&Lineage>,
        trigger: Trigger,
        mono_now: Duration,
    ) -> Result<Join, Error> {
        let mut st = lock(&self.state);
        match st.phase {
            Phase::NoSession => return Err(Error::NoSession),
            Phase::Ended(reason) => return Err(Error::SessionEnded(reason)),
            Phase::Active => {}
        }
        // Re-check under the lock: the generation the caller saw may be gone.
        let Some(cur) = self.current.load_full() else {
            return Err(Error::NoSession);
        };
        let moved_on = cur.generation() != seen
            || of.is_some_and(|l| !l.is_empty() && *l != cur.tokens.lineage);
        if moved_on && !crate::mutant::on("generation_recheck") {
            return Ok(Join::Newer);
        }
        if trigger != Trigger::Ahead {
            cur.rejected.store(true, Ordering::Release);
        }
        if let Some(flight) = &st.flight {
            // Invariant 1: this flight refreshes `cur`.
            return Ok(Join::Wait(flight.waiter.clone()));
        }
        if let Some((until, source)) = &st.cool_down
            && let left = until.saturating_sub(mono_now)
            && !left.is_zero()
        {
            return Err(Error::RefreshUnavailable {
                retry_after: Some(left),
                source: Arc::clone(source),
            });
        }
        let (tx, rx) = oneshot::channel();
        let waiter = rx.map(|r| r.unwrap_or(Outcome::LookAgain)).boxed().shared();
        let id = st.next_id;
        st.next_id += 1;
        st.flight = Some(InFlight {
            id,
            tx,
            waiter: waiter.clone(),
        });
        Ok(Join::Start(Ticket { id, from: cur }, waiter))
    }

    /// Whether `ticket`'s flight is still installed (no logout or new session since).
    pub(crate) fn is_current(&self, ticket: &Ticket) -> bool {
        lock(&self.state)
            .flight
            .as_ref()
            .is_some_and(|f| f.id == ticket.id)
    }

    /// Completes `ticket`'s flight: publishes, fails, or ends the session.
    /// `None`, changing nothing, if the flight was superseded (the caller then
    /// discards its result). Deliver the [`Wake`] after the store work is done.
    pub(crate) fn finish(&self, _held: &Persist<'_>, ticket: &Ticket, how: Finish) -> Option<Wake> {
        let mut st = lock(&self.state);
        if st.flight.as_ref().is_none_or(|f| f.id != ticket.id) {
            return None;
        }
        let outcome = match how {
            Finish::Publish(p) => {
                st.cool_down = None;
                st.last_generation = st.last_generation.max(p.generation());
                self.current.store(Some(p));
                Outcome::LookAgain
            }
            Finish::End(reason) => {
                st.phase = Phase::Ended(reason);
                self.current.store(None);
                Outcome::Failed(Error::SessionEnded(reason))
            }
        };
        Some(Wake {
            flight: st.flight.take(),
            outcome,
        })
    }

    /// Fails `ticket`'s flight: the published set stays, the waiters get
    /// `error`, and with `cool_down` no refresh starts before it passes.
    /// Needs no [`Persist`]: a failure writes nothing. `None` if superseded.
    pub(crate) fn fail(
        &self,
        ticket: &Ticket,
        error: Error,
        cool_down: Option<CoolDown>,
    ) -> Option<Wake> {
        let mut st = lock(&self.state);
        if st.flight.as_ref().is_none_or(|f| f.id != ticket.id) {
            return None;
        }
        if cool_down.is_some() {
            st.cool_down = cool_down;
        }
        Some(Wake {
            flight: st.flight.take(),
            outcome: Outcome::Failed(error),
        })
    }

    /// Publishes `p` as a new session (login or restore) and returns its epoch.
    /// A flight of the previous session is superseded; its waiters look again.
    pub(crate) fn start(&self, _held: &Persist<'_>, p: Arc<Published>) -> (u64, Wake) {
        let mut st = lock(&self.state);
        st.epoch += 1;
        st.phase = Phase::Active;
        st.cool_down = None;
        st.last_generation = st.last_generation.max(p.generation());
        self.current.store(Some(p));
        let wake = Wake {
            flight: st.flight.take(),
            outcome: Outcome::LookAgain,
        };
        (st.epoch, wake)
    }

    /// Ends an active session (`logout`). Returns the set it held and the
    /// epoch that ended — so that later clean-up can tell whether a new
    /// session has started since — or `None` if there was no active session
    /// (so only one caller ever reports an end). Needs no [`Persist`]: it
    /// writes nothing; whoever clears the store afterwards takes it.
    pub(crate) fn end(&self, reason: EndReason) -> Option<(Arc<Published>, u64, Wake)> {
        let mut st = lock(&self.state);
        if st.phase != Phase::Active {
            return None;
        }
        let old = self.current.swap(None)?;
        st.phase = Phase::Ended(reason);
        let wake = Wake {
            flight: st.flight.take(),
            outcome: Outcome::Failed(Error::SessionEnded(reason)),
        };
        Some((old, st.epoch, wake))
    }
}

#[cfg(all(test, not(reauth_shuttle)))]
mod tests {
    use super::*;
    use crate::token::Lineage;

    fn published(generation: u64, lineage: &str) -> Arc<Published> {
        let tokens = TokenSet::new(format!("access-{generation}"))
            .with_generation(Generation::new(generation))
            .with_lineage(Lineage::new(lineage));
        Arc::new(Published::new(tokens, None))
    }

    fn start(cell: &Cell, generation: u64, lineage: &str) -> u64 {
        futures::executor::block_on(async {
            let persist = cell.persist().await;
            let (epoch, wake) = cell.start(&persist, published(generation, lineage));
            wake.deliver(Some(persist), || {});
            epoch
        })
    }

    fn ticket(cell: &Cell, seen: u64) -> Ticket {
        let now = Duration::ZERO;
        match cell.join(Generation::new(seen), None, Trigger::Rejected, now) {
            Ok(Join::Start(ticket, _)) => ticket,
            _ => panic!("expected to start a flight"),
        }
    }

    #[test]
    fn every_start_is_a_new_epoch() {
        let cell = Cell::new();
        assert_eq!(cell.epoch(), 0);
        assert_eq!(start(&cell, 1, "a"), 1);
        assert_eq!(start(&cell, 2, "b"), 2);
        assert_eq!(start(&cell, 3, "c"), 3);
        assert_eq!(cell.epoch(), 3, "the epoch the last start returned");
    }

    #[test]
    fn last_generation_is_the_highest_ever_published() {
        let cell = Cell::new();
        assert_eq!(cell.last_generation(), Generation::new(0));
        start(&cell, 5, "a");
        assert_eq!(cell.last_generation(), Generation::new(5));
        start(&cell, 2, "b"); // a restore of a lower set
        assert_eq!(cell.last_generation(), Generation::new(5));
        let t = ticket(&cell, 2);
        futures::executor::block_on(async {
            let persist = cell.persist().await;
            let wake = cell
                .finish(&persist, &t, Finish::Publish(published(9, "b")))
                .expect("the flight is current");
            wake.deliver(Some(persist), || {});
        });
        assert_eq!(cell.last_generation(), Generation::new(9));
    }

    #[test]
    fn two_flights_are_told_apart() {
        let cell = Cell::new();
        start(&cell, 1, "a");
        let first = ticket(&cell, 1);
        let failure = Error::NoSession;
        cell.fail(&first, failure.clone(), None)
            .expect("the first flight is current")
            .deliver(None, || {});
        let second = ticket(&cell, 1);
        let third_id_differs = {
            // A third flight after the second, to tell apart more than two.
            cell.fail(&second, failure.clone(), None)
                .expect("the second flight is current")
                .deliver(None, || {});
            let third = ticket(&cell, 1);
            assert!(cell.is_current(&third));
            assert!(!cell.is_current(&second));
            third
        };
        assert!(
            !cell.is_current(&first),
            "a finished flight's ticket is stale"
        );
        assert!(cell.fail(&first, failure.clone(), None).is_none());
        assert!(cell.fail(&second, failure, None).is_none());
        assert!(cell.is_current(&third_id_differs));
    }

    #[test]
    fn a_bearer_of_another_login_is_not_the_current_set() {
        let cell = Cell::new();
        start(&cell, 2, "b");
        let now = Duration::ZERO;
        let other = Lineage::new("a");
        let join = cell.join(Generation::new(2), Some(&other), Trigger::Rejected, now);
        assert!(matches!(join, Ok(Join::Newer)));
        assert!(
            cell.load()
                .as_ref()
                .unwrap()
                .usable(SystemTime::UNIX_EPOCH)
                .is_some(),
            "not refused"
        );
        let same = Lineage::new("b");
        let join = cell.join(Generation::new(2), Some(&same), Trigger::Rejected, now);
        assert!(matches!(join, Ok(Join::Start(..))));
    }
}
