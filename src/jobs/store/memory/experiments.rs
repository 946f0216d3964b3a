//! The experiment half of [`MemoryStore`](super::MemoryStore): experiments live beside the jobs
//! under the same lock, so that creating an experiment and its jobs, and recording how each
//! run ended, are each one atomic step.
//!
//! Invariants: every job of a stored experiment was created with it; when one of those jobs
//! reaches a terminal status its outcome (status, error, the run's [`RunResult`]) is copied into
//! the experiment at once, so that the comparison survives the eviction of finished jobs;
//! finished experiments are evicted like finished jobs (count and age bounds).

use std::collections::HashMap;
use std::time::SystemTime;

use super::Inner;
use crate::analysis::experiment::RunResult;
use crate::jobs::experiments::model::{ExperimentRecord, ExperimentSnapshot, NewExperiment, RunSlot};
use crate::jobs::store::NewJob;
use crate::jobs::Job;

impl Inner {
    /// Adds an experiment and its jobs (the caller checked the capacity).
    pub(super) fn insert_experiment(&mut self, experiment: NewExperiment, jobs: Vec<NewJob>) -> ExperimentSnapshot {
        for job in jobs {
            self.insert(job);
        }
        let seq = self.next_experiment_seq;
        self.next_experiment_seq += 1;
        let id = experiment.id.clone();
        let record = ExperimentRecord {
            new: experiment,
            seq,
            created_at: SystemTime::now(),
            finished_at: None,
            cancel_requested: false,
            ended: HashMap::new(),
            result: None,
        };
        let snap = self.snapshot(&record);
        self.experiments_by_seq.insert(seq, id.clone());
        self.experiments.insert(id, record);
        snap
    }

    /// The record with the live state of its jobs.
    pub(super) fn snapshot(&self, record: &ExperimentRecord) -> ExperimentSnapshot {
        let jobs =
            record.job_ids().filter_map(|id| self.jobs.get(id).map(|r| (id.clone(), (r.status, r.progress)))).collect();
        ExperimentSnapshot { record: record.clone(), jobs }
    }

    /// A job of experiment `experiment` reached a terminal status.
    pub(super) fn run_ended(&mut self, experiment: &str, job: &Job, result: Option<RunResult>) {
        let Some(record) = self.experiments.get_mut(experiment) else { return };
        record.ended.insert(job.id.clone(), RunSlot { status: job.status, error: job.error.clone(), result });
        if record.all_ended() && record.finished_at.is_none() {
            record.finished_at = Some(SystemTime::now());
        }
    }

    /// Forgets finished experiments over the count (`retain`) or age (`ttl`) bound.
    pub(super) fn evict_experiments(&mut self, retain: usize, ttl: std::time::Duration) {
        let now = SystemTime::now();
        let mut finished: Vec<(SystemTime, String)> =
            self.experiments.values().filter_map(|r| r.finished_at.map(|t| (t, r.new.id.clone()))).collect();
        finished.sort();
        let excess = finished.len().saturating_sub(retain);
        for (k, (at, id)) in finished.into_iter().enumerate() {
            let too_old = now.duration_since(at).is_ok_and(|d| d > ttl);
            if k < excess || too_old {
                if let Some(r) = self.experiments.remove(&id) {
                    self.experiments_by_seq.remove(&r.seq);
                }
            }
        }
    }
}
