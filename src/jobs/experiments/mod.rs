//! Experiments in the job layer: admission (parse, expand the variants, validate every run,
//! check the experiment's limits), one ordinary job per (variant, seed) on the shared pool,
//! cancel and delete of all of an experiment's jobs, and the summary once every run has ended.
//!
//! ```text
//! submit_experiment --parse/plan/admit--> store.create_experiment (N queued jobs, one group)
//! worker: run a job -> RunResult::from_report -> store.complete (status, report, run result)
//!         -> finalize: all runs ended? -> analysis::experiment::summarize -> store.put_experiment_result
//! ```
//!
//! Invariants: the summary is computed once, from what the store recorded (the first
//! `put_experiment_result` wins, so two workers ending the last two runs at once are harmless),
//! and `get_experiment` finalizes too, so an experiment whose last runs were cancelled while
//! queued (no worker ends them) still gets its summary. Scheduling fairness is the store's
//! `claim` ([`super::store::fair_share`]).

pub mod finalize;
pub mod model;

use std::sync::Arc;

use serde_json::Value;

use self::finalize::finalize;
use self::model::{Experiment, ExperimentSnapshot, NewExperiment, VariantRecord};
use super::error::JobsError;
use super::service::JobService;
use super::store::{NewJob, StoreError};
use super::{FailureCode, JobFailure, Tenant};
use crate::analysis::experiment::{Axis, ExperimentResult};
use crate::analysis::pipeline::PipelineError;
use crate::spec::experiment::{admit, parse_experiment, Design, NamedPatch};
use crate::spec::{SpecError, SpecErrors};

/// A page of experiments, newest first (their `result` left out: fetch one to get it).
#[derive(Debug, Clone)]
pub struct ExperimentList {
    /// The experiments.
    pub experiments: Vec<Experiment>,
    /// Where the next page starts.
    pub next_cursor: Option<String>,
}

/// The answer to a cancel request.
#[derive(Debug, Clone)]
pub enum ExperimentCancel {
    /// Its queued runs are cancelled and its running ones told to stop.
    Accepted(Experiment),
    /// Every run had already ended; nothing changed.
    AlreadyFinished(Experiment),
}

fn invalid(errors: SpecErrors) -> JobsError {
    JobsError::Invalid(PipelineError::Invalid(errors))
}

fn invalid_at(pointer: &str, detail: String) -> JobsError {
    invalid(SpecErrors(vec![SpecError { pointer: pointer.into(), detail }]))
}

/// The spec and the recommendations (as named patches) of a finished job's report.
fn remedies(report: &[u8], job: &str) -> Result<(Value, Vec<NamedPatch>), JobsError> {
    let report: Value = serde_json::from_slice(report)
        .map_err(|e| JobsError::Internal(format!("the stored report of `{job}` is not JSON: {e}")))?;
    let spec = report.get("spec").cloned().unwrap_or(Value::Null);
    let mut patches: Vec<NamedPatch> = Vec::new();
    let recs = report
        .get("diagnostics")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|d| d.get("recommendations").and_then(Value::as_array).into_iter().flatten());
    for r in recs {
        let (Some(title), Some(patch)) = (r.get("title").and_then(Value::as_str), r.get("patch")) else { continue };
        if patches.iter().any(|p| &p.patch == patch) {
            continue;
        }
        let mut name = title.to_owned();
        let mut k = 2;
        while patches.iter().any(|p| p.name == name) {
            name = format!("{title} ({k})");
            k += 1;
        }
        patches.push(NamedPatch { name, patch: patch.clone() });
    }
    if patches.is_empty() {
        return Err(invalid_at(
            "/remedies_of",
            format!("the report of job `{job}` recommends nothing to try (no diagnostic has a recommendation)"),
        ));
    }
    Ok((spec, patches))
}

