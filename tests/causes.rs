//! Cause before effect (`analysis::causes`): findings that are consequences of others say so and
//! leave the cure to their cause; root causes (the initialisation scale, the activation, the
//! learning rate) are named from the measurements. Each over three seeds, on networks that have
//! the problem.

// Tests may panic on a broken expectation; the crate's unwrap/expect lints are for library code.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use gradscope::analysis::findings::{CauseKind, Diagnostic, DiagnosticCode};
use gradscope::analysis::pipeline::{parse_body, run as run_spec, RunOptions};
use gradscope::analysis::Report;
use gradscope::engine::train::CancelFlag;
use gradscope::spec::Limits;
use serde_json::{json, Value};

const SEEDS: [u64; 3] = [1, 2, 3];

fn run(mut spec: Value, seed: u64) -> Report {
    spec["seed"] = json!(seed);
    let body = serde_json::to_vec(&spec).unwrap();
    let options = RunOptions { limits: &Limits::default(), params_out: false, verify_share: 0.0 };
    let spec = parse_body(&body).expect("spec parses");
    run_spec(&spec, &options, &CancelFlag::new(), &mut |_| {}).expect("spec runs").report
}

fn find(report: &Report, code: DiagnosticCode) -> &Diagnostic {
    report.diagnostics.iter().find(|d| d.code == code).unwrap_or_else(|| {
        let found: Vec<_> = report.diagnostics.iter().map(|d| (d.code.name(), d.severity.name())).collect();
        panic!("no {}; found {found:?}", code.name())
    })
}

fn mlp(depth: u64, width: u64, activation: &str, init: Value, lr: f64, steps: u64) -> Value {
    json!({
        "model": {"input_dim": 2, "layers": [
            {"type": "mlp", "depth": depth, "width": width, "activation": activation, "init": init},
            {"type": "dense", "units": 2, "activation": "linear"}]},
        "data": {"type": "spirals", "samples": 256, "noise": 0.1},
        "training": {"steps": steps, "batch_size": 64, "optimizer": {"type": "sgd", "lr": lr}},
        "probes": {"every": 10}
    })
}

#[test]
fn a_deep_sigmoid_stack_vanishes_because_of_its_activation_and_its_tiny_updates_are_a_consequence() {
    for seed in SEEDS {
        let report = run(mlp(16, 32, "sigmoid", json!("xavier_uniform"), 0.1, 60), seed);
        let vanishing = find(&report, DiagnosticCode::VanishingGradient);
        let cause = vanishing.cause.as_ref().expect("the vanishing gradient has a cause");
        // σ_w² ~ 1 (Xavier on equal widths): not the init's fault, the sigmoid's derivative (<= 1/4).
        assert_eq!(cause.kind, CauseKind::Activation, "seed {seed}: {}", cause.detail);
        for d in &report.diagnostics {
            if matches!(d.code, DiagnosticCode::UpdateRatio | DiagnosticCode::NotLearning) {
                assert_eq!(d.consequence_of, Some(DiagnosticCode::VanishingGradient), "seed {seed}: {}", d.message);
                assert!(d.recommendations.is_empty(), "seed {seed}: the cure is the cause's: {:?}", d.recommendations);
                assert!(d.message.contains("consequence of `vanishing_gradient`"), "{}", d.message);
            }
        }
        assert!(!vanishing.recommendations.is_empty(), "seed {seed}: the cause keeps the cures");
    }
}

#[test]
fn a_tanh_stack_with_tiny_init_vanishes_because_of_the_init_scale() {
    for seed in SEEDS {
        let report = run(mlp(10, 64, "tanh", json!({"type": "normal", "std": 0.01}), 0.01, 20), seed);
        let cause = find(&report, DiagnosticCode::VanishingGradient).cause.as_ref().expect("a cause");
        // σ_w² = 64 · 1e-4 = 0.0064.
        assert_eq!(cause.kind, CauseKind::InitScale, "seed {seed}: {}", cause.detail);
        assert!(cause.detail.contains("0.006"), "{}", cause.detail);
    }
}

#[test]
fn a_relu_stack_at_gain_one_half_vanishes_because_of_the_init_scale_and_he_init_has_no_such_cause() {
    for seed in SEEDS {
        let small = run(mlp(12, 64, "relu", json!({"type": "he_normal", "gain": 0.5}), 0.01, 10), seed);
        let cause = find(&small, DiagnosticCode::VanishingGradient).cause.as_ref().expect("a cause");
        // σ_w² = 2 · 0.25 = 0.5: each layer multiplies the variance by 0.25.
        assert_eq!(cause.kind, CauseKind::InitScale, "seed {seed}: {}", cause.detail);
        let he = run(mlp(12, 64, "relu", json!("he_normal"), 0.01, 10), seed);
        let depth = [DiagnosticCode::VanishingGradient, DiagnosticCode::ExplodingGradient];
        for d in he.diagnostics.iter().filter(|d| depth.contains(&d.code)) {
            assert!(
                d.cause.as_ref().is_none_or(|c| c.kind != CauseKind::InitScale),
                "seed {seed}: He init blamed: {}",
                d.message
            );
        }
    }
}

#[test]
fn relu_units_killed_by_a_high_learning_rate_are_blamed_on_the_learning_rate() {
    for seed in SEEDS {
        let spec = json!({
            "model": {"input_dim": 2, "layers": [
                {"type": "mlp", "depth": 8, "width": 64, "activation": "relu", "init": "he_normal"},
                {"type": "dense", "units": 2, "activation": "linear"}]},
            "data": {"type": "moons", "samples": 1024, "noise": 0.1},
            "training": {"steps": 300, "batch_size": 64, "optimizer": {"type": "sgd", "lr": 1.0}},
            "probes": {"every": 10}
        });
        let report = run(spec, seed);
        let Some(dead) = report.diagnostics.iter().find(|d| d.code == DiagnosticCode::DeadUnits) else {
            panic!(
                "seed {seed}: no dead units: {:?}",
                report.diagnostics.iter().map(|d| d.code.name()).collect::<Vec<_>>()
            )
        };
        if dead.consequence_of.is_none() {
            let cause = dead.cause.as_ref().expect("a cause");
            assert_eq!(cause.kind, CauseKind::LearningRate, "seed {seed}: {}", cause.detail);
        } else {
            // Killed by a divergence or exploding updates: the learning rate's doing, one step removed.
            assert!(matches!(dead.consequence_of, Some(DiagnosticCode::NonFinite | DiagnosticCode::ExplodingGradient)));
        }
    }
}

#[test]
fn the_consequence_table_names_each_link_once_and_never_a_code_as_its_own_cause() {
    use gradscope::analysis::causes::CONSEQUENCES;
    for (i, a) in CONSEQUENCES.iter().enumerate() {
        assert_ne!(a.effect, a.cause);
        assert!(CONSEQUENCES[i + 1..].iter().all(|b| (b.effect, b.cause) != (a.effect, a.cause)));
        assert!(!a.why.is_empty());
    }
}
