//! [`JobService`]: the one API of the job layer. The HTTP handlers call exactly one method of it
//! per request and map its [`JobsError`]s; nothing else of the layer is theirs to touch.
//!
//! It opens the store the configuration names, admits jobs (validation against the configured
//! limits, the bounded queue, idempotency keys), answers reads from the store, relays cancels
//! to the pool (and, through the store, to other replicas), opens event subscriptions, runs
//! synchronous analyses on tokio's blocking pool behind a semaphore with a timeout, and drives
//! a graceful shutdown. Its background tasks on the runtime ([`super::upkeep`]) keep leases,
//! rescue jobs of lost workers and expire old records. Depends on the store, pool, events,
//! pipeline and spec; uses tokio for tasks, the blocking pool, the semaphore and timers; must
//! not depend on HTTP crates.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::error::JobsError;
use super::events::{Subscription, Wakeups};
use super::metrics::JobMetrics;
use super::pool::{PoolConfig, WorkerPool, WorkerPriority};
pub use super::store::IdempotencyKey;
use super::store::{
    CancelOutcome, Created, JobStore, MemoryStore, MemoryStoreConfig, NewJob, Owner, Page, PostgresConfig,
    PostgresStore, RescueScope, SqliteConfig, SqliteStore, StoreError,
};
use super::upkeep::{self, UpkeepConfig};
use super::{FailureCode, Job, JobFailure, JobStatus, Tenant};
use crate::analysis::pipeline::{self, PipelineError};
use crate::analysis::Report;
use crate::spec::experiment::ExperimentLimits;
use crate::spec::{Limits, Spec};

/// Which store keeps the jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// In memory: nothing survives the process (tests, the CLI).
    Memory,
    /// SQLite in this data directory (the server's default): one process.
    Sqlite {
        /// The data directory.
        dir: PathBuf,
    },
    /// PostgreSQL: every replica on the same database is one service.
    Postgres {
        /// `postgres://…`
        url: String,
        /// Cancels reach other replicas through NOTIFY (else through lease renewals).
        notify: bool,
    },
}

/// Everything the job layer can be configured with.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// Where jobs live.
    pub store: StoreChoice,
    /// A claimed job's lease lasts this long unless renewed.
    pub lease_ttl: Duration,
    /// Leases are renewed (and cancel requests read back) this often.
    pub lease_renew: Duration,
    /// Jobs whose lease expired are rescued about this often (with jitter).
    pub rescue_every: Duration,
    /// Attempts a job may take before its lost worker fails it with `worker_lost`.
    pub max_attempts: u32,
    /// Event streams look for events written by other replicas this often.
    pub event_poll: Duration,
    /// Worker threads.
    pub workers: usize,
    /// Queued jobs at most; beyond it submissions are refused.
    pub queue_capacity: usize,
    /// Queued jobs of one tenant at most (`usize::MAX`: no bound but `queue_capacity`).
    pub max_queued_per_tenant: usize,
    /// Finished jobs kept (with reports); the oldest are forgotten first.
    pub retain_jobs: usize,
    /// Finished jobs and idempotency keys are forgotten after this long.
    pub retention: Duration,
    /// Per-job wall-clock limit.
    pub job_timeout: Duration,
    /// Limits of a submitted spec.
    pub limits: Limits,
    /// Limits of an experiment as a whole (each run is held to `limits`).
    pub experiment_limits: ExperimentLimits,
    /// Limits of an analysed spec (smaller: it runs while the client waits).
    pub analyze_limits: Limits,
    /// Analyses that may run at once.
    pub analyze_slots: usize,
    /// An analysis taking longer is abandoned (its thread finishes in the background, still
    /// holding its slot).
    pub analyze_timeout: Duration,
    /// Events kept per job by the memory store.
    pub event_buffer: usize,
    /// Between probe steps, progress is reported at least this often.
    pub progress_heartbeat: Duration,
    /// Suggested wait in `Retry-After` when the queue is full.
    pub retry_after: Duration,
    /// How the worker threads yield the CPU (see [`WorkerPriority`]).
    pub worker_priority: WorkerPriority,
    /// Share of a job's compute its recommendations' verification may take together (0: off;
    /// see `analysis::verify`).
    pub verify_share: f64,
    /// Honour test-only hooks (see [`super::pool::PANIC_HOOK_NAME`]).
    pub test_hooks: bool,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            store: StoreChoice::Memory,
            lease_ttl: Duration::from_secs(60),
            lease_renew: Duration::from_secs(10),
            rescue_every: Duration::from_secs(15),
            max_attempts: 3,
            event_poll: Duration::from_millis(500),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            queue_capacity: 1024,
            max_queued_per_tenant: usize::MAX,
            retain_jobs: 1000,
            retention: Duration::from_secs(24 * 3600),
            job_timeout: Duration::from_secs(600),
            limits: Limits::default(),
            experiment_limits: ExperimentLimits::default(),
            analyze_limits: default_analyze_limits(),
            analyze_slots: 2,
            analyze_timeout: Duration::from_secs(30),
            event_buffer: 1024,
            progress_heartbeat: Duration::from_millis(500),
            retry_after: Duration::from_secs(5),
            worker_priority: WorkerPriority::Idle,
            verify_share: crate::analysis::verify::DEFAULT_VERIFY_SHARE,
            test_hooks: false,
        }
    }
}

