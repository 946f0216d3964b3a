//! [`MemoryStore`]: the [`JobStore`] in memory, for tests and the CLI's in-process runs.
//!
//! Everything sits behind one mutex (each call holds it for microseconds), with the same
//! semantics as the durable stores — attempts, leases (on this process's monotonic clock),
//! fencing, rescue, gap-free events — so that one conformance suite checks all three. Memory is
//! bounded: at most `capacity` queued jobs, at most `retain` finished jobs (the oldest finished
//! are evicted first, as are those finished more than `ttl` ago), at most
//! `max_events_per_job` events per job (the oldest progress events go first; the final status
//! event is never dropped) and a bounded table of idempotency keys. Queued and running jobs are
//! never evicted. Nothing survives the process.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;

mod experiments;

use super::{
    decode_cursor, encode_cursor, pick_fair, rescue_finish, CancelOutcome, Claimed, Completion, Created, Expired,
    Fence, Finish, IdempotencyKey, JobEvent, JobStore, LeaseState, NewJob, Owner, Page, RescueScope, Rescued, SeqEvent,
    StoreError, StoreStats,
};
use crate::analysis::experiment::{ExperimentResult, RunResult};
use crate::jobs::experiments::model::{ExperimentPage, ExperimentRecord, ExperimentSnapshot, NewExperiment};
use crate::jobs::{rfc3339, Job, JobFailure, JobProgress, JobStatus, Tenant};
use crate::spec::Spec;

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
    /// Events kept per job (at least 2).
    pub max_events_per_job: usize,
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
    queue: VecDeque<(u64, String)>,
    /// Ids of finished jobs in the order they finished, for eviction.
    finished: VecDeque<(String, Instant)>,
    next_seq: u64,
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
    attempt: u32,
    lease: Option<(Owner, Instant)>,
    /// The kept events (the newest `max_events_per_job`).
    events: VecDeque<SeqEvent>,
    last_seq: u64,
}

#[derive(Debug)]
struct IdemEntry {
    fingerprint: [u8; 32],
    job: String,
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

    fn fenced(&self, fence: &Fence) -> bool {
        self.status == JobStatus::Running && self.attempt == fence.attempt
    }

