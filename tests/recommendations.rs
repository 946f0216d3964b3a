//! Every recommendation verified by outcome (`analysis::verify`), on networks that are not
//! presets: a deep sigmoid MLP, a ReLU MLP with too high a learning rate and a tanh RNN on the
//! adding problem. For each, over three seeds:
//! - the figures the report gives for a recommendation are those of `pipeline::run` on its
//!   patched spec with `training.steps` at the budget the report states (and the baseline's of
//!   the unpatched spec at that budget), to the bit;
//! - the top-ranked recommendation, applied for the job's own steps, ends at a lower final loss
//!   than the job;
//! - none that the report recommends as verified ends at a higher final loss than the job at
//!   the job's own steps.
//!
//! And on `examples/deep-sigmoid.json` no learning-rate increase is recommended; on five
//! examples, the verification runs a report states cost at most the share of the job's compute.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use gradscope::analysis::findings::{Recommendation, VerifyStatus};
use gradscope::analysis::pipeline::{parse_body, run as run_spec, RunOptions};
use gradscope::analysis::Report;
use gradscope::engine::train::CancelFlag;
use gradscope::spec::experiment::apply;
use gradscope::spec::Limits;
use serde_json::{json, Value};

const SEEDS: [u64; 3] = [1, 2, 3];

fn run(spec: &Value, verify_share: f64) -> Report {
    let body = serde_json::to_vec(spec).unwrap();
    let options = RunOptions { limits: &Limits::default(), params_out: false, verify_share };
    let spec = parse_body(&body).expect("spec parses");
    run_spec(&spec, &options, &CancelFlag::new(), &mut |_| {}).expect("spec runs").report
}

fn with(spec: &Value, pointer: &str, value: Value) -> Value {
    let mut s = spec.clone();
    *s.pointer_mut(pointer).unwrap() = value;
    s
}

fn patched(report: &Report, r: &Recommendation) -> Value {
    apply(&report.spec, &Value::Array(r.patch.clone())).expect("the patch applies to the report's spec")
}

/// Distinct recommendations of a report, in report order.
fn distinct(report: &Report) -> Vec<&Recommendation> {
    let mut out: Vec<&Recommendation> = Vec::new();
    for r in report.diagnostics.iter().flat_map(|d| &d.recommendations) {
        if !out.iter().any(|o| o.patch == r.patch) {
            out.push(r);
        }
    }
    out
}

fn describe(report: &Report) -> String {
    let mut s = String::new();
    for d in &report.diagnostics {
        s += &format!("{}:\n", d.code.name());
        for r in &d.recommendations {
            let v = r.verification.as_ref();
            s += &format!(
                "  {} | {:?} {:?} steps {:?} base {:?} patched {:?}\n",
                r.title,
                v.map(|v| v.status),
                v.and_then(|v| v.reason),
                v.and_then(|v| v.steps),
                v.and_then(|v| v.baseline.as_ref()).and_then(|b| b.final_loss),
                v.and_then(|v| v.patched.as_ref()).and_then(|b| b.final_loss),
            );
        }
    }
    s
}