/// The analysis limits' defaults: one forward/backward of at most 5M parameters on at most
/// 65,536 samples.
pub fn default_analyze_limits() -> Limits {
    Limits { max_params: 5_000_000, max_samples: 65_536, max_batch_size: 4096, ..Limits::default() }
}

/// An accepted submission.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The job.
    pub job: Job,
    /// True when an `Idempotency-Key` matched an earlier request: `job` is the one it created.
    pub replayed: bool,
}

/// The answer to a cancel request.
#[derive(Debug, Clone)]
pub enum Cancel {
    /// The cancel took effect (a queued job) or was passed to the run (a running one).
    Accepted(Job),
    /// The job had already finished; it is unchanged.
    AlreadyFinished(Job),
}

/// Whether the service can take work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// The store answers.
    pub store_reachable: bool,
    /// Worker threads alive.
    pub workers_alive: usize,
    /// Worker threads configured.
    pub workers: usize,
    /// A shutdown has begun.
    pub shutting_down: bool,
}

impl Readiness {
    /// Ready to accept jobs.
    pub fn is_ready(&self) -> bool {
        self.store_reachable && self.workers_alive == self.workers && !self.shutting_down
    }
}

/// The job layer's API.
#[derive(Debug)]
pub struct JobService {
    pub(super) store: Arc<dyn JobStore>,
    pub(super) wakeups: Arc<Wakeups>,
    pub(super) pool: Arc<WorkerPool>,
    pub(super) config: JobsConfig,
    pub(super) owner: Owner,
    analyze_slots: Arc<Semaphore>,
    pub(super) metrics: JobMetrics,
    shutting_down: AtomicBool,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// Opens the store `config` names. SQLite: the data directory's lock proves no other process
/// runs its jobs, so every `running` row left by the previous process is taken back at once.
pub async fn open_store(config: &JobsConfig) -> Result<Arc<dyn JobStore>, JobsError> {
    let store: Arc<dyn JobStore> = match &config.store {
        StoreChoice::Memory => Arc::new(MemoryStore::new(MemoryStoreConfig {
            capacity: config.queue_capacity,
            retain: config.retain_jobs,
            ttl: config.retention,
            max_idempotency_keys: 100_000,
            max_queued_per_tenant: config.max_queued_per_tenant,
            max_events_per_job: config.event_buffer,
        })),
        StoreChoice::Sqlite { dir } => {
            let sqlite = SqliteConfig {
                capacity: config.queue_capacity,
                max_queued_per_tenant: config.max_queued_per_tenant,
                ..SqliteConfig::new(dir)
            };
            let store = SqliteStore::open(sqlite).await.map_err(|e| JobsError::StoreOpen(e.to_string()))?;
            let rescued = store
                .rescue(RescueScope::AllRunning, config.max_attempts)
                .await
                .map_err(|e| JobsError::StoreOpen(e.to_string()))?;
            tracing::info!(
                data_dir = %dir.display(),
                requeued = rescued.requeued.len(),
                ended = rescued.ended.len(),
                "job store: SQLite"
            );
            Arc::new(store)
        }
        StoreChoice::Postgres { url, notify } => {
            let pg = PostgresConfig {
                capacity: config.queue_capacity,
                max_queued_per_tenant: config.max_queued_per_tenant,
                notify: *notify,
                ..PostgresConfig::new(url)
            };
            let store = PostgresStore::connect(pg).await.map_err(|e| JobsError::StoreOpen(e.to_string()))?;
            tracing::info!(notify, "job store: PostgreSQL");
            Arc::new(store)
        }
    };
    Ok(store)
}

impl JobService {
    /// Opens the configured store and starts the service on it. Call it on the runtime.
    pub async fn start(config: JobsConfig) -> Result<Self, JobsError> {
        let store = open_store(&config).await?;
        Self::with_store(config, store).map_err(|e| JobsError::Internal(format!("starting the workers: {e}")))
    }

