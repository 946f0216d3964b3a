//! The service around the routes: [`router`] (the route table of [`routes`](mod@super::routes), `/openapi.json`,
//! `/docs`, the fallback and the middleware stack), [`Server`] (bind, the connection loop,
//! graceful shutdown), [`shutdown_signal`], [`init_tracing`] and [`serve`] (`gradscope serve`).
//!
//! Slow and oversized clients: the connection loop is hyper-util's (axum's `serve` sets no
//! timer, so hyper's header read timeout would not run): a request's head must arrive within
//! `--header-read-timeout-secs` once it has started, a connection silent both ways is closed
//! after `--idle-timeout-secs` ([`super::idle`]), a body may
//! stall at most `--body-read-timeout-secs` (408), the URL is bounded by `--max-uri-bytes`
//! (414) and the headers by `--max-header-bytes` (431), both answered as problems; hyper's read
//! buffer, a few times larger, is the last bound (its own bare 431 beyond it).
//!
//! Compression: JSON (problems included), SVG, HTML and the metrics text are sent gzip- or
//! brotli-compressed when the client accepts it (tower-http's `CompressionLayer`, [`compressible`]);
//! event streams never (each event must reach the client when it is sent), nor bodies under
//! 256 bytes. A compressed copy of a tagged report gets its own strong tag ([`super::etag`]).
//!
//! The top of `api`: depends on `app`, `auth`, `routes`, `openapi`, `health` (the metrics
//! middleware), `etag` and `error`; no file of `api` depends on it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE, ETAG};
use axum::http::{Extensions, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Version};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use tower::ServiceExt;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::classify::ServerErrorsFailureClass;
use tower_http::compression::predicate::{Predicate, SizeAbove};
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa_swagger_ui::SwaggerUi;

use super::app::App;
use super::auth;
use super::error::{self, ApiError};
use super::etag;
use super::health;
use super::idle::IdleTimeout;
use super::openapi;
use super::routes::routes;
use crate::config::{LogFormat, ServeArgs};

/// Request size bounds enforced as problems (see the module doc).
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Longest path and query, in bytes.
    pub max_uri_bytes: usize,
    /// Largest sum of header names and values (plus 4 bytes each for `: ` and CRLF).
    pub max_header_bytes: usize,
}

impl HeadLimits {
    fn of(args: &ServeArgs) -> Self {
        HeadLimits { max_uri_bytes: args.max_uri_bytes.max(256), max_header_bytes: args.max_header_bytes.max(1024) }
    }
}

async fn check_head(limits: axum::extract::State<HeadLimits>, req: axum::extract::Request, next: Next) -> Response {
    let uri = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri > limits.max_uri_bytes {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri-too-long",
            "URI too long",
            format!("the URL is {uri} bytes; the limit is {} (GRADSCOPE_MAX_URI_BYTES)", limits.max_uri_bytes),
        )
        .into_response();
    }
    let headers: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if headers > limits.max_header_bytes {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers-too-large",
            "Request headers too large",
            format!(
                "the headers are {headers} bytes; the limit is {} (GRADSCOPE_MAX_HEADER_BYTES)",
                limits.max_header_bytes
            ),
        )
        .into_response();
    }
    next.run(req).await
}

/// The media types sent compressed when the client accepts it: JSON (reports, jobs, problems),
/// SVG plots, HTML pages and the metrics text; never `text/event-stream`.
const COMPRESSIBLE: [&str; 6] = [
    "application/json",
    "application/problem+json",
    "image/svg+xml",
    "text/html",
    "text/plain",
    "application/openmetrics-text",
];

/// Whether a response of these headers is one of [`COMPRESSIBLE`] (by its media type, parameters
/// aside).
fn compressible(_status: StatusCode, _version: Version, headers: &HeaderMap, _ext: &Extensions) -> bool {
    let media = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = media.split(';').next().unwrap_or("").trim();
    COMPRESSIBLE.iter().any(|m| media.eq_ignore_ascii_case(m))
}

/// The compression layer: gzip and brotli, for [`compressible`] bodies of 256 bytes or more.
fn compression() -> CompressionLayer<impl Predicate> {
    CompressionLayer::new().gzip(true).br(true).compress_when(
        SizeAbove::new(256).and(compressible as fn(StatusCode, Version, &HeaderMap, &Extensions) -> bool),
    )
}

