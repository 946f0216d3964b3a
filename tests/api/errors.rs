//! Every refusal is application/problem+json with the right status, and the server stays
//! healthy after each.

use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn malformed_json_is_problem_400() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url("/v1/jobs"))
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    let p = problem(res, 400).await;
    assert_eq!(p["type"], "/problems/malformed-json");
    app.assert_healthy().await;
}

#[tokio::test]
async fn wrong_content_type_is_problem_415() {
    let app = spawn_app().await;
    let body = serde_json::to_string(&tiny_spec(5)).unwrap();
    let res = app
        .client
        .post(app.url("/v1/jobs"))
        .header("content-type", "text/plain")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res, 415).await["type"], "/problems/unsupported-media-type");
    let res = app.client.post(app.url("/v1/jobs")).body(body).send().await.unwrap();
    problem(res, 415).await;
    app.assert_healthy().await;
}

#[tokio::test]
async fn oversized_body_is_problem_413() {
    let app = spawn_app().await; // 64 KiB limit
    let mut spec = tiny_spec(5);
    spec["name"] = json!("x".repeat(100_000));
    let res = app.post_json("/v1/jobs", &spec).await;
    assert_eq!(problem(res, 413).await["type"], "/problems/body-too-large");
    app.assert_healthy().await;
}

#[tokio::test]
async fn each_kind_of_invalid_spec_is_422_with_the_right_pointers() {
    let app = spawn_app().await;
    let cases: Vec<(Value, Vec<&str>)> = vec![
        // structure: unknown field, wrong type, missing field, unknown tag
        (
            json!({"model": {"input_dim": 2, "layers": [{"type": "dense", "units": 2, "unitz": 3}]}, "data": {"type": "xor"}}),
            vec!["/model/layers/0/unitz"],
        ),
        (
            json!({"model": {"input_dim": "two", "layers": [{"type": "dense", "units": 2}]}, "data": {"type": "xor"}}),
            vec!["/model/input_dim"],
        ),
        (
            json!({"model": {"input_dim": 2, "layers": [{"type": "dense"}]}, "data": {"type": "xor"}}),
            vec!["/model/layers/0/units"],
        ),
        (
            json!({"model": {"input_dim": 2, "layers": [{"type": "dense", "units": 2, "activation": "swish"}]}, "data": {"type": "xor"}}),
            vec!["/model/layers/0/activation"],
        ),
        // semantics: zero width, input width vs data, bad hyper-parameter
        (
            json!({"model": {"input_dim": 2, "layers": [{"type": "dense", "units": 0}, {"type": "dense", "units": 2}]}, "data": {"type": "xor"}}),
            vec!["/model/layers/0/units"],
        ),
        (
            json!({"model": {"input_dim": 3, "layers": [{"type": "dense", "units": 2}]}, "data": {"type": "xor"}}),
            vec!["/model/input_dim"],
        ),
        (
            json!({"model": {"input_dim": 2, "layers": [{"type": "dense", "units": 2}]}, "data": {"type": "xor"},
                "training": {"optimizer": {"type": "sgd", "lr": -1.0}}}),
            vec!["/training/optimizer/lr"],
        ),
        // every problem at once
        (
            json!({"model": {"input_dim": 2, "layers": [{"type": "dense", "units": 2, "bogus": 1}]}, "data": {"type": "xor"},
                "training": {"steps": "many"}}),
            vec!["/model/layers/0/bogus", "/training/steps"],
        ),
    ];
    for (spec, want) in cases {
        let p = problem(app.post_json("/v1/jobs", &spec).await, 422).await;
        assert_eq!(p["type"], "/problems/invalid-spec", "{p}");
        let got = pointers(&p);
        for w in &want {
            assert!(got.iter().any(|g| g == w), "{spec}: wanted {w} in {got:?}");
        }
    }
    app.assert_healthy().await;
}

#[tokio::test]
async fn over_budget_spec_is_422_with_the_computed_value_and_the_limit() {
    let app = spawn_with(&[("--max-steps", "1000"), ("--max-compute", "1000000")]).await;
    let p = problem(app.post_json("/v1/jobs", &tiny_spec(5000)).await, 422).await;
    let steps =
        p["errors"].as_array().unwrap().iter().find(|e| e["pointer"] == "/training/steps").expect("steps entry");
    let detail = steps["detail"].as_str().unwrap();
    assert!(detail.contains("5,000") && detail.contains("1,000"), "{detail}");

    let mut wide = tiny_spec(900);
    wide["model"]["layers"][0]["units"] = json!(512);
    let p = problem(app.post_json("/v1/jobs", &wide).await, 422).await;
    let all = p["errors"].to_string();
    assert!(all.contains("1,000,000"), "compute limit in {all}");
    app.assert_healthy().await;
}

