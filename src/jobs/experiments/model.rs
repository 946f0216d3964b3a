//! The experiment model: what the store keeps of an experiment ([`ExperimentRecord`]) and what
//! clients see of it ([`Experiment`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::analysis::experiment::{
    Axis, ExperimentInput, ExperimentResult, RunInput, RunResult, RunState, VariantInput,
};
use crate::jobs::{rfc3339, JobFailure, JobProgress, JobStatus};

/// A variant as the store keeps it: its spec and the job of each seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantRecord {
    /// Unique name.
    pub name: String,
    /// The base unchanged.
    pub baseline: bool,
    /// A grid cell's value of each axis.
    pub settings: Vec<Value>,
    /// RFC 6902 patch from the base.
    pub patch: Value,
    /// The full spec (seed replaced per run).
    pub spec: Value,
    /// One job per seed, in the experiment's seed order.
    pub job_ids: Vec<String>,
}

/// An experiment to add to the store, with its jobs (stored as JSON by the durable stores).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewExperiment {
    /// Its id.
    pub id: String,
    /// Whose it is (its jobs are the same tenant's).
    pub tenant: crate::jobs::Tenant,
    /// Free-form label.
    pub name: Option<String>,
    /// What it shows.
    pub description: Option<String>,
    /// The seeds, in order.
    pub seeds: Vec<u64>,
    /// Steps-to-threshold is reported for this loss.
    pub loss_threshold: Option<f64>,
    /// Grid axes (empty for named patches).
    pub axes: Vec<Axis>,
    /// Heatmap axes (indices into `axes`).
    pub heatmap: Option<(usize, usize)>,
    /// The variants, baseline first.
    pub variants: Vec<VariantRecord>,
}

/// What a run of an experiment left, as the store records it when the job ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSlot {
    /// The job's status when it ended.
    pub status: JobStatus,
    /// Its error, if any.
    pub error: Option<JobFailure>,
    /// What its report said (`None` when it ended without one).
    pub result: Option<RunResult>,
}

/// An experiment as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentRecord {
    /// What was submitted.
    pub new: NewExperiment,
    /// Creation order (for listing).
    pub seq: u64,
    /// When it was accepted.
    pub created_at: SystemTime,
    /// When its last run ended.
    pub finished_at: Option<SystemTime>,
    /// A client asked to cancel it.
    pub cancel_requested: bool,
    /// Runs that have ended, by job id.
    pub ended: HashMap<String, RunSlot>,
    /// The summary, once every run has ended.
    pub result: Option<Arc<ExperimentResult>>,
}

impl ExperimentRecord {
    /// Every job id, variant by variant.
    pub fn job_ids(&self) -> impl Iterator<Item = &String> {
        self.new.variants.iter().flat_map(|v| v.job_ids.iter())
    }

    /// True once every run has ended.
    pub fn all_ended(&self) -> bool {
        self.job_ids().all(|id| self.ended.contains_key(id))
    }

    /// The summary's input: what each run left so far.
    pub fn input(&self) -> ExperimentInput {
        let variants = self
            .new
            .variants
            .iter()
            .map(|v| VariantInput {
                name: v.name.clone(),
                baseline: v.baseline,
                settings: v.settings.clone(),
                patch: v.patch.clone(),
                spec: v.spec.clone(),
                runs: v
                    .job_ids
                    .iter()
                    .zip(&self.new.seeds)
                    .map(|(id, &seed)| RunInput {
                        seed,
                        job_id: id.clone(),
                        state: match self.ended.get(id) {
                            None => RunState::Pending,
                            Some(RunSlot { result: Some(r), .. }) => RunState::Finished(r.clone()),
                            Some(RunSlot { status, error, result: None }) => RunState::Missing {
                                reason: error.as_ref().map_or_else(
                                    || format!("the job ended {status} without a report"),
                                    |e| e.message.clone(),
                                ),
                            },
                        },
                    })
                    .collect(),
            })
            .collect();
        ExperimentInput {
            name: self.new.name.clone(),
            seeds: self.new.seeds.clone(),
            loss_threshold: self.new.loss_threshold,
            axes: self.new.axes.clone(),
            heatmap: self.new.heatmap,
            variants,
        }
    }
}

/// A stored experiment with the live state of its jobs (those not evicted).
#[derive(Debug, Clone)]
pub struct ExperimentSnapshot {
    /// The record.
    pub record: ExperimentRecord,
    /// Status and progress of each job the store still has, by id.
    pub jobs: HashMap<String, (JobStatus, JobProgress)>,
}

/// Steps and runs of an experiment, summed over its jobs.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct ExperimentProgress {
    /// Runs (variants x seeds).
    pub runs: u64,
    /// Runs that have ended.
    pub runs_ended: u64,
    /// Runs being trained now.
    pub runs_running: u64,
    /// Training steps done, over every run.
    pub step: u64,
    /// Training steps planned, over every run.
    pub total_steps: u64,
}