/// Gives a compressed copy of a tagged response its own strong tag (`"x"` -> `"x-gzip"`, see
/// [`super::etag`]); runs outside the compression layer.
async fn tag_coding(res: Response) -> Response {
    let (Some(coding), Some(tag)) = (res.headers().get(CONTENT_ENCODING), res.headers().get(ETAG)) else {
        return res;
    };
    let coded = match (coding.to_str(), tag.to_str()) {
        (Ok(coding), Ok(tag)) => etag::for_coding(tag, coding).and_then(|t| HeaderValue::from_str(&t).ok()),
        _ => None,
    };
    let mut res = res;
    match coded {
        Some(t) => {
            res.headers_mut().insert(ETAG, t);
        }
        // A coding or tag this server does not make: no tag rather than a wrong one.
        None => {
            res.headers_mut().remove(ETAG);
        }
    }
    res
}

/// The CORS layer for `origins` (`*` for any), or `None` when the list is empty.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    let origins: Vec<&str> = origins.iter().map(|o| o.trim()).filter(|o| !o.is_empty()).collect();
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.contains(&"*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    let name = HeaderName::from_static;
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([
                axum::http::header::AUTHORIZATION,
                axum::http::header::CONTENT_TYPE,
                axum::http::header::IF_NONE_MATCH,
                name("idempotency-key"),
                name("last-event-id"),
                name("x-request-id"),
            ])
            .expose_headers([
                axum::http::header::ETAG,
                axum::http::header::LOCATION,
                axum::http::header::RETRY_AFTER,
                axum::http::header::WWW_AUTHENTICATE,
                name("x-request-id"),
            ])
            .max_age(Duration::from_secs(3600)),
    )
}

/// The complete service of `args`: routes, `/openapi.json`, `/docs`, and the middleware with
/// the request bounds, the body timeout and the CORS origins of `args`.
pub fn router(app: Arc<App>, args: &ServeArgs) -> Router {
    let limits = HeadLimits::of(args);
    let body_timeout = args.body_read_timeout();
    let cors = cors(&args.cors_allow_origins);
    let (routes, doc) = routes().split_for_parts();
    let x_request_id = HeaderName::from_static("x-request-id");
    // `.layer` wraps everything added before it, so the last one is the outermost: request ids
    // are set first, then the request is traced, counted, ...; `ensure_problem` sees every
    // response before it is compressed. Authentication runs inside `label_route`, so 401s and
    // 429s are counted by route; `count` is outside the rest, so that every answer is counted.
    routes
        .layer(DefaultBodyLimit::max(app.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&app.auth), auth::authenticate))
        .with_state(Arc::clone(&app))
        .merge(SwaggerUi::new("/docs").external_url_unchecked("/openapi.json", openapi::finish(&doc)))
        .layer(axum::middleware::from_fn(health::label_route))
        .fallback(not_found)
        .layer(RequestBodyTimeoutLayer::new(body_timeout))
        .layer(CatchPanicLayer::custom(|_panic: Box<dyn std::any::Any + Send>| {
            axum::response::IntoResponse::into_response(ApiError::internal("a request handler panicked"))
        }))
        .layer(axum::middleware::from_fn_with_state(limits, check_head))
        .layer(axum::middleware::map_response(error::ensure_problem))
        .layer(compression())
        .layer(axum::middleware::map_response(tag_coding))
        // Outside `ensure_problem`, so that error responses carry the CORS headers too, and
        // preflight requests are answered before authentication.
        .layer(tower::util::option_layer(cors))
        .layer(axum::middleware::from_fn_with_state(app.http_metrics.clone(), health::count))
        .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
                    tracing::info_span!("request", method = %req.method(), uri = %req.uri(), request_id = %id)
                })
                .on_failure(log_failure),
        )
        .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid))
}

/// How a 5xx answer is logged. A 503 is the service working as documented (queue full, the
/// store away, shutting down; the client is told when to retry), so it is logged at `info`; any
/// other 5xx (or a failure without a response) at `error`. 500s are also logged with their
/// cause where they are made (`ApiError::internal`).
fn log_failure(class: ServerErrorsFailureClass, latency: Duration, _span: &tracing::Span) {
    let ms = latency.as_millis() as u64;
    match class {
        ServerErrorsFailureClass::StatusCode(StatusCode::SERVICE_UNAVAILABLE) => {
            tracing::info!(status = 503, latency_ms = ms, "request refused: service unavailable");
        }
        ServerErrorsFailureClass::StatusCode(code) => {
            tracing::error!(status = code.as_u16(), latency_ms = ms, "request failed");
        }
        ServerErrorsFailureClass::Error(e) => tracing::error!(error = %e, latency_ms = ms, "request failed"),
    }
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for `{}`", uri.path()))
}

/// A bound, not yet serving server.
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    grace: Duration,
    router: Router,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    /// hyper's read buffer: the last bound on a request head.
    max_buf_size: usize,
}

