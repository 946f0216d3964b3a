//! The service around the routes: [`router`] (the route table of [`routes`](mod@super::routes), `/openapi.json`,
//! `/docs`, the fallback and the middleware stack), [`Server`] (bind, serve, graceful shutdown),
//! [`shutdown_signal`], [`init_tracing`] and [`serve`] (`gradscope serve`).
//!
//! The top of `api`: depends on `app`, `routes`, `openapi`, `health` (the metrics middleware) and
//! `error`; no file of `api` depends on it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa_swagger_ui::SwaggerUi;

use super::app::App;
use super::error::{self, ApiError};
use super::health;
use super::openapi;
use super::routes::routes;
use crate::config::{LogFormat, ServeArgs};

/// The complete service: routes, `/openapi.json`, `/docs`, and the middleware.
pub fn router(app: Arc<App>) -> Router {
    let (routes, doc) = routes().split_for_parts();
    let x_request_id = HeaderName::from_static("x-request-id");
    // `.layer` wraps everything added before it, so the last one is the outermost: request ids
    // are set first, then the request is traced, ...; `ensure_problem` sees every response.
    routes
        .layer(DefaultBodyLimit::max(app.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&app), health::track))
        .with_state(Arc::clone(&app))
        .merge(SwaggerUi::new("/docs").external_url_unchecked("/openapi.json", openapi::finish(&doc)))
        .fallback(not_found)
        .layer(CatchPanicLayer::custom(|_panic: Box<dyn std::any::Any + Send>| {
            axum::response::IntoResponse::into_response(ApiError::internal("a request handler panicked"))
        }))
        .layer(axum::middleware::map_response(error::ensure_problem))
        .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", method = %req.method(), uri = %req.uri(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid))
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
}

impl Server {
    /// Starts the job layer and binds `args.bind`.
    pub async fn bind(args: &ServeArgs) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(args.bind).await?;
        let app = Arc::new(App::start(args)?);
        Ok(Server { listener, app, grace: args.shutdown_grace() })
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
    /// and `/readyz` says 503 at once, queued jobs are cancelled, running jobs get the grace
    /// period and are then cancelled with code `shutdown`; finally the listener closes and open
    /// connections get a few seconds to finish.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> std::io::Result<()> {
        let Server { listener, app, grace } = self;
        let (stop_http, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(listener, router(Arc::clone(&app))).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        let mut serving = tokio::spawn(async move { server.await });
        tokio::select! {
            res = &mut serving => return res.map_err(std::io::Error::other)?,
            () = shutdown => {}
        }
        let cancelled = app.jobs.begin_shutdown();
        tracing::info!(queued_cancelled = cancelled, grace_s = grace.as_secs_f64(), "shutting down");
        let jobs = Arc::clone(&app);
        let _ = tokio::task::spawn_blocking(move || jobs.jobs.finish_shutdown(grace)).await;
        let _ = stop_http.send(());
        match tokio::time::timeout(Duration::from_secs(5), serving).await {
            Ok(res) => res.map_err(std::io::Error::other)?,
            Err(_) => {
                tracing::warn!("connections still open 5 s after the jobs stopped; exiting anyway");
                Ok(())
            }
        }
    }
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
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // `try_init` fails only if a subscriber is already installed (tests); keep that one.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
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
        server.run(shutdown_signal()).await
    })
}
