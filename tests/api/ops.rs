//! Health, readiness, metrics, request ids, the OpenAPI document and Swagger UI, shutdown.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn livez_healthz_and_readyz_answer_200() {
    let app = spawn_app().await;
    for path in ["/livez", "/healthz"] {
        let body: Value = app.get(path).await.json().await.unwrap();
        assert_eq!(body["status"], "ok");
    }
    let ready: Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["workers"], 2);
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_jobs_by_status() {
    let app = spawn_app().await;
    let id = app.submit(&tiny_spec(5)).await["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "succeeded").await;
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    for needle in [
        "gradscope_http_requests_total{method=\"POST\",route=\"/v1/jobs\",status=\"202\"} 1",
        "gradscope_http_request_duration_seconds_bucket",
        "gradscope_jobs_finished_total{status=\"succeeded\",code=\"none\"} 1",
        "gradscope_job_duration_seconds_count 1",
        "gradscope_queue_depth 0",
        "gradscope_jobs_running 0",
        "gradscope_workers_alive 2",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in\n{text}");
    }
}

#[tokio::test]
async fn a_request_id_is_returned_and_an_incoming_one_is_honoured() {
    let app = spawn_app().await;
    let res = app.get("/livez").await;
    assert!(!res.headers()["x-request-id"].is_empty());
    let res = app.client.get(app.url("/v1/jobs/nope")).header("x-request-id", "req-42").send().await.unwrap();
    assert_eq!(res.headers()["x-request-id"], "req-42");
}

#[tokio::test]
async fn the_openapi_document_and_swagger_ui_are_served_without_internet() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v1/jobs"]["post"].is_object());
    let res = app.get("/docs/").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("swagger"));
    let res = app.get("/docs/swagger-ui.css").await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn shutdown_refuses_new_jobs_keeps_the_queue_and_gives_running_jobs_back_after_the_grace_period() {
    let dir = std::env::temp_dir().join(format!("gradscope-shutdown-test-{}", std::process::id()));
    let dir = dir.display().to_string();
    let flags = [("--workers", "1"), ("--shutdown-grace-secs", "0.5"), ("--data-dir", dir.as_str())];
    let mut app = spawn_with(&flags).await;
    let running = app.submit(&long_spec()).await["id"].as_str().unwrap().to_owned();
    app.wait_until_training(&running).await;
    let queued = app.submit(&tiny_spec(5)).await["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(50)).await;
    app.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // During the grace period: not ready, no new work, the queue left as it is.
    let p = problem(app.get("/readyz").await, 503).await;
    assert_eq!(p["type"], "/problems/not-ready");
    let res = app.post_json("/v1/jobs", &tiny_spec(5)).await;
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(problem(res, 503).await["type"], "/problems/shutting-down");
    assert_eq!(app.job(&queued).await["status"], "queued");
    tokio::time::timeout(Duration::from_secs(10), app.shut_down()).await.expect("server stopped").unwrap();

    // The next process on the same data directory runs both: the running job was given back to
    // the queue after the grace period, and runs again from its start.
    let app = spawn_with(&flags).await;
    assert_eq!(app.job(&queued).await["status"], "queued");
    let again = app.wait_for(&running, "running again", |j| j["status"] == "running").await;
    assert_eq!(again["error"], Value::Null);
    let res = app.post_json(&format!("/v1/jobs/{running}/cancel"), &json!({})).await;
    assert!(res.status().is_success());
    app.wait_for_status(&running, "cancelled").await;
    app.wait_for_status(&queued, "succeeded").await;
}