    fn push_event(&mut self, event: JobEvent, keep: usize) {
        self.last_seq += 1;
        if self.events.len() >= keep.max(2) {
            self.events.pop_front();
        }
        self.events.push_back(SeqEvent { seq: self.last_seq, event });
    }
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
        self.queue.iter().filter(|(_, id)| self.jobs.get(id).is_some_and(|r| &r.tenant == tenant)).count()
    }

    fn running(&self) -> usize {
        self.jobs.values().filter(|r| r.status == JobStatus::Running).count()
    }

    /// Refuses `adding` more queued jobs of `tenant` when the queue or the tenant's share of it
    /// cannot take them.
    fn check_room(&self, config: &MemoryStoreConfig, tenant: &Tenant, adding: usize) -> Result<(), StoreError> {
        let of_tenant = if config.max_queued_per_tenant == usize::MAX { 0 } else { self.queued_of(tenant) };
        super::admit(config.capacity, config.max_queued_per_tenant, self.queue.len(), of_tenant, adding)
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
            attempt: 0,
            lease: None,
            events: VecDeque::new(),
            last_seq: 0,
        };
        let snapshot = record.job();
        self.by_seq.insert(seq, job.id.clone());
        self.queue.push_back((seq, job.id.clone()));
        self.jobs.insert(job.id, record);
        snapshot
    }

    /// Puts `id` back in the queue at its creation position.
    fn requeue(&mut self, seq: u64, id: &str) {
        let at = self.queue.partition_point(|(s, _)| *s < seq);
        self.queue.insert(at, (seq, id.to_owned()));
    }

    /// Forgets finished jobs over the count or age bound.
    fn evict(&mut self, config: &MemoryStoreConfig, ttl: Duration) -> u64 {
        let mut evicted = 0;
        let now = Instant::now();
        while let Some((id, at)) = self.finished.front() {
            let too_many = self.finished.len() > config.retain;
            let too_old = now.duration_since(*at) > ttl;
            if !(too_many || too_old) {
                break;
            }
            let id = id.clone();
            self.finished.pop_front();
            // A deleted job may still be in `finished`; removing it again is harmless.
            if let Some(r) = self.jobs.remove(&id) {
                self.by_seq.remove(&r.seq);
                evicted += 1;
            }
        }
        while let Some((key, at)) = self.idempotency_order.front() {
            let too_many = self.idempotency_order.len() > config.max_idempotency_keys;
            if !(too_many || now.duration_since(*at) > ttl) {
                break;
            }
            let key = key.clone();
            self.idempotency_order.pop_front();
            self.idempotency.remove(&key);
        }
        self.evict_experiments(config.retain, ttl);
        evicted
    }

    /// Moves a queued or running job to `finish`'s status with its final event.
    fn set_terminal(
        &mut self,
        id: &str,
        finish: Finish,
        run_result: Option<RunResult>,
        keep_events: usize,
    ) -> Option<Job> {
        let r = self.jobs.get_mut(id)?;
        if r.status.is_terminal() {
            return None;
        }
        if r.status == JobStatus::Queued {
            self.queue.retain(|(_, q)| q != id);
        }
        let r = self.jobs.get_mut(id)?;
        r.status = finish.status;
        r.error = finish.error;
        r.finished_at = Some(SystemTime::now());
        r.spec = None;
        r.lease = None;
        let job = r.job();
        r.push_event(JobEvent::Status(Box::new(job.clone())), keep_events);
        if let Some(exp) = r.experiment.clone() {
            self.run_ended(&exp, &job, run_result);
        }
        self.finished.push_back((id.to_owned(), Instant::now()));
        Some(job)
    }

    fn replay(&self, tenant: &Tenant, key: &IdempotencyKey) -> Option<Created> {
        let e = self.idempotency.get(&(tenant.clone(), key.key.clone()))?;
        let job = self.owned(tenant, &e.job)?;
        Some(if e.fingerprint == key.fingerprint { Created::Replay(job.job()) } else { Created::Mismatch })
    }
}

#[async_trait]
impl JobStore for MemoryStore {
    async fn create(&self, job: NewJob, key: Option<IdempotencyKey>) -> Result<Created, StoreError> {
        let mut inner = self.lock();
        inner.evict(&self.config, self.config.ttl);
        if let Some(k) = &key {
            if let Some(answer) = inner.replay(&job.tenant, k) {
                return Ok(answer);
            }
        }
        inner.check_room(&self.config, &job.tenant, 1)?;
        let tenant = job.tenant.clone();
        let created = inner.insert(job);
        if let Some(k) = key {
            let entry = (tenant, k.key);
            inner.idempotency.insert(entry.clone(), IdemEntry { fingerprint: k.fingerprint, job: created.id.clone() });
            inner.idempotency_order.push_back((entry, Instant::now()));
        }
        Ok(Created::New(created))
    }

    async fn lookup_key(&self, tenant: &Tenant, key: &IdempotencyKey) -> Result<Option<Created>, StoreError> {
        Ok(self.lock().replay(tenant, key))
    }

    async fn get(&self, tenant: &Tenant, id: &str) -> Result<Option<Job>, StoreError> {
        Ok(self.lock().owned(tenant, id).map(Record::job))
    }

