//! Every recommendation verified by outcome: the patched spec is trained on the same data and
//! seed for a short budget and compared with the unpatched spec on the same budget.
//!
//! **The budget.** `n` distinct patches (identical patches of several diagnostics run once) of a
//! job of `S` steps and compute `C` (parameters x steps x batch [x time steps], as the spec's
//! `max_compute` counts it) are run for `B` steps each: the most steps (at most `S`) at which
//! all of them, and the baseline when `B < S`, fit in `share x C`, counting each patched spec's
//! own compute per step (a batch-normed or LSTM variant costs more), each run paying its fixed
//! part too ([`fixed_steps`]: its final evaluation, in steps' worth); at least
//! `min(S, VERIFY_MIN_STEPS)`. The verifications together cost at most `share x C`: in report
//! order each patched run whose compute at `B` steps still fits is run, the others are
//! `not_verified` (`over_budget`). A patched spec whose estimated peak memory
//! (`engine::memory::estimate` at the job's steps), with what the job holds meanwhile
//! ([`Job::held`]), is over the job's `max_job_memory` is not run either (`over_memory`), so
//! that a verification never takes the job over its memory limit. The baseline is the job's own run when `B = S`,
//! else the unpatched spec run for `B` steps (the job's final loss is an evaluation of the final
//! network, which its record does not have at step `B`). Compute, not time, so a report stays a
//! function of the spec.
//!
//! **The comparison** is the experiments' (`analysis::experiment`): each run's figures are a
//! [`RunResult`] taken from its report by [`RunResult::from_report`], the difference is the
//! paired `variant - baseline` ([`PairedDiff`], here on one seed), and losses are compared as the
//! experiment ranking compares them ([`ranking_loss`]: 3 significant digits, below 1e-3 equal).
//! Lower by more than [`VERIFY_MARGIN`] (5%) is `verified_better`, higher (or NaN/Inf)
//! `tried_worse`, in between `tried_no_change`; a finite loss against a diverged baseline is
//! better.
//!
//! **The ranking** of a diagnostic's recommendations: `verified_better` first, by final loss at
//! the budget then gradient health (|log10 grad_ratio_end|, as the experiment ranking), then
//! `not_verified` in their documented order, then the tried ones (listed with their figures, not
//! recommended).
//!
//! The shared seam with experiments: [`run_for_steps`] (a spec, trained for a number of steps,
//! summarised as a [`RunResult`]), patches applied with `spec::experiment::apply`, and
//! [`compare`]. An experiment's runs are full jobs whose reports give the same `RunResult`.

use std::cmp::Ordering;

use serde_json::Value;

use super::diagnostics::{diagnose, verdict};
use super::experiment::{ranking_loss, PairedDiff, RunResult};
use super::findings::{Diagnostic, NotVerifiedReason, RunOutcome, Verification, VerifyStatus};
use super::report::{build_report, Outcome, Parts};
use crate::engine::memory;
use crate::engine::train::{self, CancelFlag};
use crate::spec::experiment::apply;
use crate::spec::{parse, Limits};

/// A patched run is `verified_better` only when its final loss at the budget is below the
/// baseline's by more than this fraction: a short run's small gain often does not last (a deep
/// sigmoid MLP with batch norm: 4% lower after 29 steps, 1% higher after 300).
pub const VERIFY_MARGIN: f64 = 0.05;
/// Fewest steps of a verification run (fewer when the job itself runs fewer).
pub const VERIFY_MIN_STEPS: usize = 20;
/// Default share of a job's compute that its verifications may take together.
pub const DEFAULT_VERIFY_SHARE: f64 = 0.5;
/// Probe points kept per series of a verification run's report (only its summary is read).
const VERIFY_MAX_POINTS: usize = 200;
/// The pointer a run at the budget sets.
const STEPS: &str = "/training/steps";

/// The job whose recommendations are verified.
pub struct Job<'a> {
    /// Its expanded spec (what the patches apply to).
    pub spec: &'a Value,
    /// Its training steps.
    pub steps: usize,
    /// Its compute, as `Spec::validate_measured` counts it.
    pub compute: u128,
    /// What its own run left.
    pub own: &'a RunResult,
    /// The limits every patched spec is validated against.
    pub limits: &'a Limits,
    /// Bytes the job holds while its recommendations are verified (its record and report):
    /// a patched run must fit in `limits.max_job_memory` with them.
    pub held: u64,
    /// The job's cancel flag: a cancelled verification run counts as not verified.
    pub cancel: &'a CancelFlag,
}

