//! The worker pool: a fixed number of dedicated OS threads that take queued jobs from the store
//! and train them, plus a watchdog thread that enforces the per-job wall-clock limit.
//!
//! Why OS threads and not the async runtime: a training step is pure CPU work that cannot yield,
//! so running it on tokio's workers would stall every request on that thread. The workers reach
//! the (async) store through a runtime handle, and only between runs: a claim before, one
//! completion after. Progress goes the other way round: the training callback only appends to
//! a buffer, and a small task on the runtime writes the buffer to the store (one transaction per
//! batch, fenced by the attempt), so a slow database never slows a training step.
//!
//! Stopping a run is cooperative: each running job has a [`CancelFlag`] that the engine reads
//! before every step, and a *reason* recorded before the flag is set (a client's cancel, the
//! watchdog's timeout, a shutdown, a lost lease), so the worker knows what to do with the run
//! that stopped: keep its partial report (cancel, timeout), give the job back to the queue
//! (shutdown) or discard it (lost lease: another attempt owns the job now). The first reason
//! wins. A panic inside a run is caught here (`catch_unwind`): the job fails with code
//! `internal` and the thread takes the next job, so the pool never shrinks.
//!
//! Depends on the store, the event wake-ups, the pipeline and the engine's
//! `CancelFlag`/`Progress`; must not depend on HTTP crates.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::Notify;

use super::events::Wakeups;
use super::experiments::finalize::finalize;
use super::metrics::{FinishedLabels, JobMetrics};
use super::store::{Claimed, Completion, Fence, Finish, JobStore, Owner, StoreError};
use super::view::RunView;
use super::{FailureCode, JobFailure, JobProgress, JobStatus, Tenant};
use crate::analysis::experiment::RunResult;
use crate::analysis::pipeline::{self, PipelineError, RunOutput};
use crate::analysis::report::Outcome;
use crate::engine::train::{CancelFlag, Progress};
use crate::engine::EngineError;
use crate::spec::Limits;

/// A spec with this `name` panics inside its worker — only when [`PoolConfig::test_hooks`] is
/// on (never by default). It exists so that tests can prove panic isolation end to end.
pub const PANIC_HOOK_NAME: &str = "__gradscope_test_panic__";

/// A spec with this `name` aborts the whole process when its run starts — only when
/// [`PoolConfig::test_hooks`] is on. It stands in for a spec that crashes the process, so that
/// tests can prove the rescuer ends such a job `failed`/`worker_lost` after `max_attempts`.
pub const ABORT_HOOK_NAME: &str = "__gradscope_test_abort__";

/// How the pool runs jobs.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Worker threads (at least 1).
    pub workers: usize,
    /// A run still going after this long is stopped and fails with `timeout`.
    pub job_timeout: Duration,
    /// Limits a spec is checked against again when its run starts.
    pub limits: Limits,
    /// Between probe steps, progress is still reported at least this often.
    pub progress_heartbeat: Duration,
    /// How each worker thread yields the CPU to the HTTP runtime (and to the database).
    pub worker_priority: WorkerPriority,
    /// Share of a job's compute its recommendations' verification may take (0: off; see
    /// `analysis::verify`). Experiment runs are never verified.
    pub verify_share: f64,
    /// Honour [`PANIC_HOOK_NAME`] and [`ABORT_HOOK_NAME`]. Tests only.
    pub test_hooks: bool,
    /// Who this process is, as a lease holder.
    pub owner: Owner,
    /// A claimed job's lease lasts this long unless renewed.
    pub lease_ttl: Duration,
}

/// Why a run was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum StopReason {
    None = 0,
    Client = 1,
    Timeout = 2,
    Shutdown = 3,
    LeaseLost = 4,
}

impl StopReason {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => StopReason::Client,
            2 => StopReason::Timeout,
            3 => StopReason::Shutdown,
            4 => StopReason::LeaseLost,
            _ => StopReason::None,
        }
    }
}

