//! What can go wrong when a client asks the job layer for something.
//!
//! Each variant says what happened, with the figures a client needs (capacity, status, the time
//! to wait); none names an HTTP status. `crate::api::error` maps them to problem details. Must
//! not depend on HTTP crates.

use thiserror::Error;

use super::JobStatus;
use crate::analysis::pipeline::PipelineError;

/// A refused request to the job layer.
#[derive(Debug, Error)]
pub enum JobsError {
    /// No job has this id (never existed, deleted, or evicted by retention).
    #[error("no job with id `{id}`")]
    NotFound {
        /// The id asked for.
        id: String,
    },
    /// The spec is malformed, invalid or over the limits (every problem listed).
    #[error(transparent)]
    Invalid(#[from] PipelineError),
    /// The queue holds `capacity` jobs already.
    #[error("the queue is full ({capacity} jobs waiting); retry in {retry_after_secs} s")]
    QueueFull {
        /// Queue capacity.
        capacity: usize,
        /// A suggested wait.
        retry_after_secs: u64,
    },
    /// The caller's tenant has `limit` jobs queued already (`--max-queued-per-tenant`).
    #[error("your tenant has {queued} jobs queued and may have at most {limit}; retry in {retry_after_secs} s, when some have started")]
    TenantQueueFull {
        /// Jobs of the tenant queued now.
        queued: usize,
        /// The per-tenant bound.
        limit: usize,
        /// A suggested wait.
        retry_after_secs: u64,
    },
    /// The server is shutting down and takes no new work.
    #[error("the server is shutting down")]
    ShuttingDown {
        /// A suggested wait (another instance may be up by then).
        retry_after_secs: u64,
    },
    /// The job has not finished, so it cannot be deleted.
    #[error("job `{id}` is {status}; only finished jobs can be deleted (cancel it first)")]
    NotFinished {
        /// The job.
        id: String,
        /// Its status.
        status: JobStatus,
    },
    /// The report is not there yet.
    #[error("job `{id}` is {status}; its report is not ready yet")]
    ReportNotReady {
        /// The job.
        id: String,
        /// Its status.
        status: JobStatus,
    },
    /// The job ended without a report (cancelled, timed out, or failed before its first probe).
    #[error("job `{id}` ended {status} without a report{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    NoReport {
        /// The job.
        id: String,
        /// Its status.
        status: JobStatus,
        /// The job's error message, when it has one.
        reason: Option<String>,
    },
    /// The list cursor was not made by this server (or not by this version of it).
    #[error("the cursor is not valid; use the `next_cursor` of a previous page")]
    InvalidCursor,
    /// The `Idempotency-Key` was used before with a different request body.
    #[error("this Idempotency-Key was already used with a different request body")]
    IdempotencyKeyReused,
    /// The job store cannot be reached (its database is down or overloaded); nothing was
    /// changed. Worth a retry.
    #[error("the job store is unavailable; nothing was changed; retry in {retry_after_secs} s")]
    Unavailable {
        /// A suggested wait.
        retry_after_secs: u64,
    },
    /// The job store could not be opened at start (the data directory is locked by another
    /// process, the database is unreachable, a migration failed).
    #[error("cannot open the job store: {0}")]
    StoreOpen(String),
    /// Every analysis slot stayed busy for the whole wait.
    #[error("all {slots} analysis slots are busy; retry in {retry_after_secs} s")]
    AnalyzeBusy {
        /// Concurrent analyses allowed.
        slots: usize,
        /// A suggested wait.
        retry_after_secs: u64,
    },
    /// The analysis took longer than its limit.
    #[error("the analysis took longer than {limit_secs} s; use a smaller spec or submit a job")]
    AnalyzeTimeout {
        /// The limit.
        limit_secs: u64,
    },
    /// No experiment has this id (never existed, deleted, or evicted by retention).
    #[error("no experiment with id `{id}`")]
    ExperimentNotFound {
        /// The id asked for.
        id: String,
    },
    /// The experiment has runs that have not ended (its result is not ready; it cannot be
    /// deleted).
    #[error("experiment `{id}` is {status}: some of its runs have not ended (cancel it first to delete it)")]
    ExperimentNotFinished {
        /// The experiment.
        id: String,
        /// Its status.
        status: JobStatus,
    },
    /// A bug (a panic or a lost worker). The message is for logs.
    #[error("internal error: {0}")]
    Internal(String),
}
