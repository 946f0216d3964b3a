//! What the two SQL stores ([`super::SqliteStore`], [`super::PostgresStore`]) share: the
//! columns of a job row and how a row becomes a [`Job`], the JSON encodings of events,
//! failures, experiments and run results, times as Unix milliseconds, and how a database error
//! becomes a [`StoreError`]. Both schemas (`migrations/sqlite`, `migrations/postgres`) have the
//! same tables and columns; only the dialect differs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{JobEvent, SeqEvent, StoreError};
use crate::analysis::experiment::ExperimentResult;
use crate::jobs::experiments::model::{ExperimentRecord, ExperimentSnapshot, NewExperiment, RunSlot};
use crate::jobs::{rfc3339, Job, JobFailure, JobProgress, JobStatus};
use crate::spec::Spec;

/// The columns of [`JobRow`], in its order, for `SELECT`s (`j.` prefixed where joined).
pub(super) const JOB_COLUMNS: &str = "seq, id, tenant, name, status, created_at, started_at, finished_at, step, \
     total_steps, loss, error, cancel_requested_at, experiment_id";

/// A job as a SQL store keeps it (the client-visible part).
#[derive(Debug, sqlx::FromRow)]
pub(super) struct JobRow {
    pub seq: i64,
    pub id: String,
    pub tenant: String,
    pub name: Option<String>,
    pub status: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub step: i64,
    pub total_steps: i64,
    pub loss: Option<f64>,
    pub error: Option<String>,
    pub cancel_requested_at: Option<i64>,
    pub experiment_id: Option<String>,
}

impl JobRow {
    /// The client's view of the row.
    pub fn job(&self) -> Result<Job, StoreError> {
        let status = status(&self.status)?;
        Ok(Job {
            id: self.id.clone(),
            status,
            name: self.name.clone(),
            created_at: rfc3339(time(self.created_at)),
            started_at: self.started_at.map(|t| rfc3339(time(t))),
            finished_at: self.finished_at.map(|t| rfc3339(time(t))),
            progress: JobProgress {
                step: self.step.max(0) as u64,
                total_steps: self.total_steps.max(0) as u64,
                loss: self.loss.filter(|l| l.is_finite()),
            },
            error: self.error.as_deref().map(failure).transpose()?,
            cancel_requested: self.cancel_requested_at.is_some() && !status.is_terminal(),
            experiment_id: self.experiment_id.clone(),
        })
    }
}

/// A status from its column.
pub(super) fn status(name: &str) -> Result<JobStatus, StoreError> {
    JobStatus::ALL
        .into_iter()
        .find(|s| s.name() == name)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown job status `{name}`")))
}

/// Unix milliseconds -> a time.
pub(super) fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// A duration in milliseconds, for SQL arithmetic on times.
pub(super) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("cannot encode: {e}")))
}

fn parse<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("stored {what} is unreadable: {e}")))
}

/// A failure's column.
pub(super) fn failure_json(f: &JobFailure) -> Result<String, StoreError> {
    json(f)
}

/// A failure from its column.
pub(super) fn failure(text: &str) -> Result<JobFailure, StoreError> {
    parse(text, "job error")
}

/// An event's column.
pub(super) fn event_json(event: &JobEvent) -> Result<String, StoreError> {
    json(event)
}

/// An event from its row.
pub(super) fn event(seq: i64, body: &str) -> Result<SeqEvent, StoreError> {
    Ok(SeqEvent { seq: seq.max(0) as u64, event: parse(body, "event")? })
}

/// A spec's column: its wire JSON (what clients read back and what the report echoes).
pub(super) fn spec_json(spec: &Spec) -> Result<String, StoreError> {
    json(spec)
}

/// A spec from its column, parsed as at submission (it was validated then).
pub(super) fn spec(text: &str) -> Result<Arc<Spec>, StoreError> {
    let value: serde_json::Value = parse(text, "spec")?;
    crate::spec::parse(&value)
        .map(Arc::new)
        .map_err(|e| StoreError::Corrupt(format!("a stored spec no longer parses: {e:?}")))
}

/// An experiment's body column.
pub(super) fn experiment_json(e: &NewExperiment) -> Result<String, StoreError> {
    json(e)
}

/// A run slot's column.
pub(super) fn run_slot_json(slot: &RunSlot) -> Result<String, StoreError> {
    json(slot)
}

/// An experiment result's column.
pub(super) fn result_json(r: &ExperimentResult) -> Result<String, StoreError> {
    json(r)
}

/// An experiment's row.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct ExperimentRow {
    pub seq: i64,
    pub body: String,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub cancel_requested_at: Option<i64>,
    pub result: Option<String>,
}

/// The columns of [`ExperimentRow`].
pub(super) const EXPERIMENT_COLUMNS: &str = "seq, body, created_at, finished_at, cancel_requested_at, result";

impl ExperimentRow {
    /// The snapshot, from the row, its ended runs (`(job_id, RunSlot JSON)`) and the live
    /// status and progress of its jobs still kept (`(id, status, step, total_steps)`).
    pub fn snapshot(
        &self,
        runs: &[(String, String)],
        jobs: &[(String, String, i64, i64)],
    ) -> Result<ExperimentSnapshot, StoreError> {
        let new: NewExperiment = parse(&self.body, "experiment")?;
        let mut ended = HashMap::with_capacity(runs.len());
        for (id, body) in runs {
            ended.insert(id.clone(), parse::<RunSlot>(body, "run")?);
        }
        let result = self.result.as_deref().map(|r| parse::<ExperimentResult>(r, "experiment result")).transpose()?;
        let mut live = HashMap::with_capacity(jobs.len());
        for (id, s, step, total) in jobs {
            let progress = JobProgress { step: (*step).max(0) as u64, total_steps: (*total).max(0) as u64, loss: None };
            live.insert(id.clone(), (status(s)?, progress));
        }
        Ok(ExperimentSnapshot {
            record: ExperimentRecord {
                new,
                seq: self.seq.max(0) as u64,
                created_at: time(self.created_at),
                finished_at: self.finished_at.map(time),
                cancel_requested: self.cancel_requested_at.is_some(),
                ended,
                result: result.map(Arc::new),
            },
            jobs: live,
        })
    }
}

/// A database error as the store reports it: anything that is not about the data itself is
/// `Unavailable` (retry later); undecodable rows are `Corrupt`.
pub(super) fn db(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => StoreError::Corrupt(e.to_string()),
        other => StoreError::Unavailable(other.to_string()),
    }
}