#[tokio::test]
async fn unknown_job_is_problem_404() {
    let app = spawn_app().await;
    for path in ["/v1/jobs/nope", "/v1/jobs/nope/report", "/v1/jobs/nope/events"] {
        assert_eq!(problem(app.get(path).await, 404).await["type"], "/problems/job-not-found");
    }
    problem(app.client.post(app.url("/v1/jobs/nope/cancel")).send().await.unwrap(), 404).await;
    problem(app.client.delete(app.url("/v1/jobs/nope")).send().await.unwrap(), 404).await;
    problem(app.get("/v1/nothing-here").await, 404).await;
    app.assert_healthy().await;
}

#[tokio::test]
async fn report_of_a_running_job_is_problem_409() {
    let app = spawn_app().await;
    let id = app.submit(&long_spec()).await["id"].as_str().unwrap().to_owned();
    let p = problem(app.get(&format!("/v1/jobs/{id}/report")).await, 409).await;
    assert_eq!(p["type"], "/problems/report-not-ready");
    app.client.post(app.url(&format!("/v1/jobs/{id}/cancel"))).send().await.unwrap();
    app.assert_healthy().await;
}

#[tokio::test]
async fn a_full_queue_is_problem_503_with_retry_after() {
    let app = spawn_with(&[("--workers", "1"), ("--queue-capacity", "1")]).await;
    let running = app.submit(&long_spec()).await["id"].as_str().unwrap().to_owned();
    app.wait_until_training(&running).await;
    let queued = app.submit(&tiny_spec(5)).await["id"].as_str().unwrap().to_owned();
    let res = app.post_json("/v1/jobs", &tiny_spec(5)).await;
    let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert_eq!(problem(res, 503).await["type"], "/problems/queue-full");
    // Space frees up once the queue moves.
    app.client.post(app.url(&format!("/v1/jobs/{queued}/cancel"))).send().await.unwrap();
    app.submit(&tiny_spec(5)).await;
    app.client.post(app.url(&format!("/v1/jobs/{running}/cancel"))).send().await.unwrap();
    app.assert_healthy().await;
}

#[tokio::test]
async fn bad_query_and_header_values_are_problem_400() {
    let app = spawn_app().await;
    // `cursor=c%2BC` (`c+C`, outside the documented `^c[0-9a-f]{1,16}$`) was accepted as a
    // cursor until schemathesis found it.
    for path in [
        "/v1/jobs?limit=0",
        "/v1/jobs?limit=5000",
        "/v1/jobs?status=done",
        "/v1/jobs?cursor=zz",
        "/v1/jobs?limit=x",
        "/v1/jobs?limit=112&status=queued&cursor=c%2BC",
        "/v1/experiments?cursor=cABC",
    ] {
        problem(app.get(path).await, 400).await;
    }
    let res =
        app.client.post(app.url("/v1/jobs")).header("Idempotency-Key", "").json(&tiny_spec(5)).send().await.unwrap();
    problem(res, 400).await;
    app.assert_healthy().await;
}

#[tokio::test]
async fn a_wrong_method_is_problem_405_with_allow() {
    let app = spawn_app().await;
    let res = app.client.patch(app.url("/v1/jobs")).send().await.unwrap();
    assert!(res.headers().contains_key("allow"));
    problem(res, 405).await;
    app.assert_healthy().await;
}

#[tokio::test]
async fn three_mistakes_are_one_422_listing_all_three() {
    // A misspelled activation (a parse problem), zero units and too many steps (validation
    // problems): one answer names all three, so the client fixes them in one round.
    let app = spawn_with(&[("--max-steps", "1000")]).await;
    let mut spec = tiny_spec(5000);
    spec["model"]["layers"][0]["activation"] = json!("tanhh");
    spec["model"]["layers"][0]["units"] = json!(0);
    // `/v1/analyze` runs one step, so its limits do not bound `steps`: two of the three.
    let cases: [(&str, &[&str]); 2] = [
        ("/v1/jobs", &["/model/layers/0/activation", "/model/layers/0/units", "/training/steps"]),
        ("/v1/analyze", &["/model/layers/0/activation", "/model/layers/0/units"]),
    ];
    for (path, wanted) in cases {
        let p = problem(app.post_json(path, &spec).await, 422).await;
        let pointers: Vec<&str> =
            p["errors"].as_array().unwrap().iter().filter_map(|e| e["pointer"].as_str()).collect();
        for w in wanted {
            assert!(pointers.contains(w), "{path}: {w} missing from {pointers:?}");
        }
    }
    app.assert_healthy().await;
}
