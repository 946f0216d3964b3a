//! Calibration of the memory model (`engine::memory::estimate`, issue 13 must-show 1): for
//! specs of every kind whose estimate is at least 200 MB, `gradscope run` in a child process
//! peaks within ±30% of the estimate above the process's fixed footprint (the peak of the same
//! command on a tiny spec). The peak is the child's `ru_maxrss` from `wait4`. Prints the table.
//!
//! The runs are short (2 steps) and verify nothing (`--verify-share 0`): the estimate is the
//! job's own run; each verification run is admitted against the limit on its own
//! (`analysis::verify`, `over_memory`). Their recommendations are not measured at
//! initialisation either: every spec here is over `pipeline::MAX_MEASURED_COMPUTE`.

// Tests may panic on a broken expectation; the crate's unwrap/expect lints are for library code.
#![allow(clippy::expect_used, clippy::unwrap_used)]
// `wait4` is the one call here without a safe wrapper.
#![allow(unsafe_code)]

mod common;

use std::process::{Command, Stdio};

use gradscope::engine::memory::{estimate, human_bytes};
use gradscope::spec::{parse, Limits};
use serde_json::{json, Value};

fn mlp(name: &str, layers: Value, batch: u64, precision: &str) -> (String, Value) {
    let spec = json!({
        "seed": 1,
        "model": {"input_dim": 32, "layers": layers},
        "data": {"type": "blobs", "samples": batch, "classes": 4, "dims": 32, "validation_split": 0.0},
        "training": {"steps": 2, "batch_size": batch, "precision": precision},
        "probes": {"every": 1}
    });
    (name.to_owned(), spec)
}

fn rnn(name: &str, cell: &str, units: u64, length: u64, batch: u64, precision: &str) -> (String, Value) {
    let spec = json!({
        "seed": 1,
        "model": {"input_dim": 2, "layers": [
            {"type": "rnn", "cell": cell, "units": units},
            {"type": "dense", "units": 1, "activation": "linear"}
        ]},
        "data": {"type": "adding", "length": length, "samples": batch, "validation_split": 0.0},
        "training": {"steps": 2, "batch_size": batch, "loss": "mse", "precision": precision},
        "probes": {"every": 1}
    });
    (name.to_owned(), spec)
}

fn specs() -> Vec<(String, Value)> {
    let dense = |units: u64, act: &str| json!({"type": "dense", "units": units, "activation": act});
    let head = json!({"type": "dense", "units": 4, "activation": "linear"});
    let mut out = vec![
        mlp(
            "mlp relu 4x256, batch 65,536",
            json!([{"type": "mlp", "depth": 4, "width": 256, "activation": "relu"}, head]),
            65536,
            "f32",
        ),
        mlp(
            "mlp gelu 3x256, f64, batch 32,768",
            json!([{"type": "mlp", "depth": 3, "width": 256, "activation": "gelu"}, head]),
            32768,
            "f64",
        ),
        mlp(
            "mlp batch norm 3x256, batch 32,768",
            json!([{"type": "mlp", "depth": 3, "width": 256, "activation": "tanh", "norm": "batch"}, head]),
            32768,
            "f32",
        ),
        mlp(
            "layer norms 3x256, batch 32,768",
            json!([dense(256, "relu"), {"type": "layer_norm"}, dense(256, "relu"), {"type": "layer_norm"},
                   dense(256, "relu"), {"type": "layer_norm"}, head]),
            32768,
            "f32",
        ),
        mlp(
            "residual 2 blocks x256 + dropout, batch 32,768",
            json!([dense(256, "relu"),
                   {"type": "residual", "layers": [dense(256, "relu"), {"type": "dropout", "rate": 0.2}, dense(256, "linear")]},
                   {"type": "residual", "layers": [dense(256, "relu"), dense(256, "linear")]},
                   head]),
            32768,
            "f32",
        ),
        rnn("rnn tanh 128, T 500, batch 1,024", "vanilla", 128, 500, 1024, "f32"),
        rnn("lstm 128, T 300, batch 512", "lstm", 128, 300, 512, "f32"),
        rnn("gru 128, T 300, batch 512", "gru", 128, 300, 512, "f32"),
        rnn("lstm 64, T 300, batch 512, f64", "lstm", 64, 300, 512, "f64"),
        rnn("rnn tanh 32, T 5,000 (long), batch 512", "vanilla", 32, 5000, 512, "f32"),
        rnn("gru 32, T 2,000 (long), batch 1,024", "gru", 32, 2000, 1024, "f32"),
    ];
    // Per-step targets through a stacked recurrent network.
    out.push((
        "lstm 64 -> gru 64, sequences out, T 500, batch 256".to_owned(),
        json!({
            "seed": 1,
            "model": {"input_dim": 1, "layers": [
                {"type": "rnn", "cell": "lstm", "units": 64, "return_sequences": true},
                {"type": "rnn", "cell": "gru", "units": 64, "return_sequences": true},
                {"type": "dense", "units": 1, "activation": "linear"}
            ]},
            "data": {"type": "sine_sequence", "length": 500, "samples": 256, "validation_split": 0.0},
            "training": {"steps": 2, "batch_size": 256, "loss": "mse"},
            "probes": {"every": 1}
        }),
    ));
    // A large data set on a small network: the peak is the data's preparation.
    out.push((
        "blobs 1,000,000 x 20 on a small mlp".to_owned(),
        json!({
            "seed": 1,
            "model": {"input_dim": 20, "layers": [dense(16, "relu"), head]},
            "data": {"type": "blobs", "samples": 1000000, "classes": 4, "dims": 20, "validation_split": 0.1},
            "training": {"steps": 2, "batch_size": 4096},
            "probes": {"every": 1}
        }),
    ));
    out
}

