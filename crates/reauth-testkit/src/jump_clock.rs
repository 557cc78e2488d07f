//! A clock whose wall time can jump while tokio's timers stand still.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reauth::{Clock, TokioClock};

/// A [`TokioClock`] whose wall time can jump forward, as after a suspend or an
/// NTP correction, while tokio's timers do not move.
#[derive(Clone, Debug, Default)]
pub struct JumpClock {
    base: TokioClock,
    offset_ms: Arc<AtomicU64>,
}

impl JumpClock {
    /// A clock following tokio's (virtual) time.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves wall time forward by `by`.
    pub fn jump(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for JumpClock {
    fn now(&self) -> std::time::SystemTime {
        self.base.now() + Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }
}
