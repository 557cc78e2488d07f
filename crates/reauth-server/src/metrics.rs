//! Prometheus metrics through the `metrics` facade.
//!
//! The first [`Server`](crate::Server) in a process installs a Prometheus
//! recorder as the global `metrics` recorder (unless the application already
//! installed one, in which case the metrics go to that recorder and
//! `/metrics` says so). Metric names:
//!
//! | name | type | labels |
//! |---|---|---|
//! | `reauth_logins_total` | counter | `outcome` = `success`, `failure`, `rate_limited`, `busy` (hashing queue full) |
//! | `reauth_refreshes_total` | counter | `outcome` = `rotated`, `grace_replay`, `rejected`, `reuse_detected` |
//! | `reauth_grace_replays_total` | counter | |
//! | `reauth_reuse_detections_total` | counter | |
//! | `reauth_revocations_total` | counter | `reason` |
//! | `reauth_http_request_duration_seconds` | histogram | `path`, `status` |

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5,
];

/// Installs the global Prometheus recorder once per process.
pub(crate) fn install() -> Option<&'static PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!(
                    "a global metrics recorder is already installed; /metrics will be empty"
                );
                return None;
            }
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("reauth-metrics-upkeep".to_owned())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                });
            if spawned.is_err() {
                tracing::warn!("could not start the metrics upkeep thread");
            }
            Some(handle)
        })
        .as_ref()
}

/// The Prometheus text exposition of every metric.
pub(crate) fn render() -> String {
    match install() {
        Some(handle) => handle.render(),
        None => "# reauth: another metrics recorder is installed globally\n".to_owned(),
    }
}

pub(crate) fn login(outcome: &'static str) {
    metrics::counter!("reauth_logins_total", "outcome" => outcome).increment(1);
}

pub(crate) fn refresh(outcome: &'static str) {
    metrics::counter!("reauth_refreshes_total", "outcome" => outcome).increment(1);
    match outcome {
        "grace_replay" => metrics::counter!("reauth_grace_replays_total").increment(1),
        "reuse_detected" => metrics::counter!("reauth_reuse_detections_total").increment(1),
        _ => {}
    }
}

/// An accepted connection failed (`EMFILE` and the like).
pub(crate) fn accept_failed() {
    metrics::counter!("reauth_accept_errors_total").increment(1);
}

pub(crate) fn revocation(reason: &'static str) {
    metrics::counter!("reauth_revocations_total", "reason" => reason).increment(1);
}

/// Middleware recording the latency of every request by route.
pub(crate) async fn track_latency(request: Request, next: Next) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let start = Instant::now();
    let response = next.run(request).await;
    let status = match response.status().as_u16() {
        200..=299 => "2xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    };
    metrics::histogram!("reauth_http_request_duration_seconds", "path" => path, "status" => status)
        .record(start.elapsed().as_secs_f64());
    response
}
