//! The wire type of an experiment's summary, [`ExperimentResult`] (`ExperimentResult` in
//! `openapi/openapi.json`), and the text of its method, each rule written once here: the doc
//! comments of the wire fields point at the `method` field that carries them, and
//! [`Method::current`] puts the constants there.
//!
//! Every statistic is an `Option<f64>` that is `null` when it cannot be computed (no value, or
//! an interval from fewer than two): no NaN or infinity is ever written.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::stats::{round_significant, GeoStat, MeanStat, PairedDiff, CONFIDENCE};
use crate::analysis::findings::{DiagnosticCode, Verdict};

/// How means are summarised. The text of `method.means`.
pub const MEAN_RULE: &str = "Means over the seeds with the sample standard deviation (n - 1) and the 95% Student t \
     interval of the mean, mean +- t(0.975, n - 1) * sd / sqrt(n); null for n < 2. Only finished runs without NaN/Inf \
     count (non-finite, missing and pending runs are counted apart).";
/// How ratios are summarised. The text of `method.ratios`.
pub const RATIO_RULE: &str = "Gradient ratios (first/last hidden weight layer grad_norm) as geometric means: the \
     mean and 95% t interval of log10(ratio) over the seeds, taken back by 10^x; ratios that are not positive are \
     left out.";
/// How a variant is compared with the baseline. The text of `method.paired`.
pub const PAIRED_RULE: &str = "Differences against the baseline are paired by seed: variant - baseline on each seed \
     where both runs finished without NaN/Inf with a finite value; their mean and 95% paired t interval \
     (n_pairs - 1 degrees of freedom). excludes_zero: the interval is known and does not contain 0.";
/// The ranking score. The text of `method.ranking`.
pub const RANKING_RULE: &str = "Ranked by, in order: (1) fewer non-finite or missing runs; (2) lower mean final loss, \
     compared after rounding to 3 significant digits, every mean below 1e-3 counting as equal (solved), no mean \
     last; (3) gradient health: smaller |log10 geometric-mean grad_ratio_end| (closer to even flow at the last \
     probe), none last; (4) name.";
/// When a variant counts as distinguishable from the best. The text of `method.distinguishable`.
pub const DISTINGUISHABLE_RULE: &str = "distinguishable_from_best: the 95% intervals of the mean final loss of the \
     variant and of the best-ranked variant are both known and do not overlap (false for the best itself).";
/// How grid axes are summarised. The text of `method.grid`.
pub const GRID_RULE: &str = "Grids: a cell's score is its variant's mean final loss; a main effect is, per value of \
     an axis, the mean of the scores of the cells with that value (marginal mean; n = cells with a score); the \
     heatmap averages the same way over the other axes.";
/// Significant digits of the losses the ranking compares.
pub const LOSS_DIGITS: u32 = 3;
/// Mean final losses below this count as equal in the ranking ("solved").
pub const LOSS_FLOOR: f64 = 1e-3;

/// A (mean) final loss as the ranking compares it ([`RANKING_RULE`] (2)): rounded to
/// [`LOSS_DIGITS`] significant digits, below [`LOSS_FLOOR`] 0. Shared with the verification of a
/// report's recommendations (`analysis::verify`), so both call "better" the same thing.
pub fn ranking_loss(loss: f64) -> f64 {
    if loss < LOSS_FLOOR {
        0.0
    } else {
        round_significant(loss, LOSS_DIGITS)
    }
}

/// How the summary was computed, in words and numbers. Deterministic: no resampling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Method {
    /// Confidence level of every interval (0.95).
    pub confidence: f64,
    /// How means and their intervals are computed (every `MeanStat`).
    pub means: String,
    /// How gradient ratios are summarised (every `GeoStat`).
    pub ratios: String,
    /// How variants are compared with the baseline (`vs_baseline`).
    pub paired: String,
    /// The ranking score (the order of `ranking`).
    pub ranking: String,
    /// Significant digits of the mean final losses the ranking compares (3).
    pub loss_digits: u32,
    /// Mean final losses below this count as equal (1e-3).
    pub loss_floor: f64,
    /// When a variant is `distinguishable_from_best`.
    pub distinguishable: String,
    /// Grids: how the main effects and the heatmap average the cells.
    pub grid: String,
}

