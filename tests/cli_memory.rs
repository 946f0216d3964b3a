//! Memory admission on the command line: `gradscope run`, `analyze` and `experiment` refuse a
//! spec whose estimated peak memory is over `--max-job-memory` (exit 2, the `invalid-spec`
//! problem naming the estimate, the limit and the biggest part) before training anything.

// Tests may panic on a broken expectation; the crate's unwrap/expect lints are for library code.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{deep_mlp, gradscope, issue_lstm, temp_json};
use serde_json::{json, Value};

/// Exit 2 and the memory entry of the problem on standard error.
fn refused(args: &[&str]) -> (String, String) {
    let out = gradscope(args, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing printed on stdout");
    let p: Value = serde_json::from_str(&stderr).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(p["type"], "/problems/invalid-spec", "{p}");
    let entry = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["detail"].as_str().unwrap().contains("of memory"))
        .unwrap_or_else(|| panic!("no memory entry: {p}"))
        .clone();
    (entry["pointer"].as_str().unwrap().to_owned(), entry["detail"].as_str().unwrap().to_owned())
}

#[test]
fn run_and_analyze_refuse_the_issue_specs_over_the_limit() {
    let cases = [
        ("lstm.json", issue_lstm("lstm"), "4 gates × 512 units × 4 bytes = 16.8 GB"),
        ("gru.json", issue_lstm("gru"), "3 gates × 512 units × 4 bytes = 12.6 GB"),
        ("mlp.json", deep_mlp(), "the activations the network keeps"),
    ];
    for (name, spec, biggest) in cases {
        let path = temp_json(name, &spec);
        let file = path.to_str().unwrap();
        let (pointer, detail) = refused(&["run", file, "--max-job-memory", "4GB"]);
        assert_eq!(pointer, "/training/batch_size");
        assert!(detail.contains("over this server's limit of 4.0 GB per job"), "{detail}");
        assert!(detail.contains(biggest), "{detail}");
        // Binary sizes are read too: 4 GiB is 4.3 GB.
        let (_, detail) = refused(&["run", file, "--max-job-memory", "4GiB"]);
        assert!(detail.contains("limit of 4.3 GB per job"), "{detail}");
    }
    let path = temp_json("lstm-analyze.json", &issue_lstm("lstm"));
    let (_, detail) = refused(&["analyze", path.to_str().unwrap(), "--max-job-memory", "4000000000"]);
    assert!(detail.contains("× 8 bytes = 33.6 GB"), "analyze computes in f64: {detail}");
}

#[test]
fn experiment_refuses_a_run_over_the_limit() {
    let mut small = issue_lstm("lstm");
    small["training"]["batch_size"] = json!(16);
    let experiment = json!({"base": small, "vary": {"/training/batch_size": [16, 1024]}});
    let path = temp_json("experiment.json", &experiment);
    let out = gradscope(&["experiment", path.to_str().unwrap(), "--workers", "1", "--max-job-memory", "4GB"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("the run needs an estimated") && stderr.contains("limit of 4.0 GB per job"), "{stderr}");
}

#[test]
fn a_spec_under_the_limit_runs_and_a_bad_size_is_a_usage_error() {
    let spec = json!({
        "model": {"input_dim": 2, "layers": [{"type": "dense", "units": 4, "activation": "tanh"}, {"type": "dense", "units": 2}]},
        "data": {"type": "xor", "samples": 32},
        "training": {"steps": 5, "batch_size": 8}
    });
    let path = temp_json("tiny.json", &spec);
    let out = gradscope(&["run", path.to_str().unwrap(), "--max-job-memory", "100MB", "--verify-share", "0"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = gradscope(&["run", path.to_str().unwrap(), "--max-job-memory", "lots"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a size in bytes"));
}

/// `--max-job-memory` reads bytes and sizes; its default is 80% of the available memory over
/// the runs in flight (`serve`: workers + analyze slots), and analyses are held to it too.
#[test]
fn the_flag_reads_sizes_and_defaults_to_a_share_of_the_machine() {
    use gradscope::config::{available_memory, default_job_memory, parse_bytes, ServeArgs, FALLBACK_MEMORY};
    assert_eq!(parse_bytes("1000000000000000"), Ok(1_000_000_000_000_000));
    assert_eq!(parse_bytes("4GiB"), Ok(4 << 30));
    assert_eq!(parse_bytes("500MB"), Ok(500_000_000));
    assert!(parse_bytes("lots").is_err());
    let available = available_memory().unwrap_or(FALLBACK_MEMORY);
    if cfg!(target_os = "linux") {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let kb: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .unwrap()
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap();
        assert_eq!(available_memory().map(|a| a <= kb * 1024 && a > 0), Some(true));
    }
    assert_eq!(default_job_memory(4), (available as f64 * 0.8 / 4.0) as u64);
    assert_eq!(default_job_memory(0), default_job_memory(1));
    let serve = |args: &[&str]| ServeArgs::try_parse_from([&["gradscope"], args].concat()).unwrap().jobs_config();
    let config = serve(&["--workers", "3", "--analyze-slots", "1"]);
    assert_eq!(config.limits.max_job_memory, default_job_memory(4));
    let config = serve(&["--max-job-memory", "4GiB"]);
    assert_eq!((config.limits.max_job_memory, config.analyze_limits.max_job_memory), (4 << 30, 4 << 30));
}
