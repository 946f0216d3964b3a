//! Operations routes: `/livez` (and its alias `/healthz`), `/readyz`, `/metrics`, and the
//! middleware that feeds the HTTP metrics ([`count`] around everything, [`label_route`] where the
//! route is known; the metrics themselves are [`HttpMetrics`], part of the state).
//!
//! Liveness checks nothing but that the process answers (failing it gets the process restarted,
//! so it must not depend on anything else). Readiness asks the job layer: store reachable,
//! every worker alive, not shutting down. Metrics come from `prometheus-client`, one registry
//! per [`App`] (no process-global recorder, so tests can run many servers in one process), in
//! the Prometheus text format 0.0.4 or, when `Accept` asks for it, OpenMetrics 1.0.0
//! ([`super::metrics`]).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE, VARY};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::app::{published_route, App, HttpMetrics};
use super::error::{ApiError, ProblemType};
use super::metrics::{encode, Format};
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

/// Prometheus/OpenMetrics text exposition: `# HELP`, `# TYPE` and sample lines, ending in `# EOF`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct MetricsText(String);

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

/// Prometheus metrics: the text format 0.0.4, or OpenMetrics 1.0.0 when `Accept` asks for it.
#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "metrics",
    responses((status = 200, description = "Metrics in the Prometheus text format 0.0.4, or in OpenMetrics 1.0.0 when `Accept` asks for `application/openmetrics-text`",
               content((MetricsText = "text/plain; version=0.0.4; charset=utf-8"),
                       (MetricsText = "application/openmetrics-text; version=1.0.0; charset=utf-8")))))]
pub async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, ApiError> {
    app.jobs.refresh_gauges().await;
    let format = Format::negotiate(headers.get(ACCEPT).and_then(|v| v.to_str().ok()));
    let text = encode(&app.registry, format).map_err(|e| ApiError::internal(&e.to_string()))?;
    let headers =
        [(CONTENT_TYPE, HeaderValue::from_static(format.content_type())), (VARY, HeaderValue::from_static("accept"))];
    Ok((headers, text).into_response())
}

/// Where [`label_route`] leaves the matched route for [`count`].
#[derive(Debug, Clone, Default)]
struct RouteSlot(Arc<OnceLock<String>>);

/// The `method` label: one of the methods of RFC 9110, or `other` (a client's own method names
/// would be a label value per name).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// Counts every request the service answers, refusals included, and times it to the response
/// head (an SSE stream is counted when it starts). Installed outside every other layer but the
/// request id and the trace, so that it sees what they answer themselves (`414`, `431`, CORS
/// preflights, a panic's `500`); the route is the published template [`label_route`] found, or
/// `unmatched`; a 4xx/5xx also counts as a refusal by its problem type ([`ProblemType`]).
pub async fn count(State(metrics): State<HttpMetrics>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method()).to_owned();
    let slot = RouteSlot::default();
    req.extensions_mut().insert(slot.clone());
    let res = next.run(req).await;
    let route = slot.0.get().map_or("unmatched", String::as_str).to_owned();
    let problem = res.extensions().get::<ProblemType>().map(|p| p.0.as_str());
    metrics.record(method, route, res.status().as_u16(), started.elapsed().as_secs_f64(), problem);
    res
}

/// Tells [`count`] which route the router matched, by its published template. Installed on the
/// routes, outside authentication (so a `401` or `429` is counted by route).
pub async fn label_route(req: Request, next: Next) -> Response {
    if let (Some(slot), Some(matched)) = (req.extensions().get::<RouteSlot>(), req.extensions().get::<MatchedPath>()) {
        let _ = slot.0.set(published_route(matched.as_str()).to_owned());
    }
    next.run(req).await
}
