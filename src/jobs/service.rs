//! [`JobService`]: the one API of the job layer. The HTTP handlers call exactly one method of it
//! per request and map its [`JobsError`]s; nothing else of the layer is theirs to touch.
//!
//! It admits jobs (validation against the configured limits, the bounded queue, idempotency
//! keys), answers reads from the store, relays cancels to the pool, opens event subscriptions,
//! runs synchronous analyses on tokio's blocking pool behind a semaphore with a timeout, and
//! drives a graceful shutdown. Depends on the store, pool, event hub, pipeline and spec; uses
//! tokio only for the blocking pool, the semaphore and timers; must not depend on HTTP crates.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::error::JobsError;
use super::events::{EventHub, Subscription};
use super::metrics::JobMetrics;
use super::pool::{PoolConfig, WorkerPool};
use super::store::{
    CancelOutcome, IdempotencyBegin, JobStore, MemoryStore, MemoryStoreConfig, NewJob, Page, StoreError,
};
use super::{FailureCode, Job, JobFailure, JobStatus, Tenant};
use crate::analysis::pipeline::{self, PipelineError};
use crate::analysis::Report;
use crate::spec::experiment::ExperimentLimits;
use crate::spec::{Limits, Spec};

/// Everything the job layer can be configured with.
#[derive(Debug, Clone)]
pub struct JobsConfig {
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
    /// Events kept per job for replay.
    pub event_buffer: usize,
    /// Between probe steps, progress is reported at least this often.
    pub progress_heartbeat: Duration,
    /// Suggested wait in `Retry-After` when the queue is full.
    pub retry_after: Duration,
    /// Nice value of the worker threads (see [`PoolConfig::worker_nice`]).
    pub worker_nice: i32,
    /// Share of a job's compute its recommendations' verification may take together (0: off;
    /// see `analysis::verify`).
    pub verify_share: f64,
    /// Honour test-only hooks (see [`super::pool::PANIC_HOOK_NAME`]).
    pub test_hooks: bool,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
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
            worker_nice: 10,
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

/// The key and body fingerprint of a request with an `Idempotency-Key`.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    /// The key as the client sent it.
    pub key: String,
    /// SHA-256 of the request body.
    pub fingerprint: [u8; 32],
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
    pub(super) hub: Arc<EventHub>,
    pub(super) pool: WorkerPool,
    pub(super) config: JobsConfig,
    analyze_slots: Arc<Semaphore>,
    metrics: JobMetrics,
    shutting_down: AtomicBool,
}

impl JobService {
    /// Starts the service on an in-memory store: spawns the worker threads.
    pub fn start(config: JobsConfig) -> std::io::Result<Self> {
        let store = Arc::new(MemoryStore::new(MemoryStoreConfig {
            capacity: config.queue_capacity,
            retain: config.retain_jobs,
            ttl: config.retention,
            max_idempotency_keys: 100_000,
            max_queued_per_tenant: config.max_queued_per_tenant,
        }));
        Self::with_store(config, store)
    }

