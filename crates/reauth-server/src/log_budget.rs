//! Rate-limited logging: a line that a client can cause once per request
//! (a failed login, a bad client secret, a database refusal) must not let a
//! flood of bad requests flood the log too.
//!
//! Each such line has a [`LogBudget`]: at most `per_window` lines per
//! window; the ones beyond are counted, not written, and the first line of
//! a later window carries the count as its `suppressed` field. Metrics still
//! count every event.
//!
//! Time is tokio's clock ([`tokio::time::Instant`]), so tests on a paused
//! clock control the windows.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
struct Window {
    started: Option<Instant>,
    written: u32,
    suppressed: u64,
}

/// At most `per_window` lines per `window`.
#[derive(Debug)]
pub(crate) struct LogBudget {
    per_window: u32,
    window: Duration,
    state: Mutex<Window>,
}

impl LogBudget {
    /// A budget of `per_window` lines per `window`.
    pub(crate) const fn new(per_window: u32, window: Duration) -> Self {
        Self {
            per_window,
            window,
            state: Mutex::new(Window {
                started: None,
                written: 0,
                suppressed: 0,
            }),
        }
    }

    /// The default budget of a per-request line: 10 a second.
    pub(crate) const fn per_request() -> Self {
        Self::new(10, Duration::from_secs(1))
    }

    /// `Some(suppressed)` — the lines left out since the last one written —
    /// when this line may be written now; `None` when it is to be left out.
    pub(crate) fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let expired = state
            .started
            .is_none_or(|started| now.saturating_duration_since(started) >= self.window);
        if expired {
            state.started = Some(now);
            state.written = 0;
        }
        if state.written >= self.per_window {
            state.suppressed += 1;
            return None;
        }
        state.written += 1;
        Some(std::mem::take(&mut state.suppressed))
    }
}

/// Runs the `tracing` statement `$log` (which may use the `suppressed`
/// binding) only if `$budget` admits it.
macro_rules! limited {
    ($budget:expr, |$suppressed:ident| $log:expr) => {{
        static BUDGET: $crate::log_budget::LogBudget = $budget;
        if let Some($suppressed) = BUDGET.admit() {
            $log;
        }
    }};
}
pub(crate) use limited;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn o6_a_flood_is_cut_to_the_budget_and_the_rest_is_counted() {
        let budget = LogBudget::new(3, Duration::from_secs(1));
        let start = Instant::now();
        let admitted: Vec<Option<u64>> = (0..1_000).map(|_| budget.admit_at(start)).collect();
        assert_eq!(&admitted[..3], &[Some(0), Some(0), Some(0)]);
        assert!(admitted[3..].iter().all(Option::is_none));
        // The next window's first line reports what was left out.
        let later = start + Duration::from_secs(1);
        assert_eq!(budget.admit_at(later), Some(997));
        assert_eq!(budget.admit_at(later), Some(0));
    }
}
