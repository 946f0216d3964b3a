//! Jobs: the lifecycle of a training run submitted to the service, from admission to report.
//!
//! Owns the job model ([`Job`], [`JobStatus`], [`JobProgress`], [`JobFailure`]), the
//! [`store::JobStore`] trait and its in-memory implementation, the per-job event logs that feed
//! Server-Sent Events ([`events`]), the worker pool of dedicated OS threads that runs
//! [`crate::analysis::pipeline::run`] ([`pool`]), and [`service::JobService`], the one API
//! the HTTP layer calls.
//!
//! ```text
//! submit --validate--> store.create (queued) --claim--> worker thread: pipeline::run(spec, flag)
//!                                                        |-- progress --> store + event log
//!                                                        `-- finish ----> store (+ report) + final event
//! ```
//!
//! Invariants:
//! - Training never runs on the async runtime: only [`pool`]'s threads call the engine, and
//!   `analyze` runs on tokio's blocking pool behind a semaphore.
//! - A job moves `queued -> running -> succeeded | failed | cancelled`, or `queued -> cancelled`;
//!   the terminal states are final. Every transition goes through the store.
//! - A panic inside a job is caught on its worker thread; the job fails with code `internal` and
//!   the thread takes the next job.
//!
//! Layering: depends on `analysis` (the pipeline and the report), `spec` and `engine`
//! (`CancelFlag`, `Progress`), and on tokio's sync/blocking primitives; must not depend on axum,
//! tower or any other HTTP crate, nor on `crate::api` or `crate::cli`. Errors say what happened,
//! not which HTTP status it is ([`error::JobsError`]); the API maps them.

pub mod error;
pub mod events;
pub mod experiments;
pub mod metrics;
pub mod pool;
pub mod service;
pub mod store;
mod upkeep;
mod view;

use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use error::JobsError;
pub use pool::WorkerPriority;
pub use service::{JobService, JobsConfig};

/// Whose a job, an experiment or an `Idempotency-Key` is: the tenant of the API token that
/// submitted it (`--api-tokens-file`). Every read, cancel and delete names the caller's tenant,
/// and the store answers only with what that tenant owns, so another tenant's ids look like ids
/// that do not exist. Without tokens every caller is the one tenant [`Tenant::open`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tenant(Arc<str>);

impl Serialize for Tenant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Tenant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Tenant(Arc::from(s)))
    }
}

impl Tenant {
    /// The tenant of every request when the service runs without tokens.
    pub const OPEN: &'static str = "public";

    /// The tenant called `name`.
    pub fn new(name: &str) -> Self {
        Tenant(Arc::from(name))
    }

    /// The one tenant of a service without tokens.
    pub fn open() -> Self {
        Tenant::new(Self::OPEN)
    }

    /// Its name (from the tokens file).
    pub fn name(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A job's place in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Accepted and waiting for a worker.
    Queued,
    /// A worker is training it.
    Running,
    /// Every step ran; the report is ready.
    Succeeded,
    /// It ended with an error (see `error.code`); a run that diverged keeps its report.
    Failed,
    /// Cancelled by request (or by a shutdown) before it finished.
    Cancelled,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [JobStatus; 5] =
        [JobStatus::Queued, JobStatus::Running, JobStatus::Succeeded, JobStatus::Failed, JobStatus::Cancelled];

    /// True for `succeeded`, `failed` and `cancelled`: nothing changes any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled)
    }

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a job ended without succeeding: a stable code and a sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureCode {
    /// NaN or Inf appeared; the report up to that step is kept.
    NonFinite,
    /// The run exceeded the per-job wall-clock limit.
    Timeout,
    /// Cancelled by a client.
    Cancelled,
    /// The server shut down before the job finished.
    Shutdown,
    /// The spec was refused when the run started (limits changed, or an engine-side check).
    InvalidSpec,
    /// A buffer of the run could not be allocated (the machine's or the process's memory
    /// limit); the message gives the bytes asked for and which buffer. The run's memory is freed
    /// and the worker goes on with the next job.
    OutOfMemory,
    /// The process running the job died, or stopped renewing its lease, on every one of its
    /// attempts (`--max-attempts`); the spec may be what crashes it.
    WorkerLost,
    /// A bug: the job panicked or the engine failed unexpectedly. The message says what.
    Internal,
}

impl FailureCode {
    /// The wire name (also a metrics label).
    pub fn name(self) -> &'static str {
        match self {
            FailureCode::NonFinite => "non_finite",
            FailureCode::Timeout => "timeout",
            FailureCode::Cancelled => "cancelled",
            FailureCode::Shutdown => "shutdown",
            FailureCode::InvalidSpec => "invalid_spec",
            FailureCode::OutOfMemory => "out_of_memory",
            FailureCode::WorkerLost => "worker_lost",
            FailureCode::Internal => "internal",
        }
    }
}