/// A run in progress, as the pool tracks it.
#[derive(Debug)]
pub(super) struct Running {
    flag: CancelFlag,
    reason: AtomicU8,
    deadline: Instant,
    /// When the job was claimed (a lease renewal that started earlier cannot know it).
    pub(super) claimed_at: Instant,
    /// The attempt that holds the lease.
    pub(super) fence: Fence,
    /// A client's cancel reached this run (whichever reason stopped it first).
    cancel_seen: AtomicBool,
    /// A write or renewal found the lease lost.
    lease_lost: AtomicBool,
    /// The job's record as the store last confirmed it (see [`super::view`]).
    pub(super) view: RunView,
}

impl Running {
    /// Records `reason` (unless another came first) and raises the flag.
    pub(super) fn stop(&self, reason: StopReason) {
        match reason {
            StopReason::Client => self.cancel_seen.store(true, Ordering::SeqCst),
            StopReason::LeaseLost => self.lease_lost.store(true, Ordering::SeqCst),
            _ => {}
        }
        let _ = self.reason.compare_exchange(StopReason::None as u8, reason as u8, Ordering::SeqCst, Ordering::SeqCst);
        self.flag.cancel();
    }

    fn reason(&self) -> StopReason {
        StopReason::from_u8(self.reason.load(Ordering::SeqCst))
    }

    /// The job's record from memory, when this run can vouch for it (see [`super::view`]).
    fn local_view(&self, tenant: &Tenant, now: Instant, fresh_for: Duration) -> Option<super::Job> {
        if self.lease_lost.load(Ordering::SeqCst) {
            return None;
        }
        let mut job = self.view.read(tenant, now, fresh_for)?;
        // A cancel is requested in the store before it reaches a run.
        job.cancel_requested |= self.cancel_seen.load(Ordering::SeqCst);
        Some(job)
    }
}

#[derive(Debug)]
struct Shared {
    store: Arc<dyn JobStore>,
    wakeups: Arc<Wakeups>,
    metrics: JobMetrics,
    config: PoolConfig,
    runtime: Handle,
    /// A generation bumped by every `notify`; workers wait on `cv` with this lock only when no
    /// notify came since they read it before claiming (never held across a claim: the claim
    /// awaits the store on the runtime, which a handler calling `notify` may be blocking).
    wake: Mutex<u64>,
    cv: Condvar,
    running: Mutex<HashMap<String, Arc<Running>>>,
    stopping: AtomicBool,
    alive: AtomicUsize,
}

impl Shared {
    fn running(&self) -> MutexGuard<'_, HashMap<String, Arc<Running>>> {
        // Inserts and removes only: a poisoned map is still consistent.
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The pool of worker threads.
#[derive(Debug)]
pub struct WorkerPool {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Decrements the live-worker count however the thread ends.
struct AliveGuard<'a>(&'a Shared);

impl Drop for AliveGuard<'_> {
    fn drop(&mut self) {
        self.0.alive.fetch_sub(1, Ordering::SeqCst);
        self.0.metrics.workers_alive.dec();
    }
}

impl WorkerPool {
    /// Starts `config.workers` worker threads and the watchdog; they reach the store through
    /// `runtime`.
    pub fn start(
        store: Arc<dyn JobStore>,
        wakeups: Arc<Wakeups>,
        metrics: JobMetrics,
        config: PoolConfig,
        runtime: Handle,
    ) -> std::io::Result<Self> {
        let workers = config.workers.max(1);
        let shared = Arc::new(Shared {
            store,
            wakeups,
            metrics,
            config,
            runtime,
            wake: Mutex::new(0),
            cv: Condvar::new(),
            running: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            alive: AtomicUsize::new(0),
        });
        let mut threads = Vec::with_capacity(workers + 1);
        for i in 0..workers {
            let s = Arc::clone(&shared);
            s.alive.fetch_add(1, Ordering::SeqCst);
            s.metrics.workers_alive.inc();
            // The engine recurses over the layer tree; give it the main thread's stack size.
            let spawned = std::thread::Builder::new().name(format!("gradscope-worker-{i}")).stack_size(8 << 20).spawn(
                move || {
                    let _alive = AliveGuard(&s);
                    lower_priority(s.config.worker_priority);
                    worker_loop(&s);
                },
            );
            match spawned {
                Ok(h) => threads.push(h),
                Err(e) => {
                    shared.alive.fetch_sub(1, Ordering::SeqCst);
                    shared.metrics.workers_alive.dec();
                    return Err(e);
                }
            }
        }
        let s = Arc::clone(&shared);
        threads.push(std::thread::Builder::new().name("gradscope-watchdog".into()).spawn(move || watchdog(&s))?);
        Ok(WorkerPool { shared, threads: Mutex::new(threads) })
    }

