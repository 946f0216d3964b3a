//! The job lifecycle end to end: submit, poll, report, events, cancel, delete, list,
//! idempotency, presets, analyze, timeouts, divergence and panic isolation.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn submit_returns_202_and_location_then_poll_reaches_succeeded_and_the_report_is_served() {
    let app = spawn_app().await;
    let res = app.post_json("/v1/jobs", &tiny_spec(40)).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let job: Value = res.json().await.unwrap();
    let id = job["id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/jobs/{id}"));
    assert_eq!(job["links"]["report"], format!("/v1/jobs/{id}/report"));
    assert!(matches!(job["status"].as_str(), Some("queued" | "running" | "succeeded")));
    assert_eq!(job["progress"]["total_steps"], 40);

    let done = app.wait_for_status(id, "succeeded").await;
    assert_eq!(done["progress"]["step"], 40);
    assert!(done["finished_at"].is_string() && done["started_at"].is_string());
    assert!(done["error"].is_null());

    let res = app.get(&location).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.get(&format!("{location}/report")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/json");
    let report: Value = res.json().await.unwrap();
    assert_eq!(report["report_version"], 1);
    assert_eq!(report["summary"]["steps"], 40);
}

#[tokio::test]
async fn sse_stream_receives_progress_events_at_probe_steps_at_most_ten_a_second_and_the_final_status() {
    let app = spawn_app().await;
    // 300,000 steps of a tiny network, probed every 5 steps: tens of thousands of probe steps
    // a second, of which at most ten a second become events.
    let started = std::time::Instant::now();
    let job = app.submit(&tiny_spec(300_000)).await;
    let id = job["id"].as_str().unwrap();
    let res = app.get(&format!("/v1/jobs/{id}/events")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let events = parse_sse(&res.text().await.unwrap());
    let elapsed = started.elapsed().as_secs_f64();
    let (last, rest) = events.split_last().expect("events");
    assert_eq!(last.1, "status");
    assert_eq!(last.2["status"], "succeeded");
    assert!(!rest.is_empty() && rest.iter().all(|e| e.1 == "progress"), "{events:?}");
    let steps: Vec<u64> = rest.iter().map(|e| e.2["step"].as_u64().unwrap()).collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
    // Probe steps (multiples of 5), or heartbeats, and always the last step.
    assert_eq!(*steps.last().unwrap(), 300_000);
    // One event per 0.1 s of the run at most, and the last step besides.
    assert!(steps.len() as f64 <= elapsed / 0.1 + 2.0, "{} events in {elapsed:.2} s", steps.len());
    let ids: Vec<u64> = events.iter().map(|e| e.0).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "ids increase by one: {ids:?}");
}

#[tokio::test]
async fn sse_reconnect_with_last_event_id_resumes_after_it_without_gaps() {
    let app = spawn_app().await;
    // Long enough (a second or more) for several progress events.
    let job = app.submit(&tiny_spec(1_000_000)).await;
    let id = job["id"].as_str().unwrap();
    app.wait_for_status(id, "succeeded").await;
    let all = parse_sse(&app.get(&format!("/v1/jobs/{id}/events")).await.text().await.unwrap());
    assert!(all.len() >= 3, "{all:?}");
    let k = all.len() / 2;
    let res = app
        .client
        .get(app.url(&format!("/v1/jobs/{id}/events")))
        .header("Last-Event-ID", all[k].0.to_string())
        .send()
        .await
        .unwrap();
    let resumed = parse_sse(&res.text().await.unwrap());
    assert_eq!(resumed.first().map(|e| e.0), Some(all[k].0 + 1));
    assert_eq!(resumed, all[k + 1..].to_vec());
    // After the final event there is nothing more: 204, which stops EventSource reconnecting.
    let last = all.last().unwrap();
    assert_eq!(last.1, "status");
    let res = app
        .client
        .get(app.url(&format!("/v1/jobs/{id}/events")))
        .header("Last-Event-ID", last.0.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(res.text().await.unwrap().is_empty());
}

#[tokio::test]
async fn cancel_queued_job_is_cancelled_at_once() {
    let app = spawn_with(&[("--workers", "1")]).await;
    let busy = app.submit(&long_spec()).await;
    app.wait_until_training(busy["id"].as_str().unwrap()).await;
    let queued = app.submit(&tiny_spec(10)).await;
    let id = queued["id"].as_str().unwrap();
    assert_eq!(queued["status"], "queued");

    let res = app.client.post(app.url(&format!("/v1/jobs/{id}/cancel"))).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let job: Value = res.json().await.unwrap();
    assert_eq!(job["status"], "cancelled");
    assert_eq!(job["error"]["code"], "cancelled");
    // Its event stream is just the final status.
    let events = parse_sse(&app.get(&format!("/v1/jobs/{id}/events")).await.text().await.unwrap());
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].2["status"], "cancelled");
    app.client.post(app.url(&format!("/v1/jobs/{}/cancel", busy["id"].as_str().unwrap()))).send().await.unwrap();
}

