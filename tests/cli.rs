//! The command line: `gradscope run` / `gradscope analyze` on files and standard input, the
//! problem JSON and exit code 2 on invalid input, and `--params-out` feeding back in.

// Tests may panic on a broken expectation; the crate's unwrap/expect lints are for library code.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{gradscope, read_json, temp_json};
use serde_json::{json, Value};

fn small_spec() -> Value {
    json!({
        "seed": 4,
        "model": {"input_dim": 2, "layers": [
            {"type": "mlp", "depth": 3, "width": 8, "activation": "tanh"},
            {"type": "dense", "units": 2, "activation": "linear"}
        ]},
        "data": {"type": "xor", "samples": 64},
        "training": {"steps": 30, "batch_size": 16, "optimizer": "adam"},
        "probes": {"every": 10}
    })
}

#[test]
fn run_reads_standard_input_and_prints_the_report() {
    let out = gradscope(&["run", "-"], Some(small_spec().to_string().as_bytes()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    assert_eq!(report["report_version"], 1);
    assert_eq!(report["steps"], json!([0, 10, 20, 29]));
    assert_eq!(report["layers"].as_array().map(Vec::len), Some(4), "mlp expanded to 3 dense + output");
    assert_eq!(report["spec"]["model"]["layers"][0]["type"], "dense", "the report echoes the expanded spec");
    assert_eq!(report["layer_stats"][0]["grad_norm"].as_array().map(Vec::len), Some(4));
}

#[test]
fn invalid_spec_exits_2_with_a_problem_listing_every_pointer() {
    let mut spec = small_spec();
    spec["model"]["layers"][1]["units"] = json!(0);
    spec["training"]["batch_size"] = json!(0);
    spec["model"]["layers"][0]["widht"] = json!(3);
    let out = gradscope(&["run", "-"], Some(spec.to_string().as_bytes()));
    assert_eq!(out.status.code(), Some(2));
    let problem: Value = serde_json::from_slice(&out.stderr).expect("problem JSON on stderr");
    assert_eq!(problem["status"], 422);
    let pointers: Vec<&str> =
        problem["errors"].as_array().expect("errors").iter().filter_map(|e| e["pointer"].as_str()).collect();
    assert!(pointers.contains(&"/model/layers/0/widht"), "{pointers:?}");
    assert!(out.stdout.is_empty());
}

#[test]
fn malformed_json_exits_2_with_a_400_problem() {
    let out = gradscope(&["analyze", "-"], Some(b"{\"model\": "));
    assert_eq!(out.status.code(), Some(2));
    let problem: Value = serde_json::from_slice(&out.stderr).expect("problem JSON");
    assert_eq!(problem["status"], 400);
    assert_eq!(problem["type"], "/problems/malformed-json");
}

#[test]
fn params_out_is_a_spec_that_reproduces_the_trained_network() {
    let spec = temp_json("cli-params-spec.json", &small_spec());
    let params = spec.with_extension("trained.json");
    let out = gradscope(&["run", spec.to_str().unwrap(), "--params-out", params.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let trained = read_json(&params);
    assert!(trained["model"]["layers"][0]["weight"].is_array(), "weights written into the layer");
    // Analysing the trained spec on the whole training set (64 samples, no dropout or batch
    // norm here, so training and evaluation mode agree) gives the run's final training loss.
    let mut trained = trained;
    trained["training"]["batch_size"] = json!(64);
    let again = gradscope(&["analyze", "-"], Some(trained.to_string().as_bytes()));
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    let final_loss = report["summary"]["final_loss"].as_f64().unwrap();
    let reproduced = again["loss"][0].as_f64().unwrap();
    // The run computed in f32, the analysis in f64.
    assert!((reproduced - final_loss).abs() < 1e-5, "reproduced {reproduced} vs final {final_loss}");
}

#[test]
fn analyze_returns_one_probe_step_and_gradients_when_asked() {
    let out = gradscope(&["analyze", "--gradients", "-"], Some(small_spec().to_string().as_bytes()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["steps"], json!([0]));
    let g = &report["gradients"];
    assert_eq!(g.as_array().map(Vec::len), Some(4));
    assert_eq!(g[0]["weight"].as_array().map(Vec::len), Some(8), "8 units x 2 inputs");
}