    async fn list(
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

    async fn cancel(&self, tenant: &Tenant, id: &str, failure: JobFailure) -> Result<CancelOutcome, StoreError> {
        let mut inner = self.lock();
        let r = inner.jobs.get_mut(id).filter(|r| &r.tenant == tenant).ok_or(StoreError::NotFound)?;
        match r.status {
            JobStatus::Queued => {
                let finish = Finish { status: JobStatus::Cancelled, error: Some(failure) };
                let job = inner.set_terminal(id, finish, None, self.config.max_events_per_job);
                job.map(CancelOutcome::Cancelled).ok_or(StoreError::NotFound)
            }
            JobStatus::Running => {
                r.cancel_requested = true;
                Ok(CancelOutcome::Requested(r.job()))
            }
            _ => Ok(CancelOutcome::AlreadyFinished(r.job())),
        }
    }

    async fn delete(&self, tenant: &Tenant, id: &str) -> Result<(), StoreError> {
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

    async fn report(&self, tenant: &Tenant, id: &str) -> Result<Arc<[u8]>, StoreError> {
        let inner = self.lock();
        let r = inner.owned(tenant, id).ok_or(StoreError::NotFound)?;
        if !r.status.is_terminal() {
            return Err(StoreError::ReportNotReady(r.status));
        }
        r.report.clone().ok_or_else(|| StoreError::NoReport(r.status, r.error.as_ref().map(|e| e.message.clone())))
    }

    async fn events_after(
        &self,
        tenant: &Tenant,
        id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SeqEvent>, StoreError> {
        let inner = self.lock();
        let r = inner.owned(tenant, id).ok_or(StoreError::NotFound)?;
        Ok(r.events.iter().filter(|e| e.seq > after).take(limit).cloned().collect())
    }

    async fn claim(&self, owner: &Owner, workers: usize, ttl: Duration) -> Result<Option<Claimed>, StoreError> {
        let mut inner = self.lock();
        let Inner { queue, jobs, .. } = &mut *inner;
        if queue.is_empty() {
            return Ok(None);
        }
        // Active groups (queued or running jobs) and how many jobs each runs.
        let mut running: HashMap<Option<&str>, usize> = HashMap::new();
        let groups: Vec<Option<&str>> =
            queue.iter().map(|(_, id)| jobs.get(id).and_then(|r| r.experiment.as_deref())).collect();
        for g in &groups {
            running.entry(*g).or_insert(0);
        }
        for r in jobs.values().filter(|r| r.status == JobStatus::Running) {
            *running.entry(r.experiment.as_deref()).or_insert(0) += 1;
        }
        let pick = pick_fair(workers, &groups, &running);
        drop(running);
        let Some((_, id)) = queue.remove(pick) else { return Ok(None) };
        let Some(r) = jobs.get_mut(&id) else { return Ok(None) };
        let Some(spec) = r.spec.clone() else { return Ok(None) };
        r.status = JobStatus::Running;
        r.started_at = Some(SystemTime::now());
        r.attempt += 1;
        r.lease = Some((owner.clone(), Instant::now() + ttl));
        Ok(Some(Claimed {
            id: id.clone(),
            tenant: r.tenant.clone(),
            spec,
            probe_every: r.probe_every,
            total_steps: r.progress.total_steps,
            experiment: r.experiment.clone(),
            attempt: r.attempt,
        }))
    }

    async fn progress(&self, fence: &Fence, progress: &[JobProgress]) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(r) = inner.jobs.get_mut(&fence.id).filter(|r| r.fenced(fence)) else { return Ok(false) };
        for p in progress {
            r.progress = *p;
            r.push_event(JobEvent::Progress(*p), self.config.max_events_per_job);
        }
        Ok(true)
    }

    async fn complete(&self, fence: &Fence, completion: Completion) -> Result<Option<Job>, StoreError> {
        let mut inner = self.lock();
        let Some(r) = inner.jobs.get_mut(&fence.id).filter(|r| r.fenced(fence)) else { return Ok(None) };
        r.report = completion.report;
        let job =
            inner.set_terminal(&fence.id, completion.finish, completion.run_result, self.config.max_events_per_job);
        inner.evict(&self.config, self.config.ttl);
        Ok(job)
    }

    async fn release(&self, fence: &Fence) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(r) = inner.jobs.get_mut(&fence.id).filter(|r| r.fenced(fence)) else { return Ok(false) };
        r.status = JobStatus::Queued;
        r.attempt -= 1;
        r.lease = None;
        r.started_at = None;
        let seq = r.seq;
        inner.requeue(seq, &fence.id);
        Ok(true)
    }

    async fn renew(&self, owner: &Owner, held: &[String], ttl: Duration) -> Result<Vec<LeaseState>, StoreError> {
        let mut inner = self.lock();
        let until = Instant::now() + ttl;
        let mut kept = Vec::new();
        for r in inner.jobs.values_mut().filter(|r| r.status == JobStatus::Running && held.contains(&r.id)) {
            if let Some((o, expires)) = &mut r.lease {
                if o == owner {
                    *expires = until;
                    kept.push(LeaseState {
                        id: r.id.clone(),
                        attempt: r.attempt,
                        cancel_requested: r.cancel_requested,
                    });
                }
            }
        }
        Ok(kept)
    }

    async fn rescue(&self, scope: RescueScope, max_attempts: u32) -> Result<Rescued, StoreError> {
        let mut inner = self.lock();
        let now = Instant::now();
        let lost: Vec<String> = inner
            .jobs
            .values()
            .filter(|r| r.status == JobStatus::Running)
            .filter(|r| scope == RescueScope::AllRunning || r.lease.as_ref().is_none_or(|(_, at)| *at <= now))
            .map(|r| r.id.clone())
            .collect();
        let mut rescued = Rescued::default();
        for id in lost {
            let Some(r) = inner.jobs.get_mut(&id) else { continue };
            let finish = rescue_finish(r.cancel_requested, r.attempt, max_attempts);
            match finish {
                Some(finish) => {
                    rescued.ended.extend(inner.set_terminal(&id, finish, None, self.config.max_events_per_job));
                }
                None => {
                    r.status = JobStatus::Queued;
                    r.lease = None;
                    r.started_at = None;
                    let seq = r.seq;
                    inner.requeue(seq, &id);
                    rescued.requeued.push(id);
                }
            }
        }
        Ok(rescued)
    }

    async fn expire_lease(&self, id: &str) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(r) = inner.jobs.get_mut(id).filter(|r| r.status == JobStatus::Running) else { return Ok(false) };
        if let Some((_, at)) = &mut r.lease {
            *at = Instant::now();
        }
        Ok(true)
    }

