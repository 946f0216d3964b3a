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
    }

    /// Counts a submission.
    pub fn submitted(&self, outcome: &'static str) {
        self.submitted.get_or_create(&SubmittedLabels { outcome }).inc();
    }
}