impl Method {
    /// The method this build uses.
    pub fn current() -> Method {
        Method {
            confidence: CONFIDENCE,
            means: MEAN_RULE.to_owned(),
            ratios: RATIO_RULE.to_owned(),
            paired: PAIRED_RULE.to_owned(),
            ranking: RANKING_RULE.to_owned(),
            loss_digits: LOSS_DIGITS,
            loss_floor: LOSS_FLOOR,
            distinguishable: DISTINGUISHABLE_RULE.to_owned(),
            grid: GRID_RULE.to_owned(),
        }
    }
}

/// The summary of an experiment: a row per variant, the ranking, and for grids the main effects,
/// the best cell and the heatmap. Pending and missing runs are listed but left out of the
/// statistics, so a summary of a running experiment is a partial result (`complete` false).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExperimentResult {
    /// The experiment's name, if any.
    pub name: Option<String>,
    /// The seeds every variant runs on, in order.
    pub seeds: Vec<u64>,
    /// The loss threshold of `steps_to_threshold`, if given.
    pub loss_threshold: Option<f64>,
    /// No run is pending.
    pub complete: bool,
    /// How the statistics and the ranking are computed.
    pub method: Method,
    /// The grid's axes (empty unless the experiment varies settings).
    pub axes: Vec<AxisValues>,
    /// One row per variant, baseline first, in the experiment's order.
    pub variants: Vec<VariantRow>,
    /// Variant names, best first, by the score `method.ranking` states.
    pub ranking: Vec<String>,
    /// Grids: per axis, the marginal mean final loss of each value.
    pub main_effects: Vec<MainEffect>,
    /// Grids: the best-ranked grid cell with its full spec.
    pub best_cell: Option<BestCell>,
    /// Grids with a chosen pair of axes: mean final loss over those two axes.
    pub heatmap: Option<Heatmap>,
}

/// An axis of a grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AxisValues {
    /// The JSON Pointer into the spec.
    pub pointer: String,
    /// Its values, in request order.
    pub values: Vec<Value>,
}

/// The value of one axis in a grid cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Setting {
    /// The axis' JSON Pointer.
    pub pointer: String,
    /// The value it takes in this variant.
    pub value: Value,
}

/// How one run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum RunStatus {
    /// Finished without NaN/Inf.
    Finished,
    /// Finished with NaN or Inf (diverged).
    NonFinite,
    /// Ended without a report (cancelled, timed out, failed).
    Missing,
    /// Not finished yet.
    Pending,
}

impl RunStatus {
    /// The wire name (`finished`, ...).
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// One run of a variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunRow {
    /// The seed.
    pub seed: u64,
    /// The job that ran it.
    pub job_id: String,
    /// How it stands.
    pub state: RunStatus,
    /// Its final loss, when it finished with a finite one.
    pub final_loss: Option<f64>,
    /// Why it is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// With a loss threshold: the first probe step whose training loss is at or below it;
    /// absent when the run has not reached it (or there is no threshold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps_to_threshold: Option<usize>,
}

/// How many runs had a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VerdictCount {
    /// The verdict.
    pub verdict: Verdict,
    /// Finished runs with it.
    pub count: usize,
}

/// How many runs had a diagnostic code.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CodeCount {
    /// The code.
    pub code: DiagnosticCode,
    /// Finished runs with at least one diagnostic of it.
    pub count: usize,
}

/// When the training loss first reached the experiment's threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepsToThreshold {
    /// Mean over the runs that reached it of the first probe step whose loss is at or below the
    /// threshold; `null` when none did.
    pub mean: Option<f64>,
    /// Finished runs that reached it.
    pub reached: usize,
    /// Finished runs.
    pub of: usize,
}

/// Wall-clock training time of the finished runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WallTime {
    /// Mean per finished run (ms); `null` without one.
    pub mean: Option<f64>,
    /// Sum over the finished runs (ms).
    pub total: u64,
}

/// Paired differences variant - baseline over the common seeds (`method.paired`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VsBaseline {
    /// Final loss (negative: the variant is better).
    pub final_loss: PairedDiff,
    /// Final accuracy (positive: the variant is better); `null` without accuracy.
    pub final_accuracy: Option<PairedDiff>,
    /// log10 of grad_ratio_init (towards 0 from the baseline's side: more even flow at init).
    pub log10_grad_ratio_init: PairedDiff,
}

