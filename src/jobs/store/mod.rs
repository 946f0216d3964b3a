//! Where jobs live: the [`JobStore`] trait and its three implementations —
//! [`MemoryStore`] (tests, and the CLI's in-process runs), [`SqliteStore`] (the embedded
//! default: one process, a file under `--data-dir`) and [`PostgresStore`] (any number of
//! replicas on one database form a cluster).
//!
//! The trait is async and fallible: a durable store answers from a database that may be away
//! ([`StoreError::Unavailable`], which the API turns into 503 with `Retry-After`). Every state
//! change is one call and, in the durable stores, one transaction:
//!
//! ```text
//! create(+ idempotency key) --> queued --claim(owner, ttl)--> running (attempt n, lease)
//!     running --progress(fence)--> running          (progress row + event, fenced)
//!     running --complete(fence)--> terminal          (status + report + run result + final event)
//!     running --release(fence)---> queued            (shutdown: the attempt is given back)
//!     running, lease expired --rescue--> queued | cancelled | failed/worker_lost
//!     queued --cancel--> cancelled (+ final event)
//! ```
//!
//! Invariants (the conformance suite in `conformance.rs` checks them on every store):
//! - **Fencing.** A worker's writes name a [`Fence`] `(id, attempt)` and change something only
//!   while the job is `running` with that attempt; otherwise they return `false`/`None` (the
//!   lease was lost: the worker stops and discards its run). So a rescued job is finished
//!   exactly once, by its latest attempt.
//! - **Leases.** `claim` sets the lease owner and expiry from the store's clock; `renew`
//!   extends every lease of one owner in one statement and reads back cancel requests.
//!   `rescue` moves running jobs whose lease expired back to `queued` (training is
//!   deterministic: the re-run gives the same report), to `cancelled` when a cancel was
//!   requested, or to `failed` with code `worker_lost` once `max_attempts` attempts are used.
//! - **Events.** Each job's events are numbered 1, 2, 3, … without gaps (the SSE `id`): the
//!   number comes from the job row in the transaction that writes the event, and the final
//!   `status` event commits with the terminal status.
//! - **Tenants.** What a client asks for names the client's tenant: a job, experiment or key
//!   of another tenant is `NotFound`, exactly like one that does not exist. Worker calls
//!   (`claim`, `progress`, `complete`, …) are not scoped: workers serve every tenant.
//!
//! Depends on the job model and `spec`; must not depend on HTTP crates.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

mod batch;
mod memory;
pub mod postgres;
mod sql;
pub mod sqlite;

#[cfg(test)]
mod conformance;

pub use memory::{MemoryStore, MemoryStoreConfig};
pub use postgres::{PostgresConfig, PostgresStore};
pub use sqlite::{SqliteConfig, SqliteStore};

use super::experiments::model::{ExperimentPage, ExperimentSnapshot, NewExperiment};
use super::{Job, JobFailure, JobProgress, JobStatus, Tenant};
use crate::analysis::experiment::{ExperimentResult, RunResult};
use crate::spec::Spec;

/// A job to add to the queue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Its id (made by the service).
    pub id: String,
    /// Whose it is.
    pub tenant: Tenant,
    /// The spec's name.
    pub name: Option<String>,
    /// The spec, validated at admission.
    pub spec: Arc<Spec>,
    /// Steps the run will take.
    pub total_steps: u64,
    /// The spec's probe interval in steps.
    pub probe_every: u64,
    /// The experiment it is a run of, if any.
    pub experiment: Option<String>,
}

/// An `Idempotency-Key` and the fingerprint of the body it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The key as the client sent it.
    pub key: String,
    /// SHA-256 of the request body (of its canonical JSON).
    pub fingerprint: [u8; 32],
}

/// What `create` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// The job is queued (and its key, if any, recorded with it in the same transaction).
    New(Job),
    /// The key was used before with the same body: the job it created.
    Replay(Job),
    /// The key was used before with another body.
    Mismatch,
}

/// Who holds leases: one id per process (replica), made at start.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner(Arc<str>);

impl Owner {
    /// `name` as an owner id.
    pub fn new(name: &str) -> Self {
        Owner(Arc::from(name))
    }

