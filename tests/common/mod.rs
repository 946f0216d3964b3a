//! Helpers shared by the integration tests.

// Tests may panic on a broken expectation; the crate's unwrap/expect lints are for library code.
#![allow(clippy::expect_used, clippy::unwrap_used, dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Reads a JSON file.
pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs the `gradscope` binary with `args`, feeding `stdin` when given.
pub fn gradscope(args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gradscope"));
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn gradscope");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input).expect("write stdin");
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().expect("wait for gradscope")
}

/// Writes `value` to a fresh temporary file and returns its path.
pub fn temp_json(name: &str, value: &Value) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gradscope-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(value).expect("serialise")).expect("write temp file");
    path
}

/// Every number in a JSON tree, in document order (arrays flattened).
pub fn numbers(v: &Value, out: &mut Vec<f64>) {
    match v {
        Value::Number(n) => out.push(n.as_f64().unwrap_or(f64::NAN)),
        Value::Array(a) => a.iter().for_each(|x| numbers(x, out)),
        Value::Object(o) => o.values().for_each(|x| numbers(x, out)),
        _ => {}
    }
}

/// A dense layer with zero bias, no norm and initialised parameters: the building block of the
/// engine-level science tests.
pub fn plain_dense(
    units: usize,
    activation: gradscope::engine::config::Activation,
    init: gradscope::engine::config::Init,
) -> gradscope::engine::config::LayerConfig {
    use gradscope::engine::config::{DenseConfig, Init, LayerConfig, NormConfig};
    LayerConfig::Dense(DenseConfig {
        units,
        activation,
        init,
        bias_init: Init::Constant { value: 0.0 },
        norm: None,
        norm_config: NormConfig::default(),
        params: Default::default(),
    })
}

/// Issue 13's spec: an LSTM (or `cell`) of 512 units on the adding task, sequences of 2,000
/// steps, 1,024 samples in one batch, one training step. Data (4.1 M values) and compute are
/// within their limits; its gates alone are 16.8 GB in f32.
pub fn issue_lstm(cell: &str) -> Value {
    json!({
        "seed": 1,
        "model": {"input_dim": 2, "layers": [
            {"type": "rnn", "cell": cell, "units": 512},
            {"type": "dense", "units": 1, "activation": "linear"}
        ]},
        "data": {"type": "adding", "length": 2000, "samples": 1024, "validation_split": 0.0},
        "training": {"steps": 1, "batch_size": 1024, "loss": "mse"}
    })
}

/// A deep MLP: 40 layers of 1,024 units (42 M parameters) on 65,536 samples in one batch.
pub fn deep_mlp() -> Value {
    json!({
        "model": {"input_dim": 64, "layers": [
            {"type": "mlp", "depth": 40, "width": 1024, "activation": "relu"},
            {"type": "dense", "units": 4, "activation": "linear"}
        ]},
        "data": {"type": "blobs", "samples": 65536, "classes": 4, "dims": 64, "validation_split": 0.0},
        "training": {"steps": 1, "batch_size": 65536}
    })
}