/// The claims of the module doc on `base` with each seed.
fn check(base: &Value) {
    for seed in SEEDS {
        let spec = with(base, "/seed", json!(seed));
        let report = run(&spec, 0.5);
        let text = describe(&report);
        // A diverged job has no final loss: anything finite is lower.
        let own = report.summary.final_loss.unwrap_or(f64::INFINITY);
        let recs = distinct(&report);
        assert!(recs.iter().any(|r| r.verification.is_some()), "seed {seed}: nothing verified\n{text}");
        // The figures at the budget are reproduced by runs of the patched and unpatched specs.
        for r in &recs {
            let v = r.verification.as_ref().unwrap();
            let (Some(steps), Some(b), Some(p)) = (v.steps, &v.baseline, &v.patched) else { continue };
            let at = |s: &Value| run(&with(s, "/training/steps", json!(steps)), 0.0).summary;
            let again = at(&patched(&report, r));
            assert_eq!(again.final_loss, p.final_loss, "seed {seed}, {}\n{text}", r.title);
            assert_eq!(again.final_accuracy, p.final_accuracy, "seed {seed}, {}", r.title);
            assert_eq!(again.grad_ratio_first_last, p.grad_ratio_first_last, "seed {seed}, {}", r.title);
            assert_eq!(at(&report.spec).final_loss, b.final_loss, "seed {seed}: the baseline at {steps}");
        }
        // The top-ranked verified recommendation: the first of the first diagnostic that has one.
        let better =
            |r: &&Recommendation| r.verification.as_ref().is_some_and(|v| v.status == VerifyStatus::VerifiedBetter);
        let top = report
            .diagnostics
            .iter()
            .find_map(|d| d.recommendations.iter().find(better))
            .unwrap_or_else(|| panic!("seed {seed}: nothing verified better\n{text}"));
        // Recommended ones rank before the tried ones in every diagnostic.
        for d in &report.diagnostics {
            let recommended: Vec<bool> =
                d.recommendations.iter().map(|r| r.verification.as_ref().unwrap().status.recommended()).collect();
            assert!(recommended.windows(2).all(|w| w[0] || !w[1]), "seed {seed}\n{text}");
        }
        // Every verified recommendation, at the job's own steps, does not end worse; the top one better.
        for r in
            recs.iter().filter(|r| r.verification.as_ref().is_some_and(|v| v.status == VerifyStatus::VerifiedBetter))
        {
            let full = run(&patched(&report, r), 0.0).summary.final_loss.unwrap_or(f64::INFINITY);
            // "Worse" as verification defines it: higher by more than VERIFY_MARGIN (two runs at
            // chance differ by noise; a 12-layer sigmoid job and its batch-norm patch both end at
            // ln 2 on seed 3, 0.693 and 0.703).
            let worse_than = own * (1.0 + gradscope::analysis::verify::VERIFY_MARGIN);
            assert!(full <= worse_than, "seed {seed}: {} ends at {full} > the job's {own}\n{text}", r.title);
            if r.patch == top.patch {
                assert!(full < own, "seed {seed}: the top {} ends at {full}, the job at {own}\n{text}", r.title);
            }
        }
    }
}