    /// Wakes every idle worker: several jobs were queued.
    pub fn notify_all(&self) {
        *self.shared.wake.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.shared.cv.notify_all();
    }

    /// Wakes one idle worker: a job was queued.
    pub fn notify(&self) {
        *self.shared.wake.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.shared.cv.notify_one();
    }

    /// Asks the run of `id` to stop because a client cancelled it (no-op if it does not run
    /// here).
    pub fn cancel(&self, id: &str) {
        if let Some(r) = self.shared.running().get(id) {
            r.stop(StopReason::Client);
        }
    }

    /// The record of job `id` when this process trains it and can vouch for what the store
    /// holds (see [`super::view`]); `None`: ask the store.
    pub fn local_view(&self, tenant: &Tenant, id: &str) -> Option<super::Job> {
        let run = self.shared.running().get(id).cloned()?;
        run.local_view(tenant, Instant::now(), self.shared.config.lease_ttl / 2)
    }

    /// The runs of this process.
    pub(super) fn runs(&self) -> Vec<Arc<Running>> {
        self.shared.running().values().cloned().collect()
    }

    /// Jobs this process trains now.
    pub fn running(&self) -> usize {
        self.shared.running().len()
    }

    /// Worker threads configured.
    pub fn size(&self) -> usize {
        self.shared.config.workers.max(1)
    }

    /// Worker threads alive (equal to [`size`](Self::size) unless one died, which
    /// `catch_unwind` should make impossible).
    pub fn alive(&self) -> usize {
        self.shared.alive.load(Ordering::SeqCst)
    }

    /// Stops taking jobs (running ones go on).
    pub fn stop_claiming(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        *self.shared.wake.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.shared.cv.notify_all();
    }

    /// Stops taking jobs, lets running ones finish for up to `grace`, then stops them — each
    /// is given back to the queue without using an attempt, for another replica or the next
    /// start — and joins every thread. Blocking: call it off the runtime.
    pub fn shutdown(&self, grace: Duration) {
        self.stop_claiming();
        let deadline = Instant::now() + grace;
        while self.running() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let left = self.runs();
        if !left.is_empty() {
            tracing::warn!(
                jobs = left.len(),
                grace_s = grace.as_secs_f64(),
                "grace period over: stopping running jobs and giving them back to the queue"
            );
        }
        for r in left {
            r.stop(StopReason::Shutdown);
        }
        let threads: Vec<JoinHandle<()>> = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// How a worker thread yields the CPU. Training is throughput work; answering
/// `GET /v1/jobs/{id}` (and the database answering the service) is latency work, and with both
/// on the same cores the latency work must win at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerPriority {
    /// `SCHED_IDLE`: a worker runs only on CPU time no other thread wants, and any other thread
    /// that wakes takes its CPU at once — whatever process it belongs to. A nice value cannot do
    /// that across processes: with the kernel's autogroups (one per session, the default) nice
    /// only ranks threads within one process's group, so a PostgreSQL server on the same
    /// machine waited up to hundreds of milliseconds behind niced training (README, Benchmarks).
    Idle,
    /// `SCHED_OTHER` with this nice value (0..=19; 0 leaves the priority alone).
    Nice(i32),
}

#[cfg(target_os = "linux")]
fn lower_priority(priority: WorkerPriority) {
    use thread_priority::{
        set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy, ThreadPriority,
        ThreadSchedulePolicy,
    };
    match priority {
        WorkerPriority::Idle => {
            let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
            if let Err(e) = set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle) {
                tracing::warn!(error = ?e, "could not give the worker thread the idle scheduling policy");
            }
        }
        WorkerPriority::Nice(nice) if nice > 0 => {
            if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice.min(19)) {
                tracing::warn!(error = %e, nice, "could not lower the worker thread's priority");
            }
        }
        WorkerPriority::Nice(_) => {}
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_priority: WorkerPriority) {}

