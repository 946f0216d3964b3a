//! The worker pool: a fixed number of dedicated OS threads that take queued jobs from the store
//! and train them, plus a watchdog thread that enforces the per-job wall-clock limit.
//!
//! Why OS threads and not the async runtime: a training step is pure CPU work that cannot yield,
//! so running it on tokio's workers would stall every request on that thread. Here the runtime
//! only ever touches the store (microseconds under a mutex).
//!
//! Stopping a run is cooperative: each running job has a [`CancelFlag`] that the engine reads
//! before every step, and a *reason* recorded before the flag is set (a client's cancel, the
//! watchdog's timeout, a shutdown), so the worker knows how to report the run that stopped. The
//! first reason wins. A panic inside a run is caught here (`catch_unwind`): the job fails with
//! code `internal` and the thread takes the next job, so the pool never shrinks.
//!
//! Depends on the store, the event hub, the pipeline and the engine's `CancelFlag`/`Progress`;
//! must not depend on HTTP crates.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::events::EventHub;
use super::experiments::finalize::finalize;
use super::metrics::{FinishedLabels, JobMetrics};
use super::store::{Claimed, Finish, JobStore};
use super::{FailureCode, JobFailure, JobProgress, JobStatus};
use crate::analysis::experiment::RunResult;
use crate::analysis::pipeline::{self, PipelineError, RunOutput};
use crate::analysis::report::Outcome;
use crate::engine::train::{CancelFlag, Progress};
use crate::engine::EngineError;
use crate::spec::Limits;

/// A spec with this `name` panics inside its worker — only when [`PoolConfig::test_hooks`] is
/// on (never by default). It exists so that tests can prove panic isolation end to end.
pub const PANIC_HOOK_NAME: &str = "__gradscope_test_panic__";

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
    /// Nice value (0..=19) each worker thread gives itself, so that the HTTP runtime's threads
    /// win the CPU when both want it; 0 leaves the priority alone. Linux only.
    pub worker_nice: i32,
    /// Share of a job's compute its recommendations' verification may take (0: off; see
    /// `analysis::verify`). Experiment runs are never verified.
    pub verify_share: f64,
    /// Honour [`PANIC_HOOK_NAME`]. Tests only.
    pub test_hooks: bool,
}

/// Why a run was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum StopReason {
    None = 0,
    Client = 1,
    Timeout = 2,
    Shutdown = 3,
}

impl StopReason {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => StopReason::Client,
            2 => StopReason::Timeout,
            3 => StopReason::Shutdown,
            _ => StopReason::None,
        }
    }
}

/// A run in progress, as the pool tracks it.
#[derive(Debug)]
struct Running {
    flag: CancelFlag,
    reason: AtomicU8,
    deadline: Instant,
}

impl Running {
    /// Records `reason` (unless another came first) and raises the flag.
    fn stop(&self, reason: StopReason) {
        let _ = self.reason.compare_exchange(StopReason::None as u8, reason as u8, Ordering::SeqCst, Ordering::SeqCst);
        self.flag.cancel();
    }

    fn reason(&self) -> StopReason {
        StopReason::from_u8(self.reason.load(Ordering::SeqCst))
    }
}