/// `spec_json` with `training.steps` set to `steps`.
pub fn with_steps(spec_json: &Value, steps: usize) -> Value {
    let mut spec = spec_json.clone();
    if let Some(obj) = spec.as_object_mut() {
        let training = obj.entry("training").or_insert_with(|| Value::Object(Default::default()));
        if let Some(t) = training.as_object_mut() {
            t.insert("steps".into(), Value::from(steps));
        }
    }
    spec
}

/// Trains `spec_json` for `steps` steps and summarises the run as the experiments do. Its
/// figures are those of `pipeline::run` on the same spec with `training.steps = steps`: the
/// same validation and training; only the theory and the recommendations are left out.
pub fn run_for_steps(
    spec_json: &Value,
    steps: usize,
    limits: &Limits,
    cancel: &CancelFlag,
) -> Result<RunResult, NotVerifiedReason> {
    let spec_json = with_steps(spec_json, steps);
    let spec = parse(&spec_json).map_err(|_| NotVerifiedReason::PatchInvalid)?;
    let mut config = spec.validate(limits).map_err(|_| NotVerifiedReason::PatchInvalid)?;
    config.probes.parameters = false;
    let record = train::train(&config, cancel, &mut |_| {}).map_err(|_| NotVerifiedReason::RunFailed)?;
    let diagnostics = diagnose(&record, record.classes);
    let parts = Parts {
        verdict: verdict(&diagnostics),
        spec: spec_json,
        seed: config.seed,
        max_points: VERIFY_MAX_POINTS,
        diagnostics,
        theory: None,
        parameters: false,
    };
    let report = build_report(&record, parts);
    if report.summary.outcome == Outcome::Cancelled {
        return Err(NotVerifiedReason::RunFailed);
    }
    Ok(RunResult::from_report(&report))
}

/// The verdict of `patched` against `baseline` (see the module doc) and the loss difference.
pub fn compare(baseline: &RunResult, patched: &RunResult) -> (VerifyStatus, Option<f64>) {
    let loss = |r: &RunResult| r.final_loss.filter(|l| l.is_finite() && !r.non_finite);
    let diff = PairedDiff::of(&loss(patched).zip(loss(baseline)).into_iter().collect::<Vec<_>>()).mean;
    let status = match (loss(patched).map(ranking_loss), loss(baseline).map(ranking_loss)) {
        (None, None) => VerifyStatus::TriedNoChange,
        (None, Some(_)) => VerifyStatus::TriedWorse,
        (Some(_), None) => VerifyStatus::VerifiedBetter,
        (Some(p), Some(b)) if p < b * (1.0 - VERIFY_MARGIN) => VerifyStatus::VerifiedBetter,
        (Some(p), Some(b)) if p > b => VerifyStatus::TriedWorse,
        (Some(_), Some(_)) => VerifyStatus::TriedNoChange,
    };
    (status, diff)
}

/// The figures a report shows for a run at the budget.
pub fn outcome(r: &RunResult) -> RunOutcome {
    RunOutcome {
        final_loss: r.final_loss.filter(|l| l.is_finite() && !r.non_finite),
        final_accuracy: r.final_accuracy,
        grad_ratio_first_last: r.grad_ratio_init,
        grad_ratio_end: r.grad_ratio_end,
        verdict: r.verdict,
    }
}

/// The verification budget in steps: the most steps `B <= steps` at which the patched runs
/// (`per_step_all`: their compute per step, summed) and, when `B < steps`, the baseline
/// (`own_per_step`) all fit in `allowed`, each run also paying `fixed_steps` steps' worth for
/// what it costs whatever its length (its final evaluation, see [`fixed_steps`]); at least
/// `min(steps, VERIFY_MIN_STEPS)`.
pub fn budget_steps(steps: usize, allowed: f64, own_per_step: f64, per_step_all: f64, fixed_steps: f64) -> usize {
    let fit = |per_step: f64| if per_step > 0.0 { (allowed / per_step).floor() - fixed_steps } else { f64::INFINITY };
    let b = if fit(per_step_all) >= steps as f64 { steps as f64 } else { fit(per_step_all + own_per_step) };
    let b = if b.is_finite() { b.clamp(0.0, steps as f64) as usize } else { steps };
    b.clamp(steps.min(VERIFY_MIN_STEPS), steps)
}

