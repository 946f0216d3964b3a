//! `/v1/experiments`: admission and refusals, runs as ordinary jobs, aggregated status and
//! progress, the result and its page and plots, cancel, delete, events, fair scheduling.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{long_spec, parse_sse, pointers, problem, spawn_app, spawn_with, tiny_spec, TestApp};

/// A grid over the first layer's activation on the tiny spec (whose first layer is `tanh`, so
/// the `tanh` cell is the baseline).
fn tiny_grid(steps: u64, seeds: Value) -> Value {
    json!({
        "name": "tiny grid",
        "base": tiny_spec(steps),
        "vary": {"/model/layers/0/activation": ["tanh", "relu", "sigmoid"]},
        "seeds": seeds,
        "loss_threshold": 0.6
    })
}

async fn create(app: &TestApp, body: &Value) -> Value {
    let res = app.post_json("/v1/experiments", body).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED, "{:?}", res.text().await);
    let location = res.headers().get("location").unwrap().to_str().unwrap().to_owned();
    let e: Value = res.json().await.unwrap();
    assert_eq!(location, format!("/v1/experiments/{}", e["id"].as_str().unwrap()));
    e
}

async fn experiment(app: &TestApp, id: &str) -> Value {
    let res = app.get(&format!("/v1/experiments/{id}")).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

async fn wait_until(app: &TestApp, id: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let e = experiment(app, id).await;
        if done(&e) {
            return e;
        }
        assert!(Instant::now() < deadline, "experiment {id} did not get there: {e}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_finished(app: &TestApp, id: &str) -> Value {
    wait_until(app, id, 60, |e| !matches!(e["status"].as_str(), Some("queued" | "running"))).await
}

fn job_ids(e: &Value) -> Vec<String> {
    e["variants"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|v| v["runs"].as_array().unwrap().iter().map(|r| r["job_id"].as_str().unwrap().to_owned()))
        .collect()
}

/// The result without what differs between two identical experiments: job ids and clocks.
fn comparable(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "job_id" | "wall_time_ms" | "duration_ms"))
                .map(|(k, v)| (k.clone(), comparable(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(comparable).collect()),
        other => other.clone(),
    }
}

#[tokio::test]
async fn a_grid_runs_every_variant_on_every_seed_as_jobs_and_ends_with_a_ranked_result() {
    let app = spawn_app().await;
    let e = create(&app, &tiny_grid(40, json!([7, 8]))).await;
    assert_eq!(e["seeds"], json!([7, 8]));
    let names: Vec<&str> = e["variants"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["activation=tanh", "activation=relu", "activation=sigmoid"], "the tanh cell is the base spec");
    assert_eq!(e["variants"][0]["baseline"], true);
    assert_eq!(e["variants"][1]["settings"], json!({"/model/layers/0/activation": "relu"}));
    assert_eq!(e["progress"]["runs"], 6);
    let id = e["id"].as_str().unwrap();

    let done = wait_finished(&app, id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["progress"]["runs_ended"], 6);
    assert_eq!(done["progress"]["step"], done["progress"]["total_steps"]);
    let result = &done["result"];
    assert_eq!(result["ranking"].as_array().unwrap().len(), 3, "{result}");

    // Every run is an ordinary job of the experiment, with its own report.
    for job in job_ids(&done) {
        let j = app.job(&job).await;
        assert_eq!(j["experiment_id"], id);
        assert_eq!(j["status"], "succeeded");
        let seed =
            app.get(&format!("/v1/jobs/{job}/report")).await.json::<Value>().await.unwrap()["spec"]["seed"].clone();
        assert!(seed == 7 || seed == 8, "{seed}");
    }
    let page = app.get(&format!("/v1/experiments/{id}/report.html")).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("activation=relu"));
    for plot in ["grad_norm_init", "loss"] {
        let res = app.get(&format!("/v1/experiments/{id}/plots/{plot}.svg")).await;
        assert_eq!(res.status(), StatusCode::OK, "{plot}");
        assert_eq!(res.headers()["content-type"], "image/svg+xml");
    }
    // One axis: no heatmap.
    problem(app.get(&format!("/v1/experiments/{id}/plots/heatmap.svg")).await, 404).await;
    problem(app.get(&format!("/v1/experiments/{id}/plots/nope.svg")).await, 404).await;
}