    /// A fresh id for this process: host, pid and a random suffix (a restarted process with the
    /// same pid is another owner).
    pub fn for_this_process() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let host = host.trim();
        let host = if host.is_empty() { "host" } else { host };
        let suffix = uuid::Uuid::now_v7().simple().to_string();
        Owner::new(&format!("{host}-{}-{}", std::process::id(), &suffix[suffix.len() - 8..]))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A job a worker took from the queue.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Its id.
    pub id: String,
    /// Whose it is.
    pub tenant: Tenant,
    /// The spec to run.
    pub spec: Arc<Spec>,
    /// Probe interval in steps (progress events are sent at least this often).
    pub probe_every: u64,
    /// Steps planned.
    pub total_steps: u64,
    /// The experiment it is a run of, if any.
    pub experiment: Option<String>,
    /// Which attempt this is (1 for the first claim; a rescue re-queues and the next claim is
    /// attempt 2).
    pub attempt: u32,
}

impl Claimed {
    /// The fence of this attempt's writes.
    pub fn fence(&self) -> Fence {
        Fence { id: self.id.clone(), attempt: self.attempt }
    }
}

/// What every worker write names: the job and the attempt that holds its lease.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fence {
    /// The job.
    pub id: String,
    /// The attempt.
    pub attempt: u32,
}

/// A lease `renew` extended, with what the job's row says now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseState {
    /// The job.
    pub id: String,
    /// Its attempt.
    pub attempt: u32,
    /// A client asked to cancel it (possibly through another replica).
    pub cancel_requested: bool,
}

/// Which running jobs `rescue` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RescueScope {
    /// Those whose lease expired (the periodic rescuer of every replica).
    Expired,
    /// Every running job: the caller proved that no other process runs any (SQLite at start,
    /// holding the data directory's lock).
    AllRunning,
}

/// What a `rescue` did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rescued {
    /// Back in the queue for another attempt.
    pub requeued: Vec<String>,
    /// Ended: `cancelled` (a cancel was requested) or `failed`/`worker_lost` (no attempts
    /// left).
    pub ended: Vec<Job>,
}

/// What a cancel request did.
#[derive(Debug, Clone)]
pub enum CancelOutcome {
    /// The job was queued and is now `cancelled`.
    Cancelled(Job),
    /// The job is running; the request is recorded and the run must be told to stop.
    Requested(Job),
    /// The job had already finished; nothing changed.
    AlreadyFinished(Job),
}

/// How a job ended.
#[derive(Debug, Clone)]
pub struct Finish {
    /// A terminal status.
    pub status: JobStatus,
    /// Why, unless it succeeded.
    pub error: Option<JobFailure>,
}

/// Everything a worker hands over when its run ends; `complete` commits it in one transaction.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The terminal status and error.
    pub finish: Finish,
    /// The serialised report, when the run left one.
    pub report: Option<Arc<[u8]>>,
    /// What the report said, for the job's experiment.
    pub run_result: Option<RunResult>,
}

/// One page of a listing, newest first.
#[derive(Debug, Clone)]
pub struct Page {
    /// The jobs.
    pub jobs: Vec<Job>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// One event of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum JobEvent {
    /// Training moved on.
    Progress(JobProgress),
    /// The job reached a terminal status (the last event of every job).
    Status(Box<Job>),
}

/// An event with its number (the SSE `id`).
#[derive(Debug, Clone, PartialEq)]
pub struct SeqEvent {
    /// 1, 2, 3, ... per job, without gaps.
    pub seq: u64,
    /// The event.
    pub event: JobEvent,
}

/// What a store holds, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Jobs waiting for a worker.
    pub queued: u64,
    /// Jobs being trained (each holds a lease).
    pub running: u64,
    /// Finished jobs kept.
    pub finished: u64,
    /// Events kept.
    pub events: u64,
    /// Experiments kept.
    pub experiments: u64,
    /// Bytes of reports kept.
    pub report_bytes: u64,
}

/// What a retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    /// Finished jobs (with their reports and events).
    pub jobs: u64,
    /// Finished experiments.
    pub experiments: u64,
    /// Idempotency keys.
    pub keys: u64,
}