/// What a run costs whatever its length, in steps of its own compute: the final evaluation of
/// the trained network on up to `FINAL_EVAL_SAMPLES` training samples, `samples / batch` steps'
/// worth (counted as a full step per batch though it is a forward pass only: data generation,
/// the first probes and the buffers' first allocation come with it). Measured on
/// `examples/deep-sigmoid.json`: a 1-step run takes ~9 ms against ~0.7 ms per step, ~13 steps;
/// this gives 1024 / 64 = 16.
pub fn fixed_steps(spec: &Value) -> f64 {
    let batch = spec.pointer("/training/batch_size").and_then(Value::as_f64).filter(|b| *b >= 1.0).unwrap_or(64.0);
    let samples = spec
        .pointer("/data/samples")
        .and_then(Value::as_f64)
        .or_else(|| spec.pointer("/data/x").and_then(Value::as_array).map(|a| a.len() as f64))
        .unwrap_or(batch);
    samples.min(train::FINAL_EVAL_SAMPLES as f64) / batch
}

/// A spec's compute as `max_compute` counts it; `None` when it does not validate.
fn compute_of(spec_json: &Value, limits: &Limits) -> Option<u128> {
    parse(spec_json).ok()?.validate_measured(limits).ok().map(|(_, w)| w)
}

/// Whether `spec_json` run for the job's steps, with what the job holds, would be over the
/// job's memory limit (an upper bound for its run at the budget: fewer steps, a shorter record).
fn over_memory(spec_json: &Value, job: &Job<'_>, unlimited: &Limits) -> bool {
    let Some(config) = parse(&with_steps(spec_json, job.steps)).ok().and_then(|s| s.validate(unlimited).ok()) else {
        return false;
    };
    memory::estimate(&config).bytes.saturating_add(job.held) > job.limits.max_job_memory
}

/// A distinct patch and what became of it.
struct Candidate {
    patch: Vec<Value>,
    /// The patched spec at the budget and its compute, or why it cannot run.
    run: Result<(Value, u128), NotVerifiedReason>,
    verification: Option<Verification>,
}

/// Verifies every recommendation of `diagnostics` within `share` of the job's compute and
/// re-ranks each diagnostic's list (see the module doc). `share <= 0` does nothing.
pub fn verify(diagnostics: &mut [Diagnostic], job: &Job<'_>, share: f64) {
    if share <= 0.0 || !share.is_finite() || job.steps == 0 {
        return;
    }
    let mut candidates: Vec<Candidate> = Vec::new();
    for r in diagnostics.iter().flat_map(|d| &d.recommendations) {
        if !candidates.iter().any(|c| c.patch == r.patch) {
            let run = patched_spec(job.spec, &r.patch);
            candidates.push(Candidate { patch: r.patch.clone(), run: run.map(|s| (s, 0)), verification: None });
        }
    }
    // Per-step compute of each runnable patched spec (compute is linear in the steps); its
    // memory is checked apart, so that a spec over it is reported as such.
    let unlimited = Limits { max_job_memory: u64::MAX, ..job.limits.clone() };
    for c in candidates.iter_mut() {
        c.run = std::mem::replace(&mut c.run, Err(NotVerifiedReason::RunFailed)).and_then(|(spec, _)| {
            // At the job's steps, which a warm-up's length was checked against.
            let total = compute_of(&spec, &unlimited).ok_or(NotVerifiedReason::PatchInvalid)?;
            let per_step = total.div_ceil(job.steps as u128);
            if over_memory(&spec, job, &unlimited) {
                return Err(NotVerifiedReason::OverMemory);
            }
            Ok((spec, per_step))
        });
    }
    let own_per_step = job.compute as f64 / job.steps as f64;
    let all: f64 = candidates.iter().filter_map(|c| c.run.as_ref().ok()).map(|(_, w)| *w as f64).sum();
    let fixed = fixed_steps(job.spec);
    let budget = budget_steps(job.steps, share * job.compute as f64, own_per_step, all, fixed);
    let allowed = share * job.compute as f64;
    // Every run pays its fixed part on top of its steps.
    let run_steps = budget as f64 + fixed;
    let mut spent = if budget < job.steps { own_per_step * run_steps } else { 0.0 };
    for c in candidates.iter_mut() {
        if let Ok((_, per_step)) = &mut c.run {
            *per_step = (*per_step as f64 * run_steps).ceil() as u128;
        }
    }
    let mut baseline: Option<Result<RunResult, NotVerifiedReason>> = None;
    for c in candidates.iter_mut() {
        let result = match &c.run {
            Err(reason) => Err(*reason),
            Ok((_, compute)) if spent + *compute as f64 > allowed => Err(NotVerifiedReason::OverBudget),
            Ok((spec, compute)) => {
                spent += *compute as f64;
                let base = baseline.get_or_insert_with(|| {
                    if budget == job.steps {
                        Ok(job.own.clone())
                    } else {
                        run_for_steps(job.spec, budget, job.limits, job.cancel)
                    }
                });
                match base {
                    Ok(_) if warmup_steps(spec).is_some_and(|w| w > budget) => Err(NotVerifiedReason::WithinWarmup),
                    Ok(base) => run_for_steps(spec, budget, job.limits, job.cancel).map(|p| (base.clone(), p)),
                    Err(reason) => Err(*reason),
                }
            }
        };
        c.verification = Some(match result {
            Ok((base, patched)) => {
                let (status, loss_change) = compare(&base, &patched);
                Verification {
                    status,
                    reason: None,
                    steps: Some(budget),
                    baseline: Some(outcome(&base)),
                    patched: Some(outcome(&patched)),
                    loss_change,
                }
            }
            Err(reason) => not_verified(reason),
        });
    }
    for d in diagnostics.iter_mut() {
        for r in d.recommendations.iter_mut() {
            r.verification = candidates.iter().find(|c| c.patch == r.patch).and_then(|c| c.verification.clone());
        }
        rank(&mut d.recommendations);
    }
}

