//! Plots and the HTML report of a job: `GET /v1/jobs/{id}/plots/{name}.svg` and
//! `GET /v1/jobs/{id}/report.html`.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

/// A three-hidden-layer MLP: every weight-layer plot applies, `timesteps` does not.
fn mlp_spec() -> Value {
    json!({
        "name": "plots <test> & co",
        "model": {"input_dim": 2, "layers": [
            {"type": "mlp", "depth": 3, "width": 8, "activation": "tanh"},
            {"type": "dense", "units": 2}
        ]},
        "data": {"type": "xor", "samples": 64},
        "training": {"steps": 30, "batch_size": 16},
        "probes": {"every": 5}
    })
}

/// A small vanilla RNN on the adding problem: `timesteps` applies.
fn rnn_spec() -> Value {
    json!({
        "model": {"input_dim": 2, "layers": [
            {"type": "rnn", "cell": "vanilla", "units": 8},
            {"type": "dense", "units": 1, "activation": "linear"}
        ]},
        "data": {"type": "adding", "length": 6, "samples": 64},
        "training": {"steps": 20, "batch_size": 16, "loss": "mse"},
        "probes": {"every": 5}
    })
}

async fn finished(app: &TestApp, spec: &Value) -> (String, Value) {
    let id = app.submit(spec).await["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "succeeded").await;
    let report: Value = app.get(&format!("/v1/jobs/{id}/report")).await.json().await.unwrap();
    (id, report)
}

/// Asserts a 200 SVG that parses as XML and has text; returns its text nodes.
async fn svg(app: &TestApp, path: &str) -> Vec<String> {
    let res = app.get(path).await;
    assert_eq!(res.status(), StatusCode::OK, "{path}");
    assert_eq!(res.headers()["content-type"], "image/svg+xml", "{path}");
    let body = res.text().await.unwrap();
    let doc = roxmltree::Document::parse(&body).unwrap_or_else(|e| panic!("{path} is not XML: {e}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.descendants().filter(|t| t.is_text()).filter_map(|t| t.text()).collect::<String>().trim().to_owned())
        .collect();
    assert!(texts.len() >= 3, "{path}: a title and axis labels: {texts:?}");
    texts
}

#[tokio::test]
async fn every_applicable_plot_and_the_html_report_of_a_finished_job_are_served() {
    let app = spawn_app().await;
    let (id, report) = finished(&app, &mlp_spec()).await;
    let texts = svg(&app, &format!("/v1/jobs/{id}/plots/grad_flow.svg")).await;
    assert!(texts.iter().any(|t| t.contains("log10 grad_norm")), "{texts:?}");
    assert!(texts.iter().any(|t| t == "dense_0"), "layer names on the axis: {texts:?}");
    svg(&app, &format!("/v1/jobs/{id}/plots/grad_norms.svg")).await;
    let texts = svg(&app, &format!("/v1/jobs/{id}/plots/loss.svg")).await;
    assert!(texts.iter().any(|t| t == "training step"), "{texts:?}");

    let p = problem(app.get(&format!("/v1/jobs/{id}/plots/timesteps.svg")).await, 404).await;
    assert_eq!(p["type"], "/problems/plot-not-applicable");
    assert!(p["detail"].as_str().unwrap().contains("recurrent"), "{p}");
    // A dense tanh stack is covered by the mean-field theory: the report has a per-layer profile
    // and the theory plot draws it.
    assert!(
        report.pointer("/theory/profile/predicted_log_delta_ratio").is_some_and(Value::is_array),
        "{}",
        report["theory"]
    );
    let texts = svg(&app, &format!("/v1/jobs/{id}/plots/theory.svg")).await;
    assert!(!texts.is_empty());

    // The job's links lead to the page and the plots.
    let job: Value = app.get(&format!("/v1/jobs/{id}")).await.json().await.unwrap();
    assert_eq!(job["links"]["report_html"], format!("/v1/jobs/{id}/report.html"));
    let template = job["links"]["plots"].as_str().unwrap();
    svg(&app, &template.replace("{name}", "grad_norms")).await;

    let res = app.get(&format!("/v1/jobs/{id}/report.html")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = res.text().await.unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") && page.ends_with("</html>\n"));
    assert!(page.contains("plots &lt;test&gt; &amp; co"), "the spec's name, escaped");
    assert!(page.contains("id=\"plot-grad_flow\"") && page.contains("<svg"), "plots inline");
    assert!(page.contains(&format!("class=\"verdict {}\"", report["summary"]["verdict"].as_str().unwrap())));
    for d in report["diagnostics"].as_array().unwrap() {
        assert!(page.contains(&format!("diag-{}", d["code"].as_str().unwrap())), "{d}");
    }
    assert!(!page.contains("<script") && !page.contains("<link"), "self-contained");
}

#[tokio::test]
async fn timesteps_are_served_for_a_recurrent_job() {
    let app = spawn_app().await;
    let (id, report) = finished(&app, &rnn_spec()).await;
    assert!(report["timesteps"]["grad_norm"].is_array(), "{}", report["timesteps"]);
    let texts = svg(&app, &format!("/v1/jobs/{id}/plots/timesteps.svg")).await;
    assert!(texts.iter().any(|t| t.contains("||dL/dh_t||")), "{texts:?}");
    let page = app.get(&format!("/v1/jobs/{id}/report.html")).await.text().await.unwrap();
    assert!(page.contains("id=\"plot-timesteps\""));
    assert!(page.contains("memory horizon"));
}

#[tokio::test]
async fn unknown_plots_and_unknown_jobs_are_404() {
    let app = spawn_app().await;
    let (id, _) = finished(&app, &tiny_spec(10)).await;
    for file in ["nope.svg", "grad_flow", "grad_flow.png", "loss.svg.svg"] {
        let p = problem(app.get(&format!("/v1/jobs/{id}/plots/{file}")).await, 404).await;
        assert_eq!(p["type"], "/problems/unknown-plot", "{file}");
        assert!(p["detail"].as_str().unwrap().contains("grad_flow.svg"), "lists the plots: {p}");
    }
    let p = problem(app.get("/v1/jobs/nope/plots/loss.svg").await, 404).await;
    assert_eq!(p["type"], "/problems/job-not-found");
    let p = problem(app.get("/v1/jobs/nope/report.html").await, 404).await;
    assert_eq!(p["type"], "/problems/job-not-found");
}

#[tokio::test]
async fn plots_and_the_html_report_are_409_until_the_report_exists() {
    let app = spawn_app().await;
    let id = app.submit(&long_spec()).await["id"].as_str().unwrap().to_owned();
    app.wait_until_training(&id).await;
    let p = problem(app.get(&format!("/v1/jobs/{id}/plots/grad_flow.svg")).await, 409).await;
    assert_eq!(p["type"], "/problems/report-not-ready");
    let p = problem(app.get(&format!("/v1/jobs/{id}/report.html")).await, 409).await;
    assert_eq!(p["type"], "/problems/report-not-ready");
    let res = app.client.post(app.url(&format!("/v1/jobs/{id}/cancel"))).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
}
