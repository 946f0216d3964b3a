//! Where jobs live: the [`JobStore`] trait and [`MemoryStore`], its in-memory implementation.
//!
//! The trait is shaped for a durable replacement (SQLite or PostgreSQL) that the API layer never
//! notices: every state change is one call (`create`, `claim`, `progress`, `finish`, `cancel`,
//! `delete`), the queue *is* the set of queued jobs (`claim` takes the oldest, as a
//! `SELECT ... FOR UPDATE SKIP LOCKED` would), list cursors are opaque strings the store makes and
//! reads, and `Idempotency-Key`s are kept beside the jobs they point to. What is not state —
//! cancel flags of running runs, event-log wake-ups — lives in the pool and the event hub.
//!
//! [`MemoryStore`] keeps everything behind one mutex (each call holds it for microseconds) and
//! bounds its memory: at most `capacity` queued jobs, at most `retain` finished jobs (the oldest
//! finished are evicted first, as are those finished more than `ttl` ago), and a bounded table
//! of idempotency keys. Queued and running jobs are never evicted. Depends on the job model and
//! `spec`; must not depend on HTTP crates.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

mod experiments;

use super::experiments::model::{ExperimentPage, ExperimentRecord, ExperimentSnapshot, NewExperiment};
use super::{rfc3339, Job, JobFailure, JobProgress, JobStatus, Tenant};
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

/// One page of a listing, newest first.
#[derive(Debug, Clone)]
pub struct Page {
    /// The jobs.
    pub jobs: Vec<Job>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Where an `Idempotency-Key` stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// First use: the caller goes ahead and must `complete` or `abort` the key.
    New,
    /// Used before with the same body: the job it created.
    Replay(String),
    /// Used before with another body.
    Mismatch,
    /// The first request with this key is still being accepted.
    InFlight,
}

/// Refusals of the store.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreError {
    /// No such job.
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
}

/// Job storage. Implementations are shared between the HTTP handlers and the worker threads, so
/// every method takes `&self` and must be cheap enough to call at a few thousand per second.
pub trait JobStore: Send + Sync + std::fmt::Debug {
    /// Adds a queued job. Refuses when the queue is full or its tenant has
    /// `max_queued_per_tenant` jobs queued. Returns the job and the ids of finished jobs evicted
    /// to make room (their event logs can go too).
    fn create(&self, job: NewJob) -> Result<(Job, Vec<String>), StoreError>;
    /// Moves the oldest queued job to `running` and hands it out, keeping every group of jobs
    /// to its fair share of `workers` while others wait (see [`fair_share`]).
    fn claim(&self, workers: usize) -> Option<Claimed>;
    /// Records progress of a running job.
    fn progress(&self, id: &str, progress: JobProgress);
    /// Stores the report of a job (visible once the job is terminal).
    fn put_report(&self, id: &str, report: Arc<[u8]>);
    /// Moves a queued or running job to a terminal status; returns the final job, or `None` if
    /// the job is gone or already terminal. Returns evicted ids like `create`.
    fn finish(&self, id: &str, finish: Finish) -> Option<(Job, Vec<String>)>;
    /// Cancels every queued job (shutdown); returns them.
    fn cancel_queued(&self, failure: JobFailure) -> Vec<Job>;
    /// Jobs waiting for a worker.
    fn queued(&self) -> usize;
    /// Jobs being trained.
    fn running(&self) -> usize;
    /// True when the store can serve requests (a durable store would ping its database).
    fn is_reachable(&self) -> bool;

    // What a client asks for names the client's tenant: a job, experiment or key of another
    // tenant is `NotFound` (`None`), exactly like one that does not exist.