impl JobService {
    /// Admits an experiment of `tenant`: every (variant, seed) becomes a queued job of one group.
    pub async fn submit_experiment(&self, tenant: &Tenant, body: &Value) -> Result<Experiment, JobsError> {
        if self.is_shutting_down() {
            return Err(self.shutting_down_error());
        }
        let plan = parse_experiment(body).map_err(invalid)?;
        let remedies = match &plan.design {
            Design::RemediesOf(job) => {
                let report = self.store.report(tenant, job).await.map_err(|e| match e {
                    StoreError::NotFound => JobsError::NotFound { id: job.clone() },
                    other => invalid_at("/remedies_of", self.store_error(job, other).to_string()),
                })?;
                Some(remedies(&report, job)?)
            }
            _ => None,
        };
        let limits = &self.config.experiment_limits;
        let (base, variants) = plan.variants(remedies, limits).map_err(invalid)?;
        let seeds = plan.seeds(&base, limits).map_err(invalid)?;
        let admitted = admit(variants, &seeds, &self.config.limits, limits).map_err(invalid)?;

        let id = uuid::Uuid::now_v7().to_string();
        let label = plan.request.name.clone().unwrap_or_else(|| format!("experiment {id}"));
        let mut jobs = Vec::new();
        let mut records = Vec::new();
        for v in admitted {
            let mut job_ids = Vec::new();
            for run in v.runs {
                let job_id = uuid::Uuid::now_v7().to_string();
                jobs.push(NewJob {
                    id: job_id.clone(),
                    tenant: tenant.clone(),
                    name: Some(format!("{label}: {}, seed {}", v.variant.name, run.seed)),
                    spec: Arc::new(run.spec),
                    total_steps: run.total_steps,
                    probe_every: run.probe_every,
                    experiment: Some(id.clone()),
                });
                job_ids.push(job_id);
            }
            records.push(VariantRecord {
                name: v.variant.name,
                baseline: v.variant.baseline,
                settings: v.variant.settings,
                patch: v.variant.patch,
                spec: v.variant.spec,
                job_ids,
            });
        }
        let axes = plan.axes().iter().map(|a| Axis { pointer: a.pointer.clone(), values: a.values.clone() }).collect();
        let new = NewExperiment {
            id: id.clone(),
            tenant: tenant.clone(),
            name: plan.request.name.clone(),
            description: plan.request.description.clone(),
            seeds,
            loss_threshold: plan.request.loss_threshold,
            axes,
            heatmap: plan.heatmap,
            variants: records,
        };
        let runs = jobs.len();
        match self.store.create_experiment(new, jobs).await {
            Ok(snap) => {
                self.pool.notify_all();
                tracing::info!(experiment.id = %id, runs, "experiment queued");
                Ok(snap.view())
            }
            Err(e) => Err(self.store_error(&id, e)),
        }
    }

    async fn snapshot(&self, tenant: &Tenant, id: &str) -> Result<ExperimentSnapshot, JobsError> {
        let not_found = || JobsError::ExperimentNotFound { id: id.to_owned() };
        let read = |r: Result<Option<ExperimentSnapshot>, StoreError>| {
            r.map_err(|e| self.store_error(id, e))?.ok_or_else(not_found)
        };
        let snap = read(self.store.experiment(tenant, id).await)?;
        if snap.record.result.is_none() && snap.record.all_ended() {
            finalize(&*self.store, tenant, id).await;
            return read(self.store.experiment(tenant, id).await);
        }
        Ok(snap)
    }

    /// The experiment `id`, with its result once every run has ended.
    pub async fn get_experiment(&self, tenant: &Tenant, id: &str) -> Result<Experiment, JobsError> {
        Ok(self.snapshot(tenant, id).await?.view())
    }

    /// The result of a finished experiment (for its HTML page and plots).
    pub async fn experiment_result(&self, tenant: &Tenant, id: &str) -> Result<Arc<ExperimentResult>, JobsError> {
        let snap = self.snapshot(tenant, id).await?;
        snap.record
            .result
            .clone()
            .ok_or_else(|| JobsError::ExperimentNotFinished { id: id.to_owned(), status: snap.status() })
    }

    /// A page of experiments, newest first, without their results.
    pub async fn list_experiments(
        &self,
        tenant: &Tenant,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<ExperimentList, JobsError> {
        let page = self.store.list_experiments(tenant, limit, cursor).await.map_err(|e| self.store_error("", e))?;
        let experiments = page
            .experiments
            .into_iter()
            .map(|s| {
                let mut view = s.view();
                view.result = None;
                view
            })
            .collect();
        Ok(ExperimentList { experiments, next_cursor: page.next_cursor })
    }

    /// Cancels every queued run of the experiment and stops its running ones within a step.
    pub async fn cancel_experiment(&self, tenant: &Tenant, id: &str) -> Result<ExperimentCancel, JobsError> {
        let failure = JobFailure {
            code: FailureCode::Cancelled,
            message: "cancelled with its experiment before it started".into(),
        };
        let (snap, cancelled, running) =
            self.store.cancel_experiment(tenant, id, failure).await.map_err(|e| match e {
                StoreError::NotFound => JobsError::ExperimentNotFound { id: id.to_owned() },
                other => self.store_error(id, other),
            })?;
        if cancelled.is_empty() && running.is_empty() && snap.record.all_ended() {
            return Ok(ExperimentCancel::AlreadyFinished(self.snapshot(tenant, id).await?.view()));
        }
        for job in cancelled {
            self.wakeups.notify(&job.id);
        }
        for job in &running {
            self.pool.cancel(job);
        }
        tracing::info!(experiment.id = %id, running = running.len(), "experiment cancelled");
        Ok(ExperimentCancel::Accepted(self.snapshot(tenant, id).await?.view()))
    }

    /// Deletes a finished experiment and every job (and report) of it.
    pub async fn delete_experiment(&self, tenant: &Tenant, id: &str) -> Result<(), JobsError> {
        self.store.delete_experiment(tenant, id).await.map_err(|e| match e {
            StoreError::NotFound => JobsError::ExperimentNotFound { id: id.to_owned() },
            StoreError::NotFinished(status) => JobsError::ExperimentNotFinished { id: id.to_owned(), status },
            other => self.store_error(id, other),
        })?;
        Ok(())
    }
}
