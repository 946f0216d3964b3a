//! [`summarize`]: from what every run left to the [`ExperimentResult`] — the rows, the ranking,
//! and for grids the main effects, the best cell and the heatmap. Pure and deterministic (no
//! hash maps, no randomness): the same input gives the same result, byte for byte.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use serde_json::Value;
use strum::IntoEnumIterator;

use super::input::{ExperimentInput, RunResult, RunState, VariantInput};
use super::result::{
    ranking_loss, AxisValues, BestCell, CodeCount, ExperimentResult, Heatmap, LayerNorms, Level, LossCurve, MainEffect,
    Method, RunRow, RunStatus, Setting, StepsToThreshold, VariantRow, VerdictCount, VsBaseline, WallTime,
};
use super::stats::{GeoStat, MeanStat, PairedDiff};
use crate::analysis::findings::{DiagnosticCode, Verdict};

/// The summary of `input`: see [`ExperimentResult`] and its [`Method`]. Pending and missing runs
/// are listed and counted but left out of every statistic.
pub fn summarize(input: &ExperimentInput) -> ExperimentResult {
    let baseline = input.variants.iter().find(|v| v.baseline);
    let mut rows: Vec<VariantRow> = input.variants.iter().map(|v| row(input, v, baseline)).collect();
    let order = ranking(&rows);
    let best = order.first().map(|&i| rows[i].final_loss);
    for (rank, &i) in order.iter().enumerate() {
        let r = &mut rows[i];
        r.rank = rank + 1;
        r.best = rank == 0;
        r.distinguishable_from_best = rank > 0 && best.is_some_and(|b| b.disjoint(&r.final_loss));
    }
    let grid = !input.axes.is_empty();
    let cells: Vec<(&VariantInput, Option<f64>)> = input
        .variants
        .iter()
        .zip(&rows)
        .filter(|(v, _)| grid && v.settings.len() == input.axes.len())
        .map(|(v, r)| (v, r.final_loss.mean))
        .collect();
    let best_cell = order
        .iter()
        .map(|&i| &input.variants[i])
        .find(|v| cells.iter().any(|(c, _)| c.name == v.name))
        .map(|v| BestCell { name: v.name.clone(), settings: settings(input, v), spec: v.spec.clone() });
    ExperimentResult {
        name: input.name.clone(),
        seeds: input.seeds.clone(),
        loss_threshold: input.loss_threshold.filter(|t| t.is_finite()),
        complete: input.variants.iter().flat_map(|v| &v.runs).all(|r| r.state != RunState::Pending),
        method: Method::current(),
        axes: input.axes.iter().map(|a| AxisValues { pointer: a.pointer.clone(), values: a.values.clone() }).collect(),
        ranking: order.iter().map(|&i| rows[i].name.clone()).collect(),
        main_effects: main_effects(input, &cells),
        best_cell,
        heatmap: heatmap(input, &cells),
        variants: rows,
    }
}

/// The finished runs of `v` without NaN/Inf: the ones statistics are computed from.
fn usable(v: &VariantInput) -> impl Iterator<Item = (u64, &RunResult)> {
    finished(v).filter(|(_, r)| !r.non_finite)
}

/// Every finished run of `v`, diverged ones included.
fn finished(v: &VariantInput) -> impl Iterator<Item = (u64, &RunResult)> {
    v.runs.iter().filter_map(|r| match &r.state {
        RunState::Finished(res) => Some((r.seed, res)),
        _ => None,
    })
}

fn settings(input: &ExperimentInput, v: &VariantInput) -> Vec<Setting> {
    input
        .axes
        .iter()
        .zip(&v.settings)
        .map(|(a, value)| Setting { pointer: a.pointer.clone(), value: value.clone() })
        .collect()
}