#[tokio::test]
async fn the_same_experiment_twice_gives_identical_results_durations_and_ids_aside() {
    let app = spawn_with(&[("--queue-capacity", "64")]).await;
    let body = json!({
        "base": tiny_spec(30),
        "vary": {"/model/layers/0/activation": ["tanh", "relu"], "/model/layers/0/units": [4, 8]},
        "seeds": 3
    });
    let a = create(&app, &body).await;
    let b = create(&app, &body).await;
    let a = wait_finished(&app, a["id"].as_str().unwrap()).await;
    let b = wait_finished(&app, b["id"].as_str().unwrap()).await;
    assert_eq!(a["status"], "succeeded");
    assert_eq!(comparable(&a["result"]), comparable(&b["result"]));
    // Two axes: the heatmap is drawn.
    let res = app.get(&format!("/v1/experiments/{}/plots/heatmap.svg", a["id"].as_str().unwrap())).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn named_patches_each_make_a_variant_beside_the_baseline() {
    let app = spawn_app().await;
    let body = json!({
        "base": tiny_spec(20),
        "variants": [
            {"name": "wide", "patch": [{"op": "replace", "path": "/model/layers/0/units", "value": 16}]},
            {"name": "adam-fast", "patch": [{"op": "add", "path": "/training/optimizer", "value": {"type": "adam", "lr": 0.01}}]}
        ],
        "seeds": 1
    });
    let e = create(&app, &body).await;
    let names: Vec<&str> = e["variants"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["baseline", "wide", "adam-fast"]);
    let done = wait_finished(&app, e["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded");
}

#[tokio::test]
async fn remedies_of_a_job_compares_its_recommendations_with_its_own_spec() {
    let app = spawn_app().await;
    // A 12-layer sigmoid stack vanishes: its report recommends cures.
    let spec = json!({
        "model": {"input_dim": 4, "layers": [{"type": "mlp", "depth": 12, "width": 16, "activation": "sigmoid"}, {"type": "dense", "units": 2}]},
        "data": {"type": "blobs", "samples": 64, "classes": 2, "dims": 4},
        "training": {"steps": 10, "batch_size": 16},
        "probes": {"every": 5}
    });
    let job = app.submit(&spec).await;
    let job_id = job["id"].as_str().unwrap();
    app.wait_for_status(job_id, "succeeded").await;
    let e = create(&app, &json!({"remedies_of": job_id, "seeds": 1})).await;
    let variants = e["variants"].as_array().unwrap();
    assert_eq!(variants[0]["name"], "baseline");
    assert!(variants.len() >= 2, "the job's recommendations are variants: {e}");
    let done = wait_finished(&app, e["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded");
}

#[tokio::test]
async fn refusals_name_the_problem_with_its_pointer() {
    let app = spawn_with(&[("--max-experiment-variants", "4"), ("--max-experiment-seeds", "3")]).await;
    // A grid over the limit: the computed size beside the limit.
    let over = json!({"base": tiny_spec(10), "vary": {"/model/layers/0/activation": ["tanh", "relu", "sigmoid"], "/model/layers/0/units": [2, 4]}});
    let p = problem(app.post_json("/v1/experiments", &over).await, 422).await;
    assert_eq!(pointers(&p), ["/vary"]);
    assert!(p["errors"][0]["detail"].as_str().unwrap().contains("3 x 2 = 6 cells; at most 4"), "{p}");
    // A pointer that does not point into the base spec.
    let bad_pointer = json!({"base": tiny_spec(10), "vary": {"/model/layers/9/activation": ["relu"]}});
    let p = problem(app.post_json("/v1/experiments", &bad_pointer).await, 422).await;
    assert_eq!(pointers(&p), ["/vary/~1model~1layers~19~1activation"], "{p}");
    // A patch that is not RFC 6902, and one that does not apply: both named.
    let bad_patch = json!({"base": tiny_spec(10), "variants": [
        {"name": "odd", "patch": [{"op": "frobnicate", "path": "/x"}]},
        {"name": "gone", "patch": [{"op": "replace", "path": "/model/nothing/here", "value": 1}]}
    ]});
    let p = problem(app.post_json("/v1/experiments", &bad_patch).await, 422).await;
    assert_eq!(pointers(&p), ["/variants/0/patch"], "{p}");
    let not_applying = json!({"base": tiny_spec(10), "variants": [
        {"name": "gone", "patch": [{"op": "replace", "path": "/model/nothing/here", "value": 1}]}
    ]});
    let p = problem(app.post_json("/v1/experiments", &not_applying).await, 422).await;
    assert_eq!(pointers(&p), ["/variants/0/patch"], "{p}");
    assert!(p["errors"][0]["detail"].as_str().unwrap().contains("variant `gone`"), "{p}");
    // A variant whose spec is invalid: the variant and the pointer inside its spec.
    let invalid = json!({"base": tiny_spec(10), "variants": [
        {"name": "zero", "patch": [{"op": "replace", "path": "/model/layers/0/units", "value": 0}]}
    ]});
    let p = problem(app.post_json("/v1/experiments", &invalid).await, 422).await;
    assert_eq!(pointers(&p), ["/variants/0"], "{p}");
    let detail = p["errors"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("variant `zero`") && detail.contains("/model/layers/0/units"), "{p}");
    // Unknown preset, too many seeds, no design, a job that does not exist.
    let p = problem(app.post_json("/v1/experiments", &json!({"preset": "no-such-experiment"})).await, 422).await;
    assert_eq!(pointers(&p), ["/preset"]);
    let p = problem(app.post_json("/v1/experiments", &tiny_grid(10, json!(5))).await, 422).await;
    assert_eq!(pointers(&p), ["/seeds"], "{p}");
    let p = problem(app.post_json("/v1/experiments", &json!({"base": tiny_spec(10)})).await, 422).await;
    assert_eq!(pointers(&p), [""], "{p}");
    let p = problem(app.post_json("/v1/experiments", &json!({"remedies_of": "no-such-job"})).await, 404).await;
    assert_eq!(p["type"], "/problems/job-not-found");
    // Nothing was queued by any of them.
    let jobs: Value = app.get("/v1/jobs").await.json().await.unwrap();
    assert_eq!(jobs["jobs"], json!([]));
}

#[tokio::test]
async fn the_total_compute_of_an_experiment_is_held_to_its_limit_with_the_figures() {
    // tiny_spec(1000): 22 parameters x 1000 steps x 8 per batch = 176,000 per run.
    let app = spawn_with(&[("--max-experiment-compute", "1000000")]).await;
    let p = problem(app.post_json("/v1/experiments", &tiny_grid(1000, json!(3))).await, 422).await;
    let detail = p["errors"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("1,584,000") && detail.contains("9 runs") && detail.contains("1,000,000"), "{p}");
}

#[tokio::test]
async fn cancelling_an_experiment_leaves_no_running_job_and_delete_removes_its_jobs() {
    let app = spawn_app().await;
    let body =
        json!({"base": long_spec(), "vary": {"/model/layers/0/activation": ["tanh", "relu", "sigmoid"]}, "seeds": 2});
    let e = create(&app, &body).await;
    let id = e["id"].as_str().unwrap();
    wait_until(&app, id, 20, |e| e["progress"]["runs_running"] == 2).await;
    problem(app.client.delete(app.url(&format!("/v1/experiments/{id}"))).send().await.unwrap(), 409).await;

    let res = app.post_json(&format!("/v1/experiments/{id}/cancel"), &json!({})).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let done = wait_finished(&app, id).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    for job in job_ids(&done) {
        assert_eq!(app.job(&job).await["status"], "cancelled");
    }
    let running: Value = app.get("/v1/jobs?status=running").await.json().await.unwrap();
    assert_eq!(running["jobs"], json!([]));
    // Cancelling again changes nothing.
    assert_eq!(app.post_json(&format!("/v1/experiments/{id}/cancel"), &json!({})).await.status(), StatusCode::OK);

    let res = app.client.delete(app.url(&format!("/v1/experiments/{id}"))).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    problem(app.get(&format!("/v1/experiments/{id}")).await, 404).await;
    for job in job_ids(&done) {
        problem(app.get(&format!("/v1/jobs/{job}")).await, 404).await;
    }
    app.assert_healthy().await;
}

/// Seconds since midnight of an RFC 3339 UTC timestamp (the tests run well within a day).
fn seconds(t: &Value) -> f64 {
    let t = t.as_str().unwrap();
    let clock = t.split('T').nth(1).unwrap().trim_end_matches('Z');
    let parts: Vec<f64> = clock.split(':').map(|p| p.parse().unwrap()).collect();
    parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
}

#[tokio::test]
async fn a_single_job_waits_for_at_most_one_run_of_an_experiment_holding_every_worker() {
    let app = spawn_with(&[("--workers", "2")]).await;
    // Eight runs of a second or more each (a million steps of a tiny network).
    let body = json!({"base": long_spec(), "vary": {"/model/layers/0/units": [4, 5, 6, 7]}, "seeds": 2});
    let e = create(&app, &body).await;
    let id = e["id"].as_str().unwrap();
    wait_until(&app, id, 20, |e| e["progress"]["runs_running"] == 2).await;
    let job = app.submit(&tiny_spec(10)).await;
    let job_id = job["id"].as_str().unwrap();
    let single = app.wait_for(job_id, "started", |j| j["started_at"].is_string()).await;
    let started = seconds(&single["started_at"]);
    // Runs of the experiment that had ended when the single job started, by their own clocks.
    let mut ended_before = 0;
    for run in job_ids(&experiment(&app, id).await) {
        let j = app.job(&run).await;
        if j["finished_at"].is_string() && seconds(&j["finished_at"]) <= started {
            ended_before += 1;
        }
    }
    // First in, first out would make it wait for six runs to start; the fair share lets it in
    // at the first free worker (two runs may end in the same instant).
    assert!(ended_before <= 2, "the single job waited for {ended_before} runs to end");
    let res = app.post_json(&format!("/v1/experiments/{id}/cancel"), &json!({})).await;
    assert!(res.status().is_success());
    app.wait_for_status(job_id, "succeeded").await;
}

#[tokio::test]
async fn events_stream_progress_then_the_final_status_with_the_result() {
    let app = spawn_app().await;
    let e = create(&app, &tiny_grid(200, json!(2))).await;
    let id = e["id"].as_str().unwrap();
    let text = app.get(&format!("/v1/experiments/{id}/events")).await.text().await.unwrap();
    let events = parse_sse(&text);
    let (last_id, last_name, last) = events.last().unwrap();
    assert_eq!(last_name, "status", "{text}");
    assert_eq!(last["status"], "succeeded");
    assert!(last["result"]["ranking"].is_array());
    assert!(events.windows(2).all(|w| w[0].0 < w[1].0), "ids increase");
    // Reconnecting after the end gets the final status at once, not an empty stream.
    let res = app
        .client
        .get(app.url(&format!("/v1/experiments/{id}/events")))
        .header("last-event-id", last_id.to_string())
        .send()
        .await
        .unwrap();
    let again = parse_sse(&res.text().await.unwrap());
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1, "status");
    assert!(again[0].0 > *last_id);
}

#[tokio::test]
async fn experiments_are_listed_newest_first_with_a_cursor() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(create(&app, &tiny_grid(5, json!(1))).await["id"].as_str().unwrap().to_owned());
    }
    let p1: Value = app.get("/v1/experiments?limit=2").await.json().await.unwrap();
    let listed: Vec<&str> = p1["experiments"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(listed, [ids[2].as_str(), ids[1].as_str()]);
    assert!(p1["experiments"][0]["links"]["self"].is_string());
    let cursor = p1["next_cursor"].as_str().unwrap();
    let p2: Value = app.get(&format!("/v1/experiments?limit=2&cursor={cursor}")).await.json().await.unwrap();
    assert_eq!(p2["experiments"][0]["id"], ids[0].as_str());
    assert_eq!(p2["next_cursor"], Value::Null);
    problem(app.get("/v1/experiments?limit=0").await, 400).await;
    problem(app.get("/v1/experiments/nope").await, 404).await;
}