/// The child's peak resident memory in bytes (`ru_maxrss` of `wait4`), after checking it
/// succeeded. The child is reaped by `wait4`, which clippy does not see.
#[allow(clippy::zombie_processes)]
fn peak_rss(spec: &Value, name: &str) -> u64 {
    let path = common::temp_json(&format!("{}.json", name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")), spec);
    let child = Command::new(env!("CARGO_BIN_EXE_gradscope"))
        .args(["run", path.to_str().unwrap(), "--verify-share", "0", "--max-job-memory", "1TB"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gradscope");
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: plain values owned here; `wait4` writes into them and reaps our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{name}: gradscope run failed ({status})");
    // Linux reports kilobytes.
    u64::try_from(usage.ru_maxrss).unwrap() * 1024
}

#[test]
fn estimates_are_within_30_percent_of_the_measured_peak_growth() {
    let tiny = json!({
        "seed": 1,
        "model": {"input_dim": 2, "layers": [{"type": "dense", "units": 4, "activation": "tanh"}, {"type": "dense", "units": 2}]},
        "data": {"type": "xor", "samples": 32, "validation_split": 0.0},
        "training": {"steps": 2, "batch_size": 8},
        "probes": {"every": 1}
    });
    let baseline = peak_rss(&tiny, "tiny");
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let specs = specs();
    assert!(specs.len() >= 12);
    for (name, spec) in &specs {
        let config = parse(spec).unwrap().validate(&Limits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let est = estimate(&config);
        assert!(est.bytes >= 200_000_000, "{name}: estimate {} under 200 MB", human_bytes(est.bytes));
        let growth = peak_rss(spec, name).saturating_sub(baseline);
        let ratio = est.bytes as f64 / growth.max(1) as f64;
        let biggest = est.biggest().map(|p| p.what.clone()).unwrap_or_default();
        rows.push(format!(
            "| {name} | {} ({}) | {} ({}) | {ratio:.3} | {:?}: {biggest} |",
            human_bytes(est.bytes),
            est.bytes,
            human_bytes(growth),
            growth,
            est.phase
        ));
        if !(0.7..=1.3).contains(&ratio) {
            failures.push(format!("{name}: estimate {} vs growth {} ({ratio:.2})", est.bytes, growth));
        }
    }
    println!("baseline (tiny spec) peak RSS: {} ({baseline} bytes)", human_bytes(baseline));
    println!("| spec | estimate (bytes) | measured growth (bytes) | estimate / growth | peak phase: biggest part |");
    println!("|---|---|---|---|---|");
    for r in &rows {
        println!("{r}");
    }
    assert!(failures.is_empty(), "outside ±30%:\n{}", failures.join("\n"));
}
