//! Handlers of `/v1/experiments`: submit, list, read, cancel, delete, follow (SSE), and the
//! result drawn as plots and an HTML page. Each parses the request, calls one method of
//! [`JobService`](crate::jobs::JobService) (or one function of
//! [`crate::analysis::experiment`] on a stored result) and maps the error. Owns the wire shapes
//! that add HTTP to an experiment ([`ExperimentResource`]'s links).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::app::App;
use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery, Caller, JsonBody};
use super::jobs::{page_limit, PROGRESS_EVENT, STATUS_EVENT};
use super::plots::blocking;
use crate::analysis::experiment::{self as exp, ExperimentPlot};
use crate::jobs::experiments::model::{Experiment, ExperimentProgress};
use crate::jobs::experiments::ExperimentCancel;
use crate::problem::Problem;
use crate::spec::experiment::ExperimentRequest;

/// Links of an experiment (relative URLs).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExperimentLinks {
    /// The experiment.
    #[serde(rename = "self")]
    pub self_: String,
    /// Its event stream.
    pub events: String,
    /// Where to cancel it.
    pub cancel: String,
    /// Its result as one self-contained HTML page.
    pub report_html: String,
    /// Its plots: a URI template, `{name}` one of `grad_norm_init`, `loss`, `heatmap`.
    pub plots: String,
    /// The report of one of its runs: a URI template, `{job_id}` from `variants[].runs[]`.
    pub run_report: String,
}

/// An experiment with its links, as the API returns it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExperimentResource {
    /// The experiment.
    #[serde(flatten)]
    pub experiment: Experiment,
    /// Where its parts are.
    pub links: ExperimentLinks,
}

impl From<Experiment> for ExperimentResource {
    fn from(experiment: Experiment) -> Self {
        let base = experiment_path(&experiment.id);
        ExperimentResource {
            links: ExperimentLinks {
                events: format!("{base}/events"),
                cancel: format!("{base}/cancel"),
                report_html: format!("{base}/report.html"),
                plots: format!("{base}/plots/{{name}}.svg"),
                run_report: "/v1/jobs/{job_id}/report".into(),
                self_: base,
            },
            experiment,
        }
    }
}

/// A page of experiments, newest first (without their `result`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExperimentList {
    /// The experiments.
    pub experiments: Vec<ExperimentResource>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Query of `GET /v1/experiments`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExperimentListParams {
    /// Experiments per page, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
    /// The `next_cursor` of the previous page (opaque).
    #[param(pattern = r"^c[0-9a-f]{1,16}$")]
    pub cursor: Option<String>,
}

/// The path of an experiment.
pub fn experiment_path(id: &str) -> String {
    format!("/v1/experiments/{id}")
}

/// Compare variants of a spec side by side, each trained on the same seeds.
///
/// The body names a base spec (or a job preset), the variants — a grid (`vary`: JSON Pointer ->
/// values), named RFC 6902 patches (`variants`), or the recommendations of a finished job
/// (`remedies_of`) — and the seeds (a list, or a count; default 3). `{"preset": NAME}` names an
/// experiment preset (`GET /v1/presets`, `experiments`). The base spec unchanged is always a
/// variant, the baseline. Every (variant, seed) runs as an ordinary job on the shared pool; an
/// experiment never holds more than its fair share of the workers while other jobs wait
/// (docs/experiments.md). Every run is validated before anything is queued; the experiment's
/// own limits (variants, seeds, total compute) are checked with the computed figures in the
/// refusal.
#[utoipa::path(
    post,
    path = "/v1/experiments",
    tag = "experiments",
    operation_id = "create_experiment",
    request_body(content = ExperimentRequest, content_type = "application/json",
        description = "An experiment, or `{\"preset\": NAME}` naming an experiment preset",
        example = json!({"base": {"preset": "deep-sigmoid-vanishing"},
                         "variants": [{"name": "relu-he", "patch": [{"op": "replace", "path": "/model/layers/0/activation", "value": "relu"}]}],
                         "seeds": 3})),
    responses(
        (status = 202, description = "Accepted: every run is queued", body = ExperimentResource,
         headers(("Location" = String, description = "The experiment's URL"))),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`remedies_of` names no job", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid request, pointer, patch or variant spec, unknown preset, or over the experiment limits (every problem with its JSON Pointer)", body = Problem, content_type = "application/problem+json",
         example = json!({"type": "/problems/invalid-spec", "title": "Invalid spec", "status": 422, "detail": "the spec has 1 problem",
                          "errors": [{"pointer": "/vary/~1model~1layers~19~1activation", "detail": "`/model/layers/9/activation` does not point into the base spec: `9` is not an index of the list at `/model/layers` (2 items)"}]})),
        (status = 503, description = "The queue cannot take every run, or the server is shutting down", body = Problem, content_type = "application/problem+json",
         headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
)]
pub async fn create_experiment(
    State(app): State<Arc<App>>,
    Caller(tenant): Caller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let experiment = app.jobs.submit_experiment(&tenant, &body).await?;
    let location =
        HeaderValue::from_str(&experiment_path(&experiment.id)).map_err(|e| ApiError::internal(&e.to_string()))?;
    Ok((StatusCode::ACCEPTED, [(LOCATION, location)], Json(ExperimentResource::from(experiment))).into_response())
}

