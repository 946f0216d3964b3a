//! Tests of [`super::summarize`] with hand-computed expectations, and the inputs the plot and
//! page tests share.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};

use super::*;
use crate::analysis::findings::{DiagnosticCode, Verdict};

/// A finished run with final loss `loss`, ratios `init`/`end`, a three-probe loss curve ending at
/// `loss`, and two weight layers.
pub(crate) fn finished(loss: f64, init: f64, end: f64) -> RunState {
    RunState::Finished(RunResult {
        final_loss: Some(loss),
        final_accuracy: Some(1.0 - loss / 10.0),
        non_finite: false,
        grad_ratio_init: Some(init),
        grad_ratio_end: Some(end),
        verdict: Verdict::Healthy,
        codes: Vec::new(),
        steps: vec![0, 10, 20],
        loss: vec![Some(1.0), Some((1.0 + loss) / 2.0), Some(loss)],
        layers: vec!["dense_0".into(), "dense_1".into()],
        grad_norm_init: vec![Some(init * 0.1), Some(0.1)],
        steps_done: 20,
        total_steps: 20,
        duration_ms: 100,
    })
}

/// A run that diverged at step 10.
pub(crate) fn diverged() -> RunState {
    RunState::Finished(RunResult {
        final_loss: None,
        final_accuracy: None,
        non_finite: true,
        grad_ratio_init: Some(1.0),
        grad_ratio_end: None,
        verdict: Verdict::Diverged,
        codes: vec![DiagnosticCode::NonFinite, DiagnosticCode::ExplodingGradient],
        steps: vec![0, 10],
        loss: vec![Some(1.0), None],
        layers: vec!["dense_0".into(), "dense_1".into()],
        grad_norm_init: vec![Some(0.1), Some(0.1)],
        steps_done: 10,
        total_steps: 20,
        duration_ms: 50,
    })
}

pub(crate) fn variant(name: &str, baseline: bool, settings: Vec<Value>, runs: Vec<RunState>) -> VariantInput {
    VariantInput {
        name: name.into(),
        baseline,
        settings,
        patch: if baseline { json!([]) } else { json!([{"op": "replace", "path": "/x", "value": name}]) },
        spec: json!({"name": name}),
        runs: runs
            .into_iter()
            .enumerate()
            .map(|(i, state)| RunInput { seed: i as u64 + 1, job_id: format!("job-{name}-{i}"), state })
            .collect(),
    }
}

pub(crate) fn input(variants: Vec<VariantInput>) -> ExperimentInput {
    let seeds = (1..=variants.first().map_or(0, |v| v.runs.len() as u64)).collect();
    ExperimentInput {
        name: Some("test".into()),
        seeds,
        loss_threshold: None,
        axes: Vec::new(),
        heatmap: None,
        variants,
    }
}

/// A baseline and two cures on three seeds: `better` is lower on every seed, `diverges` fails
/// once.
pub(crate) fn cures() -> ExperimentInput {
    input(vec![
        variant(
            "baseline",
            true,
            vec![],
            vec![finished(1.0, 1e-4, 1e-3), finished(1.2, 1e-5, 1e-3), finished(1.1, 1e-3, 1e-3)],
        ),
        variant(
            "better",
            false,
            vec![],
            vec![finished(0.5, 1.0, 1.0), finished(0.6, 1.0, 1.0), finished(0.7, 1.0, 1.0)],
        ),
        variant("diverges", false, vec![], vec![finished(0.1, 1.0, 1.0), diverged(), finished(0.1, 1.0, 1.0)]),
    ])
}

/// A 2 x 2 grid over `/lr` and `/depth` (plus the baseline, not a cell); the cell loss is
/// `lr_index + 2 depth_index + 1` on every seed (two seeds).
pub(crate) fn grid() -> ExperimentInput {
    let mut variants = vec![variant("baseline", true, vec![], vec![finished(9.0, 1.0, 1.0), finished(9.0, 1.0, 1.0)])];
    for (d, depth) in [4, 8].into_iter().enumerate() {
        for (l, lr) in [0.1, 0.01].into_iter().enumerate() {
            let loss = (l + 2 * d + 1) as f64;
            variants.push(variant(
                &format!("lr={lr},depth={depth}"),
                false,
                vec![json!(lr), json!(depth)],
                vec![finished(loss, 1.0, 1.0), finished(loss, 1.0, 1.0)],
            ));
        }
    }
    let mut input = input(variants);
    input.axes = vec![
        Axis { pointer: "/training/optimizer/lr".into(), values: vec![json!(0.1), json!(0.01)] },
        Axis { pointer: "/model/layers/0/depth".into(), values: vec![json!(4), json!(8)] },
    ];
    input.heatmap = Some((0, 1));
    input
}

