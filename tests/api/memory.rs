//! Memory admission (issue 13): a spec whose estimated peak memory is over `--max-job-memory`
//! is refused with the `invalid-spec` problem naming the estimate, the limit and the biggest
//! part, for jobs, analyses and experiments alike; one under it is accepted.

use serde_json::{json, Value};

use crate::common::{deep_mlp, issue_lstm};
use crate::helpers::*;

const LIMIT: &str = "4GB";

/// The one memory entry of a refusal: its pointer and its words.
fn memory_entry(p: &Value) -> (String, String) {
    assert_eq!(p["type"], "/problems/invalid-spec", "{p}");
    let errors = p["errors"].as_array().unwrap();
    let e = errors
        .iter()
        .find(|e| e["detail"].as_str().unwrap().contains("of memory"))
        .unwrap_or_else(|| panic!("no memory entry in {p}"));
    (e["pointer"].as_str().unwrap().to_owned(), e["detail"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn the_issue_specs_are_refused_naming_the_estimate_the_limit_and_the_biggest_part() {
    let app = spawn_with(&[("--max-job-memory", LIMIT)]).await;
    // README quotes the LSTM's whole sentence.
    let p = problem(app.post_json("/v1/jobs", &issue_lstm("lstm")).await, 422).await;
    assert!(memory_entry(&p).1.starts_with("the run needs an estimated 46.2 GB of memory,"), "{p}");
    let cases = [
        (issue_lstm("lstm"), "the LSTM gates kept for backpropagation (rnn_0): 1,024 sequences × 2,000 steps × 4 gates × 512 units × 4 bytes = 16.8 GB"),
        (issue_lstm("gru"), "the GRU gates kept for backpropagation (rnn_0): 1,024 sequences × 2,000 steps × 3 gates × 512 units × 4 bytes = 12.6 GB"),
        (deep_mlp(), "the activations the network keeps"),
    ];
    for (spec, biggest) in cases {
        let p = problem(app.post_json("/v1/jobs", &spec).await, 422).await;
        let (pointer, detail) = memory_entry(&p);
        assert_eq!(pointer, "/training/batch_size", "{detail}");
        assert!(detail.starts_with("the run needs an estimated "), "{detail}");
        assert!(detail.contains("over this server's limit of 4.0 GB per job; the biggest part is "), "{detail}");
        assert!(detail.contains(biggest), "{detail}");
        // The estimate is a figure in GB, above the limit.
        let gb: f64 = detail["the run needs an estimated ".len()..].split(" GB").next().unwrap().parse().unwrap();
        assert!(gb > 4.0, "{detail}");
    }
    app.assert_healthy().await;
}

#[tokio::test]
async fn analyze_and_experiments_are_held_to_the_same_limit() {
    let app = spawn_with(&[("--max-job-memory", LIMIT)]).await;
    // analyze: its own estimate (f64, its batch): twice the f32 run's gates.
    let p = problem(app.post_json("/v1/analyze", &issue_lstm("lstm")).await, 422).await;
    let (pointer, detail) = memory_entry(&p);
    assert_eq!(pointer, "/training/batch_size");
    assert!(detail.contains("4 gates × 512 units × 8 bytes = 33.6 GB"), "{detail}");
    // The same spec with a batch of 2 fits, and is analysed.
    let mut small = issue_lstm("lstm");
    small["training"]["batch_size"] = json!(2);
    let res = app.post_json("/v1/analyze", &small).await;
    assert_eq!(res.status().as_u16(), 200, "{:?}", res.text().await);
    // An experiment: each run is admitted, so a variant over the limit refuses the whole.
    let experiment = json!({"base": small, "vary": {"/training/batch_size": [2, 1024]}});
    let p = problem(app.post_json("/v1/experiments", &experiment).await, 422).await;
    let all = p["errors"].to_string();
    assert!(all.contains("the run needs an estimated") && all.contains("limit of 4.0 GB per job"), "{all}");
    app.assert_healthy().await;
}

#[tokio::test]
async fn a_spec_under_the_limit_runs_and_a_huge_limit_admits_everything() {
    // A small spec under a small limit runs.
    let app = spawn_with(&[("--max-job-memory", "300MB")]).await;
    let id = app.submit(&tiny_spec(20)).await["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "succeeded").await;
    // The flag reads plain byte counts too: 10^15 bytes admit the issue's spec, which is then
    // refused for its compute only (so that it does not run here).
    let app = spawn_with(&[("--max-job-memory", "1000000000000000"), ("--max-compute", "1000")]).await;
    let p = problem(app.post_json("/v1/jobs", &issue_lstm("lstm")).await, 422).await;
    assert!(!p["errors"].to_string().contains("of memory"), "{p}");
}