fn row(input: &ExperimentInput, v: &VariantInput, baseline: Option<&VariantInput>) -> VariantRow {
    let threshold = input.loss_threshold.filter(|t| t.is_finite());
    let runs: Vec<RunRow> = v
        .runs
        .iter()
        .map(|r| {
            let (state, final_loss, reason) = match &r.state {
                RunState::Finished(res) if res.non_finite => (RunStatus::NonFinite, None, None),
                RunState::Finished(res) => (RunStatus::Finished, res.final_loss.filter(|x| x.is_finite()), None),
                RunState::Missing { reason } => (RunStatus::Missing, None, Some(reason.clone())),
                RunState::Pending => (RunStatus::Pending, None, None),
            };
            let steps_to_threshold = match (&r.state, threshold) {
                (RunState::Finished(res), Some(t)) => first_at_or_below(res, t),
                _ => None,
            };
            RunRow { seed: r.seed, job_id: r.job_id.clone(), state, final_loss, reason, steps_to_threshold }
        })
        .collect();
    let count = |s: RunStatus| runs.iter().filter(|r| r.state == s).count();
    let values = |f: fn(&RunResult) -> Option<f64>| -> Vec<f64> { usable(v).filter_map(|(_, r)| f(r)).collect() };
    let done: Vec<&RunResult> = finished(v).map(|(_, r)| r).collect();
    let accuracy = values(|r| r.final_accuracy);
    let durations: Vec<u64> = done.iter().map(|r| r.duration_ms).collect();
    VariantRow {
        name: v.name.clone(),
        baseline: v.baseline,
        settings: settings(input, v),
        patch: v.patch.clone(),
        n: done.len(),
        non_finite: count(RunStatus::NonFinite),
        missing: count(RunStatus::Missing),
        pending: count(RunStatus::Pending),
        runs,
        final_loss: MeanStat::of(&values(|r| r.final_loss)),
        final_accuracy: (!accuracy.is_empty()).then(|| MeanStat::of(&accuracy)),
        grad_ratio_init: GeoStat::of(&values(|r| r.grad_ratio_init)),
        grad_ratio_end: GeoStat::of(&values(|r| r.grad_ratio_end)),
        verdicts: Verdict::iter()
            .map(|verdict| VerdictCount { verdict, count: done.iter().filter(|r| r.verdict == verdict).count() })
            .filter(|c| c.count > 0)
            .collect(),
        codes: DiagnosticCode::iter()
            .map(|code| CodeCount { code, count: done.iter().filter(|r| r.codes.contains(&code)).count() })
            .filter(|c| c.count > 0)
            .collect(),
        steps_to_threshold: threshold.map(|t| steps_to(&done, t)),
        wall_time_ms: WallTime {
            mean: (!durations.is_empty()).then(|| durations.iter().sum::<u64>() as f64 / durations.len() as f64),
            total: durations.iter().sum(),
        },
        vs_baseline: baseline.filter(|b| !v.baseline && b.name != v.name).map(|b| vs_baseline(v, b)),
        rank: 0,
        best: false,
        distinguishable_from_best: false,
        loss_curve: loss_curve(&done),
        grad_norm_init: layer_norms(&done),
    }
}

/// The first probe step at which the run's training loss is at or below `threshold`.
fn first_at_or_below(r: &RunResult, threshold: f64) -> Option<usize> {
    let i = r.loss.iter().position(|l| l.is_some_and(|l| l <= threshold))?;
    r.steps.get(i).copied()
}

/// [`first_at_or_below`] over the finished runs: its mean over those that reached it.
fn steps_to(done: &[&RunResult], threshold: f64) -> StepsToThreshold {
    let reached: Vec<f64> = done.iter().filter_map(|r| first_at_or_below(r, threshold)).map(|s| s as f64).collect();
    StepsToThreshold { mean: MeanStat::of(&reached).mean, reached: reached.len(), of: done.len() }
}

/// Paired differences `v - b` over the seeds where both finished without NaN/Inf.
fn vs_baseline(v: &VariantInput, b: &VariantInput) -> VsBaseline {
    let pairs: Vec<(&RunResult, &RunResult)> =
        usable(v).filter_map(|(seed, r)| usable(b).find(|(s, _)| *s == seed).map(|(_, rb)| (r, rb))).collect();
    let diff = |f: &dyn Fn(&RunResult) -> Option<f64>| -> PairedDiff {
        PairedDiff::of(&pairs.iter().filter_map(|(a, b)| f(a).zip(f(b))).collect::<Vec<_>>())
    };
    let has_accuracy = pairs.iter().any(|(a, b)| a.final_accuracy.is_some() || b.final_accuracy.is_some());
    VsBaseline {
        final_loss: diff(&|r| r.final_loss),
        final_accuracy: has_accuracy.then(|| diff(&|r| r.final_accuracy)),
        log10_grad_ratio_init: diff(&|r| r.grad_ratio_init.filter(|x| *x > 0.0).map(f64::log10)),
    }
}

