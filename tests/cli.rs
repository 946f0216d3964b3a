//! The command line: `gradscope run` / `gradscope analyze` on files and standard input, the
//! problem JSON and exit code 2 on invalid input, `--params-out` feeding back in, the HTML
//! report and plots of `--html` / `--plots`, `{"preset": NAME}` requests and `gradscope presets`;
//! the summary and the progress bar on a real pseudo-terminal (`common::gradscope_on_terminal`),
//! the JSON on a pipe, with `--json` and in `-o FILE`, progress lines on a pipe, `--fail-on` and
//! its exit code 3, output paths refused before training, `--version`.

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
    // The unknown field (a parse problem) does not hide the two validation problems.
    for wanted in ["/model/layers/0/widht", "/model/layers/1/units", "/training/batch_size"] {
        assert!(pointers.contains(&wanted), "{wanted} missing from {pointers:?}");
    }
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

/// The presets, in the published order.
const PRESETS: [&str; 13] = [
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
    "attention-no-skip",
    "post-ln-deep",
    "pre-ln-deep",
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
fn presets_lists_every_preset_with_its_title_and_as_json() {
    let titles: Vec<String> = PRESETS
        .iter()
        .map(|name| common::read_json(&preset_file(name))["name"].as_str().expect("a title").to_owned())
        .collect();

    let out = gradscope(&["presets"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), PRESETS.len() + 1, "a header and a line per preset:\n{text}");
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
    let server = common::Server::start(&["--log-format", "pretty"]);
    let log = server.until_listening().join("\n");
    drop(server);
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
    let server = common::Server::start(&["--log-format", "json", "--workers", "1", "--queue-capacity", "1"]);
    let json_lines = |lines: Vec<String>| -> Vec<Value> {
        lines.iter().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect()
    };
    let started = json_lines(server.until_listening());
    let listening = started.last().expect("the server said where it listens");
    assert_eq!(listening["fields"]["message"], "gradscope listening");
    let addr = listening["fields"]["addr"].as_str().unwrap().to_owned();
    let long = json!({"model": {"input_dim": 2, "layers": [{"type": "dense", "units": 2}]},
                      "data": {"type": "xor"}, "training": {"steps": 1_000_000}});
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(http_status(&addr, "POST", "/v1/jobs", &long.to_string()));
    }
    // The log ends with the process: read all of it.
    let logged: Vec<Value> = [started, json_lines(server.stop())].concat();
    assert!(statuses.contains(&503), "{statuses:?}");
    let errors: Vec<&Value> = logged.iter().filter(|v| v["level"] == "ERROR").collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert!(logged.iter().any(|v| v["fields"]["message"] == "request refused: service unavailable"), "{logged:?}");
}

/// `small_spec` with `patch` merged into its `training`.
fn small_spec_with(training: Value) -> Value {
    let mut spec = small_spec();
    for (k, v) in training.as_object().unwrap() {
        spec["training"][k] = v.clone();
    }
    spec
}

#[test]
fn on_a_terminal_run_prints_the_summary_and_a_progress_bar_not_the_json() {
    let spec = temp_json("cli-terminal-run.json", &small_spec());
    let json = spec.with_file_name("cli-terminal-run.report.json");
    let (status, screen) =
        common::gradscope_on_terminal(&["run", spec.to_str().unwrap(), "-o", json.to_str().unwrap()]);
    assert!(status.success(), "{screen}");
    // The bar (steps, rate, time left) is drawn on the terminal, then replaced by one line.
    assert!(screen.contains("/30 steps") && screen.contains("steps/s") && screen.contains("ETA"), "{screen}");
    assert!(screen.contains("training completed: 30/30 steps in "), "{screen}");
    let report = common::read_json(&json);
    let verdict = report["summary"]["verdict"].as_str().unwrap();
    assert!(screen.contains(&format!("\nverdict: {verdict} — ")), "{screen}");
    assert!(screen.contains("trained 30/30 steps (completed) in "), "{screen}");
    let n = report["diagnostics"].as_array().unwrap().len();
    for d in report["diagnostics"].as_array().unwrap() {
        let line =
            screen.lines().find(|l| l.contains(d["code"].as_str().unwrap())).unwrap_or_else(|| panic!("{screen}"));
        assert!(line.trim_start().starts_with(d["severity"].as_str().unwrap()), "{line}");
    }
    if n == 0 {
        assert!(screen.contains("\nno diagnostic\n"), "{screen}");
    }
    assert!(screen.contains(&format!("JSON report  {}", json.display())), "where the JSON went: {screen}");
    assert!(!screen.contains("\"report_version\"") && !screen.contains("\"layer_stats\""), "JSON dumped: {screen}");
}

