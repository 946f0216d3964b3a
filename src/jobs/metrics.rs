//! The job layer's Prometheus metrics: submissions by outcome, jobs finished by status and code,
//! job duration, queue depth, running jobs and live workers.
//!
//! Names follow the Prometheus guide: a `gradscope_` prefix, base units (seconds), counters end
//! in `_total` (added by the encoder); labels have a handful of values each (never a job id).
//! Gauges that mirror the store (queue depth, running) are set when `/metrics` is scraped. The
//! HTTP layer registers these beside its own. Must not depend on HTTP crates.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Label of a finished job.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FinishedLabels {
    /// Terminal status.
    pub status: &'static str,
    /// Failure code, or `none`.
    pub code: &'static str,
}

/// Label of a submission.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SubmittedLabels {
    /// `accepted`, `replayed`, `invalid`, `queue_full`, `shutting_down`, `conflict`.
    pub outcome: &'static str,
}

/// Label of a rescue.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RescuedLabels {
    /// `requeued`, or the code the job ended with (`worker_lost`, `cancelled`).
    pub outcome: &'static str,
}

/// Label of the stored-jobs gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoredLabels {
    /// `queued`, `running` or `finished`.
    pub state: &'static str,
}

/// The job metrics. Cheap to clone (every metric is an `Arc` inside).
#[derive(Debug, Clone)]
pub struct JobMetrics {
    /// Jobs finished, by status and code.
    pub finished: Family<FinishedLabels, Counter>,
    /// Submissions, by outcome.
    pub submitted: Family<SubmittedLabels, Counter>,
    /// Wall-clock time from start to finish of jobs that ran.
    pub duration: Histogram,
    /// Jobs waiting for a worker.
    pub queue_depth: Gauge,
    /// Jobs being trained.
    pub running: Gauge,
    /// Worker threads alive.
    pub workers_alive: Gauge,
    /// Jobs in the store (every replica's), by state.
    pub stored_jobs: Family<StoredLabels, Gauge>,
    /// Events in the store.
    pub stored_events: Gauge,
    /// Experiments in the store.
    pub stored_experiments: Gauge,
    /// Bytes of reports in the store.
    pub stored_report_bytes: Gauge,
    /// Leases this process held at its last renewal.
    pub leases: Gauge,
    /// Runs of this process stopped because their lease was lost.
    pub leases_lost: Counter,
    /// Jobs the rescuer of this process took back, by outcome.
    pub rescued: Family<RescuedLabels, Counter>,
    /// Finished jobs removed by retention.
    pub expired: Counter,
}

impl Default for JobMetrics {
    fn default() -> Self {
        JobMetrics {
            finished: Family::default(),
            submitted: Family::default(),
            // 10 ms .. ~20 min in doublings: tiny test specs to long runs.
            duration: Histogram::new(exponential_buckets(0.01, 2.0, 18)),
            queue_depth: Gauge::default(),
            running: Gauge::default(),
            workers_alive: Gauge::default(),
            stored_jobs: Family::default(),
            stored_events: Gauge::default(),
            stored_experiments: Gauge::default(),
            stored_report_bytes: Gauge::default(),
            leases: Gauge::default(),
            leases_lost: Counter::default(),
            rescued: Family::default(),
            expired: Counter::default(),
        }
    }
}

impl JobMetrics {
    /// Adds every metric to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register("gradscope_jobs_finished", "Jobs that reached a terminal status", self.finished.clone());
        registry.register("gradscope_jobs_submitted", "Job submissions by outcome", self.submitted.clone());
        registry.register_with_unit(
            "gradscope_job_duration",
            "Time from a worker starting a job to its end",
            prometheus_client::registry::Unit::Seconds,
            self.duration.clone(),
        );
        registry.register("gradscope_queue_depth", "Jobs waiting for a worker", self.queue_depth.clone());
        registry.register("gradscope_jobs_running", "Jobs being trained", self.running.clone());
        registry.register("gradscope_workers_alive", "Worker threads alive", self.workers_alive.clone());
        registry.register(
            "gradscope_store_jobs",
            "Jobs in the job store (all replicas), by state",
            self.stored_jobs.clone(),
        );
        registry.register("gradscope_store_events", "Job events in the job store", self.stored_events.clone());
        registry.register(
            "gradscope_store_experiments",
            "Experiments in the job store",
            self.stored_experiments.clone(),
        );
        registry.register_with_unit(
            "gradscope_store_reports",
            "Size of the reports in the job store",
            prometheus_client::registry::Unit::Bytes,
            self.stored_report_bytes.clone(),
        );
        registry.register(
            "gradscope_leases_held",
            "Job leases this process held at its last renewal",
            self.leases.clone(),
        );
        registry.register(
            "gradscope_leases_lost",
            "Runs stopped because their lease was lost",
            self.leases_lost.clone(),
        );
        registry.register(
            "gradscope_jobs_rescued",
            "Jobs taken back from lost workers, by outcome",
            self.rescued.clone(),
        );
        registry.register("gradscope_jobs_expired", "Finished jobs removed by retention", self.expired.clone());
    }

    /// Sets the gauges that mirror the store (`running_here`: this process's runs).
    pub fn set_store(&self, stats: &crate::jobs::store::StoreStats, running_here: usize) {
        let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.queue_depth.set(g(stats.queued));
        self.running.set(running_here as i64);
        self.stored_jobs.get_or_create(&StoredLabels { state: "queued" }).set(g(stats.queued));
        self.stored_jobs.get_or_create(&StoredLabels { state: "running" }).set(g(stats.running));
        self.stored_jobs.get_or_create(&StoredLabels { state: "finished" }).set(g(stats.finished));
        self.stored_events.set(g(stats.events));
        self.stored_experiments.set(g(stats.experiments));
        self.stored_report_bytes.set(g(stats.report_bytes));
    }

    /// Counts `n` rescues with `outcome`.
    pub fn rescued(&self, outcome: &'static str, n: usize) {
        self.rescued.get_or_create(&RescuedLabels { outcome }).inc_by(n as u64);
    }

    /// Counts a submission.
    pub fn submitted(&self, outcome: &'static str) {
        self.submitted.get_or_create(&SubmittedLabels { outcome }).inc();
    }
}