impl Server {
    /// Starts the job layer and binds `args.bind`.
    pub async fn bind(args: &ServeArgs) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(args.bind).await?;
        let app = Arc::new(App::start(args).await?);
        let router = router(Arc::clone(&app), args);
        // hyper needs at least 8 KiB; a few times the bounds checked as problems, so that those
        // checks (with their problem bodies) are what a client normally meets.
        let max_buf_size = (4 * (args.max_header_bytes + args.max_uri_bytes)).max(64 * 1024);
        Ok(Server {
            listener,
            app,
            grace: args.shutdown_grace(),
            router,
            header_read_timeout: args.header_read_timeout(),
            idle_timeout: args.idle_timeout(),
            max_buf_size,
        })
    }

    /// The address it listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The application state.
    pub fn app(&self) -> Arc<App> {
        Arc::clone(&self.app)
    }

    /// Serves until `shutdown` resolves, then shuts down gracefully: new jobs are refused (503)
    /// and `/readyz` says 503 at once, no job is claimed any more (queued jobs stay queued, for
    /// another replica or the next start), running jobs get the grace period and are then given
    /// back to the queue without using an attempt; finally the listener closes and open
    /// connections get a few seconds to finish.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> std::io::Result<()> {
        let Server { listener, app, grace, router, header_read_timeout, idle_timeout, max_buf_size } = self;
        let (stop_http, stopped) = tokio::sync::oneshot::channel::<()>();
        let timeouts = (header_read_timeout, idle_timeout);
        let mut serving = tokio::spawn(accept_loop(listener, router, timeouts, max_buf_size, stopped));
        tokio::select! {
            res = &mut serving => return res.map_err(std::io::Error::other),
            () = shutdown => {}
        }
        app.jobs.begin_shutdown();
        tracing::info!(grace_s = grace.as_secs_f64(), "shutting down: no new jobs; queued jobs stay queued");
        app.jobs.finish_shutdown(grace).await;
        let _ = stop_http.send(());
        match tokio::time::timeout(Duration::from_secs(5), serving).await {
            Ok(res) => res.map_err(std::io::Error::other),
            Err(_) => {
                tracing::warn!("connections still open 5 s after the jobs stopped; exiting anyway");
                Ok(())
            }
        }
    }
}

/// Accepts connections until `stop`, serving each on its own task with hyper-util's HTTP/1 and
/// HTTP/2 builder (header read timeout, read buffer bound); then stops accepting and waits for
/// open connections to finish their requests (hyper's graceful shutdown).
async fn accept_loop(
    listener: tokio::net::TcpListener,
    router: Router,
    (header_read_timeout, idle_timeout): (Duration, Duration),
    max_buf_size: usize,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut builder = ConnBuilder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_read_timeout).max_buf_size(max_buf_size);
    builder.http2().timer(TokioTimer::new()).max_header_list_size(max_buf_size.min(u32::MAX as usize) as u32);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            router.clone().oneshot(req.map(axum::body::Body::new))
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(IdleTimeout::new(stream, idle_timeout)), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (`docker stop`, Kubernetes, systemd).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}

/// Installs the log subscriber: `RUST_LOG` filters (default `info`), `format` chooses the shape.
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a terminal: a log redirected to a file or a collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    // `try_init` fails only if a subscriber is already installed (tests); keep that one.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// Says at start whether the service is open: a warning when it is open to more than this
/// machine.
fn announce_auth(auth: &auth::Auth, addr: SocketAddr) {
    if !auth.is_open() {
        tracing::info!(tenants = auth.tenants(), "API tokens configured: every /v1 route needs a bearer token");
    } else if addr.ip().is_loopback() {
        tracing::info!(
            "no API tokens configured: the service is open (one tenant); set GRADSCOPE_API_TOKENS_FILE before exposing it"
        );
    } else {
        tracing::warn!(
            %addr,
            "NO AUTHENTICATION: the service listens beyond loopback and no API tokens are configured, so anyone who \
             can reach {addr} can read, cancel and delete every job; set GRADSCOPE_API_TOKENS_FILE (see README, Operating)"
        );
    }
}

/// `gradscope serve`: runs the service until SIGINT/SIGTERM.
pub fn serve(args: ServeArgs) -> std::io::Result<()> {
    init_tracing(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let server = Server::bind(&args).await?;
        let jobs = server.app().jobs.config().clone();
        tracing::info!(
            addr = %server.local_addr()?,
            workers = jobs.workers,
            queue_capacity = jobs.queue_capacity,
            job_timeout_s = jobs.job_timeout.as_secs_f64(),
            max_body_bytes = args.max_body_bytes,
            "gradscope listening"
        );
        announce_auth(&server.app().auth, server.local_addr()?);
        server.run(shutdown_signal()).await
    })
}