    /// Starts the service on `store`: the worker threads and the upkeep tasks (on the current
    /// runtime).
    pub fn with_store(config: JobsConfig, store: Arc<dyn JobStore>) -> std::io::Result<Self> {
        let metrics = JobMetrics::default();
        let wakeups = Arc::new(Wakeups::default());
        let owner = Owner::for_this_process();
        let runtime = tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
        let pool = Arc::new(WorkerPool::start(
            Arc::clone(&store),
            Arc::clone(&wakeups),
            metrics.clone(),
            PoolConfig {
                workers: config.workers,
                job_timeout: config.job_timeout,
                limits: config.limits.clone(),
                progress_heartbeat: config.progress_heartbeat,
                worker_priority: config.worker_priority,
                verify_share: config.verify_share,
                test_hooks: config.test_hooks,
                owner: owner.clone(),
                lease_ttl: config.lease_ttl,
            },
            runtime,
        )?);
        let service = JobService {
            store,
            wakeups,
            pool,
            analyze_slots: Arc::new(Semaphore::new(config.analyze_slots.max(1))),
            config,
            owner,
            metrics,
            shutting_down: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
        };
        let c = &service.config;
        let upkeep = UpkeepConfig {
            lease_renew: c.lease_renew,
            lease_ttl: c.lease_ttl,
            rescue_every: c.rescue_every,
            max_attempts: c.max_attempts,
            retention: c.retention,
        };
        let tasks =
            upkeep::spawn(&service.store, &service.pool, &service.wakeups, &service.owner, upkeep, &service.metrics);
        *service.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        Ok(service)
    }

    /// The configuration in force.
    pub fn config(&self) -> &JobsConfig {
        &self.config
    }

    /// The metrics of this layer (to register and to refresh).
    pub fn metrics(&self) -> &JobMetrics {
        &self.metrics
    }

    /// Sets the gauges that mirror the store; called when metrics are scraped.
    pub async fn refresh_gauges(&self) {
        match self.store.stats().await {
            Ok(stats) => self.metrics.set_store(&stats, self.pool.running()),
            Err(e) => tracing::debug!(error = %e, "store statistics unavailable"),
        }
    }