#[tokio::test]
async fn cancel_running_job_stops_within_one_step() {
    let app = spawn_app().await;
    let job = app.submit(&long_spec()).await;
    let id = job["id"].as_str().unwrap();
    app.wait_until_training(id).await;

    let asked = Instant::now();
    let res = app.client.post(app.url(&format!("/v1/jobs/{id}/cancel"))).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let job: Value = res.json().await.unwrap();
    assert!(job["status"] == "running" || job["status"] == "cancelled", "{job}");

    let done = app.wait_for_status(id, "cancelled").await;
    // The engine checks the flag before every step (~10 us here); allow for scheduling.
    assert!(asked.elapsed() < Duration::from_secs(2), "took {:?}", asked.elapsed());
    assert_eq!(done["error"]["code"], "cancelled");
    assert!(done["error"]["message"].as_str().unwrap().contains("at step"), "{done}");
    assert!(done["progress"]["step"].as_u64().unwrap() < 1_000_000);
    assert_eq!(done["cancel_requested"], false);
    // The report of what it measured up to where it stopped is kept.
    let res = app.get(&format!("/v1/jobs/{id}/report")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let report: Value = res.json().await.unwrap();
    assert_eq!(report["summary"]["outcome"], "cancelled", "{}", report["summary"]);
    assert!(report["summary"]["steps"].as_u64().unwrap() < 1_000_000);
    app.assert_healthy().await;
}

#[tokio::test]
async fn cancel_of_a_finished_job_is_200_and_changes_nothing() {
    let app = spawn_app().await;
    let id = app.submit(&tiny_spec(5)).await["id"].as_str().unwrap().to_owned();
    let before = app.wait_for_status(&id, "succeeded").await;
    let res = app.client.post(app.url(&format!("/v1/jobs/{id}/cancel"))).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap(), before);
}

