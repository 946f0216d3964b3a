//! Nothing a spec can contain makes gradscope panic: random mutations of the fixture examples
//! go through parse -> validate -> train -> report and come back as a report or a typed error.
//!
//! Limits are kept small so that every mutated spec that validates also trains in milliseconds.

// Tests may panic on a broken expectation; the crate's unwrap/expect lints are for library code.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use gradscope::analysis::pipeline::{analyze, run, AnalyzeOptions, PipelineError, RunOptions};
use gradscope::engine::train::CancelFlag;
use gradscope::spec::{parse, Limits};
use proptest::prelude::*;
use serde_json::{json, Value};

fn small_limits() -> Limits {
    Limits {
        max_layers: 40,
        max_units: 64,
        max_params: 20_000,
        max_steps: 5,
        max_batch_size: 64,
        max_samples: 256,
        max_seq_len: 20,
        max_data_values: 100_000,
        max_compute: 5_000_000,
        max_job_memory: 1 << 30,
    }
}

fn examples() -> Vec<Value> {
    let dir = common::root().join("tests/fixtures/spec-examples");
    let mut out: Vec<Value> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| common::read_json(&e.path())).collect())
        .unwrap_or_default();
    // The examples ask for more than the small limits allow: shrink them first so that most
    // mutants validate and reach the engine.
    for spec in &mut out {
        shrink(spec);
        if let Some(o) = spec.as_object_mut() {
            o.entry("training").or_insert_with(|| json!({"steps": 3, "batch_size": 16}));
        }
    }
    assert!(!out.is_empty(), "fixture examples not found at {}", dir.display());
    out
}

fn shrink(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                match (k.as_str(), x.as_u64()) {
                    ("steps", Some(_)) => *x = json!(3),
                    ("batch_size", Some(n)) if n > 16 => *x = json!(16),
                    ("samples", Some(_)) => *x = json!(64),
                    ("width" | "units", Some(n)) if n > 16 => *x = json!(16),
                    ("depth", Some(n)) if n > 6 => *x = json!(6),
                    ("dims" | "input_dim", Some(n)) if n > 8 => *x = json!(8),
                    _ => shrink(x),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(shrink),
        _ => {}
    }
}

/// Replacement values that probe edge cases: zero, negatives, huge, fractional, wrong types.
fn odd_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(1)),
        Just(json!(2)),
        Just(json!(0.5)),
        Just(json!(1e300)),
        Just(json!(-1e-300)),
        Just(json!(u64::MAX)),
        Just(json!(null)),
        Just(json!("relu")),
        Just(json!("bogus")),
        Just(json!([])),
        Just(json!({})),
        Just(json!([[1.0, 2.0], [3.0]])),
        Just(json!({"type": "mlp", "depth": 3, "width": 4})),
        Just(json!({"type": "residual", "layers": [{"type": "dense", "units": 3}]})),
        Just(json!(true)),
        any::<i64>().prop_map(|i| json!(i)),
        (-1e3f64..1e3).prop_map(|f| json!(f)),
    ]
}

/// Every path to a node of `v`, as lists of object keys / array indices.
fn paths(v: &Value, at: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    out.push(at.clone());
    match v {
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            at.push(json!(k));
            paths(x, at, out);
            at.pop();
        }),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| {
            at.push(json!(i));
            paths(x, at, out);
            at.pop();
        }),
        _ => {}
    }
}

fn node_mut<'a>(v: &'a mut Value, path: &[Value]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |node, step| match step {
        Value::String(k) => node.get_mut(k.as_str()),
        Value::Number(i) => node.get_mut(i.as_u64()? as usize),
        _ => None,
    })
}

/// Replace a node, delete a key, or add an unknown one.
fn mutate(mut spec: Value, picks: &[(usize, u8, Value)]) -> Value {
    for (pick, op, value) in picks {
        let mut all = Vec::new();
        paths(&spec, &mut Vec::new(), &mut all);
        let path = all[pick % all.len()].clone();
        match op % 3 {
            0 => {
                if let Some(n) = node_mut(&mut spec, &path) {
                    *n = value.clone();
                }
            }
            1 => {
                if let Some((last, parent)) = path.split_last() {
                    if let (Some(Value::Object(o)), Value::String(k)) = (node_mut(&mut spec, parent), last) {
                        o.remove(k);
                    }
                }
            }
            _ => {
                if let Some(Value::Object(o)) = node_mut(&mut spec, &path) {
                    o.insert("unexpected".into(), value.clone());
                }
            }
        }
    }
    spec
}

fn run_to_the_end(spec: &Value) -> Result<(), PipelineError> {
    let spec = parse(spec).map_err(PipelineError::Invalid)?;
    let limits = small_limits();
    analyze(&spec, &AnalyzeOptions { limits: &limits, gradients: true })?;
    let out = run(&spec, &RunOptions::new(&limits), &CancelFlag::new(), &mut |_| {})?;
    // The report must serialise (non-finite numbers are nulled, never an error).
    serde_json::to_string(&out.report).expect("report serialises");
    Ok(())
}

/// Runs 1000 random mutants (deterministic seed) and checks that none panics and that the
/// mutations are mild enough for a good share of them to reach the engine and train.
#[test]
fn mutated_specs_give_a_report_or_a_typed_error() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let examples = examples();
    let strategy = (0usize..16, prop::collection::vec((any::<usize>(), any::<u8>(), odd_value()), 1..4));
    let mut runner = TestRunner::deterministic();
    let (mut reports, mut errors) = (0, 0);
    for _ in 0..1000 {
        let (which, picks) = strategy.new_tree(&mut runner).expect("strategy").current();
        let spec = mutate(examples[which % examples.len()].clone(), &picks);
        match run_to_the_end(&spec) {
            Ok(()) => reports += 1,
            Err(e) => {
                errors += 1;
                // Validation is the one place a spec is checked: a config it accepts and the engine
                // refuses would be a gap in it (the engine's errors carry no pointer).
                assert!(!matches!(e, PipelineError::Engine(_)), "validated, then refused by the engine: {e}\n{spec}");
                // Every refusal names where the problem is.
                if let Some(p) = e.problem() {
                    assert!(p.status == 400 || p.status == 422, "{p:?}");
                }
            }
        }
    }
    eprintln!("mutants: {reports} trained to a report, {errors} refused with a typed error");
    assert!(reports >= 100, "only {reports} of 1000 mutants reached the engine");
}

#[test]
fn shrunken_feed_forward_examples_run_to_a_report() {
    let mut ran = 0;
    for spec in examples() {
        let has_rnn = spec.to_string().contains("\"rnn\"");
        match run_to_the_end(&spec) {
            Ok(()) => ran += 1,
            Err(e) => assert!(has_rnn, "{e}: {spec}"),
        }
    }
    assert!(ran >= 5, "only {ran} examples ran");
}