    /// Cancels a queued job, records a cancel request for a running one.
    fn cancel(&self, tenant: &Tenant, id: &str, failure: JobFailure) -> Result<CancelOutcome, StoreError>;
    /// The job.
    fn get(&self, tenant: &Tenant, id: &str) -> Option<Job>;
    /// The tenant's jobs, newest first, optionally of one status, `limit` per page.
    fn list(
        &self,
        tenant: &Tenant,
        status: Option<JobStatus>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, StoreError>;
    /// Deletes a finished job and its report.
    fn delete(&self, tenant: &Tenant, id: &str) -> Result<(), StoreError>;
    /// The report of a finished job (serialised JSON).
    fn report(&self, tenant: &Tenant, id: &str) -> Result<Arc<[u8]>, StoreError>;
    /// Starts using an `Idempotency-Key` (of `tenant`) with the fingerprint of a request body.
    fn idempotency_begin(&self, tenant: &Tenant, key: &str, fingerprint: [u8; 32]) -> IdempotencyBegin;
    /// The request with this key created `job_id`.
    fn idempotency_complete(&self, tenant: &Tenant, key: &str, job_id: &str);
    /// The request with this key was refused; the key may be used again.
    fn idempotency_abort(&self, tenant: &Tenant, key: &str);

    /// Adds an experiment and its queued jobs (all of the experiment's tenant), all or nothing
    /// (refused when the queue, or the tenant's share of it, cannot take them all). Returns it
    /// and the ids of evicted finished jobs.
    fn create_experiment(
        &self,
        experiment: NewExperiment,
        jobs: Vec<NewJob>,
    ) -> Result<(ExperimentSnapshot, Vec<String>), StoreError>;
    /// The experiment, with its jobs' live state.
    fn experiment(&self, tenant: &Tenant, id: &str) -> Option<ExperimentSnapshot>;
    /// The tenant's experiments, newest first, `limit` per page.
    fn list_experiments(
        &self,
        tenant: &Tenant,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<ExperimentPage, StoreError>;
    /// What the report of a run of an experiment said; kept with the experiment when the job
    /// ends.
    fn put_run_result(&self, job_id: &str, result: RunResult);
    /// Records a cancel request and cancels the experiment's queued jobs. Returns the
    /// experiment, the jobs it cancelled and the ids of its running jobs (to stop).
    fn cancel_experiment(
        &self,
        tenant: &Tenant,
        id: &str,
        failure: JobFailure,
    ) -> Result<(ExperimentSnapshot, Vec<Job>, Vec<String>), StoreError>;
    /// Stores the summary of an experiment whose runs have all ended; false when it has one
    /// already (the first wins) or is gone.
    fn put_experiment_result(&self, id: &str, result: Arc<ExperimentResult>) -> bool;
    /// Deletes a finished experiment and its jobs; returns the jobs' ids.
    fn delete_experiment(&self, tenant: &Tenant, id: &str) -> Result<Vec<String>, StoreError>;
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

/// Memory bounds of a [`MemoryStore`].
#[derive(Debug, Clone, Copy)]
pub struct MemoryStoreConfig {
    /// Queued jobs at most (the queue's capacity).
    pub capacity: usize,
    /// Finished jobs kept at most (with their reports).
    pub retain: usize,
    /// Finished jobs and idempotency keys are forgotten after this long.
    pub ttl: Duration,
    /// Idempotency keys kept at most.
    pub max_idempotency_keys: usize,
    /// Queued jobs of one tenant at most (`usize::MAX`: only `capacity` bounds them).
    pub max_queued_per_tenant: usize,
}

/// The in-memory [`JobStore`].
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    config: MemoryStoreConfig,
}

#[derive(Debug, Default)]
struct Inner {
    jobs: HashMap<String, Record>,
    /// Creation order -> id; listing walks it backwards.
    by_seq: BTreeMap<u64, String>,
    /// Ids of queued jobs, oldest first.
    queue: VecDeque<String>,
    /// Ids of finished jobs in the order they finished, for eviction.
    finished: VecDeque<(String, Instant)>,
    next_seq: u64,
    queued: usize,
    running: usize,
    /// Keys are per tenant: two tenants may use the same key.
    idempotency: HashMap<(Tenant, String), IdemEntry>,
    idempotency_order: VecDeque<((Tenant, String), Instant)>,
    /// Experiments by id (see `experiments.rs`).
    experiments: HashMap<String, ExperimentRecord>,
    /// Creation order -> experiment id.
    experiments_by_seq: BTreeMap<u64, String>,
    next_experiment_seq: u64,
}

#[derive(Debug)]
struct Record {
    seq: u64,
    id: String,
    tenant: Tenant,
    name: Option<String>,
    /// Dropped once the job finishes.
    spec: Option<Arc<Spec>>,
    probe_every: u64,
    status: JobStatus,
    created_at: SystemTime,
    started_at: Option<SystemTime>,
    finished_at: Option<SystemTime>,
    progress: JobProgress,
    error: Option<JobFailure>,
    cancel_requested: bool,
    report: Option<Arc<[u8]>>,
    /// The experiment it is a run of.
    experiment: Option<String>,
    /// What its report said, for its experiment (moved there when the job ends).
    run_result: Option<RunResult>,
}

#[derive(Debug)]
struct IdemEntry {
    fingerprint: [u8; 32],
    job: Option<String>,
}

impl Record {
    fn job(&self) -> Job {
        Job {
            id: self.id.clone(),
            status: self.status,
            name: self.name.clone(),
            created_at: rfc3339(self.created_at),
            started_at: self.started_at.map(rfc3339),
            finished_at: self.finished_at.map(rfc3339),
            progress: self.progress,
            error: self.error.clone(),
            cancel_requested: self.cancel_requested && !self.status.is_terminal(),
            experiment_id: self.experiment.clone(),
        }
    }
}

/// Cursors are `c` + the hex creation number of the last job of the previous page. Clients are
/// told they are opaque; the prefix lets a later format tell itself apart.
fn encode_cursor(seq: u64) -> String {
    format!("c{seq:x}")
}

fn decode_cursor(cursor: &str) -> Option<u64> {
    let hex = cursor.strip_prefix('c')?;
    if hex.is_empty() || hex.len() > 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

impl MemoryStore {
    /// An empty store.
    pub fn new(config: MemoryStoreConfig) -> Self {
        MemoryStore { inner: Mutex::new(Inner::default()), config }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update below leaves the maps consistent before it can panic (they only panic on
        // allocation failure), so a poisoned lock is still safe to use.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    /// The job `id` if `tenant` owns it.
    fn owned(&self, tenant: &Tenant, id: &str) -> Option<&Record> {
        self.jobs.get(id).filter(|r| &r.tenant == tenant)
    }

    /// Jobs of `tenant` waiting in the queue.
    fn queued_of(&self, tenant: &Tenant) -> usize {
        self.queue.iter().filter(|id| self.jobs.get(*id).is_some_and(|r| &r.tenant == tenant)).count()
    }

    /// Refuses `adding` more queued jobs of `tenant` when the queue or the tenant's share of it
    /// cannot take them.
    fn check_room(&self, config: &MemoryStoreConfig, tenant: &Tenant, adding: usize) -> Result<(), StoreError> {
        if self.queued + adding > config.capacity {
            return Err(StoreError::QueueFull { capacity: config.capacity });
        }
        if config.max_queued_per_tenant != usize::MAX {
            let queued = self.queued_of(tenant);
            if queued + adding > config.max_queued_per_tenant {
                return Err(StoreError::TenantQueueFull { queued, limit: config.max_queued_per_tenant });
            }
        }
        Ok(())
    }

    /// Adds a queued job (the caller checked the capacity).
    fn insert(&mut self, job: NewJob) -> Job {
        let seq = self.next_seq;
        self.next_seq += 1;
        let record = Record {
            seq,
            id: job.id.clone(),
            tenant: job.tenant,
            name: job.name,
            spec: Some(job.spec),
            probe_every: job.probe_every.max(1),
            status: JobStatus::Queued,
            created_at: SystemTime::now(),
            started_at: None,
            finished_at: None,
            progress: JobProgress { step: 0, total_steps: job.total_steps, loss: None },
            error: None,
            cancel_requested: false,
            report: None,
            experiment: job.experiment,
            run_result: None,
        };
        let snapshot = record.job();
        self.by_seq.insert(seq, job.id.clone());
        self.queue.push_back(job.id.clone());
        self.jobs.insert(job.id, record);
        self.queued += 1;
        snapshot
    }

    /// Forgets finished jobs over the count or age bound; returns their ids.
    fn evict(&mut self, config: &MemoryStoreConfig) -> Vec<String> {
        let mut evicted = Vec::new();
        let now = Instant::now();
        while let Some((id, at)) = self.finished.front() {
            let too_many = self.finished.len() > config.retain;
            let too_old = now.duration_since(*at) > config.ttl;
            if !(too_many || too_old) {
                break;
            }
            let id = id.clone();
            self.finished.pop_front();
            // A deleted job may still be in `finished`; removing it again is harmless.
            if let Some(r) = self.jobs.remove(&id) {
                self.by_seq.remove(&r.seq);
                evicted.push(id);
            }
        }
        while let Some((key, at)) = self.idempotency_order.front() {
            let too_many = self.idempotency_order.len() > config.max_idempotency_keys;
            if !(too_many || now.duration_since(*at) > config.ttl) {
                break;
            }
            let key = key.clone();
            self.idempotency_order.pop_front();
            self.idempotency.remove(&key);
        }
        self.evict_experiments(config.retain, config.ttl);
        evicted
    }

    fn set_terminal(&mut self, id: &str, finish: Finish) -> Option<Job> {
        let r = self.jobs.get_mut(id)?;
        match r.status {
            JobStatus::Queued => self.queued -= 1,
            JobStatus::Running => self.running -= 1,
            _ => return None,
        }
        r.status = finish.status;
        r.error = finish.error;
        r.finished_at = Some(SystemTime::now());
        r.spec = None;
        let job = r.job();
        let run_result = r.run_result.take();
        if let Some(exp) = r.experiment.clone() {
            self.run_ended(&exp, &job, run_result);
        }
        self.finished.push_back((id.to_owned(), Instant::now()));
        Some(job)
    }
}

impl JobStore for MemoryStore {
    fn create(&self, job: NewJob) -> Result<(Job, Vec<String>), StoreError> {
        let mut inner = self.lock();
        inner.check_room(&self.config, &job.tenant, 1)?;
        let evicted = inner.evict(&self.config);
        Ok((inner.insert(job), evicted))
    }

    fn claim(&self, workers: usize) -> Option<Claimed> {
        let mut inner = self.lock();
        // Cancelled jobs leave the queue when cancelled; drop any stale id all the same.
        let Inner { queue, jobs, .. } = &mut *inner;
        queue.retain(|id| jobs.get(id).is_some_and(|r| r.status == JobStatus::Queued && r.spec.is_some()));
        // Active groups (queued or running jobs) and how many jobs each runs.
        let mut running: HashMap<Option<&str>, usize> = HashMap::new();
        for id in queue.iter() {
            if let Some(r) = jobs.get(id) {
                running.entry(r.experiment.as_deref()).or_insert(0);
            }
        }
        for r in jobs.values().filter(|r| r.status == JobStatus::Running) {
            *running.entry(r.experiment.as_deref()).or_insert(0) += 1;
        }
        let share = fair_share(workers, running.len());
        let pick = queue
            .iter()
            .position(|id| {
                jobs.get(id).is_some_and(|r| running.get(&r.experiment.as_deref()).copied().unwrap_or(0) < share)
            })
            .unwrap_or(0);
        drop(running);
        let id = queue.remove(pick)?;
        let r = jobs.get_mut(&id)?;
        let spec = r.spec.clone()?;
        r.status = JobStatus::Running;
        r.started_at = Some(SystemTime::now());
        let claimed = Claimed {
            id: id.clone(),
            tenant: r.tenant.clone(),
            spec,
            probe_every: r.probe_every,
            total_steps: r.progress.total_steps,
            experiment: r.experiment.clone(),
        };
        inner.queued -= 1;
        inner.running += 1;
        Some(claimed)
    }

    fn progress(&self, id: &str, progress: JobProgress) {
        if let Some(r) = self.lock().jobs.get_mut(id) {
            if r.status == JobStatus::Running {
                r.progress = progress;
            }
        }
    }

    fn put_report(&self, id: &str, report: Arc<[u8]>) {
        if let Some(r) = self.lock().jobs.get_mut(id) {
            r.report = Some(report);
        }
    }

    fn finish(&self, id: &str, finish: Finish) -> Option<(Job, Vec<String>)> {
        let mut inner = self.lock();
        let job = inner.set_terminal(id, finish)?;
        let evicted = inner.evict(&self.config);
        Some((job, evicted))
    }

    fn cancel(&self, tenant: &Tenant, id: &str, failure: JobFailure) -> Result<CancelOutcome, StoreError> {
        let mut inner = self.lock();
        let r = inner.jobs.get_mut(id).filter(|r| &r.tenant == tenant).ok_or(StoreError::NotFound)?;
        match r.status {
            JobStatus::Queued => {
                // Drop it from the queue now rather than when a worker next claims: with every
                // worker busy, cancelled ids would otherwise pile up there.
                inner.queue.retain(|q| q != id);
                let job = inner.set_terminal(id, Finish { status: JobStatus::Cancelled, error: Some(failure) });
                job.map(CancelOutcome::Cancelled).ok_or(StoreError::NotFound)
            }
            JobStatus::Running => {
                r.cancel_requested = true;
                Ok(CancelOutcome::Requested(r.job()))
            }
            _ => Ok(CancelOutcome::AlreadyFinished(r.job())),
        }
    }

    fn cancel_queued(&self, failure: JobFailure) -> Vec<Job> {
        let mut inner = self.lock();
        let ids: Vec<String> = inner.queue.drain(..).collect();
        ids.iter()
            .filter_map(|id| {
                inner.set_terminal(id, Finish { status: JobStatus::Cancelled, error: Some(failure.clone()) })
            })
            .collect()
    }

    fn get(&self, tenant: &Tenant, id: &str) -> Option<Job> {
        self.lock().owned(tenant, id).map(Record::job)
    }

    fn list(
        &self,
        tenant: &Tenant,
        status: Option<JobStatus>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, StoreError> {
        let before = match cursor {
            Some(c) => decode_cursor(c).ok_or(StoreError::InvalidCursor)?,
            None => u64::MAX,
        };
        let inner = self.lock();
        let mut jobs = Vec::with_capacity(limit.min(1000));
        let mut next_cursor = None;
        for (seq, id) in inner.by_seq.range(..before).rev() {
            let Some(r) = inner.owned(tenant, id) else { continue };
            if status.is_some_and(|s| s != r.status) {
                continue;
            }
            if jobs.len() == limit {
                // One more matching job exists: the next page starts with it.
                next_cursor = Some(encode_cursor(seq + 1));
                break;
            }
            jobs.push(r.job());
        }
        Ok(Page { jobs, next_cursor })
    }

    fn delete(&self, tenant: &Tenant, id: &str) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let r = inner.owned(tenant, id).ok_or(StoreError::NotFound)?;
        if !r.status.is_terminal() {
            return Err(StoreError::NotFinished(r.status));
        }
        let seq = r.seq;
        inner.jobs.remove(id);
        inner.by_seq.remove(&seq);
        Ok(())
    }

    fn report(&self, tenant: &Tenant, id: &str) -> Result<Arc<[u8]>, StoreError> {
        let inner = self.lock();
        let r = inner.owned(tenant, id).ok_or(StoreError::NotFound)?;
        if !r.status.is_terminal() {
            return Err(StoreError::ReportNotReady(r.status));
        }
        r.report.clone().ok_or_else(|| StoreError::NoReport(r.status, r.error.as_ref().map(|e| e.message.clone())))
    }

    fn queued(&self) -> usize {
        self.lock().queued
    }

    fn running(&self) -> usize {
        self.lock().running
    }

    fn is_reachable(&self) -> bool {
        // Taking the lock proves no thread holds it forever.
        drop(self.lock());
        true
    }

    fn idempotency_begin(&self, tenant: &Tenant, key: &str, fingerprint: [u8; 32]) -> IdempotencyBegin {
        let mut inner = self.lock();
        inner.evict(&self.config);
        let key = (tenant.clone(), key.to_owned());
        if let Some(e) = inner.idempotency.get(&key) {
            return match (&e.job, e.fingerprint == fingerprint) {
                (_, false) => IdempotencyBegin::Mismatch,
                (None, true) => IdempotencyBegin::InFlight,
                (Some(id), true) => match inner.jobs.contains_key(id) {
                    true => IdempotencyBegin::Replay(id.clone()),
                    // The job was deleted or evicted: the key starts afresh.
                    false => {
                        inner.idempotency.insert(key, IdemEntry { fingerprint, job: None });
                        IdempotencyBegin::New
                    }
                },
            };
        }
        inner.idempotency.insert(key.clone(), IdemEntry { fingerprint, job: None });
        inner.idempotency_order.push_back((key, Instant::now()));
        IdempotencyBegin::New
    }

    fn idempotency_complete(&self, tenant: &Tenant, key: &str, job_id: &str) {
        if let Some(e) = self.lock().idempotency.get_mut(&(tenant.clone(), key.to_owned())) {
            e.job = Some(job_id.to_owned());
        }
    }

    fn idempotency_abort(&self, tenant: &Tenant, key: &str) {
        self.lock().idempotency.remove(&(tenant.clone(), key.to_owned()));
    }

    fn create_experiment(
        &self,
        experiment: NewExperiment,
        jobs: Vec<NewJob>,
    ) -> Result<(ExperimentSnapshot, Vec<String>), StoreError> {
        let mut inner = self.lock();
        inner.check_room(&self.config, &experiment.tenant, jobs.len())?;
        let evicted = inner.evict(&self.config);
        Ok((inner.insert_experiment(experiment, jobs), evicted))
    }

    fn experiment(&self, tenant: &Tenant, id: &str) -> Option<ExperimentSnapshot> {
        let inner = self.lock();
        inner.experiments.get(id).filter(|r| &r.new.tenant == tenant).map(|r| inner.snapshot(r))
    }

    fn list_experiments(
        &self,
        tenant: &Tenant,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<ExperimentPage, StoreError> {
        let before = match cursor {
            Some(c) => decode_cursor(c).ok_or(StoreError::InvalidCursor)?,
            None => u64::MAX,
        };
        let inner = self.lock();
        let mut experiments = Vec::with_capacity(limit.min(1000));
        let mut next_cursor = None;
        for (seq, id) in inner.experiments_by_seq.range(..before).rev() {
            let Some(r) = inner.experiments.get(id).filter(|r| &r.new.tenant == tenant) else { continue };
            if experiments.len() == limit {
                next_cursor = Some(encode_cursor(seq + 1));
                break;
            }
            experiments.push(inner.snapshot(r));
        }
        Ok(ExperimentPage { experiments, next_cursor })
    }

    fn put_run_result(&self, job_id: &str, result: RunResult) {
        if let Some(r) = self.lock().jobs.get_mut(job_id) {
            r.run_result = Some(result);
        }
    }

    fn cancel_experiment(
        &self,
        tenant: &Tenant,
        id: &str,
        failure: JobFailure,
    ) -> Result<(ExperimentSnapshot, Vec<Job>, Vec<String>), StoreError> {
        let mut inner = self.lock();
        let record = inner.experiments.get_mut(id).filter(|r| &r.new.tenant == tenant).ok_or(StoreError::NotFound)?;
        if record.all_ended() {
            let snap = inner.snapshot(&inner.experiments[id]);
            return Ok((snap, Vec::new(), Vec::new()));
        }
        record.cancel_requested = true;
        let ids: Vec<String> = record.job_ids().cloned().collect();
        let mut cancelled = Vec::new();
        let mut running = Vec::new();
        for job_id in &ids {
            let Some(r) = inner.jobs.get_mut(job_id) else { continue };
            match r.status {
                JobStatus::Queued => {
                    inner.queue.retain(|q| q != job_id);
                    let finish = Finish { status: JobStatus::Cancelled, error: Some(failure.clone()) };
                    cancelled.extend(inner.set_terminal(job_id, finish));
                }
                JobStatus::Running => {
                    r.cancel_requested = true;
                    running.push(job_id.clone());
                }
                _ => {}
            }
        }
        let snap = inner.snapshot(&inner.experiments[id]);
        Ok((snap, cancelled, running))
    }

    fn put_experiment_result(&self, id: &str, result: Arc<ExperimentResult>) -> bool {
        let mut inner = self.lock();
        match inner.experiments.get_mut(id) {
            Some(r) if r.result.is_none() && r.all_ended() => {
                r.result = Some(result);
                true
            }
            _ => false,
        }
    }

    fn delete_experiment(&self, tenant: &Tenant, id: &str) -> Result<Vec<String>, StoreError> {
        let mut inner = self.lock();
        let record = inner.experiments.get(id).filter(|r| &r.new.tenant == tenant).ok_or(StoreError::NotFound)?;
        if !record.all_ended() {
            let snap = inner.snapshot(record);
            return Err(StoreError::NotFinished(snap.status()));
        }
        let ids: Vec<String> = record.job_ids().cloned().collect();
        let seq = record.seq;
        inner.experiments.remove(id);
        inner.experiments_by_seq.remove(&seq);
        for job_id in &ids {
            if let Some(r) = inner.jobs.remove(job_id) {
                inner.by_seq.remove(&r.seq);
            }
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(capacity: usize, retain: usize) -> MemoryStore {
        MemoryStore::new(MemoryStoreConfig {
            capacity,
            retain,
            ttl: Duration::from_secs(3600),
            max_idempotency_keys: 100,
            max_queued_per_tenant: usize::MAX,
        })
    }

    fn spec() -> Arc<Spec> {
        let v = serde_json::json!({"model": {"input_dim": 2, "layers": [{"type": "dense", "units": 2}]},
                                   "data": {"type": "xor"}});
        Arc::new(crate::spec::parse(&v).unwrap())
    }

    fn new_job(id: &str) -> NewJob {
        NewJob {
            id: id.into(),
            tenant: Tenant::open(),
            name: None,
            spec: spec(),
            total_steps: 10,
            probe_every: 1,
            experiment: None,
        }
    }

    fn open() -> Tenant {
        Tenant::open()
    }

    fn done(s: &MemoryStore, id: &str) {
        s.finish(id, Finish { status: JobStatus::Succeeded, error: None }).unwrap();
    }

    #[test]
    fn claim_takes_the_oldest_queued_job_and_skips_cancelled_ones() {
        let s = store(10, 10);
        for id in ["a", "b", "c"] {
            s.create(new_job(id)).unwrap();
        }
        let f = JobFailure { code: super::super::FailureCode::Cancelled, message: "x".into() };
        assert!(matches!(s.cancel(&open(), "a", f), Ok(CancelOutcome::Cancelled(_))));
        assert_eq!(s.claim(1).unwrap().id, "b");
        assert_eq!((s.queued(), s.running()), (1, 1));
    }

    fn run_of(experiment: &str, id: &str) -> NewJob {
        NewJob { experiment: Some(experiment.into()), ..new_job(id) }
    }

    #[test]
    fn fair_share_divides_the_workers_rounding_up() {
        assert_eq!(fair_share(2, 1), 2);
        assert_eq!(fair_share(2, 2), 1);
        assert_eq!(fair_share(2, 3), 1);
        assert_eq!(fair_share(3, 2), 2);
        assert_eq!(fair_share(0, 0), 1);
    }

    #[test]
    fn an_experiment_alone_takes_every_worker_but_a_waiting_single_job_gets_the_next_one() {
        let s = store(10, 10);
        for id in ["e1", "e2", "e3", "e4"] {
            s.create(run_of("E", id)).unwrap();
        }
        assert_eq!(s.claim(2).unwrap().id, "e1");
        assert_eq!(s.claim(2).unwrap().id, "e2", "nothing else waits: no worker idles");
        s.create(new_job("single")).unwrap();
        done(&s, "e1");
        assert_eq!(s.claim(2).unwrap().id, "single", "the experiment is at its share (1 of 2)");
        done(&s, "e2");
        assert_eq!(s.claim(2).unwrap().id, "e3");
    }

    #[test]
    fn two_experiments_share_the_workers_whatever_order_they_came_in() {
        let s = store(10, 10);
        for id in ["a1", "a2", "a3"] {
            s.create(run_of("A", id)).unwrap();
        }
        for id in ["b1", "b2", "b3"] {
            s.create(run_of("B", id)).unwrap();
        }
        assert_eq!(s.claim(2).unwrap().id, "a1");
        assert_eq!(s.claim(2).unwrap().id, "b1", "A holds its share of 1");
        done(&s, "a1");
        assert_eq!(s.claim(2).unwrap().id, "a2");
        // With four workers each group's share is 2: A (one running) may take another.
        assert_eq!(s.claim(4).unwrap().id, "a3");
    }

    #[test]
    fn create_refuses_when_the_queue_is_full() {
        let s = store(2, 10);
        s.create(new_job("a")).unwrap();
        s.create(new_job("b")).unwrap();
        assert_eq!(s.create(new_job("c")).unwrap_err(), StoreError::QueueFull { capacity: 2 });
        s.claim(1).unwrap();
        s.create(new_job("c")).unwrap();
    }

    #[test]
    fn finished_jobs_beyond_the_retention_count_are_evicted_oldest_first() {
        let s = store(10, 2);
        for id in ["a", "b", "c"] {
            s.create(new_job(id)).unwrap();
            s.claim(1).unwrap();
            done(&s, id);
        }
        assert!(s.get(&open(), "a").is_none());
        assert!(s.get(&open(), "b").is_some() && s.get(&open(), "c").is_some());
    }

    #[test]
    fn list_pages_newest_first_and_the_last_page_has_no_cursor() {
        let s = store(10, 10);
        for id in ["a", "b", "c", "d", "e"] {
            s.create(new_job(id)).unwrap();
        }
        let p1 = s.list(&open(), None, 2, None).unwrap();
        let ids = |p: &Page| p.jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&p1), ["e", "d"]);
        let p2 = s.list(&open(), None, 2, p1.next_cursor.as_deref()).unwrap();
        assert_eq!(ids(&p2), ["c", "b"]);
        let p3 = s.list(&open(), None, 2, p2.next_cursor.as_deref()).unwrap();
        assert_eq!(ids(&p3), ["a"]);
        assert!(p3.next_cursor.is_none());
        assert_eq!(s.list(&open(), None, 2, Some("zz")).unwrap_err(), StoreError::InvalidCursor);
    }

    #[test]
    fn idempotency_keys_replay_mismatch_and_in_flight() {
        let s = store(10, 10);
        assert_eq!(s.idempotency_begin(&open(), "k", [1; 32]), IdempotencyBegin::New);
        assert_eq!(s.idempotency_begin(&open(), "k", [1; 32]), IdempotencyBegin::InFlight);
        assert_eq!(s.idempotency_begin(&open(), "k", [2; 32]), IdempotencyBegin::Mismatch);
        s.create(new_job("j")).unwrap();
        s.idempotency_complete(&open(), "k", "j");
        assert_eq!(s.idempotency_begin(&open(), "k", [1; 32]), IdempotencyBegin::Replay("j".into()));
        s.idempotency_abort(&open(), "k");
        assert_eq!(s.idempotency_begin(&open(), "k", [2; 32]), IdempotencyBegin::New);
    }

    #[test]
    fn delete_refuses_unfinished_jobs_and_report_waits_for_a_terminal_status() {
        let s = store(10, 10);
        s.create(new_job("a")).unwrap();
        assert_eq!(s.delete(&open(), "a").unwrap_err(), StoreError::NotFinished(JobStatus::Queued));
        s.claim(1).unwrap();
        s.put_report("a", Arc::from(&b"{}"[..]));
        assert_eq!(s.report(&open(), "a").unwrap_err(), StoreError::ReportNotReady(JobStatus::Running));
        done(&s, "a");
        assert_eq!(&*s.report(&open(), "a").unwrap(), b"{}");
        s.delete(&open(), "a").unwrap();
        assert!(s.get(&open(), "a").is_none());
        assert_eq!(s.delete(&open(), "a").unwrap_err(), StoreError::NotFound);
    }

    fn job_of(tenant: &str, id: &str) -> NewJob {
        NewJob { tenant: Tenant::new(tenant), ..new_job(id) }
    }

    #[test]
    fn a_tenant_sees_cancels_deletes_and_lists_only_its_own_jobs() {
        let s = store(10, 10);
        let (a, b) = (Tenant::new("a"), Tenant::new("b"));
        s.create(job_of("a", "ja")).unwrap();
        s.create(job_of("b", "jb")).unwrap();
        assert!(s.get(&a, "ja").is_some());
        assert!(s.get(&b, "ja").is_none(), "another tenant's job is not found");
        let ids = |p: Page| p.jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
        assert_eq!(ids(s.list(&a, None, 10, None).unwrap()), ["ja"]);
        assert_eq!(ids(s.list(&b, None, 10, None).unwrap()), ["jb"]);
        let f = JobFailure { code: super::super::FailureCode::Cancelled, message: "x".into() };
        assert_eq!(s.cancel(&b, "ja", f.clone()).unwrap_err(), StoreError::NotFound);
        assert_eq!(s.get(&a, "ja").unwrap().status, JobStatus::Queued, "the refused cancel changed nothing");
        s.cancel(&a, "ja", f).unwrap();
        assert_eq!(s.delete(&b, "ja").unwrap_err(), StoreError::NotFound);
        assert_eq!(s.report(&b, "ja").unwrap_err(), StoreError::NotFound);
        s.delete(&a, "ja").unwrap();
    }

    #[test]
    fn idempotency_keys_are_per_tenant() {
        let s = store(10, 10);
        let (a, b) = (Tenant::new("a"), Tenant::new("b"));
        assert_eq!(s.idempotency_begin(&a, "k", [1; 32]), IdempotencyBegin::New);
        assert_eq!(s.idempotency_begin(&b, "k", [2; 32]), IdempotencyBegin::New, "b's key is its own");
        s.create(job_of("a", "ja")).unwrap();
        s.idempotency_complete(&a, "k", "ja");
        assert_eq!(s.idempotency_begin(&a, "k", [1; 32]), IdempotencyBegin::Replay("ja".into()));
        assert_eq!(s.idempotency_begin(&b, "k", [2; 32]), IdempotencyBegin::InFlight);
    }

    #[test]
    fn a_tenant_over_its_queued_jobs_is_refused_while_others_are_not() {
        let s = MemoryStore::new(MemoryStoreConfig { max_queued_per_tenant: 2, ..store(10, 10).config });
        s.create(job_of("a", "a1")).unwrap();
        s.create(job_of("a", "a2")).unwrap();
        assert_eq!(s.create(job_of("a", "a3")).unwrap_err(), StoreError::TenantQueueFull { queued: 2, limit: 2 });
        s.create(job_of("b", "b1")).unwrap();
        s.claim(1).unwrap();
        s.create(job_of("a", "a3")).unwrap();
    }
}
