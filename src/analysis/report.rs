//! The Report wire type and its conversion from a [`RunRecord`] and the findings the pipeline
//! assembled (`analysis/pipeline.rs`: measure -> diagnose -> recommend -> rank -> theory).
//!
//! Numbers are always finite in the JSON: a NaN or infinite measurement becomes `null` and is
//! counted in the layer's `non_finite` (`{"nan": n, "inf": n}`); `null` never means anything
//! else. A quantity that does not apply to a layer (a weight-gradient norm for a dropout layer,
//! saturation for a ReLU layer) is left out of that layer's entry rather than set to `null`.
//!
//! Downsampling: when a run has more probe steps than `max_points`, the series keep the probes
//! at indices `round(i (n - 1) / (max_points - 1))` for `i = 0..max_points` — evenly spaced,
//! always including the first and the last probe.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::findings::{Diagnostic, Recommendation, Verdict, Verification, VerifyStatus};
use super::measures::{first_recurrent, grad_ratio_first_last, memory_horizon};
use super::theory::Theory;
use crate::engine::layers::LayerKind;
use crate::engine::probe::{LayerSeries, NonFinite, HIST_EDGES};
use crate::engine::train::{LayerParams, RunEnd, RunRecord};

/// The gradient-flow report.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Report {
    /// Always 1 for this shape.
    pub report_version: u32,
    /// The spec as run: presets and shorthands expanded, defaults filled in.
    #[schema(value_type = crate::spec::Spec)]
    pub spec: Value,
    /// Headline figures and the verdict.
    pub summary: Summary,
    /// The reported layers.
    pub layers: Vec<LayerEntry>,
    /// Probe steps (0-based).
    pub steps: Vec<usize>,
    /// Training-batch loss at each probe step.
    pub loss: Vec<Option<f64>>,
    /// Training-batch accuracy (classification only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<Vec<Option<f64>>>,
    /// Validation loss (when there is a validation split).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<Vec<Option<f64>>>,
    /// Validation accuracy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<Vec<Option<f64>>>,
    /// Global gradient L2 norm before clipping.
    pub grad_norm_global: Vec<Option<f64>>,
    /// Global gradient L2 norm after clipping (equal to the above without clipping).
    pub grad_norm_clipped: Vec<Option<f64>>,
    /// Per-layer series, parallel to `layers`.
    pub layer_stats: Vec<LayerStats>,
    /// Residual and transformer blocks: the residual stream at each kept probe step.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<BlockStats>,
    /// Recurrent networks: ||dL/dh_t|| for t = 1..T at each kept probe step, for the first
    /// recurrent layer (the one the gradient must travel furthest to reach).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timesteps: Option<Timesteps>,
    /// Diagnostics (what is wrong, where, how sure, what to change).
    pub diagnostics: Vec<Diagnostic>,
    /// Theory at initialisation: mean-field predictions for this network before training, beside
    /// the step-0 measurements (see `analysis::theory`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub theory: Option<Theory>,
    /// Parameter gradients in the explicit-parameter layout (analysis with `return_gradients`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gradients: Option<Value>,
    /// Trained parameters in the explicit-parameter layout (`probes.parameters`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// What produced the report, so it can be reproduced.
    pub engine: EngineInfo,
}

impl Report {
    /// The top recommendation when one was verified: the `verified_better` one that lowered the
    /// loss most (all are measured against the same baseline run), with its diagnostic. Ties go
    /// to the report's order.
    pub fn top_verified(&self) -> Option<(&Diagnostic, &Recommendation, &Verification)> {
        let verified = self.diagnostics.iter().flat_map(|d| {
            d.recommendations.iter().filter_map(move |r| {
                let v = r.verification.as_ref().filter(|v| v.status == VerifyStatus::VerifiedBetter)?;
                Some((d, r, v))
            })
        });
        // `min_by` keeps the first of equals.
        verified.min_by(|a, b| {
            let change = |v: &Verification| v.loss_change.unwrap_or(f64::INFINITY);
            change(a.2).total_cmp(&change(b.2))
        })
    }