fn row<'a>(r: &'a ExperimentResult, name: &str) -> &'a VariantRow {
    r.variants.iter().find(|v| v.name == name).unwrap()
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() <= 1e-9 * (1.0 + b.abs()))
}

#[test]
fn rows_hold_means_intervals_and_counts_per_variant() {
    let r = summarize(&cures());
    assert_eq!(r.variants.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["baseline", "better", "diverges"]);
    let b = row(&r, "baseline");
    assert!(b.baseline && b.vs_baseline.is_none());
    assert_eq!((b.n, b.non_finite, b.missing, b.pending), (3, 0, 0, 0));
    // 1.0, 1.2, 1.1: mean 1.1, sd 0.1.
    assert!(close(b.final_loss.mean, 1.1) && close(b.final_loss.sd, 0.1));
    assert!(close(b.final_loss.high, 1.1 + 4.302652729911275 * 0.1 / 3f64.sqrt()));
    // Ratios 1e-4, 1e-5, 1e-3: geometric mean 1e-4.
    assert!(close(b.grad_ratio_init.geo_mean, 1e-4));
    assert_eq!(b.verdicts, vec![VerdictCount { verdict: Verdict::Healthy, count: 3 }]);
    assert_eq!(b.wall_time_ms, WallTime { mean: Some(100.0), total: 300 });
    assert!(b.steps_to_threshold.is_none(), "no threshold given");
    let d = row(&r, "diverges");
    assert_eq!((d.n, d.non_finite), (3, 1));
    assert_eq!(d.final_loss.n, 2, "the diverged run is left out of the statistics");
    assert_eq!(d.runs[1].state, RunStatus::NonFinite);
    assert_eq!(
        d.codes,
        vec![
            CodeCount { code: DiagnosticCode::NonFinite, count: 1 },
            CodeCount { code: DiagnosticCode::ExplodingGradient, count: 1 }
        ]
    );
    assert_eq!(d.verdicts.len(), 2);
    assert_eq!(d.wall_time_ms.total, 250);
}

#[test]
fn paired_differences_against_the_baseline_use_common_seeds() {
    let r = summarize(&cures());
    let better = row(&r, "better").vs_baseline.unwrap();
    // Differences -0.5, -0.6, -0.4: mean -0.5, interval excludes 0.
    assert_eq!(better.final_loss.n_pairs, 3);
    assert!(close(better.final_loss.mean, -0.5));
    assert!(better.final_loss.excludes_zero && better.final_loss.high.unwrap() < 0.0);
    // log10 ratio differences: 0 - (-4), 0 - (-5), 0 - (-3): mean 4.
    assert!(close(better.log10_grad_ratio_init.mean, 4.0));
    assert!(better.final_accuracy.is_some_and(|a| a.excludes_zero));
    // Only seeds 1 and 3 pair for the variant that diverged on seed 2.
    let d = row(&r, "diverges").vs_baseline.unwrap();
    assert_eq!(d.final_loss.n_pairs, 2);
    assert!(close(d.final_loss.mean, -0.95));
}

#[test]
fn non_finite_runs_rank_last_whatever_their_loss() {
    let r = summarize(&cures());
    assert_eq!(r.ranking, ["better", "baseline", "diverges"]);
    let best = row(&r, "better");
    assert!(best.best && best.rank == 1 && !best.distinguishable_from_best);
    assert_eq!(row(&r, "diverges").rank, 3);
    assert!(row(&r, "baseline").distinguishable_from_best, "1.1 +- 0.25 vs 0.6 +- 0.25");
}

