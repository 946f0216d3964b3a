//! The route table: every documented route with its OpenAPI operation ([`routes`](fn@routes)), and the
//! document's fixed parts that no handler carries ([`ApiDoc`]: info, tags, the hand-added plot
//! route).
//!
//! Depends on the handler files (`jobs`, `experiments`, `plots`, `presets`, `health`) and `app`; the OpenAPI
//! document ([`super::openapi`]) and the server ([`super::server`]) are built from it, so it
//! depends on neither.

use std::sync::Arc;

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::app::{App, EXPERIMENT_PLOT_ROUTE, JOB_PLOT_ROUTE};
use super::experiments;
use super::health;
use super::jobs;
use super::plots;
use super::presets;

/// The document's fixed parts; paths and schemas come from the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "gradscope",
        description = "Trains a neural network described as JSON and reports how the gradient flows through it: \
                       where it vanishes or explodes, what theory predicted, and what to change.\n\n\
                       Every error is `application/problem+json` (RFC 9457).",
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0"),
    ),
    tags(
        (name = "jobs", description = "Submit training runs, follow them, fetch their reports"),
        (name = "experiments", description = "Compare variants of a spec side by side, over seeds"),
        (name = "analyze", description = "Synchronous analysis at initialisation"),
        (name = "presets", description = "Ready specs for the classic scenarios"),
        (name = "operations", description = "Health, readiness and metrics"),
    ),
    // The plot route is added to the router by hand (see `routes`), so its operation is listed
    // here.
    paths(plots::get_plot, experiments::get_experiment_plot),
    // The events of the two streams: each stream is text, so no operation refers to them.
    components(schemas(crate::problem::ProblemEntry, crate::analysis::plots::PlotName, crate::analysis::experiment::ExperimentPlot,
                       jobs::JobEventDoc, experiments::ExperimentEventDoc)),
)]
pub struct ApiDoc;

/// Every documented route, with its OpenAPI operation.
pub fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(jobs::create_job, jobs::list_jobs))
        .routes(routes!(jobs::get_job, jobs::delete_job))
        .routes(routes!(jobs::get_report))
        .routes(routes!(plots::get_report_html))
        // Documented as `/v1/jobs/{id}/plots/{name}.svg` (in `ApiDoc`); axum cannot match a
        // suffix inside a segment, so the route takes the whole file name.
        .route(JOB_PLOT_ROUTE.router, axum::routing::get(plots::get_plot))
        .routes(routes!(jobs::stream_events))
        .routes(routes!(jobs::cancel_job))
        .routes(routes!(jobs::analyze))
        .routes(routes!(experiments::create_experiment, experiments::list_experiments))
        .routes(routes!(experiments::get_experiment, experiments::delete_experiment))
        .routes(routes!(experiments::cancel_experiment))
        .routes(routes!(experiments::stream_experiment_events))
        .routes(routes!(experiments::get_experiment_report_html))
        // Documented as `/v1/experiments/{id}/plots/{name}.svg` (in `ApiDoc`), like the job plots.
        .route(EXPERIMENT_PLOT_ROUTE.router, axum::routing::get(experiments::get_experiment_plot))
        .routes(routes!(presets::list_presets))
        .routes(routes!(presets::get_preset))
        .routes(routes!(health::livez))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
}