    /// The first recommendation still recommended (not tried and found no better), most serious
    /// diagnostic first: the top recommendation when none was verified better.
    pub fn first_recommended(&self) -> Option<(&Diagnostic, &Recommendation)> {
        let mut diagnostics: Vec<&Diagnostic> = self.diagnostics.iter().collect();
        diagnostics.sort_by_key(|d| std::cmp::Reverse(d.severity));
        diagnostics.into_iter().find_map(|d| {
            let r =
                d.recommendations.iter().find(|r| r.verification.as_ref().is_none_or(|v| v.status.recommended()))?;
            Some((d, r))
        })
    }
}

/// Headline figures.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Summary {
    /// The most serious finding, in one word.
    pub verdict: Verdict,
    /// Loss of the final network on the training set (eval mode); for `analyze`, the loss of
    /// its one forward pass (the initial network on the analysed batch). `null` only when it
    /// is not finite.
    pub final_loss: Option<f64>,
    /// Accuracy of the final network on the training set (classification only; for `analyze`,
    /// of its one forward pass).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_accuracy: Option<f64>,
    /// The loss of the best constant prediction on the training set, a network that ignores its
    /// inputs: the entropy of the class frequencies for cross-entropy (ln(classes) when they are
    /// balanced), the targets' variance for mse. A loss at or above it is chance level (the loss
    /// plot draws it). Absent for bce.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_loss: Option<f64>,
    /// Validation loss of the final network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_val_loss: Option<f64>,
    /// Validation accuracy of the final network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_val_accuracy: Option<f64>,
    /// Steps run.
    pub steps: usize,
    /// Steps planned.
    pub total_steps: usize,
    /// Wall-clock training time.
    pub duration_ms: u64,
    /// grad_norm of the first hidden weight layer (dense or recurrent) over that of the last
    /// hidden weight layer, at step 0 (`analysis/measures.rs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_ratio_first_last: Option<f64>,
    /// Learnable scalars.
    pub params: usize,
    /// Steps at which clipping changed the gradient.
    pub clipped_steps: usize,
    /// How the run ended.
    pub outcome: Outcome,
    /// Recurrent networks: the effective memory horizon at the last probe — the largest lag
    /// `T - t` at which ||dL/dh_t|| is still above 1e-3 of its maximum over t.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_horizon: Option<usize>,
    /// The same at step 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_horizon_init: Option<usize>,
    /// Sequence length T of recurrent networks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence_length: Option<usize>,
    /// Where non-finite values first appeared, when they did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub non_finite: Option<NonFiniteAt>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::IntoStaticStr, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Outcome {
    /// Every planned step ran.
    Completed,
    /// Stopped by its cancel flag (a client's cancel); the report holds the probes up to there.
    Cancelled,
    /// Stopped by the service's per-job time limit; the report holds the probes up to there.
    Timeout,
    /// Stopped at the first NaN or Inf (see `non_finite`).
    NonFinite,
}

impl Outcome {
    /// The wire name (`completed`, ...).
    pub fn name(self) -> &'static str {
        self.into()
    }
}

impl PartialEq<&str> for Outcome {
    fn eq(&self, other: &&str) -> bool {
        self.name() == *other
    }
}

/// The first appearance of NaN/Inf.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NonFiniteAt {
    /// Step (0-based).
    pub step: usize,
    /// Layer name, or `loss`.
    pub layer: String,
    /// `activations`, `gradients` or `loss`.
    pub location: String,
}

/// The gradient through time.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Timesteps {
    /// The recurrent layer measured.
    pub layer: String,
    /// Probe steps (a subset of the report's `steps`, the same downsampling).
    pub steps: Vec<usize>,
    /// One row per probe step: ||dL/dh_t|| for t = 1..T.
    pub grad_norm: Vec<Vec<Option<f64>>>,
}

/// One row of the layer table.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LayerEntry {
    /// Position in forward order.
    pub index: usize,
    /// `dense_0`, ...
    pub name: String,
    /// Spec type (`dense`, `batch_norm`, `layer_norm`, `dropout`, `activation`, `rnn`).
    #[serde(rename = "type", serialize_with = "kind_name")]
    #[schema(value_type = String)]
    pub kind: LayerKind,
    /// Learnable scalars.
    pub params: usize,
    /// Output width.
    pub units: usize,
    /// Activation, when the layer applies one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activation: Option<String>,
    /// JSON Pointer of the layer in `spec` (a transformer's sub-layers: the transformer's).
    pub pointer: String,
    /// A transformer's sub-layer: its block within the transformer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<usize>,
    /// A transformer's sub-layer: its `state_dict` prefix (`self_attn`, `linear1`, `linear2`,
    /// `norm1`, `norm2`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part: Option<String>,
}

