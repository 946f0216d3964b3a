//! Handlers of `/v1/jobs` and `/v1/analyze`. Each one parses the request, calls one method of
//! [`JobService`](crate::jobs::JobService) and maps its result; none touches the store, the
//! pool or the engine. Owns the wire shapes that add HTTP to a job ([`JobResource`]'s links).

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::{CONTENT_TYPE, ETAG, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};

use super::app::App;
use super::error::ApiError;
use super::etag;
use super::extract::{idempotency_key, ApiPath, ApiQuery, Caller, SpecBody};
use crate::analysis::{pipeline, Report};
use crate::jobs::events::{JobEvent, SeqEvent};
use crate::jobs::service::Cancel;
use crate::jobs::{Job, JobStatus};
use crate::problem::Problem;
use crate::spec::schema::SubmitRequest;

/// Links of a job (relative URLs).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobLinks {
    /// The job.
    #[serde(rename = "self")]
    pub self_: String,
    /// Its report.
    pub report: String,
    /// Its event stream.
    pub events: String,
    /// Where to cancel it.
    pub cancel: String,
    /// Its report as one self-contained HTML page.
    pub report_html: String,
    /// Its plots: a URI template, `{name}` one of `grad_flow`, `grad_norms`, `loss`,
    /// `timesteps`, `theory`.
    pub plots: String,
}

/// A job with its links, as the API returns it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobResource {
    /// The job.
    #[serde(flatten)]
    pub job: Job,
    /// Where its parts are.
    pub links: JobLinks,
}

impl From<Job> for JobResource {
    fn from(job: Job) -> Self {
        let base = job_path(&job.id);
        JobResource {
            links: JobLinks {
                report: format!("{base}/report"),
                events: format!("{base}/events"),
                cancel: format!("{base}/cancel"),
                report_html: format!("{base}/report.html"),
                plots: format!("{base}/plots/{{name}}.svg"),
                self_: base,
            },
            job,
        }
    }
}

/// A page of jobs, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    /// The jobs.
    pub jobs: Vec<JobResource>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Query of `GET /v1/jobs`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only jobs with this status.
    pub status: Option<JobStatus>,
    /// Jobs per page, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
    /// The `next_cursor` of the previous page (opaque).
    #[param(pattern = r"^c[0-9a-f]{1,16}$")]
    pub cursor: Option<String>,
}

/// Query of `POST /v1/analyze`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AnalyzeParams {
    /// Return every parameter's gradient (same as `"return_gradients": true` in the body).
    pub gradients: Option<bool>,
}

/// The path of a job.
pub fn job_path(id: &str) -> String {
    format!("/v1/jobs/{id}")
}

const PAGE_DEFAULT: u64 = 50;
const PAGE_MAX: u64 = 1000;

/// The page size a list query asks for (default 50), or the `400` when it is outside 1 to 1000;
/// shared by every paged listing (jobs, experiments).
pub(super) fn page_limit(limit: Option<u64>) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(PAGE_DEFAULT);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(ApiError::bad_request(format!("`limit` must be 1 to {PAGE_MAX}, got {limit}")));
    }
    Ok(limit as usize)
}