#[derive(Debug)]
struct Shared {
    store: Arc<dyn JobStore>,
    hub: Arc<EventHub>,
    metrics: JobMetrics,
    config: PoolConfig,
    /// Workers wait on `cv` with this lock; `claim` happens under it so no wake-up is lost.
    wake: Mutex<()>,
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
    /// Starts `config.workers` worker threads and the watchdog.
    pub fn start(
        store: Arc<dyn JobStore>,
        hub: Arc<EventHub>,
        metrics: JobMetrics,
        config: PoolConfig,
    ) -> std::io::Result<Self> {
        let workers = config.workers.max(1);
        let shared = Arc::new(Shared {
            store,
            hub,
            metrics,
            config,
            wake: Mutex::new(()),
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
                    lower_priority(s.config.worker_nice);
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
        let _guard = self.shared.wake.lock().unwrap_or_else(|e| e.into_inner());
        self.shared.cv.notify_all();
    }

    /// Wakes one idle worker: a job was queued.
    pub fn notify(&self) {
        let _guard = self.shared.wake.lock().unwrap_or_else(|e| e.into_inner());
        self.shared.cv.notify_one();
    }

    /// Asks the run of `id` to stop because a client cancelled it (no-op if it is not running).
    pub fn cancel(&self, id: &str) {
        if let Some(r) = self.shared.running().get(id) {
            r.stop(StopReason::Client);
        }
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

    /// Stops taking jobs, lets running ones finish for up to `grace`, then stops them (they end
    /// `cancelled` with code `shutdown` within one step) and joins every thread. Blocking.
    pub fn shutdown(&self, grace: Duration) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        {
            let _guard = self.shared.wake.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.cv.notify_all();
        }
        let deadline = Instant::now() + grace;
        while self.shared.store.running() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let left: Vec<Arc<Running>> = self.shared.running().values().cloned().collect();
        if !left.is_empty() {
            tracing::warn!(
                jobs = left.len(),
                grace_s = grace.as_secs_f64(),
                "grace period over: cancelling running jobs"
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

/// Training is throughput work; answering `GET /v1/jobs/{id}` is latency work. With both on the
/// same cores, a higher nice value for the workers keeps request latency low at almost no cost
/// to training (the runtime's threads are idle most of the time).
#[cfg(target_os = "linux")]
fn lower_priority(nice: i32) {
    if nice > 0 {
        if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice.min(19)) {
            tracing::warn!(error = %e, nice, "could not lower the worker thread's priority");
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_nice: i32) {}

fn worker_loop(shared: &Shared) {
    while !shared.stopping.load(Ordering::SeqCst) {
        let guard = shared.wake.lock().unwrap_or_else(|e| e.into_inner());
        match shared.store.claim(shared.config.workers) {
            Some(job) => {
                drop(guard);
                run_job(shared, job);
            }
            None => {
                // The timeout is a safety net only: `notify` wakes us as soon as a job is queued.
                let _ = shared.cv.wait_timeout(guard, Duration::from_millis(500));
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

fn run_job(shared: &Shared, job: Claimed) {
    let span = tracing::info_span!("job", job.id = %job.id);
    let _enter = span.enter();
    let started = Instant::now();
    tracing::info!(total_steps = job.total_steps, "job started");
    let running = Arc::new(Running {
        flag: CancelFlag::new(),
        reason: AtomicU8::new(0),
        deadline: started + shared.config.job_timeout,
    });
    shared.running().insert(job.id.clone(), Arc::clone(&running));
    // A cancel that arrived between the claim and the insert above found no run to stop; the
    // store remembers it.
    if shared.store.get(&job.tenant, &job.id).is_some_and(|j| j.cancel_requested) {
        running.stop(StopReason::Client);
    }
    let log = shared.hub.get(&job.id);

    let outcome = catch_unwind(AssertUnwindSafe(|| {
        if shared.config.test_hooks && job.spec.name.as_deref() == Some(PANIC_HOOK_NAME) {
            panic!("test hook: the spec asked this job to panic");
        }
        let every = job.probe_every.max(1);
        let heartbeat = shared.config.progress_heartbeat;
        let mut last = Instant::now();
        let mut on_progress = |p: Progress| {
            let step = p.step as u64;
            // Every probe interval (what the API promises) and, between probes, at least every
            // `heartbeat` so that slow runs still show movement; never every step of a fast run.
            if step.is_multiple_of(every) || p.step == p.total_steps || last.elapsed() >= heartbeat {
                last = Instant::now();
                let progress =
                    JobProgress { step, total_steps: p.total_steps as u64, loss: p.loss.is_finite().then_some(p.loss) };
                shared.store.progress(&job.id, progress);
                if let Some(log) = &log {
                    log.progress(progress);
                }
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
    shared.running().remove(&job.id);

    // A run of an experiment leaves what the comparison needs beside the job, taken from the
    // report before it is serialised (only runs that keep a report count).
    let run_result = match (&job.experiment, &outcome) {
        (Some(_), Ok(Ok(out))) if out.report.summary.outcome != Outcome::Cancelled => {
            Some(RunResult::from_report(&out.report))
        }
        _ => None,
    };
    let (finish, report) = classify(outcome, running.reason(), shared.config.job_timeout);
    if let Some(report) = report {
        shared.store.put_report(&job.id, report);
        if let Some(r) = run_result {
            shared.store.put_run_result(&job.id, r);
        }
    }
    let status = finish.status;
    let code = finish.error.as_ref().map_or("none", |e| e.code.name());
    match &finish.error {
        Some(e) if e.code == FailureCode::Internal => tracing::error!(error = %e.message, "job failed"),
        Some(e) if e.code == FailureCode::OutOfMemory => tracing::warn!(code, message = %e.message, "job ended"),
        Some(e) => tracing::info!(status = %status, code, message = %e.message, "job ended"),
        None => tracing::info!(status = %status, duration_ms = started.elapsed().as_millis() as u64, "job ended"),
    }
    if let Some((final_job, evicted)) = shared.store.finish(&job.id, finish) {
        if let Some(log) = &log {
            log.close(final_job);
        }
        for id in evicted {
            shared.hub.remove(&id);
        }
    }
    if let Some(experiment) = &job.experiment {
        finalize(&*shared.store, &job.tenant, experiment);
    }
    shared.metrics.finished.get_or_create(&FinishedLabels { status: status.name(), code }).inc();
    shared.metrics.duration.observe(started.elapsed().as_secs_f64());
}

type Ended = std::thread::Result<Result<RunOutput, PipelineError>>;

/// How a run ended -> the job's terminal status, error and report.
fn classify(outcome: Ended, reason: StopReason, timeout: Duration) -> (Finish, Option<Arc<[u8]>>) {
    let fail = |status, code, message: String| (Finish { status, error: Some(JobFailure { code, message }) }, None);
    let out = match outcome {
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
    match summary.outcome {
        Outcome::Cancelled => match reason {
            StopReason::Timeout => fail(
                JobStatus::Failed,
                FailureCode::Timeout,
                format!("stopped {at}: the run exceeded the per-job limit of {} s", timeout.as_secs_f64()),
            ),
            StopReason::Shutdown => fail(
                JobStatus::Cancelled,
                FailureCode::Shutdown,
                format!("stopped {at}: the server shut down and its grace period ended"),
            ),
            StopReason::Client | StopReason::None => {
                fail(JobStatus::Cancelled, FailureCode::Cancelled, format!("cancelled by request {at}"))
            }
        },
        outcome @ (Outcome::Completed | Outcome::NonFinite) => {
            let report: Option<Arc<[u8]>> = serde_json::to_vec(&out.report).ok().map(Arc::from);
            let Some(report) = report else {
                return fail(JobStatus::Failed, FailureCode::Internal, "the report could not be serialised".into());
            };
            if outcome == Outcome::NonFinite {
                let where_ = summary
                    .non_finite
                    .as_ref()
                    .map(|n| format!(" at step {} in {} ({})", n.step, n.layer, n.location))
                    .unwrap_or_default();
                let message = format!("the run diverged: NaN or Inf{where_}; the report holds the probes up to there");
                (
                    Finish {
                        status: JobStatus::Failed,
                        error: Some(JobFailure { code: FailureCode::NonFinite, message }),
                    },
                    Some(report),
                )
            } else {
                (Finish { status: JobStatus::Succeeded, error: None }, Some(report))
            }
        }
    }
}
