//! A burst of concurrent requests, bounded in time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest_middleware::ClientWithMiddleware;
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use url::Url;

/// How one request of a burst ended.
#[derive(Clone, Debug)]
pub(crate) struct Outcome {
    /// The final status, `None` if the request failed without a response.
    pub(crate) status: Option<u16>,
    /// From the call to the end of the body.
    pub(crate) latency: Duration,
    /// Why it failed without a response.
    pub(crate) error: Option<String>,
}

impl Outcome {
    /// Whether the request got a 2xx.
    pub(crate) fn is_ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Sends `n` concurrent `GET url` through `client`, released together once
/// every task is ready (as a page fires its requests at once). Requests still
/// running after `deadline` are cancelled and count as failed.
pub(crate) async fn fire(
    client: &ClientWithMiddleware,
    url: &Url,
    n: usize,
    deadline: Duration,
) -> Vec<Outcome> {
    let mut set = JoinSet::new();
    let start = Arc::new(Barrier::new(n));
    for _ in 0..n {
        let client = client.clone();
        let url = url.clone();
        let start = Arc::clone(&start);
        set.spawn(async move {
            start.wait().await;
            one(&client, url).await
        });
    }
    collect(set, n, deadline).await
}

/// One `GET url`, reading the whole body.
pub(crate) async fn one(client: &ClientWithMiddleware, url: Url) -> Outcome {
    let started = Instant::now();
    match client.get(url).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.bytes().await;
            Outcome {
                status: body.is_ok().then_some(status),
                latency: started.elapsed(),
                error: body.err().map(|e| e.to_string()),
            }
        }
        Err(e) => Outcome {
            status: None,
            latency: started.elapsed(),
            error: Some(error_chain(&e)),
        },
    }
}

/// Waits for the tasks of `set` until `deadline`; the rest count as failed.
pub(crate) async fn collect(
    mut set: JoinSet<Outcome>,
    n: usize,
    deadline: Duration,
) -> Vec<Outcome> {
    let until = tokio::time::Instant::now() + deadline;
    let mut outcomes = Vec::with_capacity(n);
    while let Ok(Some(joined)) = tokio::time::timeout_at(until, set.join_next()).await {
        outcomes.push(joined.unwrap_or_else(|e| Outcome {
            status: None,
            latency: deadline,
            error: Some(format!("task failed: {e}")),
        }));
    }
    set.abort_all();
    while outcomes.len() < n {
        outcomes.push(Outcome {
            status: None,
            latency: deadline,
            error: Some(format!("no answer within {deadline:?}")),
        });
    }
    outcomes
}

/// An error and its causes on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
