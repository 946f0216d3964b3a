//! What an experiment's summary is computed from: per variant, per seed, what the run left.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::analysis::findings::{DiagnosticCode, Verdict};

/// What one finished run of a variant left for the comparison: taken from its report when the
/// run ends (so the comparison does not need the report kept), small enough to store beside the
/// experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// The report's `summary.final_loss`; `None` when it was not finite.
    pub final_loss: Option<f64>,
    /// `summary.final_accuracy` (classification only).
    pub final_accuracy: Option<f64>,
    /// NaN or Inf appeared (the run diverged).
    pub non_finite: bool,
    /// `summary.grad_ratio_first_last`: first/last hidden layer weight-gradient norm at step 0.
    pub grad_ratio_init: Option<f64>,
    /// The same ratio at the last probe.
    pub grad_ratio_end: Option<f64>,
    /// The report's verdict.
    pub verdict: Verdict,
    /// The codes of its diagnostics, in report order.
    pub codes: Vec<DiagnosticCode>,
    /// Probe steps (the report's `steps`).
    pub steps: Vec<usize>,
    /// Training loss at those steps (`None` where not finite).
    pub loss: Vec<Option<f64>>,
    /// Names of the layers with weights, in order (the report's `layer_stats[].layer` that have
    /// a `grad_norm`).
    pub layers: Vec<String>,
    /// Their weight-gradient norms at step 0.
    pub grad_norm_init: Vec<Option<f64>>,
    /// Steps run and planned.
    pub steps_done: usize,
    /// Steps planned.
    pub total_steps: usize,
    /// Wall time of the run.
    pub duration_ms: u64,
}

/// How a run of a variant stands when the summary is made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RunState {
    /// It ended with a report (completed, or diverged: `non_finite` says which).
    Finished(RunResult),
    /// It ended without a report (cancelled, timed out, failed); the sentence says why.
    Missing {
        /// Why.
        reason: String,
    },
    /// Not finished yet.
    Pending,
}

/// One run of a variant.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInput {
    /// The seed it ran with.
    pub seed: u64,
    /// The job that ran it.
    pub job_id: String,
    /// What it left.
    pub state: RunState,
}

/// One variant and its runs (one per seed, in the experiment's seed order).
#[derive(Debug, Clone, PartialEq)]
pub struct VariantInput {
    /// Its name (unique in the experiment).
    pub name: String,
    /// True for the baseline (exactly one variant).
    pub baseline: bool,
    /// For a grid (`vary`): the value of each axis, in axis order; empty otherwise.
    pub settings: Vec<Value>,
    /// The RFC 6902 patch from the base spec to this variant (an array; empty for the baseline).
    pub patch: Value,
    /// The variant's full spec (before the seed is set).
    pub spec: Value,
    /// Its runs.
    pub runs: Vec<RunInput>,
}

/// An axis of a grid: a JSON Pointer into the spec and the values it takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    /// The pointer.
    pub pointer: String,
    /// The values, in request order.
    pub values: Vec<Value>,
}

/// Everything [`super::summarize`] needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentInput {
    /// The experiment's name, if any.
    pub name: Option<String>,
    /// The seeds, in order; every variant ran on each.
    pub seeds: Vec<u64>,
    /// Report the first step at which the loss is at or below this, when given.
    pub loss_threshold: Option<f64>,
    /// The grid's axes (`vary`); empty for `variants` and `remedies_of`.
    pub axes: Vec<Axis>,
    /// The two axes (indices into `axes`) of the score heatmap; `None` without two axes.
    pub heatmap: Option<(usize, usize)>,
    /// The variants, baseline first.
    pub variants: Vec<VariantInput>,
}
