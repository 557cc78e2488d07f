//! Fault injection and lab counters.
//!
//! A [`Faults`] handle is reachable from [`Server::faults`](crate::Server::faults).
//! Everything is off by default and costs a few relaxed atomic loads per
//! request. Faults apply to both refresh endpoints (`/auth/refresh` and the
//! `refresh_token` grant of `/oauth/token`) and, for the resource delay, to
//! `/api/resources`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use axum::http::StatusCode;

use crate::app_error::AppError;

const NO_RETRY_AFTER: u64 = u64::MAX;

#[derive(Debug, Default)]
struct Inner {
    refresh_delay_ms: AtomicU64,
    resource_delay_ms: AtomicU64,
    fail_next: AtomicU32,
    fail_status: AtomicU16,
    fail_retry_after_ms: AtomicU64,
    hang_next: AtomicU32,
    refresh_requests: AtomicU64,
    rotations: AtomicU64,
    grace_replays: AtomicU64,
    reuse_detections: AtomicU64,
    resource_requests: AtomicU64,
    password_checks: AtomicU64,
    hashing_now: AtomicU64,
    hashing_peak: AtomicU64,
}

/// Fault-injection switches and read-only counters of one server. Cloning
/// shares the same state.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    inner: Arc<Inner>,
}

/// A snapshot of the counters of a [`Faults`] handle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FaultCounters {
    /// Refresh requests received (before any fault or validation).
    pub refresh_requests: u64,
    /// Successful rotations (the family advanced one generation).
    pub rotations: u64,
    /// Parent tokens answered with the existing successor inside the grace window.
    pub grace_replays: u64,
    /// Reuse detections (each revoked a family).
    pub reuse_detections: u64,
    /// Requests to `/api/resources`.
    pub resource_requests: u64,
    /// Password checks (argon2id verifications) evaluated for logins.
    pub password_checks: u64,
    /// Most password hashes that ran at the same time.
    pub password_hashing_peak: u64,
}

/// What the refresh handler must do before its real work.
#[derive(Debug)]
pub(crate) enum RefreshFault {
    Fail(AppError),
    Hang,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX - 1)
}

impl Faults {
    /// Delays every refresh answer by `delay` (zero turns it off).
    pub fn set_refresh_delay(&self, delay: Duration) {
        self.inner
            .refresh_delay_ms
            .store(millis(delay), Ordering::Relaxed);
    }

    /// Delays every `/api/resources` answer by `delay` (zero turns it off).
    pub fn set_resource_delay(&self, delay: Duration) {
        self.inner
            .resource_delay_ms
            .store(millis(delay), Ordering::Relaxed);
    }

    /// Answers the next `count` refresh requests with `status` (and
    /// `Retry-After` when given) without touching the session.
    pub fn fail_next_refreshes(
        &self,
        count: u32,
        status: StatusCode,
        retry_after: Option<Duration>,
    ) {
        self.inner
            .fail_status
            .store(status.as_u16(), Ordering::SeqCst);
        self.inner
            .fail_retry_after_ms
            .store(retry_after.map_or(NO_RETRY_AFTER, millis), Ordering::SeqCst);
        self.inner.fail_next.store(count, Ordering::SeqCst);
    }

    /// Never answers the next `count` refresh requests (the handler waits
    /// until the client gives up and closes the connection).
    pub fn hang_next_refreshes(&self, count: u32) {
        self.inner.hang_next.store(count, Ordering::SeqCst);
    }

    /// Turns every fault off (counters are kept).
    pub fn clear(&self) {
        self.set_refresh_delay(Duration::ZERO);
        self.set_resource_delay(Duration::ZERO);
        self.inner.fail_next.store(0, Ordering::SeqCst);
        self.inner.hang_next.store(0, Ordering::SeqCst);
    }

    /// The current counters.
    pub fn counters(&self) -> FaultCounters {
        FaultCounters {
            refresh_requests: self.inner.refresh_requests.load(Ordering::Relaxed),
            rotations: self.inner.rotations.load(Ordering::Relaxed),
            grace_replays: self.inner.grace_replays.load(Ordering::Relaxed),
            reuse_detections: self.inner.reuse_detections.load(Ordering::Relaxed),
            resource_requests: self.inner.resource_requests.load(Ordering::Relaxed),
            password_checks: self.inner.password_checks.load(Ordering::Relaxed),
            password_hashing_peak: self.inner.hashing_peak.load(Ordering::Relaxed),
        }
    }

    /// Refresh requests received so far.
    pub fn refresh_requests(&self) -> u64 {
        self.inner.refresh_requests.load(Ordering::Relaxed)
    }

    /// Rotations so far.
    pub fn rotations(&self) -> u64 {
        self.inner.rotations.load(Ordering::Relaxed)
    }

    /// Grace replays so far.
    pub fn grace_replays(&self) -> u64 {
        self.inner.grace_replays.load(Ordering::Relaxed)
    }

    /// Reuse detections so far.
    pub fn reuse_detections(&self) -> u64 {
        self.inner.reuse_detections.load(Ordering::Relaxed)
    }

    /// A password hash starts (a login's check when `check`).
    pub(crate) fn hashing_started(&self, check: bool) {
        if check {
            self.inner.password_checks.fetch_add(1, Ordering::Relaxed);
        }
        let now = self.inner.hashing_now.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.hashing_peak.fetch_max(now, Ordering::SeqCst);
    }

    /// A password hash finished.
    pub(crate) fn hashing_finished(&self) {
        self.inner.hashing_now.fetch_sub(1, Ordering::SeqCst);
    }

    pub(crate) fn count_rotation(&self) {
        self.inner.rotations.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_grace_replay(&self) {
        self.inner.grace_replays.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_reuse(&self) {
        self.inner.reuse_detections.fetch_add(1, Ordering::Relaxed);
    }

    /// Decrements `counter` if positive; true when it was.
    fn take_one(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Counts a refresh request and applies the refresh faults.
    pub(crate) async fn on_refresh(&self) -> Option<RefreshFault> {
        self.inner.refresh_requests.fetch_add(1, Ordering::Relaxed);
        let delay = self.inner.refresh_delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if Self::take_one(&self.inner.hang_next) {
            return Some(RefreshFault::Hang);
        }
        if Self::take_one(&self.inner.fail_next) {
            let status = StatusCode::from_u16(self.inner.fail_status.load(Ordering::SeqCst))
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let retry = self.inner.fail_retry_after_ms.load(Ordering::SeqCst);
            let retry_after = (retry != NO_RETRY_AFTER).then(|| Duration::from_millis(retry));
            return Some(RefreshFault::Fail(AppError::Injected {
                status,
                retry_after,
            }));
        }
        None
    }

    /// Counts a resource request and applies the resource delay.
    pub(crate) async fn on_resource(&self) {
        self.inner.resource_requests.fetch_add(1, Ordering::Relaxed);
        let delay = self.inner.resource_delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
    }
}