/// The error of a failed or cancelled job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobFailure {
    /// Stable code to branch on.
    pub code: FailureCode,
    /// What happened, for people.
    pub message: String,
}

/// Live progress of a job.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct JobProgress {
    /// Steps completed.
    pub step: u64,
    /// Steps planned.
    pub total_steps: u64,
    /// Training-batch loss of the last reported step; `null` before the first step or when the
    /// loss was not finite.
    pub loss: Option<f64>,
}

/// A job as clients see it (without the links the API adds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "0192f5e4-7c1a-7b3e-9a55-3f4c2d1e0a9b", "status": "running", "name": "deep sigmoid",
    "created_at": "2026-11-28T16:48:00.123Z", "started_at": "2026-11-28T16:48:00.125Z", "finished_at": null,
    "progress": {"step": 120, "total_steps": 500, "loss": 0.5412}, "error": null, "cancel_requested": false
}))]
pub struct Job {
    /// Opaque identifier (a UUID v7 today; treat it as a string).
    pub id: String,
    /// Where the job is in its lifecycle.
    pub status: JobStatus,
    /// The spec's `name`, when it has one.
    pub name: Option<String>,
    /// When it was accepted (RFC 3339, UTC).
    pub created_at: String,
    /// When a worker started it.
    pub started_at: Option<String>,
    /// When it reached a terminal status.
    pub finished_at: Option<String>,
    /// Steps done, steps planned, last loss.
    pub progress: JobProgress,
    /// Why it failed or was cancelled; `null` otherwise.
    pub error: Option<JobFailure>,
    /// A cancel was requested and the run has not stopped yet.
    pub cancel_requested: bool,
    /// The experiment this job is a run of (`GET /v1/experiments/{id}`); absent for a job
    /// submitted on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment_id: Option<String>,
}

/// RFC 3339 in UTC with exactly three digits of milliseconds (`2026-11-28T16:48:00.120Z`, not
/// `…00.12Z`): every timestamp the API writes has one length, so timestamps sort as strings.
pub fn rfc3339(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_is_utc_with_milliseconds() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn rfc3339_keeps_trailing_zeros_so_timestamps_sort_as_strings() {
        let at = |ms| rfc3339(SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms));
        assert_eq!(at(1_700_000_000_800), "2023-11-14T22:13:20.800Z");
        assert_eq!(at(1_700_000_000_000), "2023-11-14T22:13:20.000Z");
        assert_eq!(at(1_700_000_000_010), "2023-11-14T22:13:20.010Z");
        let mut stamps: Vec<String> = [1_700_000_000_800u64, 1_700_000_000_010, 1_700_000_000_000, 1_700_000_000_123]
            .into_iter()
            .map(at)
            .collect();
        stamps.sort();
        assert_eq!(
            stamps,
            [at(1_700_000_000_000), at(1_700_000_000_010), at(1_700_000_000_123), at(1_700_000_000_800)]
        );
    }

    #[test]
    fn only_succeeded_failed_cancelled_are_terminal() {
        let terminal: Vec<_> = JobStatus::ALL.iter().filter(|s| s.is_terminal()).map(|s| s.name()).collect();
        assert_eq!(terminal, ["succeeded", "failed", "cancelled"]);
    }
}
