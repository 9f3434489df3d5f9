//! The operations routes: `GET /metrics` (Prometheus text format) and `GET /readyz`
//! (readiness; `/healthz` in [`crate::api`] stays the liveness check).
//!
//! Each is one [`Backend`](crate::Backend) call; the backend decides what is counted
//! and what "ready" means, this module only picks the status code and content type.
//! Access follows [`crate::auth`]: with a token, `/metrics` needs it (it names jobs)
//! and `/readyz` stays open like `/healthz`, for probes that send no headers.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};

/// Every (path, method) served here; the OpenAPI test holds the document to these and
/// [`crate::api::ROUTES`].
pub const ROUTES: &[(&str, &str)] = &[("/metrics", "get"), ("/readyz", "get")];

/// The content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/readyz", get(readyz))
}

/// Whether this node can do its work now (`GET /readyz`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    pub ready: bool,
    /// Every check, ready or not: `store`, `scheduler`, `workers`, and `cluster` in
    /// cluster mode.
    pub checks: Vec<ReadinessCheck>,
    /// The names of the checks that are not ready.
    pub not_ready: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReadinessCheck {
    pub name: String,
    pub ready: bool,
    /// What is wrong, or what was seen.
    pub detail: Option<String>,
}

impl Readiness {
    /// Builds the answer from its checks.
    pub fn from_checks(checks: Vec<ReadinessCheck>) -> Self {
        let not_ready: Vec<String> = checks
            .iter()
            .filter(|c| !c.ready)
            .map(|c| c.name.clone())
            .collect();
        Readiness {
            ready: not_ready.is_empty(),
            checks,
            not_ready,
        }
    }
}

/// `{"data": …}`, as every JSON answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadinessData {
    pub data: Readiness,
}

/// Counters, gauges and histograms of this node in the Prometheus text format 0.0.4:
/// runs by outcome, fire lateness, queue depth, workers, worker restarts, store call
/// latency, egress requests, and cluster membership in cluster mode. Counts start at
/// zero when the process starts.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses(
        (status = 200, description = "The exposition", content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, description = "A token is configured and was not sent", body = ErrorBody),
    ))]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state.backend.metrics().await?;
    Ok(([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response())
}

/// Readiness of this node: 200 when the store answers, the scheduler runs, a worker is
/// alive and (cluster mode) this node's membership in Redis is current; 503 naming the
/// checks that failed otherwise. The body is wrapped in `data` either way. Needs no
/// token.
#[utoipa::path(get, path = "/readyz", tag = "service", security(),
    responses(
        (status = 200, description = "Ready", body = ReadinessData),
        (status = 503, description = "Not ready; `notReady` names the failed checks", body = ReadinessData),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let readiness = state.backend.readiness().await;
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(ReadinessData { data: readiness })).into_response()
}