/// Submit a run: a spec, or `{"preset": NAME}`.
///
/// The spec is validated against the server's limits before it is queued. With an
/// `Idempotency-Key`, repeating the request with the same body returns the same job; the same key
/// with another body is refused (422), and so is a repeat while the first is still being
/// accepted (409). Keys are kept as long as finished jobs (`GRADSCOPE_RETENTION_SECS`).
#[utoipa::path(
    post,
    path = "/v1/jobs",
    tag = "jobs",
    operation_id = "create_job",
    request_body(content = SubmitRequest, content_type = "application/json",
        description = "A spec, or `{\"preset\": NAME}`",
        example = json!({"model": {"input_dim": 2, "layers": [{"type": "mlp", "depth": 4, "width": 16, "activation": "tanh"},
                         {"type": "dense", "units": 2}]}, "data": {"type": "xor", "samples": 128},
                         "training": {"steps": 50, "batch_size": 32}})),
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Makes retries safe: the same key and body give the same job (draft-ietf-httpapi-idempotency-key-header). \
                       Printable ASCII, optionally in double quotes (a structured-field string).",
        min_length = 1, max_length = 255, pattern = r"^[!-~]([ -~]{0,253}[!-~])?$")),
    responses(
        (status = 202, description = "Accepted: the job is queued", body = JobResource,
         headers(("Location" = String, description = "The job's URL"))),
        (status = 400, description = "Malformed JSON or an invalid header", body = Problem, content_type = "application/problem+json",
         example = json!({"type": "/problems/malformed-json", "title": "Malformed JSON", "status": 400, "detail": "expected `,` or `}` at line 1 column 12"})),
        (status = 409, description = "The first request with this Idempotency-Key is still being accepted", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid or over-budget spec (every problem with its JSON Pointer), unknown preset, or an Idempotency-Key reused with another body", body = Problem, content_type = "application/problem+json",
         example = json!({"type": "/problems/invalid-spec", "title": "Invalid spec", "status": 422, "detail": "the spec has 1 problem",
                          "errors": [{"pointer": "/training/steps", "detail": "training has 2,000,000 steps; the limit is 1,000,000"}]})),
        (status = 503, description = "The queue is full or the server is shutting down", body = Problem, content_type = "application/problem+json",
         headers(("Retry-After" = u64, description = "Seconds to wait")),
         example = json!({"type": "/problems/queue-full", "title": "Job queue is full", "status": 503, "detail": "the queue is full (256 jobs waiting); retry in 5 s"})),
    ),
)]
pub async fn create_job(
    State(app): State<Arc<App>>,
    Caller(tenant): Caller,
    headers: HeaderMap,
    body: SpecBody,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers, &body)?;
    let spec = body.into_spec(&app.jobs.config().limits)?;
    let submitted = app.jobs.submit(&tenant, spec, key).await?;
    let location =
        HeaderValue::from_str(&job_path(&submitted.job.id)).map_err(|e| ApiError::internal(&e.to_string()))?;
    Ok((StatusCode::ACCEPTED, [(LOCATION, location)], Json(JobResource::from(submitted.job))).into_response())
}