/// One run of an experiment: a (variant, seed) job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExperimentRun {
    /// The seed.
    pub seed: u64,
    /// The job (`GET /v1/jobs/{job_id}`, its report at `/v1/jobs/{job_id}/report`).
    pub job_id: String,
    /// The job's status.
    pub status: JobStatus,
}

/// A variant as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExperimentVariant {
    /// Unique name (`baseline` for the base spec unless a grid cell is it).
    pub name: String,
    /// The base spec unchanged.
    pub baseline: bool,
    /// For a grid: each axis's pointer -> this variant's value.
    #[schema(value_type = Object)]
    pub settings: Value,
    /// The RFC 6902 patch from the base spec.
    #[schema(value_type = Vec<Object>)]
    pub patch: Value,
    /// Its runs, one per seed.
    pub runs: Vec<ExperimentRun>,
}

/// An experiment as clients see it (without the links the API adds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Experiment {
    /// Opaque identifier.
    pub id: String,
    /// Free-form label.
    pub name: Option<String>,
    /// What it shows.
    pub description: Option<String>,
    /// `queued` until a run starts, `running` until every run has ended, then `succeeded`
    /// (some runs may have failed: the result says which), `cancelled` (cancelled by request) or
    /// `failed` (no run left a report).
    pub status: JobStatus,
    /// When it was accepted (RFC 3339, UTC).
    pub created_at: String,
    /// When its last run ended.
    pub finished_at: Option<String>,
    /// A cancel was requested.
    pub cancel_requested: bool,
    /// Every variant runs on each of these seeds.
    pub seeds: Vec<u64>,
    /// The variants, baseline first.
    pub variants: Vec<ExperimentVariant>,
    /// Runs and steps, summed.
    pub progress: ExperimentProgress,
    /// The comparison, once every run has ended; `null` before.
    pub result: Option<ExperimentResult>,
}

impl ExperimentSnapshot {
    /// The status, from the runs: see [`Experiment::status`].
    pub fn status(&self) -> JobStatus {
        let r = &self.record;
        if r.all_ended() {
            if r.cancel_requested {
                JobStatus::Cancelled
            } else if r.ended.values().any(|s| s.result.is_some()) {
                JobStatus::Succeeded
            } else {
                JobStatus::Failed
            }
        } else if r.ended.is_empty() && self.jobs.values().all(|(s, _)| *s == JobStatus::Queued) {
            JobStatus::Queued
        } else {
            JobStatus::Running
        }
    }

    /// The client's view.
    pub fn view(&self) -> Experiment {
        let r = &self.record;
        let mut progress = ExperimentProgress::default();
        let mut variants = Vec::with_capacity(r.new.variants.len());
        for v in &r.new.variants {
            let mut runs = Vec::with_capacity(v.job_ids.len());
            for (id, &seed) in v.job_ids.iter().zip(&r.new.seeds) {
                let live = self.jobs.get(id);
                let status = match (r.ended.get(id), live) {
                    (Some(slot), _) => slot.status,
                    (None, Some((s, _))) => *s,
                    (None, None) => JobStatus::Queued,
                };
                progress.runs += 1;
                if status.is_terminal() {
                    progress.runs_ended += 1;
                }
                if status == JobStatus::Running {
                    progress.runs_running += 1;
                }
                let (step, total) = match (live, r.ended.get(id).and_then(|s| s.result.as_ref())) {
                    (Some((_, p)), _) => (p.step, p.total_steps),
                    (None, Some(res)) => (res.steps_done as u64, res.total_steps as u64),
                    (None, None) => (0, 0),
                };
                progress.step += step;
                progress.total_steps += total;
                runs.push(ExperimentRun { seed, job_id: id.clone(), status });
            }
            let settings: Map<String, Value> =
                r.new.axes.iter().zip(&v.settings).map(|(a, s)| (a.pointer.clone(), s.clone())).collect();
            variants.push(ExperimentVariant {
                name: v.name.clone(),
                baseline: v.baseline,
                settings: Value::Object(settings),
                patch: v.patch.clone(),
                runs,
            });
        }
        Experiment {
            id: r.new.id.clone(),
            name: r.new.name.clone(),
            description: r.new.description.clone(),
            status: self.status(),
            created_at: rfc3339(r.created_at),
            finished_at: r.finished_at.map(rfc3339),
            cancel_requested: r.cancel_requested && !r.all_ended(),
            seeds: r.new.seeds.clone(),
            variants,
            progress,
            result: r.result.as_deref().cloned(),
        }
    }
}

/// One page of experiments, newest first.
#[derive(Debug, Clone)]
pub struct ExperimentPage {
    /// The experiments.
    pub experiments: Vec<ExperimentSnapshot>,
    /// Where the next page starts.
    pub next_cursor: Option<String>,
}