/// Series of one residual or transformer block (see `engine::probe`), parallel to `steps`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BlockStats {
    /// `block_0`, ...
    pub name: String,
    /// JSON Pointer of the residual layer or transformer in `spec`.
    pub pointer: String,
    /// A transformer block: its index within the transformer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub within: Option<usize>,
    /// Names of the layers inside.
    pub layers: Vec<String>,
    /// L2 norm of the block's output (the residual stream) over the batch.
    pub stream_norm: Vec<Option<f64>>,
    /// ||dL/d(block input)|| over the batch (absent for a block at the network's input).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta_norm: Option<Vec<Option<f64>>>,
    /// Rank-collapse measure of the block's output (sequences).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank_collapse: Option<Vec<Option<f64>>>,
}

/// Per-layer series (see `engine::probe` for the definitions).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[allow(missing_docs)]
pub struct LayerStats {
    pub layer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<Vec<Option<f64>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_rms: Option<Vec<Option<f64>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_max: Option<Vec<Option<f64>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bias_grad_norm: Option<Vec<Option<f64>>>,
    pub delta_norm: Vec<Option<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight_norm: Option<Vec<Option<f64>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_ratio: Option<Vec<Option<f64>>>,
    pub activation_mean: Vec<Option<f64>>,
    pub activation_std: Vec<Option<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saturation: Option<Vec<Option<f64>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_fraction: Option<Vec<Option<f64>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub histograms: Option<Histograms>,
    /// Recurrent layers: L2 norm of the `weight_hh` gradient (`grad_norm` is `weight_ih`'s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recurrent_grad_norm: Option<Vec<Option<f64>>>,
    /// Recurrent layers: the probe steps at which the W_hh spectra were computed — step 0, the
    /// last step and every k-th probe, k the smallest that keeps them to at most 50 per run
    /// (plus the last) and spaces them so that, by estimate, they cost at most 2% of the training
    /// compute between them (so at every probe of a short run with small recurrent layers) —
    /// among the kept probe steps. `spectral_norm` and
    /// `spectral_radius` are parallel to it (not to `steps`): a spectrum not computed is absent,
    /// never `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spectra_steps: Option<Vec<usize>>,
    /// Recurrent layers: largest singular value of each recurrent block of W_hh (`hh` for a
    /// vanilla cell, the gate name otherwise), at each of `spectra_steps`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub spectral_norm: BTreeMap<String, Vec<Option<f64>>>,
    /// Recurrent layers: spectral radius of each recurrent block, at each of `spectra_steps`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub spectral_radius: BTreeMap<String, Vec<Option<f64>>>,
    /// Attention layers: per probe step, the entropy of each head's attention weights (ln T for
    /// uniform attention, 0 for one-hot).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attention_entropy: Option<Vec<Vec<Option<f64>>>>,
    /// Attention layers: the largest attention logit, per probe step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_logit: Option<Vec<Option<f64>>>,
    /// Attention layers: rank-collapse measure of the output, per probe step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank_collapse: Option<Vec<Option<f64>>>,
    /// Gated cells: mean activation of each gate, per probe step.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub gate_mean: BTreeMap<String, Vec<Option<f64>>>,
    /// Gated cells: saturation of each gate, per probe step.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub gate_saturation: BTreeMap<String, Vec<Option<f64>>>,
    pub non_finite: NonFiniteCounts,
}

/// log10|g| histograms of a layer's weight gradient, one per (kept) probe step.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Histograms {
    /// Interior bin edges in log10 units; bin 0 is below the first edge (zeros included), the
    /// last bin at or above the last edge.
    pub edges: Vec<f64>,
    /// Counts per bin, one row per probe step.
    pub counts: Vec<Vec<u64>>,
}

/// NaN and infinity counts.
#[derive(Debug, Clone, Copy, Serialize, Default, utoipa::ToSchema)]
pub struct NonFiniteCounts {
    /// NaN measurements (engine-side over outputs and gradients, plus report-side nulls).
    pub nan: u64,
    /// Infinite ones.
    pub inf: u64,
}