#[test]
fn losses_equal_to_three_digits_are_ranked_by_gradient_health_then_name() {
    let mut i = input(vec![
        variant("a-flat", true, vec![], vec![finished(0.5001, 1.0, 1e-3), finished(0.5001, 1.0, 1e-3)]),
        variant("b-even", false, vec![], vec![finished(0.5004, 1.0, 1.0), finished(0.5004, 1.0, 1.0)]),
        variant("c-worse", false, vec![], vec![finished(0.51, 1.0, 1.0), finished(0.51, 1.0, 1.0)]),
        variant("d-solved", false, vec![], vec![finished(4e-4, 1.0, 1e-6), finished(6e-4, 1.0, 1e-6)]),
        variant("e-solved", false, vec![], vec![finished(1e-5, 1.0, 0.5), finished(1e-5, 1.0, 2.0)]),
    ]);
    let r = summarize(&i);
    // Below 1e-3 both are "solved" and tie; e's ratio is even (geo mean 1), d's 1e-6.
    // 0.5001 and 0.5004 both round to 0.500: b's even flow beats a's ratio 1e-3.
    assert_eq!(r.ranking, ["e-solved", "d-solved", "b-even", "a-flat", "c-worse"]);
    // With equal health too, the name decides.
    i.variants[1].name = "0-even".into();
    i.variants[0].runs.iter_mut().for_each(|run| run.state = finished(0.5001, 1.0, 1.0));
    let r = summarize(&i);
    assert_eq!(&r.ranking[2..4], ["0-even", "a-flat"]);
}

#[test]
fn missing_runs_count_as_failures_and_pending_ones_make_a_partial_result() {
    let mut i = cures();
    i.variants[1].runs[0].state = RunState::Missing { reason: "timed out".into() };
    i.variants[0].runs[2].state = RunState::Pending;
    let r = summarize(&i);
    assert!(!r.complete);
    let b = row(&r, "baseline");
    assert_eq!((b.n, b.pending, b.final_loss.n), (2, 1, 2));
    assert_eq!(b.runs[2].state, RunStatus::Pending);
    let better = row(&r, "better");
    assert_eq!((better.n, better.missing), (2, 1));
    assert_eq!(better.runs[0].reason.as_deref(), Some("timed out"));
    // Seeds 2 pairs only (seed 1 missing in `better`, seed 3 pending in the baseline).
    assert_eq!(better.vs_baseline.unwrap().final_loss.n_pairs, 1);
    assert!(!better.vs_baseline.unwrap().final_loss.excludes_zero, "one pair has no interval");
    // Every run pending: a row with counts and no statistics.
    let mut i = cures();
    for v in &mut i.variants {
        v.runs.iter_mut().for_each(|run| run.state = RunState::Pending);
    }
    let r = summarize(&i);
    assert!(r.variants.iter().all(|v| v.n == 0 && v.final_loss.mean.is_none() && v.loss_curve.steps.is_empty()));
    assert_eq!(r.ranking.len(), 3);
    // A NaN would be written as null and read back as None (and NaN != NaN): the round trip
    // holds only when every statistic is finite or None.
    let back: ExperimentResult = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back, r);
}

#[test]
fn steps_to_threshold_is_the_first_probe_at_or_below_it() {
    let mut i = cures();
    i.loss_threshold = Some(0.8);
    let r = summarize(&i);
    // better: curves [1, 0.75, 0.5], [1, 0.8, 0.6], [1, 0.85, 0.7] -> steps 10, 10, 20.
    let s = row(&r, "better").steps_to_threshold.unwrap();
    assert_eq!((s.reached, s.of), (3, 3));
    assert!(close(s.mean, 40.0 / 3.0));
    let per_run: Vec<Option<usize>> = row(&r, "better").runs.iter().map(|r| r.steps_to_threshold).collect();
    assert_eq!(per_run, vec![Some(10), Some(10), Some(20)]);
    // The baseline never gets there.
    let s = row(&r, "baseline").steps_to_threshold.unwrap();
    assert_eq!((s.mean, s.reached, s.of), (None, 0, 3));
}

