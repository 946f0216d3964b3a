//! Experiments: the same network under several variants (cures, settings), each trained on the
//! same seeds, compared by outcome with intervals over the seeds.
//!
//! The job layer runs every (variant, seed) as an ordinary job and hands this module what each
//! run left ([`RunResult`], taken from its report by [`RunResult::from_report`]); [`summarize`]
//! turns them into the [`ExperimentResult`]: a row per variant with means, standard deviations
//! and 95% intervals, paired differences against the baseline, a ranking, main effects of a
//! grid's axes, and the series its plots draw. Pure and deterministic: the same inputs give the
//! same result, byte for byte.
//!
//! Files, each depending only on those before it:
//! - `input`: what the summary is computed from; `from_report`: a run's [`RunResult`];
//! - `stats`: the statistics (t intervals, geometric means, paired differences, rounding);
//! - `result`: the wire type [`ExperimentResult`] and the text of its [`Method`] (one constant
//!   per rule);
//! - `summary`: [`summarize`];
//! - `plots` ([`ExperimentPlot`], [`render`]) and `page` ([`render_html`], [`markdown_table`]),
//!   both from an [`ExperimentResult`] alone, so a stored result draws the same.
//!
//! Depends on `report` (a run's report) and `findings` (verdicts, codes); must not depend on the
//! job or HTTP layers.

mod from_report;
mod input;
mod page;
mod plots;
mod result;
mod stats;
mod summary;
#[cfg(test)]
mod tests;

pub use input::{Axis, ExperimentInput, RunInput, RunResult, RunState, VariantInput};
pub use page::{markdown_table, render_html};
pub use plots::{available, plot_named, render, ExperimentPlot, ExperimentPlotError};
pub use result::{
    ranking_loss, AxisValues, BestCell, CodeCount, ExperimentResult, Heatmap, LayerNorms, Level, LossCurve, MainEffect,
    Method, RunRow, RunStatus, Setting, StepsToThreshold, VariantRow, VerdictCount, VsBaseline, WallTime,
    DISTINGUISHABLE_RULE, GRID_RULE, LOSS_DIGITS, LOSS_FLOOR, MEAN_RULE, PAIRED_RULE, RANKING_RULE, RATIO_RULE,
};
pub use stats::{GeoStat, MeanStat, PairedDiff, CONFIDENCE};
pub use summary::summarize;