    /// Admits `spec` as a queued job. With an idempotency key, a repeat of an accepted request
    /// returns the job it created (`replayed`), whatever that job's status is now; the key is
    /// recorded in the transaction that queues the job.
    pub async fn submit(
        &self,
        tenant: &Tenant,
        spec: Spec,
        key: Option<IdempotencyKey>,
    ) -> Result<Submitted, JobsError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            self.metrics.submitted("shutting_down");
            return Err(self.shutting_down_error());
        }
        if let Some(k) = &key {
            // A replay need not be validated again (the limits may have changed since).
            match self.store.lookup_key(tenant, k).await {
                Ok(Some(created)) => return self.created(created, None),
                Ok(None) => {}
                Err(e) => return Err(self.refused(self.store_error("", e))),
            }
        }
        let config = match spec.validate(&self.config.limits) {
            Ok(c) => c,
            Err(e) => return Err(self.refused(JobsError::Invalid(PipelineError::Invalid(e)))),
        };
        let new = NewJob {
            id: uuid::Uuid::now_v7().to_string(),
            tenant: tenant.clone(),
            name: spec.name.clone(),
            spec: Arc::new(spec),
            total_steps: config.training.steps as u64,
            probe_every: config.probes.every as u64,
            experiment: None,
        };
        let id = new.id.clone();
        match self.store.create(new, key).await {
            Ok(created) => self.created(created, Some(&id)),
            Err(e) => Err(self.refused(self.store_error(&id, e))),
        }
    }

    /// What `create` answered -> the submission's result (`new`: the id of a job it queued).
    fn created(&self, created: Created, new: Option<&str>) -> Result<Submitted, JobsError> {
        match created {
            Created::New(job) => {
                self.pool.notify();
                self.metrics.submitted("accepted");
                tracing::info!(job.id = %job.id, total_steps = job.progress.total_steps, "job queued");
                debug_assert_eq!(new, Some(job.id.as_str()));
                Ok(Submitted { job, replayed: false })
            }
            Created::Replay(job) => {
                self.metrics.submitted("replayed");
                Ok(Submitted { job, replayed: true })
            }
            Created::Mismatch => {
                self.metrics.submitted("conflict");
                Err(JobsError::IdempotencyKeyReused)
            }
        }
    }

    /// Counts a refused submission.
    fn refused(&self, e: JobsError) -> JobsError {
        self.metrics.submitted(match &e {
            JobsError::QueueFull { .. } => "queue_full",
            JobsError::TenantQueueFull { .. } => "tenant_queue_full",
            JobsError::Unavailable { .. } => "unavailable",
            _ => "invalid",
        });
        e
    }

    /// The job `id` of `tenant`.
    pub async fn get(&self, tenant: &Tenant, id: &str) -> Result<Job, JobsError> {
        // A job this process trains is answered from memory when the store allows it (see
        // `jobs/view.rs`): polling a running job needs no database round trip.
        if self.store.cancels_reach_runs_at_once() {
            if let Some(job) = self.pool.local_view(tenant, id) {
                return Ok(job);
            }
        }
        match self.store.get(tenant, id).await {
            Ok(Some(job)) => Ok(job),
            Ok(None) => Err(JobsError::NotFound { id: id.to_owned() }),
            Err(e) => Err(self.store_error(id, e)),
        }
    }

    /// A page of `tenant`'s jobs, newest first.
    pub async fn list(
        &self,
        tenant: &Tenant,
        status: Option<JobStatus>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, JobsError> {
        self.store.list(tenant, status, limit, cursor).await.map_err(|e| self.store_error("", e))
    }

    /// Cancels a queued job at once; asks a running one to stop at its next step, on whichever
    /// replica runs it.
    pub async fn cancel(&self, tenant: &Tenant, id: &str) -> Result<Cancel, JobsError> {
        let failure =
            JobFailure { code: FailureCode::Cancelled, message: "cancelled by request before it started".into() };
        match self.store.cancel(tenant, id, failure).await.map_err(|e| self.store_error(id, e))? {
            CancelOutcome::Cancelled(job) => {
                self.wakeups.notify(id);
                tracing::info!(job.id = %id, "queued job cancelled");
                Ok(Cancel::Accepted(job))
            }
            CancelOutcome::Requested(job) => {
                // Here, if it runs here; elsewhere the store's notification (or the next lease
                // renewal) tells the replica that runs it.
                self.pool.cancel(id);
                tracing::info!(job.id = %id, "cancel requested for a running job");
                Ok(Cancel::Accepted(job))
            }
            CancelOutcome::AlreadyFinished(job) => Ok(Cancel::AlreadyFinished(job)),
        }
    }

    /// Deletes a finished job, its report and its events.
    pub async fn delete(&self, tenant: &Tenant, id: &str) -> Result<(), JobsError> {
        self.store.delete(tenant, id).await.map_err(|e| self.store_error(id, e))
    }

    /// The report (serialised JSON) of a succeeded job, of a failed one that diverged or timed
    /// out, or of a cancelled one (what it measured up to where it stopped).
    pub async fn report(&self, tenant: &Tenant, id: &str) -> Result<Arc<[u8]>, JobsError> {
        self.store.report(tenant, id).await.map_err(|e| self.store_error(id, e))
    }

    /// Events of `id` after `last_event_id` (all when `None`), ending with the final status.
    pub async fn subscribe(
        &self,
        tenant: &Tenant,
        id: &str,
        last_event_id: Option<u64>,
    ) -> Result<Option<Subscription>, JobsError> {
        // Ask the store first: it is the authority on whether the job exists (for this tenant).
        let job = self.get(tenant, id).await?;
        if let (Some(last), true) = (last_event_id, job.status.is_terminal()) {
            // The final status event commits with the status: a client that has seen every
            // event of an ended job has nothing more to hear.
            let after = self.store.events_after(tenant, id, last, 1).await.map_err(|e| self.store_error(id, e))?;
            if after.is_empty() {
                return Ok(None);
            }
        }
        Ok(Some(Subscription::new(
            Arc::clone(&self.store),
            &self.wakeups,
            tenant.clone(),
            id.to_owned(),
            last_event_id.unwrap_or(0),
            self.config.event_poll,
        )))
    }

    /// One forward/backward of `spec` on tokio's blocking pool, at most `analyze_slots` at once,
    /// within `analyze_timeout` (waiting for a slot included).
    pub async fn analyze(&self, spec: Spec, gradients: bool) -> Result<Report, JobsError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(self.shutting_down_error());
        }
        let limit = self.config.analyze_timeout;
        let started = tokio::time::Instant::now();
        let permit = match tokio::time::timeout(limit, Arc::clone(&self.analyze_slots).acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            _ => {
                return Err(JobsError::AnalyzeBusy {
                    slots: self.config.analyze_slots.max(1),
                    retry_after_secs: self.config.retry_after.as_secs().max(1),
                })
            }
        };
        let limits = self.config.analyze_limits.clone();
        let task = tokio::task::spawn_blocking(move || {
            // The permit lives as long as the computation, even when the caller stops waiting,
            // so abandoned analyses still count against the slots.
            let _permit = permit;
            let options = pipeline::AnalyzeOptions { limits: &limits, gradients };
            catch_unwind(AssertUnwindSafe(|| pipeline::analyze(&spec, &options)))
        });
        let remaining = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(remaining, task).await {
            Err(_) => Err(JobsError::AnalyzeTimeout { limit_secs: limit.as_secs() }),
            Ok(Err(join)) => Err(JobsError::Internal(format!("the analysis task failed: {join}"))),
            Ok(Ok(Err(_panic))) => Err(JobsError::Internal("the analysis panicked".into())),
            Ok(Ok(Ok(result))) => result.map_err(JobsError::Invalid),
        }
    }

    /// Whether the service can take work: the store answers within 2 s, every worker lives, no
    /// shutdown has begun.
    pub async fn readiness(&self) -> Readiness {
        let ping = tokio::time::timeout(Duration::from_secs(2), self.store.ping()).await;
        Readiness {
            store_reachable: matches!(ping, Ok(Ok(()))),
            workers_alive: self.pool.alive(),
            workers: self.pool.size(),
            shutting_down: self.shutting_down.load(Ordering::SeqCst),
        }
    }

    /// First half of a shutdown: refuse new work (readiness turns false) and stop claiming.
    /// Queued jobs stay queued, for other replicas or the next start; running jobs go on.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.pool.stop_claiming();
    }

    /// Second half: wait up to `grace` for running jobs, then stop them and give them back to
    /// the queue (without using an attempt), join the workers and stop the upkeep tasks.
    pub async fn finish_shutdown(&self, grace: Duration) {
        self.begin_shutdown();
        let pool = Arc::clone(&self.pool);
        let _ = tokio::task::spawn_blocking(move || pool.shutdown(grace)).await;
        for task in std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner())) {
            task.abort();
        }
    }

    pub(super) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    pub(super) fn shutting_down_error(&self) -> JobsError {
        JobsError::ShuttingDown { retry_after_secs: self.config.retry_after.as_secs().max(1) }
    }

    pub(super) fn store_error(&self, id: &str, e: StoreError) -> JobsError {
        let id = id.to_owned();
        let retry_after_secs = self.config.retry_after.as_secs().max(1);
        match e {
            StoreError::NotFound => JobsError::NotFound { id },
            StoreError::QueueFull { capacity } => JobsError::QueueFull { capacity, retry_after_secs },
            StoreError::NotFinished(status) => JobsError::NotFinished { id, status },
            StoreError::ReportNotReady(status) => JobsError::ReportNotReady { id, status },
            StoreError::NoReport(status, reason) => JobsError::NoReport { id, status, reason },
            StoreError::InvalidCursor => JobsError::InvalidCursor,
            StoreError::TenantQueueFull { queued, limit } => {
                JobsError::TenantQueueFull { queued, limit, retry_after_secs }
            }
            StoreError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "the job store is unavailable");
                JobsError::Unavailable { retry_after_secs }
            }
            StoreError::Corrupt(detail) => JobsError::Internal(format!("the job store: {detail}")),
        }
    }
}