#[test]
fn a_deep_sigmoid_mlp() {
    check(&json!({
        "seed": 1,
        "model": {"input_dim": 2, "layers": [
            {"type": "mlp", "depth": 12, "width": 24, "activation": "sigmoid", "init": "xavier_uniform"},
            {"type": "dense", "units": 2, "activation": "linear"}
        ]},
        "data": {"type": "moons", "samples": 512, "noise": 0.1},
        "training": {"steps": 300, "batch_size": 32, "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.1}},
        "probes": {"every": 10}
    }));
}

#[test]
fn a_relu_mlp_with_too_high_a_learning_rate() {
    check(&json!({
        "seed": 1,
        "model": {"input_dim": 2, "layers": [
            {"type": "mlp", "depth": 5, "width": 48, "activation": "relu", "init": "he_normal"},
            {"type": "dense", "units": 2, "activation": "linear"}
        ]},
        "data": {"type": "spirals", "samples": 512, "noise": 0.1},
        "training": {"steps": 300, "batch_size": 32, "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 1.5}},
        "probes": {"every": 10}
    }));
}

/// A tanh RNN of 16 units on the adding problem (T = 60) whose gradient vanishes through time.
fn tanh_rnn_adding() -> Value {
    json!({
        "seed": 1,
        "model": {"input_dim": 2, "layers": [
            {"type": "rnn", "cell": "vanilla", "units": 16, "activation": "tanh",
             "recurrent_init": {"type": "orthogonal", "gain": 0.5}},
            {"type": "dense", "units": 1, "activation": "linear"}
        ]},
        "data": {"type": "adding", "length": 60, "samples": 1000},
        "training": {"steps": 900, "batch_size": 32, "loss": "mse", "optimizer": {"type": "adam", "lr": 0.003}},
        "probes": {"every": 10}
    })
}

#[test]
fn a_tanh_rnn_on_the_adding_problem() {
    check(&tanh_rnn_adding());
}

#[test]
fn no_learning_rate_increase_on_the_deep_sigmoid_example() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/deep-sigmoid.json")).unwrap();
    let spec: Value = serde_json::from_str(&text).unwrap();
    let lr = spec.pointer("/training/optimizer/lr").and_then(Value::as_f64).unwrap();
    let report = run(&spec, 0.5);
    for r in report.diagnostics.iter().flat_map(|d| &d.recommendations) {
        let after = patched(&report, r);
        let same_optimizer =
            after.pointer("/training/optimizer/type") == report.spec.pointer("/training/optimizer/type");
        let new_lr = after.pointer("/training/optimizer/lr").and_then(Value::as_f64).unwrap();
        assert!(!(same_optimizer && new_lr > lr), "{} raises the learning rate\n{}", r.title, describe(&report));
        assert!(!r.title.contains("Train longer"), "{}", r.title);
    }
}

#[test]
fn with_verification_off_no_recommendation_carries_one() {
    let report = run(
        &json!({
            "seed": 1,
            "model": {"input_dim": 2, "layers": [
                {"type": "mlp", "depth": 8, "width": 16, "activation": "sigmoid"},
                {"type": "dense", "units": 2}
            ]},
            "data": {"type": "xor", "samples": 128},
            "training": {"steps": 40, "batch_size": 32}
        }),
        0.0,
    );
    assert!(report.diagnostics.iter().flat_map(|d| &d.recommendations).all(|r| r.verification.is_none()));
}

/// A spec's compute as the limits count it (parameters x steps x batch [x time steps]).
fn compute(spec: &Value) -> f64 {
    let spec = gradscope::spec::parse(spec).unwrap();
    spec.validate_measured(&Limits::default()).unwrap().1 as f64
}

#[test]
fn the_verification_runs_of_every_example_cost_at_most_the_share_of_the_job_compute() {
    // The runs that were made: each distinct verified patch at its budget, and the baseline at
    // the budget when it is shorter than the job.
    let share = 0.5;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    for name in ["deep-sigmoid", "small-init", "relu-lecun-30", "sigmoid-residual", "rnn-exploding-clipped"] {
        let spec: Value =
            serde_json::from_str(&std::fs::read_to_string(format!("{dir}/{name}.json")).unwrap()).unwrap();
        let report = run(&spec, share);
        let own = compute(&report.spec);
        let steps = report.spec.pointer("/training/steps").and_then(Value::as_u64).unwrap();
        let mut spent = 0.0;
        let mut budget = None;
        for r in distinct(&report) {
            let Some(v) = r.verification.as_ref() else { continue };
            let Some(b) = v.steps else { continue };
            if v.status == VerifyStatus::NotVerified {
                continue;
            }
            budget = Some(b);
            let at_budget = patched(&report, r);
            let at_budget = with(&at_budget, "/training/steps", json!(b));
            spent += compute(&at_budget);
        }
        let b = budget.unwrap_or_else(|| panic!("{name}: nothing verified\n{}", describe(&report)));
        if (b as u64) < steps {
            spent += compute(&with(&report.spec, "/training/steps", json!(b)));
        }
        assert!(spent <= share * own, "{name}: verification compute {spent:e} > {share} x {own:e}");
        assert!(spent > 0.0);
    }
}

/// A verification run is admitted by memory like a job: with the limit at the job's own
/// estimate, a patched spec that needs more (the tanh RNN's gated cells) is `not_verified`
/// with reason `over_memory` and is not run, while one that fits is verified.
#[test]
fn a_patched_spec_over_the_memory_limit_is_not_verified() {
    use gradscope::analysis::findings::NotVerifiedReason;
    use gradscope::engine::memory::{estimate, PartKind};
    let spec = tanh_rnn_adding();
    let estimate_of = |s: &Value| estimate(&gradscope::spec::parse(s).unwrap().validate(&Limits::default()).unwrap());
    let own = estimate_of(&spec);
    let held = own.bytes_of(PartKind::Record) * 2;
    let limits = Limits { max_job_memory: own.bytes + held, ..Limits::default() };
    let options = RunOptions { limits: &limits, params_out: false, verify_share: 0.5 };
    let body = serde_json::to_vec(&spec).unwrap();
    let parsed = parse_body(&body).unwrap();
    let report = run_spec(&parsed, &options, &CancelFlag::new(), &mut |_| {}).expect("runs").report;
    let (mut over, mut under) = (0, 0);
    for r in distinct(&report) {
        let v = r.verification.as_ref().expect("verified or not");
        let mut after = patched(&report, r);
        after["training"]["steps"] = json!(900);
        let needs = estimate_of(&after).bytes + held;
        if needs > limits.max_job_memory {
            assert_eq!(v.reason, Some(NotVerifiedReason::OverMemory), "{}\n{}", r.title, describe(&report));
            assert!(v.patched.is_none());
            over += 1;
        } else {
            assert_ne!(v.reason, Some(NotVerifiedReason::OverMemory), "{}", r.title);
            under += 1;
        }
    }
    assert!(over >= 1 && under >= 1, "both kinds among the recommendations:\n{}", describe(&report));
}