/// List jobs, newest first.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    tag = "jobs",
    operation_id = "list_jobs",
    params(ListParams),
    responses(
        (status = 200, description = "A page of jobs", body = JobList),
        (status = 400, description = "Invalid status, limit or cursor", body = Problem, content_type = "application/problem+json",
         example = json!({"type": "/problems/bad-request", "title": "Bad request", "status": 400, "detail": "`limit` must be 1 to 1000, got 0"})),
    ),
)]
pub async fn list_jobs(
    State(app): State<Arc<App>>,
    Caller(tenant): Caller,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<JobList>, ApiError> {
    let page = app.jobs.list(&tenant, params.status, page_limit(params.limit)?, params.cursor.as_deref()).await?;
    Ok(Json(JobList { jobs: page.jobs.into_iter().map(JobResource::from).collect(), next_cursor: page.next_cursor }))
}

/// A job, with live progress.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    operation_id = "get_job",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = JobResource),
        (status = 404, description = "No job has this id", body = Problem, content_type = "application/problem+json",
         example = json!({"type": "/problems/job-not-found", "title": "Job not found", "status": 404, "detail": "no job with id `x`"})),
    ),
)]
pub async fn get_job(
    State(app): State<Arc<App>>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<JobResource>, ApiError> {
    Ok(Json(app.jobs.get(&tenant, &id).await?.into()))
}

/// Delete a finished job and its report.
#[utoipa::path(
    delete,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    operation_id = "delete_job",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No job has this id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job is queued or running (cancel it first)", body = Problem, content_type = "application/problem+json",
         example = json!({"type": "/problems/job-not-finished", "title": "Job not finished", "status": 409,
                          "detail": "job `x` is running; only finished jobs can be deleted (cancel it first)"})),
    ),
)]
pub async fn delete_job(
    State(app): State<Arc<App>>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    app.jobs.delete(&tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The gradient-flow report of a job.
///
/// Served once the job `succeeded`, and for a job that `failed` because the run diverged
/// (`error.code` = `non_finite`): then it holds the probes up to that step. A finished job's
/// report never changes: it comes with a strong `ETag`, and `If-None-Match` with that tag gets
/// `304 Not Modified` without a body.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/report",
    tag = "jobs",
    operation_id = "get_job_report",
    params(
        ("id" = String, Path, description = "Job id"),
        ("If-None-Match" = Option<String>, Header, description = "The `ETag` of a copy held: `304` when it is this report's"),
    ),
    responses(
        (status = 200, description = "The report", body = Report,
         headers(("ETag" = String, description = "Strong entity-tag of the report (another for each content coding)"))),
        (status = 304, description = "The report is the one tagged in `If-None-Match`; no body",
         headers(("ETag" = String, description = "The tag that matched"))),
        (status = 404, description = "No job has this id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job is still queued or running, or it ended without a report (cancelled, timed out)", body = Problem, content_type = "application/problem+json",
         example = json!({"type": "/problems/report-not-ready", "title": "Report not ready", "status": 409, "detail": "job `x` is running; its report is not ready yet"})),
    ),
)]
pub async fn get_report(
    State(app): State<Arc<App>>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // Only a finished job has a report (the store answers 409 before), so every tag is final.
    let report = app.jobs.report(&tenant, &id).await?;
    let tag = report_tag(&report).await?;
    let etag = HeaderValue::from_str(&tag).map_err(|e| ApiError::internal(&e.to_string()))?;
    if let Some(held) = etag::matching(&headers, &tag) {
        let held = HeaderValue::from_str(&held).map_err(|e| ApiError::internal(&e.to_string()))?;
        return Ok((StatusCode::NOT_MODIFIED, [(ETAG, held)]).into_response());
    }
    // The report was serialised once, on the worker thread; serve those bytes.
    Ok((
        [(CONTENT_TYPE, HeaderValue::from_static("application/json")), (ETAG, etag)],
        axum::body::Bytes::from_owner(ArcBytes(report)),
    )
        .into_response())
}

/// The strong tag of a report; hashing a large one runs on the blocking pool.
async fn report_tag(report: &Arc<[u8]>) -> Result<String, ApiError> {
    const INLINE: usize = 64 * 1024;
    if report.len() <= INLINE {
        return Ok(etag::strong_tag(report));
    }
    let report = Arc::clone(report);
    tokio::task::spawn_blocking(move || etag::strong_tag(&report))
        .await
        .map_err(|e| ApiError::internal(&format!("hashing a report failed: {e}")))
}