#[tokio::test]
async fn delete_removes_a_finished_job_and_refuses_a_running_one() {
    let app = spawn_app().await;
    let running = app.submit(&long_spec()).await["id"].as_str().unwrap().to_owned();
    app.wait_until_training(&running).await;
    let p = problem(app.client.delete(app.url(&format!("/v1/jobs/{running}"))).send().await.unwrap(), 409).await;
    assert_eq!(p["type"], "/problems/job-not-finished");

    let done = app.submit(&tiny_spec(5)).await["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&done, "succeeded").await;
    let res = app.client.delete(app.url(&format!("/v1/jobs/{done}"))).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    problem(app.get(&format!("/v1/jobs/{done}")).await, 404).await;
    problem(app.get(&format!("/v1/jobs/{done}/report")).await, 404).await;
    app.client.post(app.url(&format!("/v1/jobs/{running}/cancel"))).send().await.unwrap();
}

#[tokio::test]
async fn list_pages_newest_first_with_an_opaque_cursor_and_filters_by_status() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.submit(&tiny_spec(5)).await["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        app.wait_for_status(id, "succeeded").await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/jobs?limit=2&cursor={c}"),
            None => "/v1/jobs?limit=2".to_owned(),
        };
        let page: Value = app.get(&path).await.json().await.unwrap();
        let jobs = page["jobs"].as_array().unwrap();
        assert!(jobs.len() <= 2);
        seen.extend(jobs.iter().map(|j| j["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "every job once, newest first");

    let page: Value = app.get("/v1/jobs?status=succeeded").await.json().await.unwrap();
    assert_eq!(page["jobs"].as_array().unwrap().len(), 5);
    let page: Value = app.get("/v1/jobs?status=running").await.json().await.unwrap();
    assert!(page["jobs"].as_array().unwrap().is_empty());
    assert!(page["next_cursor"].is_null());
}

#[tokio::test]
async fn idempotency_key_with_the_same_body_gives_the_same_job_and_another_body_is_422() {
    let app = spawn_app().await;
    let send =
        |body: Value| app.client.post(app.url("/v1/jobs")).header("Idempotency-Key", "\"key-1\"").json(&body).send();
    let first: Value = send(tiny_spec(5)).await.unwrap().json().await.unwrap();
    let res = send(tiny_spec(5)).await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(res.headers()["location"].to_str().unwrap(), format!("/v1/jobs/{}", first["id"].as_str().unwrap()));
    let again: Value = res.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    // The same JSON pretty-printed, with its keys in another order, is the same body.
    let mut reordered = serde_json::Map::new();
    for (k, v) in tiny_spec(5).as_object().unwrap().iter().rev() {
        reordered.insert(k.clone(), v.clone());
    }
    let pretty = serde_json::to_string_pretty(&Value::Object(reordered)).unwrap();
    let res = app
        .client
        .post(app.url("/v1/jobs"))
        .header("Idempotency-Key", "\"key-1\"")
        .header("content-type", "application/json")
        .body(pretty)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(res.json::<Value>().await.unwrap()["id"], first["id"]);

    let p = problem(send(tiny_spec(6)).await.unwrap(), 422).await;
    assert_eq!(p["type"], "/problems/idempotency-key-reused");
    let page: Value = app.get("/v1/jobs").await.json().await.unwrap();
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1, "no second job");
}

#[tokio::test]
async fn presets_are_listed_as_full_specs_and_can_be_submitted_by_name() {
    let app = spawn_app().await;
    let list: Value = app.get("/v1/presets").await.json().await.unwrap();
    let names: Vec<&str> = list["presets"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    for name in [
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
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
        let spec: Value = app.get(&format!("/v1/presets/{name}")).await.json().await.unwrap();
        assert!(spec["model"]["layers"].is_array() && spec["data"]["type"].is_string(), "{name}: {spec}");
    }
    problem(app.get("/v1/presets/nope").await, 404).await;

    let job = app.submit(&json!({"preset": "small-init"})).await;
    assert_eq!(job["progress"]["total_steps"], 300);
    app.client.post(app.url(&format!("/v1/jobs/{}/cancel", job["id"].as_str().unwrap()))).send().await.unwrap();

    // Recurrent presets run too.
    let job = app.submit(&json!({"preset": "lstm-adding"})).await;
    assert!(job["status"] == "queued" || job["status"] == "running", "{job}");
    app.client.post(app.url(&format!("/v1/jobs/{}/cancel", job["id"].as_str().unwrap()))).send().await.unwrap();
    let p = problem(app.post_json("/v1/jobs", &json!({"preset": "resnet-1000"})).await, 422).await;
    assert_eq!(pointers(&p), ["/preset"]);
}

/// `gradscope` (the binary of this build) with `args` and `stdin`.
fn command_line(args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gradscope"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn the_command_line_lists_the_same_presets_and_refuses_the_same_preset_requests() {
    let app = spawn_app().await;
    let list: Value = app.get("/v1/presets").await.json().await.unwrap();
    let out = command_line(&["presets", "--json"], b"");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), list);

    for body in [json!({"preset": "resnet-1000"}), json!({"preset": "small-init", "seed": 1}), json!({"preset": 7})] {
        let over_http = problem(app.post_json("/v1/jobs", &body).await, 422).await;
        let out = command_line(&["run", "-"], body.to_string().as_bytes());
        assert_eq!(out.status.code(), Some(2), "{body}");
        assert_eq!(serde_json::from_slice::<Value>(&out.stderr).unwrap(), over_http, "{body}");
    }
}