#[test]
fn main_effects_of_a_two_by_two_grid_are_marginal_means() {
    let r = summarize(&grid());
    // Cells: (lr 0.1, depth 4) 1, (0.01, 4) 2, (0.1, 8) 3, (0.01, 8) 4.
    assert_eq!(r.main_effects.len(), 2);
    let lr = &r.main_effects[0];
    assert_eq!(lr.pointer, "/training/optimizer/lr");
    assert_eq!(lr.levels[0].value, json!(0.1));
    assert!(close(lr.levels[0].mean_final_loss, 2.0) && close(lr.levels[1].mean_final_loss, 3.0));
    assert_eq!((lr.levels[0].n, lr.levels[1].n), (2, 2), "the baseline is not a cell");
    let depth = &r.main_effects[1];
    assert!(close(depth.levels[0].mean_final_loss, 1.5) && close(depth.levels[1].mean_final_loss, 3.5));
    let best = r.best_cell.as_ref().unwrap();
    assert_eq!(best.name, "lr=0.1,depth=4");
    assert_eq!(best.spec, json!({"name": "lr=0.1,depth=4"}));
    assert_eq!(best.settings[1], Setting { pointer: "/model/layers/0/depth".into(), value: json!(4) });
    assert_eq!(r.ranking[0], "lr=0.1,depth=4");
}

#[test]
fn the_heatmap_is_a_matrix_of_y_rows_by_x_columns() {
    let mut i = grid();
    i.variants[4].runs.iter_mut().for_each(|r| r.state = RunState::Pending);
    let r = summarize(&i);
    let h = r.heatmap.as_ref().unwrap();
    assert_eq!(h.x.values, vec![json!(0.1), json!(0.01)]);
    assert_eq!(h.y.values, vec![json!(4), json!(8)]);
    assert_eq!(h.mean_final_loss, vec![vec![Some(1.0), Some(2.0)], vec![Some(3.0), None]]);
    // Swapped axes transpose it; no heatmap without axes.
    i.heatmap = Some((1, 0));
    assert_eq!(summarize(&i).heatmap.unwrap().mean_final_loss, vec![vec![Some(1.0), Some(3.0)], vec![Some(2.0), None]]);
    assert!(summarize(&cures()).heatmap.is_none() && summarize(&cures()).main_effects.is_empty());
}

#[test]
fn the_series_for_the_plots_are_mean_and_range_over_seeds() {
    let r = summarize(&cures());
    let c = &row(&r, "diverges").loss_curve;
    assert_eq!(c.steps, vec![0, 10, 20]);
    // Step 10: 0.55, 0.55 and the diverged run's null.
    assert!(close(c.mean[1], 0.55) && close(c.min[0], 1.0));
    let c = &row(&r, "baseline").loss_curve;
    assert!(close(c.min[2], 1.0) && close(c.max[2], 1.2) && close(c.mean[2], 1.1));
    let g = &row(&r, "baseline").grad_norm_init;
    assert_eq!(g.layers, vec!["dense_0", "dense_1"]);
    // 1e-5, 1e-6, 1e-4 -> geometric mean 1e-5.
    assert!(close(g.geo_mean[0], 1e-5) && close(g.geo_mean[1], 0.1));
}

#[test]
fn summarizing_twice_gives_the_same_bytes_and_the_json_round_trips() {
    for i in [cures(), grid()] {
        let a = serde_json::to_string(&summarize(&i)).unwrap();
        let b = serde_json::to_string(&summarize(&i)).unwrap();
        assert_eq!(a, b);
        let back: ExperimentResult = serde_json::from_str(&a).unwrap();
        // NaN would be written as null and read back as None: equality means none was there.
        assert_eq!(back, summarize(&i));
    }
}

#[test]
fn the_method_states_the_rules_it_applies() {
    let m = summarize(&cures()).method;
    assert_eq!((m.confidence, m.loss_digits, m.loss_floor), (0.95, 3, 1e-3));
    // The rule's text names the constants the ranking uses.
    assert!(m.ranking.contains(&format!("rounding to {LOSS_DIGITS} significant digits")), "{}", m.ranking);
    assert!(m.ranking.contains(&format!("below {LOSS_FLOOR:e}")), "{}", m.ranking);
    assert!(m.means.contains(&format!("t({}, n - 1)", 0.5 + CONFIDENCE / 2.0)), "{}", m.means);
    assert!(m.means.contains("Student t") && m.paired.contains("paired") && m.ratios.contains("log10"));
}