/// Lets `Bytes` share the stored report without copying it.
struct ArcBytes(Arc<[u8]>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Live progress as Server-Sent Events.
///
/// `event: progress` (data: `{"step", "total_steps", "loss"}`) at probe steps, at most ten a
/// second, and every 0.5 s between probes while the job runs (always the last step), then one `event: status` (data: the Job) when it ends, and the stream
/// closes. Every event has an increasing `id`; reconnect with `Last-Event-ID` to resume after it.
/// A job that has already finished answers with its final `status` event at once; a reconnect
/// after that final event gets `204 No Content`, which tells `EventSource` to stop reconnecting.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/events",
    tag = "jobs",
    operation_id = "stream_job_events",
    params(
        ("id" = String, Path, description = "Job id"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id"),
    ),
    responses(
        (status = 200, description = "The event stream: each event a `JobEvent` (`JobProgressEvent`, then one `JobStatusEvent`)",
         content_type = "text/event-stream", body = JobEventStream,
         example = "id: 1\nevent: progress\ndata: {\"step\":10,\"total_steps\":100,\"loss\":0.69}\n\nid: 2\nevent: status\ndata: {\"id\":\"...\",\"status\":\"succeeded\"}\n\n"),
        (status = 204, description = "The job has ended and `Last-Event-ID` was its last event: nothing more will come"),
        (status = 404, description = "No job has this id", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn stream_events(
    State(app): State<Arc<App>>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // An unparseable Last-Event-ID is treated as absent: the client gets the whole log again.
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|s| s.trim().parse::<u64>().ok());
    let Some(sub) = app.jobs.subscribe(&tenant, &id, last).await? else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let keep_alive = app.sse_keep_alive;
    let stream = futures_util::stream::unfold(sub, |mut sub| async move {
        let ev = sub.next().await?;
        Some((Ok::<_, Infallible>(sse_event(ev)), sub))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(keep_alive)).into_response())
}

/// The body of `GET /v1/jobs/{id}/events`: Server-Sent Events (`text/event-stream`), read event
/// by event or whole. Event by event (as OpenAPI 3.2's `itemSchema` reads a stream, and tools
/// such as schemathesis read the `schema` of a 3.1 event stream), each event is a `JobEvent`;
/// whole, the body is text.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum JobEventStream {
    /// One event: its `id`, `event` and `data` fields.
    Event(JobEventDoc),
    /// The stream as text: each event its `id:`, `event:` and `data:` lines and a blank line;
    /// lines starting with `:` are keep-alive comments.
    Text(String),
}

/// One event of a job's stream, told apart by its `event` name (the discriminator).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
#[schema(as = JobEvent, discriminator(property_name = "event", mapping(
    ("progress" = "#/components/schemas/JobProgressEvent"),
    ("status" = "#/components/schemas/JobStatusEvent"),
)))]
#[allow(dead_code)]
pub enum JobEventDoc {
    /// Training moved on.
    Progress(JobProgressEvent),
    /// The job ended.
    Status(JobStatusEvent),
}

/// `event: progress`: training moved on (at probe steps, at most ten a second, and every 0.5 s
/// between them while the job runs).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct JobProgressEvent {
    /// Per-job sequence number, 1, 2, 3, ...; send the last one seen as `Last-Event-ID` to resume.
    #[schema(pattern = "^[1-9][0-9]*$", example = "1")]
    pub id: String,
    #[schema(schema_with = progress_event_name)]
    pub event: String,
    #[schema(schema_with = progress_data)]
    pub data: String,
}

/// `event: status`: the job ended; the last event of the stream.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct JobStatusEvent {
    /// Per-job sequence number, as for progress.
    #[schema(pattern = "^[1-9][0-9]*$", example = "2")]
    pub id: String,
    #[schema(schema_with = status_event_name)]
    pub event: String,
    #[schema(schema_with = status_data)]
    pub data: String,
}

/// The `event:` name of a progress event (of jobs and experiments).
pub const PROGRESS_EVENT: &str = "progress";
/// The `event:` name of the final event (of jobs and experiments).
pub const STATUS_EVENT: &str = "status";

/// The schema of an `event` property that is always [`PROGRESS_EVENT`].
pub(super) fn progress_event_name() -> Object {
    event_name(PROGRESS_EVENT)
}

/// The schema of an `event` property that is always [`STATUS_EVENT`].
pub(super) fn status_event_name() -> Object {
    event_name(STATUS_EVENT)
}

/// The `data` of a progress event: a `JobProgress`.
fn progress_data() -> Object {
    json_data::<crate::jobs::JobProgress>("a `JobProgress`")
}

/// The `data` of the final event: the job as `GET /v1/jobs/{id}` gives it.
fn status_data() -> Object {
    json_data::<JobResource>("the job as `GET /v1/jobs/{id}` gives it (a `JobResource`)")
}