#[tokio::test]
async fn analyze_returns_the_report_of_one_forward_backward() {
    let app = spawn_app().await;
    let spec = json!({
        "model": {"input_dim": 8, "layers": [{"type": "mlp", "depth": 6, "width": 16, "activation": "tanh"}, {"type": "dense", "units": 2}]},
        "data": {"type": "blobs", "samples": 64, "classes": 2, "dims": 8}
    });
    let res = app.post_json("/v1/analyze?gradients=true", &spec).await;
    assert_eq!(res.status(), StatusCode::OK);
    let report: Value = res.json().await.unwrap();
    assert_eq!(report["steps"], json!([0]));
    assert!(report["gradients"].is_array() || report["gradients"].is_object(), "{}", report["gradients"]);
    let p = problem(app.post_json("/v1/analyze", &json!({"model": {"input_dim": 8}})).await, 422).await;
    assert!(pointers(&p).contains(&"/model/layers".to_owned()), "{p}");
}

#[tokio::test]
async fn a_job_over_its_wall_clock_limit_fails_with_code_timeout() {
    let app = spawn_with(&[("--job-timeout-secs", "0.3")]).await;
    let id = app.submit(&long_spec()).await["id"].as_str().unwrap().to_owned();
    let job = app.wait_for_status(&id, "failed").await;
    assert_eq!(job["error"]["code"], "timeout");
    assert!(job["error"]["message"].as_str().unwrap().contains("0.3 s"), "{job}");
    app.assert_healthy().await;
}

#[tokio::test]
async fn a_diverging_run_fails_with_non_finite_and_its_report_is_still_served() {
    let app = spawn_app().await;
    let id = app.submit(&diverging_spec()).await["id"].as_str().unwrap().to_owned();
    let job = app.wait_for_status(&id, "failed").await;
    assert_eq!(job["error"]["code"], "non_finite");
    let res = app.get(&format!("/v1/jobs/{id}/report")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let report: Value = res.json().await.unwrap();
    assert_eq!(report["summary"]["verdict"], "diverged");
}

#[tokio::test]
async fn a_panic_in_a_job_fails_that_job_and_the_pool_keeps_full_strength() {
    let app = spawn_with(&[("--workers", "1")]).await;
    let mut spec = tiny_spec(5);
    spec["name"] = json!("__gradscope_test_panic__");
    let id = app.submit(&spec).await["id"].as_str().unwrap().to_owned();
    let job = app.wait_for_status(&id, "failed").await;
    assert_eq!(job["error"]["code"], "internal");
    assert!(job["error"]["message"].as_str().unwrap().contains("panicked"), "{job}");

    let ready: Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!((ready["workers_alive"].as_u64(), ready["workers"].as_u64()), (Some(1), Some(1)));
    // The one worker takes the next job.
    let next = app.submit(&tiny_spec(5)).await["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&next, "succeeded").await;
}

#[tokio::test]
async fn the_panic_hook_is_off_unless_test_hooks_are_enabled() {
    // The default configuration, as the binary would get it: no hooks.
    let args = gradscope::config::ServeArgs::try_parse_from(["gradscope"]).unwrap();
    assert!(!args.test_hooks);
    assert!(!args.jobs_config().test_hooks);
}

#[tokio::test]
async fn every_fixture_example_is_accepted() {
    let app = spawn_with(&[("--max-body-bytes", "2097152")]).await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spec-examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let spec: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let res = app.post_json("/v1/jobs", &spec).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED, "{}: {:?}", path.display(), res.text().await);
        let job: Value = res.json().await.unwrap();
        app.client.post(app.url(&format!("/v1/jobs/{}/cancel", job["id"].as_str().unwrap()))).send().await.unwrap();
        if spec.get("training").is_none() {
            let res = app.post_json("/v1/analyze", &spec).await;
            assert_eq!(res.status(), StatusCode::OK, "{}: {:?}", path.display(), res.text().await);
        }
        seen += 1;
    }
    assert!(seen >= 7, "only {seen} examples in {}", dir.display());
}