/// Reproducibility information.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EngineInfo {
    /// gradscope version.
    pub version: String,
    /// The seed of the run.
    pub seed: u64,
    /// `f32` or `f64`.
    pub precision: String,
}

fn kind_name<S: serde::Serializer>(kind: &LayerKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.name())
}

/// What the report is made of besides the run record: the pipeline's findings.
pub struct Parts {
    /// The expanded spec (a JSON object whose `model.layers` is the layer tree the record's
    /// paths point into).
    pub spec: Value,
    /// The run's seed.
    pub seed: u64,
    /// Probe points kept per series.
    pub max_points: usize,
    /// The diagnostics with their ranked recommendations.
    pub diagnostics: Vec<Diagnostic>,
    /// The verdict of `diagnostics`.
    pub verdict: Verdict,
    /// The theory at initialisation.
    pub theory: Option<Theory>,
    /// Whether the trained parameters go into the report (`probes.parameters`).
    pub parameters: bool,
}

/// The layer table of `record`.
pub fn layer_entries(record: &RunRecord) -> Vec<LayerEntry> {
    record
        .layers
        .iter()
        .map(|l| LayerEntry {
            index: l.index,
            name: l.name.clone(),
            kind: l.kind,
            params: l.params,
            units: l.units,
            activation: l.activation.map(|a| a.name().to_string()),
            pointer: pointer(&l.path),
            block: l.part.map(|(b, _)| b),
            part: l.part.map(|(_, p)| p.name().to_string()),
        })
        .collect()
}

/// The block series of `record` at the kept probes.
fn block_stats(record: &RunRecord, keep: &[usize]) -> Vec<BlockStats> {
    let mut counts = NonFiniteCounts::default();
    record
        .blocks
        .iter()
        .zip(&record.block_stats)
        .map(|(b, s)| {
            let delta_norm = kept_where_applies(&s.delta_norm, keep, &mut counts);
            let rank_collapse = kept_where_applies(&s.rank_collapse, keep, &mut counts);
            BlockStats {
                name: b.name.clone(),
                pointer: pointer(&b.path),
                within: b.within,
                layers: b.layers.iter().filter_map(|&i| record.layers.get(i).map(|l| l.name.clone())).collect(),
                stream_norm: keep
                    .iter()
                    .map(|&i| finite(s.stream_norm.get(i).copied().unwrap_or(f64::NAN), &mut counts))
                    .collect(),
                delta_norm,
                rank_collapse,
            }
        })
        .collect()
}

/// Converts `record` and the pipeline's findings into the report.
pub fn build_report(record: &RunRecord, parts: Parts) -> Report {
    let Parts { spec, seed, max_points, diagnostics, verdict, theory, parameters } = parts;
    let keep = downsample(record.steps.len(), max_points);
    let pick = |v: &[f64], counts: &mut NonFiniteCounts| -> Vec<Option<f64>> {
        keep.iter().map(|&i| finite(v.get(i).copied().unwrap_or(f64::NAN), counts)).collect()
    };
    let mut global = NonFiniteCounts::default();
    let loss = pick(&record.loss, &mut global);
    let opt = |v: &[Option<f64>], counts: &mut NonFiniteCounts| kept_where_applies(v, &keep, counts);
    let layer_stats = record
        .layers
        .iter()
        .zip(&record.layer_stats)
        .map(|(l, s)| layer_stats(&l.name, s, &keep, &record.steps))
        .collect();
    let (outcome, non_finite) = match &record.end {
        RunEnd::Completed => (Outcome::Completed, None),
        RunEnd::Cancelled { .. } => (Outcome::Cancelled, None),
        RunEnd::NonFinite { step, layer, location } => (
            Outcome::NonFinite,
            Some(NonFiniteAt { step: *step, layer: layer.clone(), location: location.to_string() }),
        ),
    };
    let mut scratch = NonFiniteCounts::default();
    let recurrent = first_recurrent(&record.layers).map(|i| &record.layer_stats[i].recurrent);
    let summary = Summary {
        verdict,
        final_loss: record.final_loss.and_then(|v| finite(v, &mut scratch)),
        final_accuracy: record.final_accuracy,
        baseline_loss: record.baseline_loss.and_then(|v| finite(v, &mut scratch)),
        final_val_loss: record.final_val_loss.and_then(|v| finite(v, &mut scratch)),
        final_val_accuracy: record.final_val_accuracy,
        steps: record.steps_run,
        total_steps: record.total_steps,
        duration_ms: record.duration_ms,
        grad_ratio_first_last: grad_ratio_first_last(record).and_then(|v| finite(v, &mut scratch)),
        params: record.num_params,
        clipped_steps: record.clipped_steps,
        outcome,
        memory_horizon: recurrent.and_then(|s| s.last()).and_then(|r| memory_horizon(&r.timestep_grad_norm)),
        memory_horizon_init: recurrent.and_then(|s| s.first()).and_then(|r| memory_horizon(&r.timestep_grad_norm)),
        sequence_length: recurrent.and_then(|s| s.first()).map(|r| r.timestep_grad_norm.len()),
        non_finite,
    };
    let tree = spec.pointer("/model/layers").cloned().unwrap_or(Value::Array(Vec::new()));
    Report {
        report_version: 1,
        summary,
        layers: layer_entries(record),
        steps: keep.iter().filter_map(|&i| record.steps.get(i).copied()).collect(),
        loss,
        accuracy: opt(&record.accuracy, &mut global),
        val_loss: opt(&record.val_loss, &mut global),
        val_accuracy: opt(&record.val_accuracy, &mut global),
        grad_norm_global: pick(&record.grad_norm_global, &mut global),
        grad_norm_clipped: pick(&record.grad_norm_clipped, &mut global),
        layer_stats,
        blocks: block_stats(record, &keep),
        timesteps: timesteps(record, &keep),
        diagnostics,
        theory,
        gradients: record.gradients.as_ref().map(|g| params_layout(&tree, g)),
        parameters: record.parameters.as_ref().filter(|_| parameters).map(|p| params_layout(&tree, p)),
        engine: EngineInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            seed,
            precision: record.precision.to_string(),
        },
        spec,
    }
}