/// The result validates against its own OpenAPI schema (the `ExperimentResult` component and
/// the components it refers to), so the document the API publishes describes what it sends.
#[test]
fn the_result_validates_against_its_openapi_schema() {
    use utoipa::openapi::{ComponentsBuilder, RefOr, Schema};
    use utoipa::ToSchema;
    let mut schemas: Vec<(String, RefOr<Schema>)> = Vec::new();
    ExperimentResult::schemas(&mut schemas);
    let components = ComponentsBuilder::new()
        .schema(ExperimentResult::name(), <ExperimentResult as utoipa::PartialSchema>::schema())
        .schemas_from_iter(schemas)
        .build();
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": "#/components/schemas/ExperimentResult",
        "components": serde_json::to_value(&components).unwrap(),
    });
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut partial = cures();
    partial.loss_threshold = Some(0.8);
    partial.variants[1].runs[0].state = RunState::Missing { reason: "timed out".into() };
    partial.variants[0].runs[2].state = RunState::Pending;
    for input in [cures(), grid(), partial] {
        let value = serde_json::to_value(summarize(&input)).unwrap();
        let errors: Vec<String> =
            validator.iter_errors(&value).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{errors:#?}");
    }
    // The schema is strict enough to catch a wrong shape.
    assert!(!validator.is_valid(&json!({"variants": "no"})));
}

/// Two variants of a real network on two seeds, through `from_report` and `summarize`: every
/// plot and the page draw from what real reports leave.
#[test]
fn real_runs_summarize_and_draw() {
    use crate::analysis::pipeline::{parse_body, run, RunOptions};
    use crate::engine::train::CancelFlag;
    let spec = |activation: &str, seed: u64| {
        json!({
            "seed": seed,
            "model": {"input_dim": 2, "layers": [
                {"type": "mlp", "depth": 4, "width": 8, "activation": activation},
                {"type": "dense", "units": 2}
            ]},
            "data": {"type": "xor", "samples": 64},
            "training": {"steps": 60, "batch_size": 16},
            "probes": {"every": 5}
        })
    };
    let limits = Default::default();
    let options = RunOptions::new(&limits);
    let variants = ["sigmoid", "relu"]
        .into_iter()
        .enumerate()
        .map(|(i, act)| VariantInput {
            name: act.into(),
            baseline: i == 0,
            settings: Vec::new(),
            patch: json!([]),
            spec: spec(act, 0),
            runs: [1, 2]
                .into_iter()
                .map(|seed| {
                    let parsed = parse_body(spec(act, seed).to_string().as_bytes()).unwrap();
                    let report = run(&parsed, &options, &CancelFlag::default(), &mut |_| {}).unwrap().report;
                    RunInput {
                        seed,
                        job_id: format!("{act}-{seed}"),
                        state: RunState::Finished(RunResult::from_report(&report)),
                    }
                })
                .collect(),
        })
        .collect();
    let input = ExperimentInput {
        name: None,
        seeds: vec![1, 2],
        loss_threshold: Some(0.6),
        axes: Vec::new(),
        heatmap: None,
        variants,
    };
    let r = summarize(&input);
    assert_eq!(r.variants.iter().map(|v| v.final_loss.n).collect::<Vec<_>>(), [2, 2]);
    assert!(r.variants.iter().all(|v| v.grad_ratio_init.geo_mean.is_some() && v.grad_ratio_end.geo_mean.is_some()));
    assert_eq!(r.variants[1].vs_baseline.unwrap().final_loss.n_pairs, 2);
    assert_eq!(r.variants[0].grad_norm_init.layers.len(), 5);
    assert_eq!(r.variants[0].loss_curve.steps.first(), Some(&0));
    for p in available(&r) {
        roxmltree::Document::parse(&render(&r, p).unwrap()).unwrap();
    }
    assert!(render_html(&r, "sigmoid vs relu").contains("plot-loss"));
}
