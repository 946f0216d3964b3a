//! The command line: `gradscope run` / `gradscope analyze` on files and standard input, the
//! problem JSON and exit code 2 on invalid input, `--params-out` feeding back in, the HTML
//! report and plots of `--html` / `--plots`, `{"preset": NAME}` requests and `gradscope presets`.

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

#[test]
fn run_and_analyze_write_the_html_report_and_every_applicable_plot() {
    let spec = temp_json("cli-plots-spec.json", &small_spec());
    let dir = spec.with_file_name("cli-plots");
    let html = spec.with_file_name("cli-report.html");
    let _ = std::fs::remove_dir_all(&dir);
    let out = gradscope(
        &["run", spec.to_str().unwrap(), "--html", html.to_str().unwrap(), "--plots", dir.to_str().unwrap()],
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("the JSON report is still printed");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains("<svg"));
    assert!(page.contains(&format!("class=\"verdict {}\"", report["summary"]["verdict"].as_str().unwrap())));
    let mut files: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    files.sort();
    for plot in ["grad_flow.svg", "grad_norms.svg", "loss.svg"] {
        assert!(files.contains(&plot.to_owned()), "{files:?}");
        let text = std::fs::read_to_string(dir.join(plot)).unwrap();
        roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{plot}: {e}"));
    }
    assert!(!files.contains(&"timesteps.svg".to_owned()), "an MLP has no timesteps plot: {files:?}");

    let dir = spec.with_file_name("cli-plots-analyze");
    let out = gradscope(&["analyze", spec.to_str().unwrap(), "--plots", dir.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.join("grad_flow.svg").is_file() && dir.join("loss.svg").is_file());
}

/// The ten presets, in the published order.
const PRESETS: [&str; 10] = [
    "deep-sigmoid-vanishing",
    "relu-xavier-30",
    "relu-he-30",
    "small-init",
    "batchnorm-rescue",
    "residual-rescue",
    "rnn-adding-vanishing",
    "lstm-adding",
    "rnn-exploding-clipping",
    "dead-relu-high-lr",
];

fn preset_file(name: &str) -> std::path::PathBuf {
    common::root().join("src/spec/presets").join(format!("{name}.json"))
}

/// The report of a successful command, without its wall-clock field.
fn report_without_duration(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut report: Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    let duration = report["summary"].as_object_mut().expect("summary").remove("duration_ms");
    assert!(duration.is_some(), "the report has summary.duration_ms");
    report
}

#[test]
fn run_of_a_preset_request_gives_the_report_of_the_preset_file() {
    let file = preset_file("small-init");
    let by_name = gradscope(&["run", "-"], Some(br#"{"preset": "small-init"}"#));
    let by_file = gradscope(&["run", file.to_str().unwrap()], None);
    let (by_name, by_file) = (report_without_duration(&by_name), report_without_duration(&by_file));
    assert_eq!(by_name["steps"].as_array().and_then(|s| s.last()), Some(&json!(299)), "300 steps trained");
    assert_eq!(by_name, by_file);
}

#[test]
fn analyze_of_a_preset_request_in_a_file_gives_the_report_of_the_preset_file() {
    let request = temp_json("cli-preset-request.json", &json!({"preset": "lstm-adding"}));
    let by_name = gradscope(&["analyze", request.to_str().unwrap()], None);
    let by_file = gradscope(&["analyze", preset_file("lstm-adding").to_str().unwrap()], None);
    let (by_name, by_file) = (report_without_duration(&by_name), report_without_duration(&by_file));
    assert_eq!(by_name["steps"], json!([0]));
    assert_eq!(by_name, by_file);
}

#[test]
fn an_unknown_preset_exits_2_with_the_invalid_spec_problem() {
    for command in ["run", "analyze"] {
        let out = gradscope(&[command, "-"], Some(br#"{"preset": "resnet-1000"}"#));
        assert_eq!(out.status.code(), Some(2), "{command}");
        assert!(out.stdout.is_empty(), "{command}");
        let problem: Value = serde_json::from_slice(&out.stderr).expect("problem JSON on stderr");
        assert_eq!(problem["type"], "/problems/invalid-spec");
        assert_eq!(problem["status"], 422);
        assert_eq!(problem["detail"], "the spec has 1 problem");
        assert_eq!(problem["errors"][0]["pointer"], "/preset");
        let detail = problem["errors"][0]["detail"].as_str().expect("detail");
        assert!(
            detail.starts_with("unknown preset `resnet-1000`; expected one of `deep-sigmoid-vanishing`, "),
            "{detail}"
        );
    }
}

#[test]
fn a_preset_request_with_another_field_exits_2_naming_the_field() {
    let out = gradscope(&["run", "-"], Some(br#"{"preset": "small-init", "seed": 3}"#));
    assert_eq!(out.status.code(), Some(2));
    let problem: Value = serde_json::from_slice(&out.stderr).expect("problem JSON on stderr");
    assert_eq!(
        problem["errors"],
        json!([{"pointer": "/seed", "detail": "unknown field `seed`: a preset request has only `preset`"}])
    );
}

#[test]
fn presets_lists_all_ten_with_their_titles_and_as_json() {
    let titles: Vec<String> = PRESETS
        .iter()
        .map(|name| common::read_json(&preset_file(name))["name"].as_str().expect("a title").to_owned())
        .collect();

    let out = gradscope(&["presets"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 11, "a header and ten presets:\n{text}");
    assert!(lines[0].starts_with("NAME ") && lines[0].ends_with(" TITLE"), "{}", lines[0]);
    let title_column = lines[0].find("TITLE").expect("TITLE column");
    for ((line, name), title) in lines[1..].iter().zip(PRESETS).zip(&titles) {
        assert_eq!(line[..title_column].trim_end(), name, "{line}");
        assert_eq!(&line[title_column..], title, "{line}");
    }

    let out = gradscope(&["presets", "--json"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let presets = list["presets"].as_array().expect("presets");
    let names: Vec<&str> = presets.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, PRESETS);
    for (p, title) in presets.iter().zip(&titles) {
        assert_eq!(&p["title"], title);
        assert!(p["spec"]["model"]["layers"].is_array(), "{p}");
    }
}

fn tiny_experiment() -> Value {
    json!({
        "name": "cli grid",
        "base": small_spec(),
        "vary": {"/model/layers/0/activation": ["tanh", "relu"]},
        "seeds": [1, 2]
    })
}

#[test]
fn experiment_runs_locally_and_writes_its_table_page_and_plots() {
    let file = temp_json("experiment.json", &tiny_experiment());
    let dir = std::env::temp_dir().join(format!("gradscope-experiment-plots-{}", std::process::id()));
    let html = dir.join("experiment.html");
    let out = gradscope(
        &[
            "experiment",
            file.to_str().unwrap(),
            "--table",
            "--plots",
            dir.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.starts_with("| rank | variant |"), "{table}");
    assert!(table.contains("activation=relu"), "{table}");
    assert!(std::fs::read_to_string(&html).unwrap().contains("cli grid"));
    for plot in ["grad_norm_init", "loss"] {
        assert!(dir.join(format!("{plot}.svg")).exists(), "{plot}");
    }
    // JSON by default: the experiment with its result.
    let out = gradscope(&["experiment", file.to_str().unwrap()], None);
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["status"], "succeeded");
    assert_eq!(e["result"]["variants"].as_array().unwrap().len(), 2);
}

#[test]
fn experiment_refuses_an_invalid_request_with_a_problem_and_an_unwritable_plot_directory_before_training() {
    let bad = json!({"base": small_spec(), "vary": {"/model/layers/9/units": [1]}});
    let out = gradscope(&["experiment", "-"], Some(&serde_json::to_vec(&bad).unwrap()));
    assert_eq!(out.status.code(), Some(2));
    let p: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(p["errors"][0]["pointer"], "/vary/~1model~1layers~19~1units");
    let file = temp_json("experiment2.json", &tiny_experiment());
    let out = gradscope(&["experiment", file.to_str().unwrap(), "--plots", "/proc/no-such-dir/plots"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/proc/no-such-dir"));
}

/// A log that is not a terminal (a file, a pipe, a collector) gets plain text: no ANSI colour
/// codes in the human-readable format either.
#[test]
fn a_log_that_is_not_a_terminal_has_no_colour_codes() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_gradscope"))
        .args(["serve", "--bind", "127.0.0.1:0", "--store", "memory", "--log-format", "pretty"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("gradscope listening") {
                let _ = tx.send(seen.clone());
            }
        }
    });
    let log = rx.recv_timeout(std::time::Duration::from_secs(60));
    let _ = child.kill();
    let _ = child.wait();
    let log = log.expect("the server started and said where it listens");
    assert!(log.contains("INFO"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a redirected log: {log:?}");
}

/// Sends one HTTP/1.1 request and returns the status code.
fn http_status(addr: &str, method: &str, path: &str, body: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// A 503 is the service working as documented (here: the queue is full), not an error of the
/// service: nothing is logged at ERROR for it.
#[test]
fn a_full_queue_answers_503_without_logging_an_error() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_gradscope"))
        .args(["serve", "--bind", "127.0.0.1:0", "--store", "memory", "--log-format", "json"])
        .args(["--workers", "1", "--queue-capacity", "1"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let listening =
        rx.iter().find(|v| v["fields"]["message"] == "gradscope listening").expect("the server said where it listens");
    let addr = listening["fields"]["addr"].as_str().unwrap().to_owned();
    let long = json!({"model": {"input_dim": 2, "layers": [{"type": "dense", "units": 2}]},
                      "data": {"type": "xor"}, "training": {"steps": 1_000_000}});
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(http_status(&addr, "POST", "/v1/jobs", &long.to_string()));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(statuses.contains(&503), "{statuses:?}");
    // The log ends with the process: read all of it.
    let logged: Vec<Value> = rx.iter().collect();
    let errors: Vec<&Value> = logged.iter().filter(|v| v["level"] == "ERROR").collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert!(logged.iter().any(|v| v["fields"]["message"] == "request refused: service unavailable"), "{logged:?}");
}
