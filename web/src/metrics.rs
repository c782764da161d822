//! `/metrics` in the Prometheus text format, and `/healthz`.
//!
//! Queue sizes, leases, outcomes and builder counts come from the store at scrape time (so
//! several coordinators on one database report the same numbers); request counts are this
//! process's own.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::Timestamp;

use crate::WebState;
use crate::error::WebError;

/// Requests answered by this process, by status class (1xx..5xx).
#[derive(Debug, Default)]
pub struct Metrics {
    responses: [AtomicU64; 5],
}

impl Metrics {
    fn count(&self, status: StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
    }
}

pub(crate) fn routes() -> Router<WebState> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
}

/// Middleware counting every response by status class.
pub(crate) async fn count_requests(
    State(state): State<WebState>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    state.metrics().count(response.status());
    response
}

async fn metrics(State(state): State<WebState>) -> Result<Response, WebError> {
    let stats = state.store().queue_stats(Timestamp::now()).await?;
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in samples {
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {value}");
            } else {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        }
    };
    gauge(
        "buildsrs_tasks",
        "Build tasks by state.",
        &[
            ("state=\"queued\"", stats.queued),
            ("state=\"building\"", stats.building),
            ("state=\"verified\"", stats.verified),
            ("state=\"mismatch\"", stats.mismatch),
            ("state=\"failed\"", stats.failed),
            ("state=\"no_binaries\"", stats.no_binaries),
            ("state=\"cancelled\"", stats.cancelled),
        ],
    );
    gauge(
        "buildsrs_tasks_ready",
        "Tasks a builder could lease now.",
        &[("", stats.ready)],
    );
    gauge(
        "buildsrs_leases_active",
        "Leases held by builders now.",
        &[("", stats.active_leases)],
    );
    gauge(
        "buildsrs_builders",
        "Builders by status.",
        &[
            ("status=\"pending\"", stats.builders_pending),
            ("status=\"approved\"", stats.builders_approved),
            ("status=\"revoked\"", stats.builders_revoked),
        ],
    );
    gauge(
        "buildsrs_artifacts_verified",
        "Artifacts verified by a quorum.",
        &[("", stats.artifacts_verified)],
    );
    gauge("buildsrs_crates", "Crates known.", &[("", stats.crates)]);
    gauge(
        "buildsrs_versions",
        "Versions known.",
        &[("", stats.versions)],
    );
    let _ = writeln!(
        out,
        "# HELP buildsrs_http_responses_total HTTP responses of this process by status class.\n\
         # TYPE buildsrs_http_responses_total counter"
    );
    for (i, counter) in state.metrics().responses.iter().enumerate() {
        let _ = writeln!(
            out,
            "buildsrs_http_responses_total{{class=\"{}xx\"}} {}",
            i + 1,
            counter.load(Ordering::Relaxed)
        );
    }
    let (hits, misses) = state.page_cache().counts();
    let _ = writeln!(
        out,
        "# HELP buildsrs_page_cache_requests_total Public page and API requests of this process \
         by whether they rendered an answer (miss) or were served one already rendered (hit).\n\
         # TYPE buildsrs_page_cache_requests_total counter\n\
         buildsrs_page_cache_requests_total{{result=\"hit\"}} {hits}\n\
         buildsrs_page_cache_requests_total{{result=\"miss\"}} {misses}"
    );
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}

/// 200 when the store answers, 503 when it does not.
async fn healthz(State(state): State<WebState>) -> Response {
    match state.store().schema_version().await {
        Ok(version) => (StatusCode::OK, format!("ok (schema {version})\n")).into_response(),
        Err(error) => {
            tracing::warn!("health check: {error}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the job store does not answer\n",
            )
                .into_response()
        }
    }
}
