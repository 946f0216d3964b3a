//! Every non-2xx response of the API: [`ApiError`], an RFC 9457 problem detail sent as
//! `application/problem+json`, plus the headers some problems carry (`Retry-After`).
//!
//! The whole mapping from the job layer's errors to HTTP statuses is in `From<JobsError>` here;
//! the problem `type`s (`/problems/<kind>`) are listed in docs/service.md. Internal errors are
//! logged once here and reach the client as a generic 500 without their text.
//! [`ensure_problem`] is the safety net that turns any other error response (axum's own 405,
//! a plain-text rejection we missed) into a problem too. Depends on `problem` and `jobs`.

use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::jobs::JobsError;
use crate::problem::{Problem, ProblemEntry};

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The `type` of the problem a response carries, as a response extension: what the metrics
/// count a refusal by, without reading the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProblemType(pub String);

/// An error response.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The body.
    pub problem: Problem,
    /// Seconds for `Retry-After` (503s).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error of `kind` (the `/problems/<kind>` type).
    pub fn new(status: StatusCode, kind: &str, title: &str, detail: impl Into<String>) -> Self {
        ApiError { problem: Problem::new(kind, title, status.as_u16(), detail), retry_after: None }
    }

    /// 400 for a request that cannot be read (query, path, header).
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", "Bad request", detail)
    }

    /// 404 for a path that names nothing.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// 500: the detail goes to the log, not to the client.
    pub fn internal(detail: &str) -> Self {
        tracing::error!(error = detail, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error", "something went wrong on our side")
    }

    /// Adds a `Retry-After` header.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// Adds a located entry to the problem's `errors`.
    pub fn with_entry(mut self, pointer: &str, detail: impl Into<String>) -> Self {
        self.problem.errors.push(ProblemEntry { pointer: pointer.into(), detail: detail.into() });
        self
    }
}

impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        ApiError { problem, retry_after: None }
    }
}

impl From<JobsError> for ApiError {
    fn from(e: JobsError) -> Self {
        let detail = e.to_string();
        match e {
            JobsError::NotFound { .. } => Self::new(StatusCode::NOT_FOUND, "job-not-found", "Job not found", detail),
            JobsError::Invalid(p) => match p.problem() {
                Some(problem) => problem.into(),
                None => Self::internal(&detail),
            },
            JobsError::QueueFull { retry_after_secs, .. } => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "queue-full", "Job queue is full", detail)
                    .retry_after(retry_after_secs)
            }
            JobsError::TenantQueueFull { retry_after_secs, .. } => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "tenant-queue-full", "Too many queued jobs", detail)
                    .retry_after(retry_after_secs)
            }
            JobsError::ShuttingDown { retry_after_secs } => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "shutting-down", "Shutting down", detail)
                    .retry_after(retry_after_secs)
            }
            JobsError::NotFinished { .. } => {
                Self::new(StatusCode::CONFLICT, "job-not-finished", "Job not finished", detail)
            }
            JobsError::ReportNotReady { .. } => {
                Self::new(StatusCode::CONFLICT, "report-not-ready", "Report not ready", detail)
            }
            JobsError::NoReport { .. } => Self::new(StatusCode::CONFLICT, "no-report", "Job has no report", detail),
            JobsError::ExperimentNotFound { .. } => {
                Self::new(StatusCode::NOT_FOUND, "experiment-not-found", "Experiment not found", detail)
            }
            JobsError::ExperimentNotFinished { .. } => {
                Self::new(StatusCode::CONFLICT, "experiment-not-finished", "Experiment not finished", detail)
            }
            JobsError::InvalidCursor => Self::new(StatusCode::BAD_REQUEST, "invalid-cursor", "Invalid cursor", detail),
            JobsError::IdempotencyKeyReused => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused with another body",
                detail,
            ),
            JobsError::Unavailable { retry_after_secs } => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "store-unavailable", "Job store unavailable", detail)
                    .retry_after(retry_after_secs)
            }
            JobsError::StoreOpen(msg) => Self::internal(&msg),
            JobsError::AnalyzeBusy { retry_after_secs, .. } => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "analyze-busy", "Analysis slots busy", detail)
                    .retry_after(retry_after_secs)
            }
            JobsError::AnalyzeTimeout { .. } => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "analyze-timeout", "Analysis took too long", detail)
                    .retry_after(1)
            }
            JobsError::Internal(msg) => Self::internal(&msg),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.problem).unwrap_or_else(|_| b"{}".to_vec());
        let mut res = (status, [(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))], body).into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        res.extensions_mut().insert(ProblemType(self.problem.kind));
        res
    }
}

/// Makes every error response a problem detail: a 4xx/5xx that is not `application/problem+json`
/// yet (axum's 405 for a wrong method, a rejection a handler did not wrap) gets a problem body
/// with the same status; its headers (`Allow`, `Retry-After`) stay.
pub async fn ensure_problem(res: Response) -> Response {
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_problem = res.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v == PROBLEM_JSON);
    if is_problem {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    // Rejection bodies are short sentences; keep one as the detail when it is text.
    let text = axum::body::to_bytes(body, 4096).await.ok().and_then(|b| String::from_utf8(b.to_vec()).ok());
    let reason = status.canonical_reason().unwrap_or("Error");
    let (kind, detail) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "method-not-allowed",
            "this route does not take that method; the Allow header lists those it takes".to_owned(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ("body-too-large", "the request body is larger than the limit".to_owned()),
        _ => ("http-error", text.filter(|t| !t.trim().is_empty()).unwrap_or_else(|| reason.to_owned())),
    };
    let problem = Problem::new(kind, reason, status.as_u16(), detail);
    let body = serde_json::to_vec(&problem).unwrap_or_else(|_| b"{}".to_vec());
    parts.headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.extensions.insert(ProblemType(problem.kind.clone()));
    Response::from_parts(parts, axum::body::Body::from(body))
}