fn worker_loop(shared: &Shared) {
    while !shared.stopping.load(Ordering::SeqCst) {
        let generation = *shared.wake.lock().unwrap_or_else(|e| e.into_inner());
        let claimed = shared.runtime.block_on(shared.store.claim(
            &shared.config.owner,
            shared.config.workers,
            shared.config.lease_ttl,
        ));
        match claimed {
            Ok(Some(job)) => {
                run_job(shared, job);
            }
            Ok(None) => {
                // The timeout is a safety net and how jobs queued by other replicas (or given
                // back by the rescuer) are noticed: `notify` wakes us as soon as a job is
                // queued here.
                let guard = shared.wake.lock().unwrap_or_else(|e| e.into_inner());
                if *guard == generation {
                    let _ = shared.cv.wait_timeout(guard, Duration::from_millis(500));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim a job; retrying in 1 s");
                let guard = shared.wake.lock().unwrap_or_else(|e| e.into_inner());
                let _ = shared.cv.wait_timeout(guard, Duration::from_secs(1));
            }
        }
    }
}

/// Sets the flag of every run past its deadline. Polls: a 20 ms tick costs nothing and bounds
/// how late a timeout fires.
fn watchdog(shared: &Shared) {
    loop {
        std::thread::sleep(Duration::from_millis(20));
        if shared.stopping.load(Ordering::SeqCst) && shared.alive.load(Ordering::SeqCst) == 0 {
            return;
        }
        let now = Instant::now();
        for r in shared.running().values() {
            if now >= r.deadline && r.reason() == StopReason::None {
                r.stop(StopReason::Timeout);
            }
        }
    }
}

/// Which steps of a run become progress events (each one a row in the store and an SSE event).
///
/// A probe step is reported, but at most one per [`PROGRESS_MIN_GAP`] (a tiny network probed
/// every 5 steps makes tens of thousands of probe steps a second, which no client can read and
/// no database should write); between reports, at least one per `heartbeat`, so that slow runs
/// still show movement; the last step always. docs/service.md states this rule.
#[derive(Debug)]
struct ProgressGate {
    every: u64,
    heartbeat: Duration,
    last: Instant,
}

/// The least time between two progress events of one run, except for the last step.
pub const PROGRESS_MIN_GAP: Duration = Duration::from_millis(100);

impl ProgressGate {
    fn new(every: u64, heartbeat: Duration, start: Instant) -> Self {
        ProgressGate { every: every.max(1), heartbeat, last: start }
    }

    fn admit(&mut self, step: u64, total_steps: u64, now: Instant) -> bool {
        let since = now.saturating_duration_since(self.last);
        let probe = step.is_multiple_of(self.every) && since >= PROGRESS_MIN_GAP;
        let admit = step == total_steps || probe || since >= self.heartbeat;
        if admit {
            self.last = now;
        }
        admit
    }
}

/// Progress on its way from the training thread to the store: the callback appends, a task on
/// the runtime writes what has accumulated, in order, one transaction per batch.
#[derive(Debug, Default)]
struct ProgressOut {
    pending: Mutex<Vec<JobProgress>>,
    ready: Notify,
    finished: AtomicBool,
}

impl ProgressOut {
    fn push(&self, p: JobProgress) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).push(p);
        self.ready.notify_one();
    }

    fn take(&self) -> Vec<JobProgress> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn finish(&self) {
        self.finished.store(true, Ordering::SeqCst);
        self.ready.notify_one();
    }
}

/// Writes a run's progress until the run ends; a write that finds the lease lost stops the run.
async fn write_progress(store: Arc<dyn JobStore>, wakeups: Arc<Wakeups>, out: Arc<ProgressOut>, running: Arc<Running>) {
    loop {
        out.ready.notified().await;
        let batch = out.take();
        if !batch.is_empty() {
            match store.progress(&running.fence, &batch).await {
                Ok(true) => {
                    if let Some(last) = batch.last() {
                        running.view.progressed(last);
                    }
                    wakeups.notify(&running.fence.id)
                }
                Ok(false) => running.stop(StopReason::LeaseLost),
                // Progress is advisory: a write that fails is skipped, the run goes on.
                Err(e) => tracing::warn!(error = %e, "progress not recorded"),
            }
        }
        if out.finished.load(Ordering::SeqCst) && out.pending.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
            return;
        }
    }
}

