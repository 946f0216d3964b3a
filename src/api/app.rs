//! The application state every handler gets (`State<Arc<App>>`): the job layer, the metrics
//! registry and the HTTP request metrics ([`HttpMetrics`]), the body size limit and the
//! authentication settings ([`Auth`]).
//!
//! The handlers, the middleware and the server depend on it; of `api` it depends only on
//! `auth` (which knows nothing of the state).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use super::auth::Auth;
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
        Ok(App { jobs, registry, http_metrics, max_body_bytes: args.max_body_bytes, auth: auth.into() })
    }
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

/// HTTP metrics.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
}

impl HttpMetrics {
    /// Creates the metrics and registers them, with the job layer's, in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = HttpMetrics {
            requests: Family::default(),
            // 100 us .. ~6.5 s in doublings.
            latency: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0001, 2.0, 17))),
        };
        registry.register("gradscope_http_requests", "HTTP requests by route and status", m.requests.clone());
        registry.register_with_unit(
            "gradscope_http_request_duration",
            "Time to produce the response head (streams excluded)",
            Unit::Seconds,
            m.latency.clone(),
        );
        m
    }

    /// Records one request: `route` is the route template (or `unmatched`), `seconds` the time
    /// to the response head.
    pub fn record(&self, method: String, route: String, status: u16, seconds: f64) {
        self.latency.get_or_create(&RouteLabels { method: method.clone(), route: route.clone() }).observe(seconds);
        self.requests.get_or_create(&RequestLabels { method, route, status }).inc();
    }
}