/// List experiments, newest first (each without its `result`).
#[utoipa::path(
    get,
    path = "/v1/experiments",
    tag = "experiments",
    operation_id = "list_experiments",
    params(ExperimentListParams),
    responses(
        (status = 200, description = "A page of experiments", body = ExperimentList),
        (status = 400, description = "Invalid limit or cursor", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn list_experiments(
    State(app): State<Arc<App>>,
    Caller(tenant): Caller,
    ApiQuery(params): ApiQuery<ExperimentListParams>,
) -> Result<Json<ExperimentList>, ApiError> {
    let page = app.jobs.list_experiments(&tenant, page_limit(params.limit)?, params.cursor.as_deref()).await?;
    Ok(Json(ExperimentList {
        experiments: page.experiments.into_iter().map(ExperimentResource::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// An experiment: its variants and runs, aggregated progress, and its result once every run
/// has ended.
#[utoipa::path(
    get,
    path = "/v1/experiments/{id}",
    tag = "experiments",
    operation_id = "get_experiment",
    params(("id" = String, Path, description = "Experiment id")),
    responses(
        (status = 200, description = "The experiment", body = ExperimentResource),
        (status = 404, description = "No experiment has this id", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn get_experiment(
    State(app): State<Arc<App>>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ExperimentResource>, ApiError> {
    // Reading may compute the summary of an experiment whose last runs were cancelled.
    let experiment = app.jobs.get_experiment(&tenant, &id).await?;
    Ok(Json(experiment.into()))
}

/// Delete a finished experiment and every job (and report) of it.
#[utoipa::path(
    delete,
    path = "/v1/experiments/{id}",
    tag = "experiments",
    operation_id = "delete_experiment",
    params(("id" = String, Path, description = "Experiment id")),
    responses(
        (status = 204, description = "Deleted, with its jobs"),
        (status = 404, description = "No experiment has this id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Some runs have not ended (cancel it first)", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn delete_experiment(
    State(app): State<Arc<App>>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    app.jobs.delete_experiment(&tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Cancel an experiment: its queued runs at once, its running ones within one training step.
#[utoipa::path(
    post,
    path = "/v1/experiments/{id}/cancel",
    tag = "experiments",
    operation_id = "cancel_experiment",
    params(("id" = String, Path, description = "Experiment id")),
    responses(
        (status = 202, description = "Cancelled (queued runs) or cancellation requested (running runs)", body = ExperimentResource),
        (status = 200, description = "Every run had already ended; unchanged", body = ExperimentResource),
        (status = 404, description = "No experiment has this id", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn cancel_experiment(
    State(app): State<Arc<App>>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    Ok(match app.jobs.cancel_experiment(&tenant, &id).await? {
        ExperimentCancel::Accepted(e) => (StatusCode::ACCEPTED, Json(ExperimentResource::from(e))).into_response(),
        ExperimentCancel::AlreadyFinished(e) => (StatusCode::OK, Json(ExperimentResource::from(e))).into_response(),
    })
}

/// How often the event stream looks at the experiment.
const EVENT_POLL: Duration = Duration::from_millis(250);

/// Live progress of an experiment as Server-Sent Events.
///
/// `event: progress` (data: the aggregated progress: runs, runs ended, runs running, steps
/// done and planned over every run) whenever it changes, then one `event: status` (data: the
/// experiment with its result) when every run has ended, and the stream closes. Ids increase;
/// a client that reconnects (with or without `Last-Event-ID`) gets the current progress, or the
/// final `status` event at once when the experiment has ended.
#[utoipa::path(
    get,
    path = "/v1/experiments/{id}/events",
    tag = "experiments",
    operation_id = "stream_experiment_events",
    params(
        ("id" = String, Path, description = "Experiment id"),
        ("Last-Event-ID" = Option<String>, Header, description = "The last event id seen; later ids continue from it"),
    ),
    responses(
        (status = 200, description = "The event stream: each event an `ExperimentEvent` (`ExperimentProgressEvent`s, then one `ExperimentStatusEvent`)",
         content_type = "text/event-stream", body = ExperimentEventStream,
         example = "id: 1\nevent: progress\ndata: {\"runs\":6,\"runs_ended\":2,\"runs_running\":2,\"step\":900,\"total_steps\":1800}\n\n"),
        (status = 404, description = "No experiment has this id", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn stream_experiment_events(
    State(app): State<Arc<App>>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    app.jobs.get_experiment(&tenant, &id).await?;
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|s| s.trim().parse::<u64>().ok());
    struct Follow {
        app: Arc<App>,
        tenant: crate::jobs::Tenant,
        id: String,
        seq: u64,
        seen: Option<ExperimentProgress>,
        done: bool,
    }
    let keep_alive = app.sse_keep_alive;
    let start = Follow { app, tenant, id, seq: last.unwrap_or(0), seen: None, done: false };
    let stream = futures_util::stream::unfold(start, |mut f| async move {
        if f.done {
            return None;
        }
        loop {
            let app = Arc::clone(&f.app);
            let (tenant, id) = (f.tenant.clone(), f.id.clone());
            let experiment = app.jobs.get_experiment(&tenant, &id).await.ok()?;
            if experiment.status.is_terminal() {
                f.seq += 1;
                f.done = true;
                let data = serde_json::to_string(&ExperimentResource::from(experiment)).unwrap_or_else(|_| "{}".into());
                return Some((Ok(Event::default().id(f.seq.to_string()).event(STATUS_EVENT).data(data)), f));
            }
            if f.seen != Some(experiment.progress) {
                f.seen = Some(experiment.progress);
                f.seq += 1;
                let data = serde_json::to_string(&experiment.progress).unwrap_or_else(|_| "{}".into());
                return Some((Ok(Event::default().id(f.seq.to_string()).event(PROGRESS_EVENT).data(data)), f));
            }
            tokio::time::sleep(EVENT_POLL).await;
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(keep_alive)))
}

/// The body of `GET /v1/experiments/{id}/events`: Server-Sent Events (`text/event-stream`), read
/// event by event or whole, as a job's stream (`JobEventStream`): each event is an
/// `ExperimentEvent`; whole, the body is text.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ExperimentEventStream {
    /// One event: its `id`, `event` and `data` fields.
    Event(ExperimentEventDoc),
    /// The stream as text: each event its `id:`, `event:` and `data:` lines and a blank line;
    /// lines starting with `:` are keep-alive comments.
    Text(String),
}

/// One event of an experiment's stream, told apart by its `event` name (the discriminator).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
#[schema(as = ExperimentEvent, discriminator(property_name = "event", mapping(
    ("progress" = "#/components/schemas/ExperimentProgressEvent"),
    ("status" = "#/components/schemas/ExperimentStatusEvent"),
)))]
#[allow(dead_code)]
pub enum ExperimentEventDoc {
    /// Runs moved on.
    Progress(ExperimentProgressEvent),
    /// Every run has ended.
    Status(ExperimentStatusEvent),
}

/// `event: progress`: the aggregated progress changed.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ExperimentProgressEvent {
    /// Increasing per stream (continuing from `Last-Event-ID`).
    #[schema(pattern = "^[1-9][0-9]*$", example = "1")]
    pub id: String,
    #[schema(schema_with = super::jobs::progress_event_name)]
    pub event: String,
    #[schema(schema_with = progress_data)]
    pub data: String,
}

/// `event: status`: every run has ended; the last event of the stream.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ExperimentStatusEvent {
    /// Increasing per stream, as for progress.
    #[schema(pattern = "^[1-9][0-9]*$", example = "7")]
    pub id: String,
    #[schema(schema_with = super::jobs::status_event_name)]
    pub event: String,
    #[schema(schema_with = status_data)]
    pub data: String,
}

/// The `data` of a progress event: an `ExperimentProgress`.
fn progress_data() -> utoipa::openapi::schema::Object {
    super::jobs::json_data::<ExperimentProgress>("an `ExperimentProgress` (runs and steps summed over every run)")
}

/// The `data` of the final event: the experiment with its result.
fn status_data() -> utoipa::openapi::schema::Object {
    super::jobs::json_data::<ExperimentResource>(
        "the experiment with its result, as `GET /v1/experiments/{id}` gives it (an `ExperimentResource`)",
    )
}

/// A plot of an experiment's result, as SVG.
///
/// `grad_norm_init` (per-layer weight-gradient norm at step 0, one line per variant, log
/// scale), `loss` (training loss per variant: mean over seeds with a band), `heatmap` (grids
/// with two axes or more: mean final loss over two axes). Served once every run has ended.
#[utoipa::path(
    get,
    path = "/v1/experiments/{id}/plots/{name}.svg",
    tag = "experiments",
    operation_id = "get_experiment_plot",
    params(
        ("id" = String, Path, description = "Experiment id"),
        ("name" = ExperimentPlot, Path, description = "The plot"),
    ),
    responses(
        (status = 200, description = "The plot", body = super::plots::SvgImage, content_type = "image/svg+xml"),
        (status = 404, description = "No experiment has this id, no plot has this name, or the plot does not apply (a heatmap without two axes)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Some runs have not ended", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn get_experiment_plot(
    State(app): State<Arc<App>>,
    Caller(tenant): Caller,
    ApiPath((id, file)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let unknown = || {
        let names: Vec<String> = ExperimentPlot::ALL.iter().map(|p| format!("{}.svg", p.name())).collect();
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown-plot",
            "Unknown plot",
            format!("no plot `{file}`; the plots of an experiment are {}", names.join(", ")),
        )
    };
    let plot = file.strip_suffix(".svg").and_then(ExperimentPlot::from_name).ok_or_else(unknown)?;
    let result = app.jobs.experiment_result(&tenant, &id).await?;
    let svg = blocking(move || {
        if !exp::available(&result).contains(&plot) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "plot-not-applicable",
                "Plot does not apply",
                format!(
                    "plot `{}` does not apply to this experiment: a heatmap needs a grid (`vary`) with two axes",
                    plot.name()
                ),
            ));
        }
        exp::render(&result, plot).map_err(|e| ApiError::internal(&format!("drawing a plot: {e}")))
    })
    .await?;
    Ok(([(CONTENT_TYPE, HeaderValue::from_static(super::plots::SVG))], svg).into_response())
}

/// The result of an experiment as one self-contained HTML page: the ranked table with
/// intervals, the paired differences against the baseline, main effects, and every plot.
#[utoipa::path(
    get,
    path = "/v1/experiments/{id}/report.html",
    tag = "experiments",
    operation_id = "get_experiment_report_html",
    params(("id" = String, Path, description = "Experiment id")),
    responses(
        (status = 200, description = "The page", body = super::plots::HtmlPage, content_type = "text/html"),
        (status = 404, description = "No experiment has this id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Some runs have not ended", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn get_experiment_report_html(
    State(app): State<Arc<App>>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let result = app.jobs.experiment_result(&tenant, &id).await?;
    let page = blocking(move || Ok(exp::render_html(&result, result.name.as_deref().unwrap_or(&id)))).await?;
    Ok(([(CONTENT_TYPE, HeaderValue::from_static(super::plots::HTML))], page).into_response())
}