/// The first recurrent layer's ||dL/dh_t|| curves at the kept probe steps.
fn timesteps(record: &RunRecord, keep: &[usize]) -> Option<Timesteps> {
    let i = first_recurrent(&record.layers)?;
    let series = &record.layer_stats[i].recurrent;
    let mut counts = NonFiniteCounts::default();
    let kept: Vec<usize> = keep.iter().copied().filter(|&k| k < series.len()).collect();
    Some(Timesteps {
        layer: record.layers[i].name.clone(),
        steps: kept.iter().filter_map(|&k| record.steps.get(k).copied()).collect(),
        grad_norm: kept
            .iter()
            .map(|&k| series[k].timestep_grad_norm.iter().map(|&v| finite(v, &mut counts)).collect())
            .collect(),
    })
}

/// Indices of the probes kept under `max_points` (see the module doc).
pub fn downsample(n: usize, max_points: usize) -> Vec<usize> {
    if n <= max_points || max_points == 0 {
        return (0..n).collect();
    }
    if max_points == 1 {
        return vec![n - 1];
    }
    let mut keep: Vec<usize> =
        (0..max_points).map(|i| ((i as f64) * (n - 1) as f64 / (max_points - 1) as f64).round() as usize).collect();
    keep.dedup();
    keep
}

/// A series at the kept probes, non-finite values as `None` (counted); `None` altogether when the
/// quantity never applied (every entry `None`).
fn kept_where_applies(v: &[Option<f64>], keep: &[usize], counts: &mut NonFiniteCounts) -> Option<Vec<Option<f64>>> {
    if v.iter().all(Option::is_none) {
        return None;
    }
    Some(keep.iter().map(|&i| finite(v.get(i).copied().flatten().unwrap_or(f64::NAN), counts)).collect())
}

fn finite(v: f64, counts: &mut NonFiniteCounts) -> Option<f64> {
    if v.is_nan() {
        counts.nan += 1;
        None
    } else if v.is_infinite() {
        counts.inf += 1;
        None
    } else {
        Some(v)
    }
}

