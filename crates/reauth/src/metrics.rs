//! Counters and histograms, through the `metrics` facade.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `reauth_refresh_total` | counter | `outcome` = `ok`, `adopted`, `rejected`, `superseded`, `ended_elsewhere`, `unavailable`, `misconfigured` |
//! | `reauth_refresh_attempts_total` | counter | |
//! | `reauth_refresh_retries_total` | counter | |
//! | `reauth_refresh_joined_total` | counter | (callers that joined a refresh already in flight) |
//! | `reauth_refresh_duration_seconds` | histogram | |
//! | `reauth_wait_seconds` | histogram | (time a caller waited for a refresh) |
//! | `reauth_store_failures_total` | counter | |
//! | `reauth_replay_rejected_total` | counter | |
//! | `reauth_session_ended_total` | counter | `reason` |

use std::time::Duration;

use metrics::{counter, histogram};

use crate::error::EndReason;

pub(crate) fn refresh_outcome(outcome: &'static str, took: Duration) {
    counter!("reauth_refresh_total", "outcome" => outcome).increment(1);
    histogram!("reauth_refresh_duration_seconds").record(took.as_secs_f64());
}

pub(crate) fn attempt() {
    counter!("reauth_refresh_attempts_total").increment(1);
}

pub(crate) fn retry() {
    counter!("reauth_refresh_retries_total").increment(1);
}

pub(crate) fn joined() {
    counter!("reauth_refresh_joined_total").increment(1);
}

pub(crate) fn waited(d: Duration) {
    histogram!("reauth_wait_seconds").record(d.as_secs_f64());
}

pub(crate) fn store_failure() {
    counter!("reauth_store_failures_total").increment(1);
}

pub(crate) fn replay_rejected() {
    counter!("reauth_replay_rejected_total").increment(1);
}

pub(crate) fn session_ended(reason: EndReason) {
    let reason = match reason {
        EndReason::RefreshRejected => "refresh_rejected",
        EndReason::LoggedOut => "logged_out",
        EndReason::EndedElsewhere => "ended_elsewhere",
        EndReason::Superseded => "superseded",
    };
    counter!("reauth_session_ended_total", "reason" => reason).increment(1);
}

/// The `reauth_refresh_total` outcome of a refresh that ended its session.
pub(crate) fn ended_outcome(reason: EndReason) -> &'static str {
    match reason {
        EndReason::RefreshRejected => "rejected",
        EndReason::Superseded => "superseded",
        EndReason::EndedElsewhere => "ended_elsewhere",
        EndReason::LoggedOut => "logged_out",
    }
}