/// A spec's linear warm-up length, when it warms up (a cosine schedule is not a pure warm-up).
fn warmup_steps(spec: &Value) -> Option<usize> {
    let schedule = spec.pointer("/training/schedule")?;
    (schedule.get("type")? == "warmup").then(|| schedule.get("warmup_steps")?.as_u64())??.try_into().ok()
}

fn not_verified(reason: NotVerifiedReason) -> Verification {
    Verification {
        status: VerifyStatus::NotVerified,
        reason: Some(reason),
        steps: None,
        baseline: None,
        patched: None,
        loss_change: None,
    }
}

/// The spec a patch gives, unless it changes the steps or does not apply.
fn patched_spec(spec: &Value, patch: &[Value]) -> Result<Value, NotVerifiedReason> {
    if patch.iter().any(|op| op.get("path").and_then(Value::as_str).is_some_and(|p| p == STEPS)) {
        return Err(NotVerifiedReason::ChangesSteps);
    }
    apply(spec, &Value::Array(patch.to_vec())).map_err(|_| NotVerifiedReason::PatchInvalid)
}

/// Sorts by status (better, not verified, no change, worse), then for the tried ones by the
/// final loss at the budget and gradient health; stable, so ties keep the documented order.
pub fn rank(recommendations: &mut [super::findings::Recommendation]) {
    let group = |s: Option<VerifyStatus>| match s {
        Some(VerifyStatus::VerifiedBetter) => 0,
        Some(VerifyStatus::NotVerified) | None => 1,
        Some(VerifyStatus::TriedNoChange) => 2,
        Some(VerifyStatus::TriedWorse) => 3,
    };
    let opt = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => a.total_cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    recommendations.sort_by(|a, b| {
        let (va, vb) = (a.verification.as_ref(), b.verification.as_ref());
        let key = |v: Option<&Verification>| {
            let p = v.and_then(|v| v.patched.as_ref());
            let loss = p.and_then(|p| p.final_loss).map(ranking_loss);
            let health = p.and_then(|p| p.grad_ratio_end).filter(|g| *g > 0.0).map(|g| g.log10().abs());
            (group(v.map(|v| v.status)), loss, health)
        };
        let (ka, kb) = (key(va), key(vb));
        ka.0.cmp(&kb.0).then_with(|| if ka.0 == 1 { Ordering::Equal } else { opt(ka.1, kb.1).then(opt(ka.2, kb.2)) })
    });
}