fn layer_stats(name: &str, s: &LayerSeries, keep: &[usize], steps: &[usize]) -> LayerStats {
    let mut counts = NonFiniteCounts::default();
    let mut all = |v: &[f64]| -> Vec<Option<f64>> {
        keep.iter().map(|&i| finite(v.get(i).copied().unwrap_or(f64::NAN), &mut counts)).collect()
    };
    let delta_norm = all(&s.delta_norm);
    let activation_mean = all(&s.activation_mean);
    let activation_std = all(&s.activation_std);
    let mut some = |v: &[Option<f64>]| kept_where_applies(v, keep, &mut counts);
    let mut out = LayerStats {
        layer: name.to_string(),
        grad_norm: some(&s.grad_norm),
        grad_rms: some(&s.grad_rms),
        grad_max: some(&s.grad_max),
        bias_grad_norm: some(&s.bias_grad_norm),
        delta_norm,
        weight_norm: some(&s.weight_norm),
        update_ratio: some(&s.update_ratio),
        activation_mean,
        activation_std,
        saturation: some(&s.saturation),
        dead_fraction: some(&s.dead_fraction),
        histograms: None,
        recurrent_grad_norm: some(&s.recurrent_grad_norm),
        spectra_steps: None,
        spectral_norm: BTreeMap::new(),
        spectral_radius: BTreeMap::new(),
        gate_mean: BTreeMap::new(),
        gate_saturation: BTreeMap::new(),
        attention_entropy: None,
        max_logit: None,
        rank_collapse: None,
        non_finite: NonFiniteCounts::default(),
    };
    if !s.attention.is_empty() {
        let at = |i: usize| s.attention.get(i);
        out.attention_entropy = Some(
            keep.iter()
                .map(|&i| {
                    at(i).map(|a| a.entropy.iter().map(|&e| finite(e, &mut counts)).collect()).unwrap_or_default()
                })
                .collect(),
        );
        out.max_logit =
            Some(keep.iter().map(|&i| finite(at(i).map_or(f64::NAN, |a| a.max_logit), &mut counts)).collect());
        out.rank_collapse = Some(
            keep.iter()
                .map(|&i| finite(at(i).and_then(|a| a.rank_collapse).unwrap_or(f64::NAN), &mut counts))
                .collect(),
        );
    }
    for &i in keep {
        let Some(rec) = s.recurrent.get(i) else { continue };
        // Probes that did not compute the spectra (`train::spectra_at`) are left out.
        if !rec.spectra.is_empty() {
            out.spectra_steps.get_or_insert_with(Vec::new).push(steps.get(i).copied().unwrap_or(i));
        }
        for sp in &rec.spectra {
            out.spectral_norm.entry(sp.block.to_string()).or_default().push(finite(sp.sigma_max, &mut counts));
            out.spectral_radius.entry(sp.block.to_string()).or_default().push(finite(sp.spectral_radius, &mut counts));
        }
        for g in &rec.gates {
            out.gate_mean.entry(g.gate.to_string()).or_default().push(finite(g.mean, &mut counts));
            out.gate_saturation.entry(g.gate.to_string()).or_default().push(finite(g.saturation, &mut counts));
        }
    }
    if !s.histograms.is_empty() && s.histograms.iter().any(|h| !h.is_empty()) {
        out.histograms = Some(Histograms {
            edges: HIST_EDGES.to_vec(),
            counts: keep.iter().filter_map(|&i| s.histograms.get(i).cloned()).collect(),
        });
    }
    let NonFinite { nan, inf } = s.non_finite;
    out.non_finite = NonFiniteCounts { nan: nan + counts.nan, inf: inf + counts.inf };
    out
}

/// JSON Pointer of a layer from its path through nested residual blocks.
pub fn pointer(path: &[usize]) -> String {
    let mut p = String::from("/model");
    for i in path {
        p.push_str(&format!("/layers/{i}"));
    }
    p
}

/// The explicit-parameter layout: a list parallel to the spec's `model.layers`, one object per
/// layer mapping a parameter name to its values (matrices as lists of rows), `{}` for layers
/// without parameters and `{"layers": [...]}` for residual blocks.
pub fn params_layout(tree: &Value, params: &[LayerParams]) -> Value {
    let mut out = skeleton(tree);
    for lp in params {
        if let Some(slot) = slot_at(&mut out, &lp.path).and_then(|s| block_slot(s, lp.block)) {
            for (name, shape, values) in &lp.tensors {
                slot.insert(name.clone(), tensor_json(shape, values));
            }
        }
    }
    out
}