/// Mean, min and max of the finite losses at every probe step any finished run has.
fn loss_curve(done: &[&RunResult]) -> LossCurve {
    let steps: Vec<usize> =
        done.iter().flat_map(|r| r.steps.iter().copied()).collect::<BTreeSet<_>>().into_iter().collect();
    let at = |step: usize| -> Vec<f64> {
        done.iter()
            .filter_map(|r| r.steps.iter().position(|&s| s == step).and_then(|i| r.loss.get(i).copied().flatten()))
            .filter(|x| x.is_finite())
            .collect()
    };
    let fold = |v: &[f64], f: fn(f64, f64) -> f64| v.iter().copied().reduce(f);
    let mut curve = LossCurve { steps: Vec::new(), mean: Vec::new(), min: Vec::new(), max: Vec::new() };
    for step in steps {
        let v = at(step);
        curve.mean.push(MeanStat::of(&v).mean);
        curve.min.push(fold(&v, f64::min));
        curve.max.push(fold(&v, f64::max));
        curve.steps.push(step);
    }
    curve
}

/// Geometric mean per weight layer of `grad_norm` at step 0, the layers named by the first run
/// that has any (a run whose layer at a position has another name is left out there).
fn layer_norms(done: &[&RunResult]) -> LayerNorms {
    let layers = done.iter().map(|r| &r.layers).find(|l| !l.is_empty()).cloned().unwrap_or_default();
    let geo_mean = layers
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let v: Vec<f64> = done
                .iter()
                .filter(|r| r.layers.get(k) == Some(name))
                .filter_map(|r| r.grad_norm_init.get(k).copied().flatten())
                .collect();
            GeoStat::of(&v).geo_mean
        })
        .collect();
    LayerNorms { layers, geo_mean }
}

/// The ranking key of a row ([`super::result::RANKING_RULE`]).
struct Key<'a> {
    failures: usize,
    loss: Option<f64>,
    health: Option<f64>,
    name: &'a str,
}

impl<'a> Key<'a> {
    fn of(r: &'a VariantRow) -> Key<'a> {
        Key {
            failures: r.non_finite + r.missing,
            loss: r.final_loss.mean.map(ranking_loss),
            health: r.grad_ratio_end.log10_mean().map(f64::abs),
            name: &r.name,
        }
    }

    fn cmp(&self, other: &Key<'_>) -> Ordering {
        // `None` (nothing to compare) sorts after every value.
        let opt = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => a.total_cmp(&b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        self.failures
            .cmp(&other.failures)
            .then_with(|| opt(self.loss, other.loss))
            .then_with(|| opt(self.health, other.health))
            .then_with(|| self.name.cmp(other.name))
    }
}

/// Row indices, best first.
fn ranking(rows: &[VariantRow]) -> Vec<usize> {
    let keys: Vec<Key<'_>> = rows.iter().map(Key::of).collect();
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| keys[a].cmp(&keys[b]).then(a.cmp(&b)));
    order
}

/// The mean of the scores (mean final losses) of the cells selected, and how many had one.
fn marginal<'a>(scores: impl Iterator<Item = &'a Option<f64>>) -> (Option<f64>, usize) {
    let v: Vec<f64> = scores.flatten().copied().collect();
    (MeanStat::of(&v).mean, v.len())
}

fn main_effects(input: &ExperimentInput, cells: &[(&VariantInput, Option<f64>)]) -> Vec<MainEffect> {
    input
        .axes
        .iter()
        .enumerate()
        .map(|(a, axis)| MainEffect {
            pointer: axis.pointer.clone(),
            levels: axis
                .values
                .iter()
                .map(|value| {
                    let (mean, n) = marginal(cells.iter().filter(|(v, _)| v.settings[a] == *value).map(|(_, s)| s));
                    Level { value: value.clone(), mean_final_loss: mean, n }
                })
                .collect(),
        })
        .collect()
}

fn heatmap(input: &ExperimentInput, cells: &[(&VariantInput, Option<f64>)]) -> Option<Heatmap> {
    let (x, y) = input.heatmap?;
    if x == y {
        return None;
    }
    let (ax, ay) = (input.axes.get(x)?, input.axes.get(y)?);
    let at = |xv: &Value, yv: &Value| {
        marginal(cells.iter().filter(|(v, _)| v.settings[x] == *xv && v.settings[y] == *yv).map(|(_, s)| s)).0
    };
    Some(Heatmap {
        x: AxisValues { pointer: ax.pointer.clone(), values: ax.values.clone() },
        y: AxisValues { pointer: ay.pointer.clone(), values: ay.values.clone() },
        mean_final_loss: ay.values.iter().map(|yv| ax.values.iter().map(|xv| at(xv, yv)).collect()).collect(),
    })
}