/// The schema of an event's `data`: a string holding the JSON that `T` describes, in JSON
/// Schema's words (`contentMediaType`, `contentSchema`, as OpenAPI 3.2 writes an event's data).
/// utoipa's `Object` has no `contentSchema` field; extensions collected from an iterator keep
/// their keys as given (unlike `ExtensionsBuilder::add`, which prefixes `x-`), so the keyword is
/// written through them.
pub(super) fn json_data<T: ToSchema>(what: &str) -> Object {
    let content_schema = serde_json::json!({"$ref": format!("#/components/schemas/{}", T::name())});
    ObjectBuilder::new()
        .schema_type(Type::String)
        .content_media_type("application/json")
        .description(Some(format!("The `data:` line: JSON, {what}.")))
        .extensions(Some(Extensions::from_iter([("contentSchema", content_schema)])))
        .build()
}

fn event_name(name: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some([name]))
        .description(Some(format!("The `event:` line: `{name}`.")))
        .build()
}

fn sse_event(ev: SeqEvent) -> Event {
    let e = Event::default().id(ev.seq.to_string());
    let (name, data) = match ev.event {
        JobEvent::Progress(p) => (PROGRESS_EVENT, serde_json::to_string(&p)),
        JobEvent::Status(job) => (STATUS_EVENT, serde_json::to_string(&JobResource::from(*job))),
    };
    e.event(name).data(data.unwrap_or_else(|_| "{}".into()))
}

/// Ask a job to stop.
///
/// A queued job becomes `cancelled` at once; a running one stops within one training step
/// (`cancel_requested` is true until then). On a finished job nothing changes (200).
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/cancel",
    tag = "jobs",
    operation_id = "cancel_job",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 202, description = "Cancelled (queued job) or cancellation requested (running job)", body = JobResource),
        (status = 200, description = "The job had already finished; unchanged", body = JobResource),
        (status = 404, description = "No job has this id", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn cancel_job(
    State(app): State<Arc<App>>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    Ok(match app.jobs.cancel(&tenant, &id).await? {
        Cancel::Accepted(job) => (StatusCode::ACCEPTED, Json(JobResource::from(job))).into_response(),
        Cancel::AlreadyFinished(job) => (StatusCode::OK, Json(JobResource::from(job))).into_response(),
    })
}

/// Analyse a spec at initialisation (or with the given weights): one forward/backward.
///
/// Synchronous: the report (one probe step, theory, diagnostics) comes back in the response.
/// Bounded by smaller limits than jobs and by a time limit; `training` is optional.
#[utoipa::path(
    post,
    path = "/v1/analyze",
    tag = "analyze",
    operation_id = "analyze",
    params(AnalyzeParams),
    request_body(content = SubmitRequest, content_type = "application/json", description = "A spec (training optional), or `{\"preset\": NAME}`",
        example = json!({"model": {"input_dim": 8, "layers": [{"type": "mlp", "depth": 10, "width": 32, "activation": "tanh"},
                         {"type": "dense", "units": 2}]}, "data": {"type": "blobs", "samples": 64, "classes": 2, "dims": 8}})),
    responses(
        (status = 200, description = "The report of step 0", body = Report),
        (status = 400, description = "Malformed JSON or query", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid spec, or over the analysis limits", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Every analysis slot is busy, the analysis took too long, or the server is shutting down (with `Retry-After`); or the run could not allocate its memory (`/problems/out-of-memory`, without `Retry-After`)", body = Problem, content_type = "application/problem+json",
         headers(("Retry-After" = u64, description = "Seconds to wait (not sent with `out-of-memory`)"))),
    ),
)]
pub async fn analyze(
    State(app): State<Arc<App>>,
    ApiQuery(params): ApiQuery<AnalyzeParams>,
    body: SpecBody,
) -> Result<Json<Report>, ApiError> {
    let spec = body.into_spec(&pipeline::analysis_validation_limits(&app.jobs.config().analyze_limits))?;
    Ok(Json(app.jobs.analyze(spec, params.gradients.unwrap_or(false)).await?))
}