/// The object a layer's tensors go into: the layer's own, or for a transformer's sub-layer the
/// entry of its block in the transformer's `blocks` (created as needed).
fn block_slot(layer: &mut Map<String, Value>, block: Option<usize>) -> Option<&mut Map<String, Value>> {
    let Some(b) = block else { return Some(layer) };
    let blocks = layer.entry("blocks").or_insert_with(|| Value::Array(Vec::new())).as_array_mut()?;
    while blocks.len() <= b {
        blocks.push(Value::Object(Map::new()));
    }
    blocks[b].as_object_mut()
}

/// Writes each layer's parameters into a copy of the spec's layer tree, so the result runs as
/// it is (the `--params-out` file).
pub fn spec_with_params(spec: &Value, params: &[LayerParams]) -> Value {
    let mut spec = spec.clone();
    if let Some(layers) = spec.pointer_mut("/model/layers") {
        for lp in params {
            if let Some(obj) = slot_at(layers, &lp.path).and_then(|s| block_slot(s, lp.block)) {
                for (name, shape, values) in &lp.tensors {
                    obj.insert(name.clone(), tensor_json(shape, values));
                }
            }
        }
    }
    spec
}

fn skeleton(tree: &Value) -> Value {
    Value::Array(
        tree.as_array()
            .map(|layers| {
                layers
                    .iter()
                    .map(|l| match l.get("type").and_then(Value::as_str) {
                        Some("residual") => json!({"layers": skeleton(l.get("layers").unwrap_or(&Value::Null))}),
                        _ => Value::Object(Map::new()),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    )
}

fn slot_at<'a>(tree: &'a mut Value, path: &[usize]) -> Option<&'a mut Map<String, Value>> {
    let (first, rest) = path.split_first()?;
    let node = tree.get_mut(*first)?;
    if rest.is_empty() {
        return node.as_object_mut();
    }
    slot_at(node.get_mut("layers")?, rest)
}

fn tensor_json(shape: &[usize], values: &[f64]) -> Value {
    let num = |v: f64| serde_json::Number::from_f64(v).map(Value::Number).unwrap_or(Value::Null);
    match shape {
        [_rows, cols] if *cols > 0 => {
            Value::Array(values.chunks(*cols).map(|r| Value::Array(r.iter().map(|&v| num(v)).collect())).collect())
        }
        _ => Value::Array(values.iter().map(|&v| num(v)).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsampling_keeps_first_and_last_and_at_most_max_points() {
        for n in [0, 1, 5, 199, 200, 201, 1001, 10_000] {
            for max in [2, 3, 50, 200] {
                let k = downsample(n, max);
                assert!(k.len() <= max.max(n.min(max)), "{n} {max}");
                if n > 0 {
                    assert_eq!(k.first(), Some(&0));
                    assert_eq!(k.last(), Some(&(n - 1)));
                }
                assert!(k.windows(2).all(|w| w[0] < w[1]));
            }
        }
    }

    /// A probe without spectra (`train::spectra_at`) is absent from the series, which are
    /// parallel to `spectra_steps`, so no later value lands on the wrong step.
    #[test]
    fn probes_without_spectra_are_absent_not_null() {
        use crate::engine::layers::{RecurrentStats, Spectrum};
        let with = |v: f64| RecurrentStats {
            spectra: vec![Spectrum { block: "i", sigma_max: v, spectral_radius: v / 2.0 }],
            ..RecurrentStats::default()
        };
        let series =
            LayerSeries { recurrent: vec![with(2.0), RecurrentStats::default(), with(4.0)], ..Default::default() };
        let out = layer_stats("rnn_0", &series, &[0, 1, 2], &[0, 10, 20]);
        // `null` means NaN/Inf only (the report's rule): the probe at step 10 is not in the series.
        assert_eq!(out.spectra_steps, Some(vec![0, 20]));
        assert_eq!(out.spectral_norm["i"], vec![Some(2.0), Some(4.0)]);
        assert_eq!(out.spectral_radius["i"], vec![Some(1.0), Some(2.0)]);
    }

    #[test]
    fn non_finite_values_become_null_and_are_counted() {
        let mut c = NonFiniteCounts::default();
        assert_eq!(finite(f64::NAN, &mut c), None);
        assert_eq!(finite(f64::INFINITY, &mut c), None);
        assert_eq!(finite(1.5, &mut c), Some(1.5));
        assert_eq!((c.nan, c.inf), (1, 1));
    }
}
