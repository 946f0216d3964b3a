//! The application state every handler gets (`State<Arc<App>>`): the job layer, the metrics
//! registry and the HTTP request metrics ([`HttpMetrics`]), the body size limit and the
//! authentication settings ([`Auth`]). Also the published templates of the routes the router
//! spells otherwise ([`RouteTemplate`]), so that the route table and the metrics' `route` label
//! share one definition.
//!
//! The handlers, the middleware and the server depend on it; of `api` it depends only on
//! `auth` (which knows nothing of the state) and `metrics` (the process and build metrics).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use super::auth::Auth;
use super::metrics::{register_build_info, ProcessCollector};
use crate::config::ServeArgs;
use crate::jobs::JobService;

/// The application state every handler gets (`State<Arc<App>>`).
#[derive(Debug)]
pub struct App {
    /// The job layer.
    pub jobs: JobService,
    /// Metrics registry (HTTP + jobs), rendered by `/metrics`.
    pub registry: Registry,
    /// HTTP request metrics.
    pub http_metrics: HttpMetrics,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Tokens, tenants and rates (see `api::auth`).
    pub auth: std::sync::Arc<Auth>,
    /// How often an event stream with nothing to say sends a keep-alive comment: under the
    /// idle limit (`--idle-timeout-secs`), so that a quiet stream (a queued job's, or one
    /// whose worker gets little CPU) is never taken for an idle connection.
    pub sse_keep_alive: std::time::Duration,
}

/// The keep-alive interval of event streams under an idle limit of `idle`: a third of it,
/// at most 15 s (axum's default).
pub fn sse_keep_alive(idle: std::time::Duration) -> std::time::Duration {
    (idle / 3).min(std::time::Duration::from_secs(15))
}

impl App {
    /// Reads the tokens, then starts the job layer (its worker threads) and the metrics. A
    /// problem with the tokens is an `InvalidInput` error: the server does not start.
    pub async fn start(args: &ServeArgs) -> std::io::Result<Self> {
        let auth = Auth::from_args(args).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let jobs = JobService::start(args.jobs_config()).await.map_err(std::io::Error::other)?;
        let mut registry = Registry::default();
        jobs.metrics().register(&mut registry);
        let http_metrics = HttpMetrics::register(&mut registry);
        register_build_info(&mut registry);
        registry.register_collector(Box::new(ProcessCollector));
        let sse_keep_alive = sse_keep_alive(args.idle_timeout());
        Ok(App { jobs, registry, http_metrics, max_body_bytes: args.max_body_bytes, auth: auth.into(), sse_keep_alive })
    }
}

/// A route the router matches with another template than the one published (axum cannot match
/// a parameter with a suffix inside a path segment, so `{name}.svg` is routed as `{file}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteTemplate {
    /// The template the router matches (`routes`).
    pub router: &'static str,
    /// The template of the OpenAPI document and docs/service.md, and the metrics' `route` label.
    pub published: &'static str,
}

/// `GET /v1/jobs/{id}/plots/{name}.svg`.
pub const JOB_PLOT_ROUTE: RouteTemplate =
    RouteTemplate { router: "/v1/jobs/{id}/plots/{file}", published: "/v1/jobs/{id}/plots/{name}.svg" };

/// `GET /v1/experiments/{id}/plots/{name}.svg`.
pub const EXPERIMENT_PLOT_ROUTE: RouteTemplate =
    RouteTemplate { router: "/v1/experiments/{id}/plots/{file}", published: "/v1/experiments/{id}/plots/{name}.svg" };

/// The published template of the route the router matched as `matched`.
pub fn published_route(matched: &str) -> &str {
    [JOB_PLOT_ROUTE, EXPERIMENT_PLOT_ROUTE].iter().find(|r| r.router == matched).map_or(matched, |r| r.published)
}

/// Labels of an HTTP request metric: the route template (never the raw path, which holds ids).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `GET`, `POST`, ...
    pub method: String,
    /// `/v1/jobs/{id}`, or `unmatched`.
    pub route: String,
    /// Response status code.
    pub status: u16,
}

/// Labels of the latency histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The route template.
    pub route: String,
}

/// Labels of a refused request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// Response status code (4xx, 5xx).
    pub status: u16,
    /// The problem type without `/problems/` (`job-not-found`, `uri-too-long`, ...).
    pub reason: String,
}

/// HTTP metrics.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    refusals: Family<RefusalLabels, Counter>,
}

impl HttpMetrics {
    /// Creates the metrics and registers them, with the job layer's, in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = HttpMetrics {
            requests: Family::default(),
            // 100 us .. ~6.5 s in doublings.
            latency: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0001, 2.0, 17))),
            refusals: Family::default(),
        };
        registry.register("gradscope_http_requests", "HTTP requests by route and status", m.requests.clone());
        registry.register(
            "gradscope_http_refusals",
            "Requests answered with a problem (4xx, 5xx), by status and problem type",
            m.refusals.clone(),
        );
        registry.register_with_unit(
            "gradscope_http_request_duration",
            "Time to produce the response head (streams excluded)",
            Unit::Seconds,
            m.latency.clone(),
        );
        m
    }

    /// Records one request: `route` is the published route template (or `unmatched`), `seconds`
    /// the time to the response head, `problem` the problem type of a refusal.
    pub fn record(&self, method: String, route: String, status: u16, seconds: f64, problem: Option<&str>) {
        self.latency.get_or_create(&RouteLabels { method: method.clone(), route: route.clone() }).observe(seconds);
        self.requests.get_or_create(&RequestLabels { method, route, status }).inc();
        if status >= 400 {
            let reason = problem.map_or("unknown", |p| p.strip_prefix("/problems/").unwrap_or(p)).to_owned();
            self.refusals.get_or_create(&RefusalLabels { status, reason }).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn routes_with_a_suffix_are_labelled_by_their_published_template() {
        assert_eq!(super::published_route("/v1/jobs/{id}/plots/{file}"), "/v1/jobs/{id}/plots/{name}.svg");
        assert_eq!(
            super::published_route("/v1/experiments/{id}/plots/{file}"),
            "/v1/experiments/{id}/plots/{name}.svg"
        );
        assert_eq!(super::published_route("/v1/jobs/{id}"), "/v1/jobs/{id}");
    }

    #[test]
    fn event_streams_keep_alive_well_within_the_idle_limit() {
        assert_eq!(super::sse_keep_alive(Duration::from_secs(75)), Duration::from_secs(15));
        assert_eq!(super::sse_keep_alive(Duration::from_secs(2)), Duration::from_secs(2) / 3);
    }
}