/// The training loss over the probe steps, across the seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LossCurve {
    /// The probe steps of any finished run, ascending.
    pub steps: Vec<usize>,
    /// Mean over the finished runs (diverged ones included, up to their last finite value) with
    /// a finite loss at that step; `null` where none has.
    pub mean: Vec<Option<f64>>,
    /// Smallest of those values.
    pub min: Vec<Option<f64>>,
    /// Largest of those values.
    pub max: Vec<Option<f64>>,
}

/// Per-layer weight-gradient norm at step 0, across the seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LayerNorms {
    /// The layers with weights, in forward order (of the variant's first finished run).
    pub layers: Vec<String>,
    /// Geometric mean over the finished runs of each layer's `grad_norm` at step 0 (positive
    /// finite values only); `null` where none.
    pub geo_mean: Vec<Option<f64>>,
}

/// One variant: its runs, statistics over its seeds, comparison with the baseline and rank.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VariantRow {
    /// Its name.
    pub name: String,
    /// The baseline the others are compared with.
    pub baseline: bool,
    /// Grids: the value of each axis, in axis order; empty otherwise.
    pub settings: Vec<Setting>,
    /// The RFC 6902 patch from the base spec to this variant.
    pub patch: Value,
    /// Its runs, in seed order.
    pub runs: Vec<RunRow>,
    /// Finished runs (with or without NaN/Inf).
    pub n: usize,
    /// Finished runs that produced NaN or Inf.
    pub non_finite: usize,
    /// Runs that ended without a report.
    pub missing: usize,
    /// Runs not finished yet.
    pub pending: usize,
    /// Final training loss of the finished runs without NaN/Inf (`method.means`).
    pub final_loss: MeanStat,
    /// Final training accuracy; `null` when no run has one.
    pub final_accuracy: Option<MeanStat>,
    /// grad_ratio_first_last at step 0, geometric mean over the seeds (`method.ratios`).
    pub grad_ratio_init: GeoStat,
    /// The same ratio at the last probe.
    pub grad_ratio_end: GeoStat,
    /// Finished runs per verdict (verdicts that occur, in `Verdict` order).
    pub verdicts: Vec<VerdictCount>,
    /// Finished runs per diagnostic code (codes that occur, in `DiagnosticCode` order).
    pub codes: Vec<CodeCount>,
    /// When the experiment has a loss threshold: the first step the loss reached it.
    pub steps_to_threshold: Option<StepsToThreshold>,
    /// Wall-clock time of the finished runs.
    pub wall_time_ms: WallTime,
    /// Paired comparison with the baseline; `null` for the baseline.
    pub vs_baseline: Option<VsBaseline>,
    /// 1-based position in `ranking`.
    pub rank: usize,
    /// Ranked first.
    pub best: bool,
    /// Its 95% interval of the mean final loss and the best variant's are both known and do not
    /// overlap (`method.distinguishable`); false for the best itself.
    pub distinguishable_from_best: bool,
    /// The loss curve the `loss` plot draws.
    pub loss_curve: LossCurve,
    /// What the `grad_norm_init` plot draws.
    pub grad_norm_init: LayerNorms,
}

/// The marginal means of one axis (`method.grid`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MainEffect {
    /// The axis' JSON Pointer.
    pub pointer: String,
    /// One entry per value, in axis order.
    pub levels: Vec<Level>,
}

/// One value of an axis and the mean score of the cells that have it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Level {
    /// The value.
    pub value: Value,
    /// Mean of the cells' mean final loss; `null` when no cell has one.
    pub mean_final_loss: Option<f64>,
    /// Cells with a mean final loss.
    pub n: usize,
}

/// The best-ranked grid cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BestCell {
    /// The variant's name.
    pub name: String,
    /// Its axis values.
    pub settings: Vec<Setting>,
    /// Its full spec (before the seed is set): what to run next.
    pub spec: Value,
}

/// Mean final loss over two axes of a grid (`method.grid`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Heatmap {
    /// The horizontal axis.
    pub x: AxisValues,
    /// The vertical axis.
    pub y: AxisValues,
    /// `mean_final_loss[j][i]`: the cell at `y.values[j]`, `x.values[i]`, averaged over the
    /// other axes; `null` where no cell has a score.
    pub mean_final_loss: Vec<Vec<Option<f64>>>,
}