    /// Starts the service on `store`.
    pub fn with_store(config: JobsConfig, store: Arc<dyn JobStore>) -> std::io::Result<Self> {
        let metrics = JobMetrics::default();
        let hub = Arc::new(EventHub::new(config.event_buffer));
        let pool = WorkerPool::start(
            Arc::clone(&store),
            Arc::clone(&hub),
            metrics.clone(),
            PoolConfig {
                workers: config.workers,
                job_timeout: config.job_timeout,
                limits: config.limits.clone(),
                progress_heartbeat: config.progress_heartbeat,
                worker_nice: config.worker_nice,
                verify_share: config.verify_share,
                test_hooks: config.test_hooks,
            },
        )?;
        Ok(JobService {
            store,
            hub,
            pool,
            analyze_slots: Arc::new(Semaphore::new(config.analyze_slots.max(1))),
            config,
            metrics,
            shutting_down: AtomicBool::new(false),
        })
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
    pub fn refresh_gauges(&self) {
        self.metrics.queue_depth.set(self.store.queued() as i64);
        self.metrics.running.set(self.store.running() as i64);
    }

    /// Admits `spec` as a queued job. With an idempotency key, a repeat of an accepted request
    /// returns the job it created (`replayed`), whatever that job's status is now.
    pub fn submit(&self, tenant: &Tenant, spec: Spec, key: Option<IdempotencyKey>) -> Result<Submitted, JobsError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            self.metrics.submitted("shutting_down");
            return Err(self.shutting_down_error());
        }
        if let Some(k) = &key {
            match self.store.idempotency_begin(tenant, &k.key, k.fingerprint) {
                IdempotencyBegin::New => {}
                IdempotencyBegin::Replay(id) => {
                    self.metrics.submitted("replayed");
                    return self.get(tenant, &id).map(|job| Submitted { job, replayed: true });
                }
                IdempotencyBegin::Mismatch => {
                    self.metrics.submitted("conflict");
                    return Err(JobsError::IdempotencyKeyReused);
                }
                IdempotencyBegin::InFlight => {
                    self.metrics.submitted("conflict");
                    return Err(JobsError::IdempotencyInFlight);
                }
            }
        }
        let result = self.admit(tenant, spec);
        if let Some(k) = &key {
            match &result {
                Ok(job) => self.store.idempotency_complete(tenant, &k.key, &job.id),
                // A refused request created nothing, so a retry with the same key (after the
                // queue drains, say) must be able to succeed.
                Err(_) => self.store.idempotency_abort(tenant, &k.key),
            }
        }
        self.metrics.submitted(match &result {
            Ok(_) => "accepted",
            Err(JobsError::QueueFull { .. }) => "queue_full",
            Err(JobsError::TenantQueueFull { .. }) => "tenant_queue_full",
            Err(_) => "invalid",
        });
        result.map(|job| Submitted { job, replayed: false })
    }

    fn admit(&self, tenant: &Tenant, spec: Spec) -> Result<Job, JobsError> {
        let config = spec.validate(&self.config.limits).map_err(|e| JobsError::Invalid(PipelineError::Invalid(e)))?;
        let id = uuid::Uuid::now_v7().to_string();
        // The log exists before the job can be claimed, so the worker always finds it.
        self.hub.create(&id);
        let new = NewJob {
            id: id.clone(),
            tenant: tenant.clone(),
            name: spec.name.clone(),
            spec: Arc::new(spec),
            total_steps: config.training.steps as u64,
            probe_every: config.probes.every as u64,
            experiment: None,
        };
        match self.store.create(new) {
            Ok((job, evicted)) => {
                for e in evicted {
                    self.hub.remove(&e);
                }
                self.pool.notify();
                tracing::info!(job.id = %job.id, total_steps = job.progress.total_steps, "job queued");
                Ok(job)
            }
            Err(e) => {
                self.hub.remove(&id);
                Err(self.store_error(&id, e))
            }
        }
    }

    /// The job `id` of `tenant`.
    pub fn get(&self, tenant: &Tenant, id: &str) -> Result<Job, JobsError> {
        self.store.get(tenant, id).ok_or_else(|| JobsError::NotFound { id: id.to_owned() })
    }

    /// A page of `tenant`'s jobs, newest first.
    pub fn list(
        &self,
        tenant: &Tenant,
        status: Option<JobStatus>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, JobsError> {
        self.store.list(tenant, status, limit, cursor).map_err(|e| self.store_error("", e))
    }

    /// Cancels a queued job at once; asks a running one to stop at its next step.
    pub fn cancel(&self, tenant: &Tenant, id: &str) -> Result<Cancel, JobsError> {
        let failure =
            JobFailure { code: FailureCode::Cancelled, message: "cancelled by request before it started".into() };
        match self.store.cancel(tenant, id, failure).map_err(|e| self.store_error(id, e))? {
            CancelOutcome::Cancelled(job) => {
                if let Some(log) = self.hub.get(id) {
                    log.close(job.clone());
                }
                tracing::info!(job.id = %id, "queued job cancelled");
                Ok(Cancel::Accepted(job))
            }
            CancelOutcome::Requested(job) => {
                self.pool.cancel(id);
                tracing::info!(job.id = %id, "cancel requested for a running job");
                Ok(Cancel::Accepted(job))
            }
            CancelOutcome::AlreadyFinished(job) => Ok(Cancel::AlreadyFinished(job)),
        }
    }

    /// Deletes a finished job and its report.
    pub fn delete(&self, tenant: &Tenant, id: &str) -> Result<(), JobsError> {
        self.store.delete(tenant, id).map_err(|e| self.store_error(id, e))?;
        self.hub.remove(id);
        Ok(())
    }

    /// The report (serialised JSON) of a succeeded job, or of a failed one that diverged.
    pub fn report(&self, tenant: &Tenant, id: &str) -> Result<Arc<[u8]>, JobsError> {
        self.store.report(tenant, id).map_err(|e| self.store_error(id, e))
    }

    /// Events of `id` after `last_event_id` (all when `None`), ending with the final status.
    pub fn subscribe(&self, tenant: &Tenant, id: &str, last_event_id: Option<u64>) -> Result<Subscription, JobsError> {
        // Ask the store first: it is the authority on whether the job exists (for this tenant).
        self.get(tenant, id)?;
        let log = self.hub.get(id).ok_or_else(|| JobsError::NotFound { id: id.to_owned() })?;
        Ok(log.subscribe(last_event_id.unwrap_or(0)))
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

    /// Whether the service can take work.
    pub fn readiness(&self) -> Readiness {
        Readiness {
            store_reachable: self.store.is_reachable(),
            workers_alive: self.pool.alive(),
            workers: self.pool.size(),
            shutting_down: self.shutting_down.load(Ordering::SeqCst),
        }
    }

    /// First half of a shutdown: refuse new work (readiness turns false) and cancel every queued
    /// job with code `shutdown`. Running jobs go on. Returns how many were cancelled.
    pub fn begin_shutdown(&self) -> usize {
        self.shutting_down.store(true, Ordering::SeqCst);
        let failure = JobFailure {
            code: FailureCode::Shutdown,
            message: "the server shut down before the job started; submit it again".into(),
        };
        let cancelled = self.store.cancel_queued(failure);
        for job in &cancelled {
            if let Some(log) = self.hub.get(&job.id) {
                log.close(job.clone());
            }
        }
        cancelled.len()
    }

    /// Second half: wait up to `grace` for running jobs, then stop them (they end `cancelled`
    /// with code `shutdown`) and join the workers. Blocking: call it off the runtime.
    pub fn finish_shutdown(&self, grace: Duration) {
        self.begin_shutdown();
        self.pool.shutdown(grace);
    }

    pub(super) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    pub(super) fn shutting_down_error(&self) -> JobsError {
        JobsError::ShuttingDown { retry_after_secs: self.config.retry_after.as_secs().max(1) }
    }

    pub(super) fn store_error(&self, id: &str, e: StoreError) -> JobsError {
        let id = id.to_owned();
        match e {
            StoreError::NotFound => JobsError::NotFound { id },
            StoreError::QueueFull { capacity } => {
                JobsError::QueueFull { capacity, retry_after_secs: self.config.retry_after.as_secs().max(1) }
            }
            StoreError::NotFinished(status) => JobsError::NotFinished { id, status },
            StoreError::ReportNotReady(status) => JobsError::ReportNotReady { id, status },
            StoreError::NoReport(status, reason) => JobsError::NoReport { id, status, reason },
            StoreError::InvalidCursor => JobsError::InvalidCursor,
            StoreError::TenantQueueFull { queued, limit } => {
                JobsError::TenantQueueFull { queued, limit, retry_after_secs: self.config.retry_after.as_secs().max(1) }
            }
        }
    }
}
