//! The database thread: owns the one SQLite connection, runs every job in
//! arrival order, and group-commits rotations.
//!
//! Jobs arrive on a bounded channel. The thread takes whatever is queued at
//! once (up to [`MAX_BATCH`]) and runs it in order; consecutive rotations run
//! as one group: one alone is one autocommit statement, several share one
//! `BEGIN IMMEDIATE … COMMIT` (one fsync under `synchronous=FULL`). Each
//! rotation is answered only after its `COMMIT` — or its autocommit
//! statement — has returned `SQLITE_DONE`: a commit that fails (disk full,
//! I/O error, read-only) is an error for every rotation of the group, never
//! a success (DESIGN.md S10).
//!
//! Every job carries a deadline (enqueued + the configured wait). A job whose
//! deadline passed before the thread got to it is answered
//! [`StoreError::Unavailable`] without touching the database, and SQLite's
//! busy handler waits at most until the deadline for a lock another process
//! holds (S14). A rotation whose caller went away before it ran is not run.

use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::error::classify;
use super::{OwnedRotation, family_from_row, sql};
use crate::clock::Clock;
use crate::store::{RotateOutcome, StoreError};

/// Most jobs taken from the queue at once (and rotations in one transaction).
pub(super) const MAX_BATCH: usize = 128;

/// A job's work: called with the connection and the clock's now, or with
/// the reason it cannot run.
pub(super) type Work = Box<dyn FnOnce(Result<(&mut Connection, i64), StoreError>) + Send>;

/// What the database thread does for a caller.
pub(super) enum Job {
    /// A rotation, batched with its neighbours.
    Rotate {
        rotation: OwnedRotation,
        reply: oneshot::Sender<Result<RotateOutcome, StoreError>>,
    },
    /// Anything else.
    Run(Work),
}

/// A job and the time after which it is answered `Unavailable` unrun.
pub(super) struct Envelope {
    pub(super) job: Job,
    pub(super) deadline: Instant,
}

#[derive(Debug, thiserror::Error)]
#[error("gave up waiting for the database after {0:?}")]
struct WaitedTooLong(Duration);

fn timed_out(wait: Duration) -> StoreError {
    StoreError::unavailable(WaitedTooLong(wait))
}

/// The same failure again, for the other members of a group.
fn copy_of(e: &StoreError) -> StoreError {
    let cause = std::error::Error::source(e).map_or_else(|| e.to_string(), ToString::to_string);
    match e {
        StoreError::Unavailable(_) => StoreError::unavailable(cause),
        StoreError::InvalidInput(_) => StoreError::InvalidInput(cause.into()),
        _ => StoreError::backend(cause),
    }
}

/// Rolls back a transaction a failed job left open.
fn clean(conn: &Connection) {
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
}

/// Sets SQLite's busy wait to what is left until `deadline`; `false` if
/// nothing is left.
fn wait_until(conn: &Connection, deadline: Instant) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return false;
    }
    let _ = conn.busy_timeout(left.max(Duration::from_millis(1)));
    true
}

/// The thread's main loop; returns when every sender is gone.
pub(super) fn run(
    mut conn: Connection,
    jobs: Receiver<Envelope>,
    clock: Arc<dyn Clock>,
    wait: Duration,
) {
    while let Ok(first) = jobs.recv() {
        let mut batch = Vec::with_capacity(8);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let mut group = Vec::new();
        for Envelope { job, deadline } in batch {
            match job {
                Job::Rotate { rotation, reply } => {
                    if reply.is_closed() {
                        continue; // The caller went away: do not rotate for nobody.
                    }
                    if Instant::now() >= deadline {
                        let _ = reply.send(Err(timed_out(wait)));
                    } else {
                        group.push((rotation, reply, deadline));
                    }
                }
                Job::Run(f) => {
                    rotate_group(&mut conn, std::mem::take(&mut group), clock.as_ref());
                    if wait_until(&conn, deadline) {
                        let now = clock.now_millis();
                        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            f(Ok((&mut conn, now)));
                        }));
                        if ran.is_err() {
                            tracing::error!("a database job panicked; its caller gets an error");
                        }
                        clean(&conn);
                    } else {
                        f(Err(timed_out(wait)));
                    }
                }
            }
        }
        rotate_group(&mut conn, group, clock.as_ref());
    }
}

type Pending = (
    OwnedRotation,
    oneshot::Sender<Result<RotateOutcome, StoreError>>,
    Instant,
);

/// One rotation's compare-and-set, stepped to completion: for an
/// autocommit statement the commit happens (and can fail) on the last step.
fn compare_and_set(
    conn: &Connection,
    r: &OwnedRotation,
    now: i64,
) -> rusqlite::Result<RotateOutcome> {
    let mut stmt = conn.prepare_cached(sql::ROTATE)?;
    let mut rows = stmt.query(rusqlite::params![
        r.family_id,
        r.expected_generation,
        now,
        r.absolute_lifetime_ms,
        r.idle_timeout_ms,
        r.client_id,
    ])?;
    let advanced = match rows.next()? {
        Some(row) => Some(family_from_row(row, now)?),
        None => None,
    };
    while rows.next()?.is_some() {}
    drop(rows);
    if let Some(row) = advanced {
        return Ok(RotateOutcome::Advanced(row));
    }
    let current = conn
        .prepare_cached(sql::LOAD_FAMILY)?
        .query_row([&r.family_id], |row| family_from_row(row, now))
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    Ok(RotateOutcome::Unchanged(current))
}

/// Commits a group of rotations and answers each after the commit.
fn rotate_group(conn: &mut Connection, mut group: Vec<Pending>, clock: &dyn Clock) {
    if group.is_empty() {
        return;
    }
    let deadline = group
        .iter()
        .map(|(_, _, d)| *d)
        .min()
        .unwrap_or_else(Instant::now);
    if !wait_until(conn, deadline) {
        for (_, reply, _) in group {
            let _ = reply.send(Err(StoreError::unavailable(
                "gave up waiting for the database",
            )));
        }
        return;
    }
    let now = clock.now_millis();
    if group.len() == 1 {
        if let Some((rotation, reply, _)) = group.pop() {
            let result = compare_and_set(conn, &rotation, now).map_err(classify);
            clean(conn);
            let _ = reply.send(result);
        }
        return;
    }
    let outcomes = (|| {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let outcomes = group
            .iter()
            .map(|(rotation, _, _)| compare_and_set(conn, rotation, now))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        conn.execute_batch("COMMIT")?;
        Ok(outcomes)
    })();
    clean(conn);
    match outcomes {
        Ok(outcomes) => {
            for ((_, reply, _), outcome) in group.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(e) => {
            let e = classify(e);
            for (_, reply, _) in group {
                let _ = reply.send(Err(copy_of(&e)));
            }
        }
    }
}
