//! The page's network log: what went over the wire, in ms since the burst.

use std::sync::{Mutex, PoisonError};

use serde::Serialize;

use crate::dom;

/// One exchange with the server.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Entry {
    pub(crate) seq: usize,
    /// Milliseconds since the current burst started.
    pub(crate) at_ms: f64,
    pub(crate) method: String,
    pub(crate) path: String,
    /// The HTTP status, or 0 when no response came (network error).
    pub(crate) status: u16,
}

/// The log; `Send + Sync` because the middleware that fills it must be.
#[derive(Debug, Default)]
pub(crate) struct NetLog {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    burst_started: f64,
    entries: Vec<Entry>,
}

impl NetLog {
    /// Starts a burst: clears the log, times from now.
    pub(crate) fn begin(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.burst_started = dom::now_ms();
        inner.entries.clear();
        dom::clear("netlog");
    }

    pub(crate) fn record(&self, method: &str, path: &str, status: u16) {
        let entry = {
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = Entry {
                seq: inner.entries.len() + 1,
                at_ms: dom::now_ms() - inner.burst_started,
                method: method.to_owned(),
                path: path.to_owned(),
                status,
            };
            inner.entries.push(entry.clone());
            entry
        };
        let class = match (entry.status, entry.path.as_str()) {
            (_, "/auth/refresh") => "refresh",
            (200..=299, _) => "s200",
            (401, _) => "s401",
            _ => "serr",
        };
        let status = match entry.status {
            0 => "network error".to_owned(),
            s => s.to_string(),
        };
        dom::append(
            "netlog",
            "tr",
            class,
            &[
                &entry.seq.to_string(),
                &format!("{:8.1}", entry.at_ms),
                &entry.method,
                &entry.path,
                &status,
            ],
        );
    }

    pub(crate) fn entries(&self) -> Vec<Entry> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .clone()
    }
}