/// Refusals and failures of the store.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreError {
    /// No such job (or experiment) for this tenant.
    NotFound,
    /// `capacity` jobs are queued already.
    QueueFull {
        /// The capacity.
        capacity: usize,
    },
    /// The tenant has `limit` jobs queued already.
    TenantQueueFull {
        /// Its queued jobs now.
        queued: usize,
        /// The per-tenant bound.
        limit: usize,
    },
    /// The job is still queued or running.
    NotFinished(JobStatus),
    /// The report is not ready (queued or running).
    ReportNotReady(JobStatus),
    /// The job finished without a report.
    NoReport(JobStatus, Option<String>),
    /// The cursor was not made by this store.
    InvalidCursor,
    /// The database cannot be reached or failed; nothing was changed. Worth a retry.
    Unavailable(String),
    /// What the database holds cannot be read back (a bug or a foreign writer).
    Corrupt(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::NotFound => f.write_str("not found"),
            StoreError::QueueFull { capacity } => write!(f, "the queue is full ({capacity} jobs)"),
            StoreError::TenantQueueFull { queued, limit } => {
                write!(f, "the tenant has {queued} jobs queued (limit {limit})")
            }
            StoreError::NotFinished(s) => write!(f, "the job is {s}"),
            StoreError::ReportNotReady(s) => write!(f, "the report is not ready: the job is {s}"),
            StoreError::NoReport(s, _) => write!(f, "the job ended {s} without a report"),
            StoreError::InvalidCursor => f.write_str("invalid cursor"),
            StoreError::Unavailable(e) => write!(f, "the job store is unavailable: {e}"),
            StoreError::Corrupt(e) => write!(f, "the job store holds unreadable data: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Job storage. Shared by the HTTP handlers (async), the lease keeper and rescuer (async
/// tasks) and the worker threads (through a runtime handle), so every method takes `&self`.
#[async_trait]
pub trait JobStore: Send + Sync + std::fmt::Debug {
    // ---- submission and client reads (tenant-scoped) ----

    /// Adds a queued job, and records `key` with it in the same transaction. A key used before
    /// answers `Replay` (same fingerprint, job still kept) or `Mismatch`; a key whose job is
    /// gone starts afresh. Refuses when the queue is full or the tenant has
    /// `max_queued_per_tenant` jobs queued.
    async fn create(&self, job: NewJob, key: Option<IdempotencyKey>) -> Result<Created, StoreError>;
    /// What a key would answer now, without creating anything (`None`: unused or its job is
    /// gone). Lets the service skip validating a replayed body; `create` decides atomically.
    async fn lookup_key(&self, tenant: &Tenant, key: &IdempotencyKey) -> Result<Option<Created>, StoreError>;
    /// The job.
    async fn get(&self, tenant: &Tenant, id: &str) -> Result<Option<Job>, StoreError>;
    /// The tenant's jobs, newest first, optionally of one status, `limit` per page.
    async fn list(
        &self,
        tenant: &Tenant,
        status: Option<JobStatus>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, StoreError>;
    /// Cancels a queued job (with its final event), records a cancel request for a running one.
    async fn cancel(&self, tenant: &Tenant, id: &str, failure: JobFailure) -> Result<CancelOutcome, StoreError>;
    /// Deletes a finished job, its report and its events.
    async fn delete(&self, tenant: &Tenant, id: &str) -> Result<(), StoreError>;
    /// The report of a finished job (serialised JSON).
    async fn report(&self, tenant: &Tenant, id: &str) -> Result<Arc<[u8]>, StoreError>;
    /// The events of job `id` numbered above `after`, in order, at most `limit`.
    async fn events_after(
        &self,
        tenant: &Tenant,
        id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SeqEvent>, StoreError>;

    // ---- workers (not tenant-scoped; fenced by attempt) ----

    /// Moves the oldest queued job to `running` under a lease of `owner` for `ttl` (attempt
    /// incremented), keeping every group of jobs to its fair share of `workers` while others
    /// wait (see [`fair_share`]). Commits at once: no transaction stays open while it trains.
    async fn claim(&self, owner: &Owner, workers: usize, ttl: Duration) -> Result<Option<Claimed>, StoreError>;
    /// Records progress and appends progress events of a running attempt, in order, in one
    /// transaction. `false`: the lease was lost (nothing written).
    async fn progress(&self, fence: &Fence, progress: &[JobProgress]) -> Result<bool, StoreError>;
    /// Ends a running attempt: terminal status, report, run result, the final event and the
    /// experiment's record of the run, in one transaction. `None`: the lease was lost (nothing
    /// written).
    async fn complete(&self, fence: &Fence, completion: Completion) -> Result<Option<Job>, StoreError>;
    /// Gives a running attempt back to the queue without using it up (a graceful shutdown).
    /// `false`: the lease was lost.
    async fn release(&self, fence: &Fence) -> Result<bool, StoreError>;
    /// Extends by `ttl` the leases `owner` holds on the jobs `held` (the ids of the runs still
    /// going), in one statement; returns them with their cancel requests. A held job missing
    /// from the answer lost its lease. A job of `owner` that is not `held` (its worker gave up
    /// on recording its end while the database was away) is not renewed: its lease runs out
    /// and the rescuer runs it again.
    async fn renew(&self, owner: &Owner, held: &[String], ttl: Duration) -> Result<Vec<LeaseState>, StoreError>;
    /// Takes running jobs back (see [`RescueScope`]): to `queued`, or ends them `cancelled`
    /// (cancel requested) or `failed`/`worker_lost` (`max_attempts` used), with their final
    /// events. Idempotent: two rescuers at once rescue each job once.
    async fn rescue(&self, scope: RescueScope, max_attempts: u32) -> Result<Rescued, StoreError>;
    /// Marks the lease of running job `id` expired now, so that the next rescue takes it (an
    /// operator's tool for a stuck job, and how tests stand in for a dead worker). `false`:
    /// the job is not running.
    async fn expire_lease(&self, id: &str) -> Result<bool, StoreError>;

    // ---- experiments ----

    /// Adds an experiment and its queued jobs (all of the experiment's tenant), all or nothing
    /// (refused when the queue, or the tenant's share of it, cannot take them all).
    async fn create_experiment(
        &self,
        experiment: NewExperiment,
        jobs: Vec<NewJob>,
    ) -> Result<ExperimentSnapshot, StoreError>;
    /// The experiment, with its jobs' live state.
    async fn experiment(&self, tenant: &Tenant, id: &str) -> Result<Option<ExperimentSnapshot>, StoreError>;
    /// The tenant's experiments, newest first, `limit` per page.
    async fn list_experiments(
        &self,
        tenant: &Tenant,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<ExperimentPage, StoreError>;
    /// Records a cancel request and cancels the experiment's queued jobs. Returns the
    /// experiment, the jobs it cancelled and the ids of its running jobs (to stop).
    async fn cancel_experiment(
        &self,
        tenant: &Tenant,
        id: &str,
        failure: JobFailure,
    ) -> Result<(ExperimentSnapshot, Vec<Job>, Vec<String>), StoreError>;
    /// Stores the summary of an experiment whose runs have all ended; false when it has one
    /// already (the first wins) or is gone.
    async fn put_experiment_result(&self, id: &str, result: Arc<ExperimentResult>) -> Result<bool, StoreError>;
    /// Deletes a finished experiment and its jobs; returns the jobs' ids.
    async fn delete_experiment(&self, tenant: &Tenant, id: &str) -> Result<Vec<String>, StoreError>;

    // ---- operations ----

    /// Counts for `/metrics`.
    async fn stats(&self) -> Result<StoreStats, StoreError>;
    /// Answers when the database does (`/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Removes finished jobs (reports, events), finished experiments and idempotency keys older
    /// than `ttl`.
    async fn expire(&self, ttl: Duration) -> Result<Expired, StoreError>;
    /// Ids of running jobs whose cancel was requested through any replica, as the requests
    /// happen, when the store can relay them (PostgreSQL NOTIFY). `None`: the lease keeper's
    /// renewals are the only relay.
    fn cancel_notifications(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        None
    }
    /// Whether a cancel requested through any process reaches the run at once: true for a
    /// store only one process uses (SQLite, in-memory) and for PostgreSQL with NOTIFY; false
    /// when only lease renewals relay cancels. Reads of a running job are answered from the
    /// memory of the replica that trains it only when true (see `jobs/view.rs`).
    fn cancels_reach_runs_at_once(&self) -> bool {
        true
    }
}

/// The fair-share rule of `claim`. Jobs form groups: each experiment is one group, and every
/// job submitted on its own belongs to one group of single jobs. A group is *active* while it
/// has queued or running jobs; its share is `ceil(workers / active groups)`. A worker takes the
/// oldest queued job whose group runs fewer jobs than its share; when every waiting group is at
/// its share, the oldest queued job (no worker idles while work waits). So an experiment with
/// a hundred runs never holds more than half of two workers while a single job waits, and uses
/// them all when nothing else does.
pub fn fair_share(workers: usize, active_groups: usize) -> usize {
    workers.max(1).div_ceil(active_groups.max(1))
}

/// Which of `candidates` (queued jobs' groups, oldest first) `claim` takes, given how many
/// jobs each active group runs now (`running`, which lists every active group, queued-only
/// ones at 0). See [`fair_share`].
pub fn pick_fair(
    workers: usize,
    candidates: &[Option<&str>],
    running: &std::collections::HashMap<Option<&str>, usize>,
) -> usize {
    let share = fair_share(workers, running.len());
    candidates.iter().position(|g| running.get(g).copied().unwrap_or(0) < share).unwrap_or(0)
}

/// The admission rule of every store: `adding` more queued jobs of a tenant are refused when
/// the queue (`queued` now, at most `capacity`) or the tenant's share of it (`of_tenant` now, at
/// most `per_tenant`; `usize::MAX`: no bound) cannot take them — the queue's bound first.
pub(crate) fn admit(
    capacity: usize,
    per_tenant: usize,
    queued: usize,
    of_tenant: usize,
    adding: usize,
) -> Result<(), StoreError> {
    if queued.saturating_add(adding) > capacity {
        return Err(StoreError::QueueFull { capacity });
    }
    if per_tenant != usize::MAX && of_tenant.saturating_add(adding) > per_tenant {
        return Err(StoreError::TenantQueueFull { queued: of_tenant, limit: per_tenant });
    }
    Ok(())
}

/// Cursors are `c` + the hex creation number of the last job of the previous page. Clients are
/// told they are opaque; the prefix lets a later format tell itself apart.
pub(crate) fn encode_cursor(seq: u64) -> String {
    format!("c{seq:x}")
}

/// The inverse of [`encode_cursor`]: exactly the strings of the API's documented pattern
/// `^c[0-9a-f]{1,16}$` (`u64::from_str_radix` alone also takes a leading `+` and upper-case
/// digits, which the pattern refuses).
pub(crate) fn decode_cursor(cursor: &str) -> Option<u64> {
    let hex = cursor.strip_prefix('c')?;
    let digits = hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if hex.is_empty() || hex.len() > 16 || !digits {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// How `rescue` ends a running job whose lease it takes, by every store's one rule: cancelled
/// when a cancel was requested, `failed`/`worker_lost` once `max_attempts` attempts were used;
/// `None`: back to the queue for another attempt.
pub fn rescue_finish(cancel_requested: bool, attempt: u32, max_attempts: u32) -> Option<Finish> {
    if cancel_requested {
        Some(Finish { status: JobStatus::Cancelled, error: Some(cancelled_while_lost()) })
    } else if attempt >= max_attempts {
        Some(Finish { status: JobStatus::Failed, error: Some(worker_lost(attempt)) })
    } else {
        None
    }
}

/// The failure of a job whose attempts all ended with their worker gone.
fn worker_lost(attempts: u32) -> JobFailure {
    JobFailure {
        code: super::FailureCode::WorkerLost,
        message: format!(
            "the worker running this job was lost (its process ended or stopped renewing its lease) on each of \
             {attempts} attempts; the spec may crash the process"
        ),
    }
}

/// The failure of a running job cancelled while its worker was gone.
fn cancelled_while_lost() -> JobFailure {
    JobFailure {
        code: super::FailureCode::Cancelled,
        message: "cancelled by request; its worker was lost before it stopped".into(),
    }
}

#[cfg(test)]
mod cursor_tests {
    use super::{decode_cursor, encode_cursor};

    #[test]
    fn cursors_round_trip_and_only_the_documented_pattern_decodes() {
        for seq in [0, 1, 0xabc, u64::MAX] {
            assert_eq!(decode_cursor(&encode_cursor(seq)), Some(seq));
        }
        // Found by schemathesis: `c+C` was accepted as cursor 12.
        for bad in ["c+C", "c+c", "cC", "cABC", "c-1", "c", "", "x1", "c 1", "c11111111111111111", "c１"] {
            assert_eq!(decode_cursor(bad), None, "{bad:?}");
        }
    }
}