    async fn create_experiment(
        &self,
        experiment: NewExperiment,
        jobs: Vec<NewJob>,
    ) -> Result<ExperimentSnapshot, StoreError> {
        let mut inner = self.lock();
        inner.check_room(&self.config, &experiment.tenant, jobs.len())?;
        inner.evict(&self.config, self.config.ttl);
        Ok(inner.insert_experiment(experiment, jobs))
    }

    async fn experiment(&self, tenant: &Tenant, id: &str) -> Result<Option<ExperimentSnapshot>, StoreError> {
        let inner = self.lock();
        Ok(inner.experiments.get(id).filter(|r| &r.new.tenant == tenant).map(|r| inner.snapshot(r)))
    }

    async fn list_experiments(
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

    async fn cancel_experiment(
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
                    let finish = Finish { status: JobStatus::Cancelled, error: Some(failure.clone()) };
                    cancelled.extend(inner.set_terminal(job_id, finish, None, self.config.max_events_per_job));
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

    async fn put_experiment_result(&self, id: &str, result: Arc<ExperimentResult>) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        Ok(match inner.experiments.get_mut(id) {
            Some(r) if r.result.is_none() && r.all_ended() => {
                r.result = Some(result);
                true
            }
            _ => false,
        })
    }

    async fn delete_experiment(&self, tenant: &Tenant, id: &str) -> Result<Vec<String>, StoreError> {
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

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let inner = self.lock();
        let running = inner.running() as u64;
        let queued = inner.queue.len() as u64;
        Ok(StoreStats {
            queued,
            running,
            finished: (inner.jobs.len() as u64).saturating_sub(queued + running),
            events: inner.jobs.values().map(|r| r.events.len() as u64).sum(),
            experiments: inner.experiments.len() as u64,
            report_bytes: inner.jobs.values().filter_map(|r| r.report.as_ref()).map(|r| r.len() as u64).sum(),
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // Taking the lock proves no thread holds it forever.
        drop(self.lock());
        Ok(())
    }

    async fn expire(&self, ttl: Duration) -> Result<Expired, StoreError> {
        let mut inner = self.lock();
        let keys = inner.idempotency.len();
        let experiments = inner.experiments.len();
        let jobs = inner.evict(&self.config, ttl);
        Ok(Expired {
            jobs,
            experiments: experiments.saturating_sub(inner.experiments.len()) as u64,
            keys: keys.saturating_sub(inner.idempotency.len()) as u64,
        })
    }
}

#[cfg(test)]
mod tests;