/// Commits a completion, retrying while the store is unavailable, for up to half a lease (after
/// that the lease is likely lost and the rescuer will run the job again).
async fn complete(
    store: &dyn JobStore,
    fence: &Fence,
    completion: Completion,
    lease: Duration,
) -> Result<Option<super::Job>, StoreError> {
    let deadline = tokio::time::Instant::now() + lease / 2;
    loop {
        match store.complete(fence, completion.clone()).await {
            Err(StoreError::Unavailable(e)) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "cannot record the end of the job; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => return other,
        }
    }
}

fn run_job(shared: &Shared, job: Claimed) {
    let span = tracing::info_span!("job", job.id = %job.id, attempt = job.attempt);
    let _enter = span.enter();
    let started = Instant::now();
    tracing::info!(total_steps = job.total_steps, "job started");
    let running = Arc::new(Running {
        flag: CancelFlag::new(),
        reason: AtomicU8::new(0),
        deadline: started + shared.config.job_timeout,
        claimed_at: started,
        fence: job.fence(),
        cancel_seen: AtomicBool::new(false),
        lease_lost: AtomicBool::new(false),
        view: RunView::default(),
    });
    shared.running().insert(job.id.clone(), Arc::clone(&running));
    // A cancel that arrived before the run was registered above found no run to stop; the store
    // remembers it.
    // The same read gives the record that reads of this job are answered with while it runs.
    if let Ok(Some(record)) = shared.runtime.block_on(shared.store.get(&job.tenant, &job.id)) {
        if record.cancel_requested {
            running.stop(StopReason::Client);
        }
        running.view.start(&job.tenant, record, started);
    }
    if shared.config.test_hooks && job.spec.name.as_deref() == Some(ABORT_HOOK_NAME) {
        tracing::error!("test hook: the spec asked this process to abort");
        std::process::abort();
    }
    let out = Arc::new(ProgressOut::default());
    let writer = shared.runtime.spawn(write_progress(
        Arc::clone(&shared.store),
        Arc::clone(&shared.wakeups),
        Arc::clone(&out),
        Arc::clone(&running),
    ));

    let outcome = catch_unwind(AssertUnwindSafe(|| {
        if shared.config.test_hooks && job.spec.name.as_deref() == Some(PANIC_HOOK_NAME) {
            panic!("test hook: the spec asked this job to panic");
        }
        let mut gate = ProgressGate::new(job.probe_every, shared.config.progress_heartbeat, Instant::now());
        let mut on_progress = |p: Progress| {
            if gate.admit(p.step as u64, p.total_steps as u64, Instant::now()) {
                out.push(JobProgress {
                    step: p.step as u64,
                    total_steps: p.total_steps as u64,
                    loss: p.loss.is_finite().then_some(p.loss),
                });
            }
        };
        // The stored spec was validated when it was submitted; `run` validates it again because
        // the engine takes only a validated `RunConfig` and the store keeps the spec in its wire
        // form (what clients read back and what the report echoes). Validation is cheap next to
        // training and deterministic, and the limits are the ones it was admitted under, so an
        // admitted spec gives the same config here.
        // An experiment's runs are compared by the experiment itself: no verification.
        let verify_share = if job.experiment.is_some() { 0.0 } else { shared.config.verify_share };
        let options = pipeline::RunOptions { limits: &shared.config.limits, params_out: false, verify_share };
        pipeline::run(&job.spec, &options, &running.flag, &mut on_progress)
    }));
    // Every progress event is written before the final one.
    out.finish();
    let _ = shared.runtime.block_on(writer);
    // Unless a later attempt of this job (after a lost lease) took the entry over.
    {
        let mut runs = shared.running();
        if runs.get(&job.id).is_some_and(|r| Arc::ptr_eq(r, &running)) {
            runs.remove(&job.id);
        }
    }

    let reason = running.reason();
    match reason {
        StopReason::Shutdown => {
            match shared.runtime.block_on(shared.store.release(&running.fence)) {
                Ok(true) => tracing::info!("stopped by the shutdown; the job is back in the queue"),
                Ok(false) => tracing::warn!("stopped by the shutdown; its lease was already lost"),
                Err(e) => tracing::warn!(error = %e, "stopped by the shutdown; the rescuer will re-queue it"),
            }
            return;
        }
        StopReason::LeaseLost => {
            tracing::warn!("the job's lease was lost (another attempt owns it now): its run is discarded");
            return;
        }
        _ => {}
    }

    // A run of an experiment leaves what the comparison needs beside the job, taken from the
    // report before it is serialised (only runs that ran to their end or diverged count).
    let run_result = match (&job.experiment, &outcome) {
        (Some(_), Ok(Ok(out))) if matches!(out.report.summary.outcome, Outcome::Completed | Outcome::NonFinite) => {
            Some(RunResult::from_report(&out.report))
        }
        _ => None,
    };
    let (finish, report) = classify(outcome, reason, shared.config.job_timeout);
    let status = finish.status;
    let code = finish.error.as_ref().map_or("none", |e| e.code.name());
    match &finish.error {
        Some(e) if e.code == FailureCode::Internal => tracing::error!(error = %e.message, "job failed"),
        Some(e) if e.code == FailureCode::OutOfMemory => tracing::warn!(code, message = %e.message, "job ended"),
        Some(e) => tracing::info!(status = %status, code, message = %e.message, "job ended"),
        None => tracing::info!(status = %status, duration_ms = started.elapsed().as_millis() as u64, "job ended"),
    }
    let completion = Completion { finish, report, run_result };
    let done = shared.runtime.block_on(complete(&*shared.store, &running.fence, completion, shared.config.lease_ttl));
    match done {
        Ok(Some(_)) => {
            shared.wakeups.notify(&job.id);
            shared.metrics.finished.get_or_create(&FinishedLabels { status: status.name(), code }).inc();
            shared.metrics.duration.observe(started.elapsed().as_secs_f64());
        }
        Ok(None) => tracing::warn!("the job's lease was lost before it ended: its result is discarded"),
        Err(e) => {
            tracing::error!(error = %e, "the end of the job could not be recorded; the rescuer will run it again")
        }
    }
    if let Some(experiment) = &job.experiment {
        shared.runtime.block_on(finalize(&*shared.store, &job.tenant, experiment));
    }
}

