//! `GET /v1/jobs/{id}/plots/{name}.svg` and `GET /v1/jobs/{id}/report.html`: the report of a
//! job drawn by [`crate::analysis::plots`] and [`crate::analysis::html`].
//!
//! Thin like every handler: fetch the stored report from the job service, hand it to the
//! analysis layer on tokio's blocking pool (parsing a large report and drawing are CPU work),
//! map the errors. A plot that does not apply to the job's network (`timesteps` of an MLP,
//! `theory` without a profile) is `404` with type `/problems/plot-not-applicable`: that
//! resource does not exist for this job, as an unknown plot name does not exist for any.
//!
//! axum 0.8 cannot match a parameter with a suffix inside one path segment, so the route is
//! `/v1/jobs/{id}/plots/{file}` and the handler takes the name off `.svg`; the OpenAPI document
//! gives the published `/v1/jobs/{id}/plots/{name}.svg` (`openapi/openapi.json`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::app::App;
use super::error::ApiError;
use super::extract::{ApiPath, Caller};
use crate::analysis::{html, plots};
use crate::problem::Problem;

/// The media type of a plot.
pub const SVG: &str = "image/svg+xml";
/// The media type of the HTML report.
pub const HTML: &str = "text/html; charset=utf-8";

/// An SVG image (`image/svg+xml`): one plot, self-contained (no scripts, no external resources).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SvgImage(String);

/// A self-contained HTML page (`text/html`): the report with its plots inline.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct HtmlPage(String);

/// A plot of a job's report, as SVG.
///
/// `grad_flow` (layer x step heatmap of log10 grad_norm), `grad_norms` (per-layer bars, first
/// vs last probe, log scale), `loss` (training/validation loss and accuracy), `timesteps`
/// (recurrent networks: ||dL/dh_t|| vs t at several probe steps) and `theory` (the per-layer
/// decay predicted at initialisation vs the one measured at step 0). Served whenever the
/// report is (see `GET /v1/jobs/{id}/report`). A plot that does not apply to the job's network
/// is `404` with type `/problems/plot-not-applicable`.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/plots/{name}.svg",
    tag = "jobs",
    operation_id = "get_job_plot",
    params(
        ("id" = String, Path, description = "Job id"),
        ("name" = plots::PlotName, Path, description = "The plot"),
    ),
    responses(
        (status = 200, description = "The plot", body = SvgImage, content_type = "image/svg+xml"),
        (status = 404, description = "No job has this id, no plot has this name, or the plot does not apply to this job's network", body = Problem, content_type = "application/problem+json",
         example = json!({"type": "/problems/plot-not-applicable", "title": "Plot does not apply", "status": 404,
                          "detail": "plot `timesteps` does not apply to this report: `timesteps` is measured for recurrent networks only, and this report has none"})),
        (status = 409, description = "The job is still queued or running, or it ended without a report", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn get_plot(
    State(app): State<Arc<App>>,
    Caller(tenant): Caller,
    ApiPath((id, file)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let name = plot_name(&file)?;
    let report = app.jobs.report(&tenant, &id).await?;
    let svg = blocking(move || {
        let value = parse(&report)?;
        plots::render_json(&value, name).map_err(plot_error)
    })
    .await?;
    Ok(document(SVG, svg))
}

/// The report of a job as one self-contained HTML page.
///
/// The summary, each diagnostic in plain words with its severity, affected layers, evidence
/// and recommendations (with their JSON Patch), every plot that applies (inline SVG) and the
/// layer table. No external CSS, scripts or fonts: the page works saved to a file.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/report.html",
    tag = "jobs",
    operation_id = "get_job_report_html",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The page", body = HtmlPage, content_type = "text/html"),
        (status = 404, description = "No job has this id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job is still queued or running, or it ended without a report", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn get_report_html(
    State(app): State<Arc<App>>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let report = app.jobs.report(&tenant, &id).await?;
    let page = blocking(move || parse(&report).map(|v| html::render_json(&v))).await?;
    Ok(document(HTML, page))
}

/// The plot named by a file name `NAME.svg` (404 otherwise).
fn plot_name(file: &str) -> Result<plots::PlotName, ApiError> {
    let unknown = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown-plot",
            "Unknown plot",
            format!("no plot `{file}`; the plots are {}", plots::PlotName::ALL.map(|p| format!("{p}.svg")).join(", ")),
        )
    };
    let stem = file.strip_suffix(".svg").ok_or_else(unknown)?;
    plots::PlotName::from_name(stem).ok_or_else(unknown)
}

fn plot_error(e: plots::PlotError) -> ApiError {
    let detail = e.to_string();
    match e {
        plots::PlotError::UnknownPlot(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown-plot", "Unknown plot", detail)
        }
        plots::PlotError::NotApplicable { .. } => {
            ApiError::new(StatusCode::NOT_FOUND, "plot-not-applicable", "Plot does not apply", detail)
        }
        plots::PlotError::Drawing(msg) => ApiError::internal(&format!("drawing a plot: {msg}")),
    }
}

fn parse(report: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(report).map_err(|e| ApiError::internal(&format!("a stored report is not JSON: {e}")))
}

/// Runs CPU work off the async runtime (tokio's blocking pool); a failed task is a 500.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| ApiError::internal(&format!("rendering task failed: {e}")))?
}

fn document(content_type: &'static str, body: String) -> Response {
    ([(CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_names_with_the_svg_suffix_are_plots() {
        assert_eq!(plot_name("grad_flow.svg").unwrap().name(), "grad_flow");
        assert_eq!(plot_name("timesteps.svg").unwrap().name(), "timesteps");
        for bad in ["grad_flow", "grad_flow.png", "nope.svg", ".svg", "GRAD_FLOW.svg"] {
            let e = plot_name(bad).unwrap_err();
            assert_eq!((e.problem.status, e.problem.kind.as_str()), (404, "/problems/unknown-plot"), "{bad}");
        }
    }
}