#[test]
fn on_a_terminal_analyze_of_a_vanishing_preset_gives_each_diagnostic_a_line_with_its_thresholds() {
    let preset = preset_file("deep-sigmoid-vanishing");
    let plots = std::env::temp_dir().join(format!("gradscope-terminal-plots-{}", std::process::id()));
    let (status, screen) =
        common::gradscope_on_terminal(&["analyze", preset.to_str().unwrap(), "--plots", plots.to_str().unwrap()]);
    assert!(status.success(), "{screen}");
    let lines: Vec<&str> = screen.lines().collect();
    assert!(lines[0].starts_with("verdict: vanishing — the gradient shrinks"), "{screen}");
    let line = lines.iter().find(|l| l.contains("vanishing_gradient")).unwrap_or_else(|| panic!("{screen}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[..5], ["critical", "vanishing_gradient", "dense_0", "at", "step"], "{line}");
    assert!(line.contains("first/last") && line.ends_with("per layer"), "{line}");
    assert!(line.contains("(warning < 0.01, critical < 1e-4)"), "the rule's thresholds: {line}");
    assert!(screen.contains("top recommendation (for vanishing_gradient; not verified"), "{screen}");
    assert!(
        screen.contains(&format!("plots  {} (grad_flow.svg, grad_norms.svg, loss.svg", plots.display())),
        "{screen}"
    );
    assert!(!screen.contains("{\n"), "no JSON: {screen}");
}

#[test]
fn on_a_terminal_experiment_prints_a_line_per_variant_best_first() {
    let file = temp_json("cli-terminal-experiment.json", &tiny_experiment());
    let (status, screen) = common::gradscope_on_terminal(&["experiment", file.to_str().unwrap(), "--workers", "2"]);
    assert!(status.success(), "{screen}");
    assert!(screen.contains("experiment \"cli grid\": succeeded, 2 variants x 2 seeds"), "{screen}");
    let rows: Vec<&str> = screen.lines().filter(|l| l.trim_start().starts_with('#')).collect();
    assert_eq!(rows.len(), 2, "{screen}");
    assert!(rows[0].trim_start().starts_with("#1 ") && rows[1].trim_start().starts_with("#2 "), "{screen}");
    for row in &rows {
        assert!(row.contains("final loss ") && row.contains("(n=2)"), "{row}");
    }
    assert_eq!(rows.iter().filter(|r| r.contains("(baseline)")).count(), 1, "{screen}");
    assert!(rows.iter().any(|r| r.contains("vs baseline ")), "the other variant against the baseline: {screen}");
    assert!(screen.contains("\nbest: activation="), "{screen}");
    assert!(screen.contains("experiment succeeded: 4/4 runs ended"), "the progress line: {screen}");
    assert!(!screen.contains("\"variants\""), "JSON dumped: {screen}");
}

#[test]
fn json_on_a_terminal_prints_the_report_and_no_progress_draws_nothing() {
    let spec = temp_json("cli-terminal-json.json", &small_spec());
    let (status, screen) = common::gradscope_on_terminal(&[
        "run",
        spec.to_str().unwrap(),
        "--json",
        "--no-progress",
        "--verify-share",
        "0",
    ]);
    assert!(status.success(), "{screen}");
    let report: Value = serde_json::from_str(&screen).unwrap_or_else(|e| panic!("{e}: {screen}"));
    assert_eq!(report["steps"], json!([0, 10, 20, 29]));
}

#[test]
fn output_file_holds_the_json_a_pipe_gets_while_the_pipe_gets_the_summary() {
    let spec = temp_json("cli-output.json", &small_spec());
    let file = spec.with_file_name("cli-output.report.json");
    let piped = gradscope(&["run", spec.to_str().unwrap()], None);
    let written = gradscope(&["run", spec.to_str().unwrap(), "--output", file.to_str().unwrap()], None);
    assert!(written.status.success(), "{}", String::from_utf8_lossy(&written.stderr));
    let summary = String::from_utf8(written.stdout.clone()).unwrap();
    assert!(
        summary.starts_with("verdict: ") && summary.contains(&format!("JSON report  {}", file.display())),
        "{summary}"
    );
    let mut from_file = common::read_json(&file);
    from_file["summary"].as_object_mut().unwrap().remove("duration_ms");
    assert_eq!(report_without_duration(&piped), from_file);
    // `-o` and `--json`: both.
    let both = gradscope(&["analyze", spec.to_str().unwrap(), "-o", file.to_str().unwrap(), "--json"], None);
    let printed: Value = serde_json::from_slice(&both.stdout).expect("JSON on stdout");
    assert_eq!(printed, common::read_json(&file));
}

#[test]
fn progress_on_a_pipe_is_a_line_at_the_first_step_each_tenth_and_the_end() {
    let out = gradscope(&["run", "-", "--progress", "--verify-share", "0"], Some(small_spec().to_string().as_bytes()));
    assert!(out.status.success());
    serde_json::from_slice::<Value>(&out.stdout).expect("stdout is still the JSON");
    let log = String::from_utf8(out.stderr).unwrap();
    let steps: Vec<&str> =
        log.lines().filter(|l| l.starts_with("step ")).map(|l| l.split_whitespace().nth(1).unwrap()).collect();
    assert_eq!(
        steps,
        ["1/30", "3/30", "6/30", "9/30", "12/30", "15/30", "18/30", "21/30", "24/30", "27/30", "30/30"],
        "{log}"
    );
    assert!(log.lines().any(|l| l.starts_with("step 30/30 (100%) loss ") && l.contains(" steps/s · ETA ")), "{log}");
    assert!(log.lines().last().unwrap().starts_with("training completed: 30/30 steps in "), "{log}");
    // Without --progress a pipe gets nothing.
    let quiet = gradscope(&["run", "-", "--verify-share", "0"], Some(small_spec().to_string().as_bytes()));
    assert!(quiet.stderr.is_empty(), "{}", String::from_utf8_lossy(&quiet.stderr));
}

/// The `rnn-exploding-clipping` preset without its clipping diverges (its lesson): 40 steps.
fn diverging_spec() -> Value {
    let mut spec = common::read_json(&preset_file("rnn-exploding-clipping"));
    spec.as_object_mut().unwrap().remove("name");
    spec["training"].as_object_mut().unwrap().remove("clip");
    spec["training"]["steps"] = json!(40);
    spec["data"]["samples"] = json!(256);
    spec
}

#[test]
fn fail_on_critical_exits_3_on_a_diverged_run_and_on_a_vanishing_preset() {
    let out = gradscope(&["run", "-", "--fail-on", "critical"], Some(diverging_spec().to_string().as_bytes()));
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("the report is printed all the same");
    assert_eq!(report["summary"]["outcome"], "non_finite");
    assert_eq!(report["summary"]["verdict"], "diverged");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--fail-on critical: verdict diverged") && stderr.contains("non_finite"), "{stderr}");

    let preset = preset_file("deep-sigmoid-vanishing");
    let out = gradscope(&["analyze", preset.to_str().unwrap(), "--fail-on", "critical"], None);
    assert_eq!(out.status.code(), Some(3));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["summary"]["verdict"], "vanishing");
    // Without --fail-on the same report exits 0.
    assert_eq!(gradscope(&["analyze", preset.to_str().unwrap()], None).status.code(), Some(0));
}

#[test]
fn fail_on_exits_0_below_its_level_and_3_at_it() {
    // relu-he-30 (lesson: healthy) has only a dead_units warning at initialisation.
    let preset = preset_file("relu-he-30");
    let out = gradscope(&["analyze", preset.to_str().unwrap(), "--fail-on", "critical"], None);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let severities: Vec<&str> =
        report["diagnostics"].as_array().unwrap().iter().map(|d| d["severity"].as_str().unwrap()).collect();
    assert_eq!(severities, ["warning"], "the case this test is about");
    let out = gradscope(&["analyze", preset.to_str().unwrap(), "--fail-on", "warning"], None);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--fail-on warning: "));
    let bad = gradscope(&["analyze", preset.to_str().unwrap(), "--fail-on", "info"], None);
    assert_eq!(bad.status.code(), Some(2), "an unknown level is a usage error");
}

/// A spec that would train for a long time (a million steps): it must never start.
fn long_spec() -> Value {
    small_spec_with(json!({"steps": 1_000_000}))
}

#[test]
fn an_unwritable_output_path_fails_before_training_with_exit_1() {
    let spec = temp_json("cli-long.json", &long_spec());
    let spec = spec.to_str().unwrap();
    // The spec is valid: only the path stops the run.
    assert!(gradscope(&["analyze", spec], None).status.success());
    let dir = std::env::temp_dir();
    let ok_json = dir.join(format!("gradscope-unused-{}.json", std::process::id()));
    let ok_html = dir.join(format!("gradscope-unused-{}.html", std::process::id()));
    for (flag, path) in [
        ("--plots", "/proc/no-such-dir/plots"),
        ("-o", "/proc/no-such-dir/report.json"),
        ("--html", "/proc/no-such-dir/report.html"),
        ("--params-out", "/proc/no-such-dir/trained.json"),
    ] {
        // A writable output beside the bad one: probed, not left behind.
        let (ok_flag, ok_path) = if flag == "-o" { ("--html", &ok_html) } else { ("-o", &ok_json) };
        let started = std::time::Instant::now();
        let out = gradscope(&["run", spec, "--progress", ok_flag, ok_path.to_str().unwrap(), flag, path], None);
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(1), "{flag}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with(&format!("gradscope: {flag} {path}: cannot ")), "{flag}: {stderr}");
        assert!(stderr.contains("nothing was run"), "{stderr}");
        assert!(!stderr.contains("step "), "no training step: {stderr}");
        assert!(out.stdout.is_empty(), "no report: {}", String::from_utf8_lossy(&out.stdout));
        assert!(!ok_path.exists(), "{flag}: no other file written or left behind");
        // A million steps take minutes; a refusal, well under one.
        assert!(took < std::time::Duration::from_secs(60), "{flag}: {took:?}");
    }
    let out = gradscope(&["analyze", spec, "--html", "/proc/no-such-dir/a.html"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
}

#[test]
fn version_prints_the_package_version() {
    for flag in ["--version", "-V"] {
        let out = gradscope(&[flag], None);
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.starts_with(&format!("gradscope {}", env!("CARGO_PKG_VERSION"))), "{text}");
        assert_eq!(text.lines().count(), 1, "{text}");
    }
}