type Ended = std::thread::Result<Result<RunOutput, PipelineError>>;

/// How a run ended -> the job's terminal status, error and report. A run stopped by a client or
/// by its time limit keeps the report of what it measured up to where it stopped (outcome
/// `cancelled` or `timeout`), like a run that diverged (`non_finite`).
fn classify(outcome: Ended, reason: StopReason, timeout: Duration) -> (Finish, Option<Arc<[u8]>>) {
    let fail = |status, code, message: String| (Finish { status, error: Some(JobFailure { code, message }) }, None);
    let mut out = match outcome {
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            return fail(JobStatus::Failed, FailureCode::Internal, format!("the job panicked: {msg}"));
        }
        // The engine's message has the figures: the bytes asked for and which buffer.
        Ok(Err(PipelineError::Engine(e @ EngineError::OutOfMemory { .. }))) => {
            return fail(JobStatus::Failed, FailureCode::OutOfMemory, e.to_string())
        }
        Ok(Err(e)) => return fail(JobStatus::Failed, FailureCode::InvalidSpec, e.to_string()),
        Ok(Ok(out)) => out,
    };
    let summary = &out.report.summary;
    let at = format!("at step {} of {}", summary.steps, summary.total_steps);
    let (status, error) = match summary.outcome {
        Outcome::Completed => (JobStatus::Succeeded, None),
        Outcome::NonFinite => {
            let where_ = summary
                .non_finite
                .as_ref()
                .map(|n| format!(" at step {} in {} ({})", n.step, n.layer, n.location))
                .unwrap_or_default();
            let message = format!("the run diverged: NaN or Inf{where_}; the report holds the probes up to there");
            (JobStatus::Failed, Some(JobFailure { code: FailureCode::NonFinite, message }))
        }
        Outcome::Cancelled | Outcome::Timeout => match reason {
            StopReason::Timeout => {
                out.report.summary.outcome = Outcome::Timeout;
                let message = format!(
                    "stopped {at}: the run exceeded the per-job limit of {} s; the report holds what it measured up to there",
                    timeout.as_secs_f64()
                );
                (JobStatus::Failed, Some(JobFailure { code: FailureCode::Timeout, message }))
            }
            StopReason::Shutdown | StopReason::LeaseLost => {
                let message = format!("stopped {at}: the server shut down and its grace period ended");
                return fail(JobStatus::Cancelled, FailureCode::Shutdown, message);
            }
            StopReason::Client | StopReason::None => {
                let message = format!("cancelled by request {at}; the report holds what it measured up to there");
                (JobStatus::Cancelled, Some(JobFailure { code: FailureCode::Cancelled, message }))
            }
        },
    };
    match serde_json::to_vec(&out.report) {
        Ok(report) => (Finish { status, error }, Some(Arc::from(report))),
        Err(_) => fail(JobStatus::Failed, FailureCode::Internal, "the report could not be serialised".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> Running {
        let now = Instant::now();
        let running = Running {
            flag: CancelFlag::new(),
            reason: AtomicU8::new(0),
            deadline: now + Duration::from_secs(60),
            claimed_at: now,
            fence: Fence { id: "j".into(), attempt: 1 },
            cancel_seen: AtomicBool::new(false),
            lease_lost: AtomicBool::new(false),
            view: RunView::default(),
        };
        let job = crate::jobs::view::tests::job();
        running.view.start(&Tenant::open(), job, now);
        running
    }

    #[test]
    fn a_cancel_shows_in_reads_from_memory_even_after_another_reason_stopped_the_run() {
        let r = run();
        let fresh = Duration::from_secs(30);
        assert!(!r.local_view(&Tenant::open(), Instant::now(), fresh).is_some_and(|j| j.cancel_requested));
        r.stop(StopReason::Timeout);
        r.stop(StopReason::Client);
        assert_eq!(r.reason(), StopReason::Timeout, "the first reason wins");
        assert!(r.local_view(&Tenant::open(), Instant::now(), fresh).is_some_and(|j| j.cancel_requested));
    }

    #[test]
    fn memory_never_answers_for_a_run_that_lost_its_lease() {
        let r = run();
        let fresh = Duration::from_secs(30);
        assert!(r.local_view(&Tenant::open(), Instant::now(), fresh).is_some());
        r.stop(StopReason::Shutdown);
        r.stop(StopReason::LeaseLost);
        assert!(r.local_view(&Tenant::open(), Instant::now(), fresh).is_none());
        r.view.lease_renewed(Instant::now());
        assert!(r.local_view(&Tenant::open(), Instant::now(), fresh).is_none());
    }

    #[test]
    fn a_fast_run_reports_at_most_one_probe_step_per_min_gap_and_always_the_last_step() {
        let t0 = Instant::now();
        let mut gate = ProgressGate::new(5, Duration::from_millis(500), t0);
        // 100,000 probe steps within 50 ms: none is reported until the gap has passed…
        let early = (1..=100_000u64).filter(|s| gate.admit(*s, 1_000_000, t0 + Duration::from_millis(50))).count();
        assert_eq!(early, 0);
        // …then the first probe step after it is, and the next one only a gap later.
        assert!(!gate.admit(101, 1_000_000, t0 + PROGRESS_MIN_GAP)); // not a probe step
        assert!(gate.admit(105, 1_000_000, t0 + PROGRESS_MIN_GAP));
        assert!(!gate.admit(110, 1_000_000, t0 + PROGRESS_MIN_GAP + Duration::from_millis(99)));
        assert!(gate.admit(115, 1_000_000, t0 + 2 * PROGRESS_MIN_GAP));
        // The last step is reported however soon it comes.
        assert!(gate.admit(1_000_000, 1_000_000, t0 + 2 * PROGRESS_MIN_GAP));
    }

    #[test]
    fn a_slow_run_reports_every_probe_step_and_a_heartbeat_between_them() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        let mut gate = ProgressGate::new(10, Duration::from_millis(500), t0);
        // One step a second, probes every 10 steps: each step is a heartbeat, each probe step
        // is reported too.
        for step in 1..=30u64 {
            assert!(gate.admit(step, 100, t0 + second * step as u32), "step {step}");
        }
        // A step 0.2 s after a report is neither a probe nor a heartbeat.
        assert!(!gate.admit(31, 100, t0 + second * 30 + Duration::from_millis(200)));
        assert!(gate.admit(40, 100, t0 + second * 30 + Duration::from_millis(300)));
    }
}
