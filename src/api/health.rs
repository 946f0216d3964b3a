//! Operations routes: `/livez` (and its alias `/healthz`), `/readyz`, `/metrics`, and the
//! middleware that feeds the HTTP metrics ([`track`]; the metrics themselves are
//! [`HttpMetrics`](super::app::HttpMetrics), part of the state).
//!
//! Liveness checks nothing but that the process answers (failing it gets the process restarted,
//! so it must not depend on anything else). Readiness asks the job layer: store reachable,
//! every worker alive, not shutting down. Metrics are Prometheus/OpenMetrics text from
//! `prometheus-client`, one registry per [`App`] (no process-global recorder, so
//! tests can run many servers in one process).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::app::App;
use super::error::ApiError;
use crate::problem::Problem;

/// `{"status": "ok"}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    #[schema(example = "ok")]
    pub status: String,
}

/// Readiness and what it is made of.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Ready {
    /// `ready`.
    #[schema(example = "ready")]
    pub status: String,
    /// Worker threads alive.
    pub workers_alive: usize,
    /// Worker threads configured.
    pub workers: usize,
    /// Jobs waiting.
    pub queued: i64,
    /// Jobs running.
    pub running: i64,
}

/// Liveness: the process answers. No dependency checks.
#[utoipa::path(get, path = "/livez", tag = "operations", operation_id = "livez",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn livez() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// Alias of `/livez`.
#[utoipa::path(get, path = "/healthz", tag = "operations", operation_id = "healthz",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    livez().await
}

/// Readiness: the store answers, every worker is alive, and the server is not shutting down.
#[utoipa::path(get, path = "/readyz", tag = "operations", operation_id = "readyz",
    responses(
        (status = 200, description = "Ready to take jobs", body = Ready),
        (status = 503, description = "Not ready (shutting down, a worker lost, or the store unreachable)", body = Problem,
         content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub async fn readyz(State(app): State<Arc<App>>) -> Result<Json<Ready>, ApiError> {
    let r = app.jobs.readiness().await;
    if !r.is_ready() {
        let why = if r.shutting_down {
            "the server is shutting down".to_owned()
        } else if !r.store_reachable {
            "the job store is unreachable".to_owned()
        } else {
            format!("{} of {} workers are alive", r.workers_alive, r.workers)
        };
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", "Not ready", why).retry_after(5));
    }
    app.jobs.refresh_gauges().await;
    let m = app.jobs.metrics();
    Ok(Json(Ready {
        status: "ready".into(),
        workers_alive: r.workers_alive,
        workers: r.workers,
        queued: m.queue_depth.get(),
        running: m.running.get(),
    }))
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "metrics",
    responses((status = 200, description = "Metrics in the OpenMetrics text format",
               content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String)))]
pub async fn metrics(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    app.jobs.refresh_gauges().await;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &app.registry)
        .map_err(|e| ApiError::internal(&e.to_string()))?;
    Ok(([(CONTENT_TYPE, HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"))], text)
        .into_response())
}

/// Counts every request and times it (to the response head: an SSE stream is counted when it
/// starts).
pub async fn track(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |m| m.as_str()).to_owned();
    let res = next.run(req).await;
    app.http_metrics.record(method, route, res.status().as_u16(), started.elapsed().as_secs_f64());
    res
}
