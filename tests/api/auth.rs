//! Bearer tokens, tenants, rates, CORS and the bounds on slow or oversized requests
//! (`api::auth`, `api::server`): a real server with two tenants' tokens, a real client.

use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{long_spec, problem, spawn_with, tiny_spec, TestApp};

const ALICE: &str = "alice-token-0123456789abcdef";
const BOB: &str = "bob-token-0123456789abcdef00";
const METRICS: &str = "metrics-token-0123456789abcd";

/// Two tenants, each with one token; a rate high enough for polling.
async fn two_tenants(extra: &[(&str, &str)]) -> TestApp {
    let tokens = format!("alice:{ALICE},bob:{BOB}");
    let mut flags =
        vec![("--api-tokens", tokens.as_str()), ("--rate-limit-per-second", "1000"), ("--rate-limit-burst", "1000")];
    flags.extend_from_slice(extra);
    spawn_with(&flags).await
}

fn req(app: &TestApp, method: Method, path: &str, token: &str) -> RequestBuilder {
    app.client.request(method, app.url(path)).bearer_auth(token)
}

async fn get(app: &TestApp, path: &str, token: &str) -> Response {
    req(app, Method::GET, path, token).send().await.unwrap()
}

async fn submit(app: &TestApp, spec: &Value, token: &str) -> String {
    let res = req(app, Method::POST, "/v1/jobs", token).json(spec).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED, "{:?}", res.text().await);
    res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

async fn wait_job(app: &TestApp, id: &str, token: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let job: Value = get(app, &format!("/v1/jobs/{id}"), token).await.json().await.unwrap();
        if done(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} did not get there: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ids(list: &Value, key: &str) -> Vec<String> {
    list[key].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn no_token_or_a_wrong_token_gets_401_with_a_bearer_challenge_and_probes_stay_open() {
    let app = two_tenants(&[]).await;
    let res = app.get("/v1/jobs").await;
    let challenge = res.headers().get("www-authenticate").unwrap().to_str().unwrap().to_owned();
    assert_eq!(challenge, "Bearer realm=\"gradscope\"");
    let p = problem(res, 401).await;
    assert_eq!(p["type"], "/problems/unauthorized");

    let res = get(&app, "/v1/jobs", "not-a-known-token-at-all").await;
    let challenge = res.headers().get("www-authenticate").unwrap().to_str().unwrap().to_owned();
    assert!(challenge.starts_with("Bearer realm=\"gradscope\", error=\"invalid_token\""), "{challenge}");
    problem(res, 401).await;
    let basic = app.client.get(app.url("/v1/jobs")).basic_auth("alice", Some(ALICE)).send().await.unwrap();
    problem(basic, 401).await;
    let post = app.post_json("/v1/jobs", &tiny_spec(5)).await;
    problem(post, 401).await;

    for open in ["/livez", "/healthz", "/readyz", "/openapi.json", "/metrics"] {
        assert_eq!(app.get(open).await.status(), StatusCode::OK, "{open} needs no token");
    }
    assert_eq!(get(&app, "/v1/jobs", ALICE).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_tenant_cannot_list_read_cancel_delete_or_stream_another_tenants_jobs() {
    let app = two_tenants(&[("--workers", "1")]).await;
    let done = submit(&app, &tiny_spec(5), ALICE).await;
    wait_job(&app, &done, ALICE, |j| j["status"] == "succeeded").await;
    let running = submit(&app, &long_spec(), ALICE).await;
    wait_job(&app, &running, ALICE, |j| j["status"] == "running").await;
    let bobs = submit(&app, &tiny_spec(5), BOB).await;

    let alice_list: Value = get(&app, "/v1/jobs", ALICE).await.json().await.unwrap();
    let bob_list: Value = get(&app, "/v1/jobs", BOB).await.json().await.unwrap();
    assert_eq!(ids(&alice_list, "jobs"), [running.clone(), done.clone()]);
    assert_eq!(ids(&bob_list, "jobs"), std::slice::from_ref(&bobs));

    for path in [
        format!("/v1/jobs/{done}"),
        format!("/v1/jobs/{done}/report"),
        format!("/v1/jobs/{done}/report.html"),
        format!("/v1/jobs/{done}/plots/loss.svg"),
        format!("/v1/jobs/{done}/events"),
        format!("/v1/jobs/{running}/events"),
    ] {
        let p = problem(get(&app, &path, BOB).await, 404).await;
        assert_eq!(p["type"], "/problems/job-not-found", "{path}: {p}");
        assert_eq!(get(&app, &path, ALICE).await.status(), StatusCode::OK, "{path} is alice's");
    }
    let cancel = req(&app, Method::POST, &format!("/v1/jobs/{running}/cancel"), BOB).send().await.unwrap();
    problem(cancel, 404).await;
    let delete = req(&app, Method::DELETE, &format!("/v1/jobs/{done}"), BOB).send().await.unwrap();
    problem(delete, 404).await;
    let job: Value = get(&app, &format!("/v1/jobs/{running}"), ALICE).await.json().await.unwrap();
    assert_eq!((job["status"].as_str(), job["cancel_requested"].as_bool()), (Some("running"), Some(false)));
    assert_eq!(get(&app, &format!("/v1/jobs/{done}"), ALICE).await.status(), StatusCode::OK, "not deleted");

    // Alice's own requests work.
    let cancel = req(&app, Method::POST, &format!("/v1/jobs/{running}/cancel"), ALICE).send().await.unwrap();
    assert_eq!(cancel.status(), StatusCode::ACCEPTED);
    let delete = req(&app, Method::DELETE, &format!("/v1/jobs/{done}"), ALICE).send().await.unwrap();
    assert_eq!(delete.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_tenant_cannot_see_or_touch_another_tenants_experiments() {
    let app = two_tenants(&[]).await;
    let body = json!({"base": tiny_spec(5), "vary": {"/model/layers/0/activation": ["tanh", "relu"]}, "seeds": 1});
    let res = req(&app, Method::POST, "/v1/experiments", ALICE).json(&body).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let e: Value = get(&app, &format!("/v1/experiments/{id}"), ALICE).await.json().await.unwrap();
        if e["status"] == "succeeded" {
            break;
        }
        assert!(Instant::now() < deadline, "{e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let alice_list: Value = get(&app, "/v1/experiments", ALICE).await.json().await.unwrap();
    let bob_list: Value = get(&app, "/v1/experiments", BOB).await.json().await.unwrap();
    assert_eq!(ids(&alice_list, "experiments"), std::slice::from_ref(&id));
    assert!(ids(&bob_list, "experiments").is_empty());
    let bob_jobs: Value = get(&app, "/v1/jobs", BOB).await.json().await.unwrap();
    assert!(ids(&bob_jobs, "jobs").is_empty(), "the experiment's runs are alice's jobs");

    for path in [
        format!("/v1/experiments/{id}"),
        format!("/v1/experiments/{id}/events"),
        format!("/v1/experiments/{id}/report.html"),
        format!("/v1/experiments/{id}/plots/loss.svg"),
    ] {
        let p = problem(get(&app, &path, BOB).await, 404).await;
        assert_eq!(p["type"], "/problems/experiment-not-found", "{path}: {p}");
        assert_eq!(get(&app, &path, ALICE).await.status(), StatusCode::OK, "{path} is alice's");
    }
    problem(req(&app, Method::POST, &format!("/v1/experiments/{id}/cancel"), BOB).send().await.unwrap(), 404).await;
    problem(req(&app, Method::DELETE, &format!("/v1/experiments/{id}"), BOB).send().await.unwrap(), 404).await;
    // `remedies_of` cannot name another tenant's job either.
    let e: Value = get(&app, &format!("/v1/experiments/{id}"), ALICE).await.json().await.unwrap();
    let run = e["variants"][0]["runs"][0]["job_id"].as_str().unwrap().to_owned();
    let res = req(&app, Method::POST, "/v1/experiments", BOB)
        .json(&json!({"remedies_of": run, "seeds": 1}))
        .send()
        .await
        .unwrap();
    problem(res, 404).await;
    let delete = req(&app, Method::DELETE, &format!("/v1/experiments/{id}"), ALICE).send().await.unwrap();
    assert_eq!(delete.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn idempotency_keys_belong_to_their_tenant() {
    let app = two_tenants(&[]).await;
    let post = |token: &'static str, spec: Value| {
        req(&app, Method::POST, "/v1/jobs", token).header("idempotency-key", "same-key").json(&spec).send()
    };
    let a = post(ALICE, tiny_spec(5)).await.unwrap();
    assert_eq!(a.status(), StatusCode::ACCEPTED);
    let a: Value = a.json().await.unwrap();
    // Bob's request with the same key and another body is his own first request, not a reuse.
    let b = post(BOB, tiny_spec(6)).await.unwrap();
    assert_eq!(b.status(), StatusCode::ACCEPTED);
    let b: Value = b.json().await.unwrap();
    assert_ne!(a["id"], b["id"]);
    let again: Value = post(ALICE, tiny_spec(5)).await.unwrap().json().await.unwrap();
    assert_eq!(again["id"], a["id"], "alice's retry replays her job");
}

#[tokio::test]
async fn a_token_over_its_rate_gets_429_with_retry_after_and_other_tokens_do_not() {
    let tokens = format!("alice:{ALICE},bob:{BOB}");
    let app =
        spawn_with(&[("--api-tokens", &tokens), ("--rate-limit-per-second", "0.5"), ("--rate-limit-burst", "3")]).await;
    for _ in 0..3 {
        assert_eq!(get(&app, "/v1/jobs", ALICE).await.status(), StatusCode::OK);
    }
    let res = get(&app, "/v1/jobs", ALICE).await;
    let retry: u64 = res.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "one request per 2 s: Retry-After {retry}");
    let p = problem(res, 429).await;
    assert_eq!(p["type"], "/problems/rate-limited");
    assert_eq!(get(&app, "/v1/jobs", BOB).await.status(), StatusCode::OK, "bob has his own rate");
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK, "probes are not rate limited");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("gradscope_http_requests_total{") && l.contains("status=\"429\"")),
        "429s are counted: {metrics}"
    );
}

#[tokio::test]
async fn a_tenant_over_its_queued_jobs_gets_429_while_another_tenant_is_accepted() {
    let app = two_tenants(&[("--workers", "1"), ("--max-queued-per-tenant", "1")]).await;
    let running = submit(&app, &long_spec(), ALICE).await;
    wait_job(&app, &running, ALICE, |j| j["status"] == "running").await;
    submit(&app, &tiny_spec(5), ALICE).await;
    let res = req(&app, Method::POST, "/v1/jobs", ALICE).json(&tiny_spec(5)).send().await.unwrap();
    assert!(res.headers().get("retry-after").is_some());
    let p = problem(res, 429).await;
    assert_eq!(p["type"], "/problems/tenant-queue-full");
    assert!(p["detail"].as_str().unwrap().contains("at most 1"), "{p}");
    submit(&app, &tiny_spec(5), BOB).await;
    let cancel = req(&app, Method::POST, &format!("/v1/jobs/{running}/cancel"), ALICE).send().await.unwrap();
    assert_eq!(cancel.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn metrics_behind_their_own_token_refuse_the_api_tokens() {
    let app = two_tenants(&[("--metrics-token", METRICS)]).await;
    let res = app.get("/metrics").await;
    assert!(res.headers().get("www-authenticate").is_some());
    problem(res, 401).await;
    problem(get(&app, "/metrics", ALICE).await, 401).await;
    let res = get(&app, "/metrics", METRICS).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("gradscope_http_requests"));
    problem(get(&app, "/v1/jobs", METRICS).await, 401).await;
}

#[tokio::test]
async fn a_server_with_a_malformed_token_does_not_start() {
    let args = gradscope::config::ServeArgs::try_parse_from([
        "gradscope",
        "--bind",
        "127.0.0.1:0",
        "--api-tokens",
        "alice:short,:nameless-token-0123456789",
    ])
    .unwrap();
    let err = gradscope::api::Server::bind(&args).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    let msg = err.to_string();
    assert!(msg.contains("entry 1") && msg.contains("entry 2"), "every problem is named: {msg}");
    assert!(!msg.contains("nameless-token"), "a token is never echoed: {msg}");
}

#[tokio::test]
async fn cors_answers_preflights_for_the_allowed_origin_only() {
    let app = two_tenants(&[("--cors-allow-origins", "https://app.example")]).await;
    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, app.url("/v1/jobs"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
    };
    let ok = preflight("https://app.example").await.unwrap();
    assert!(ok.status().is_success(), "{}", ok.status());
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://app.example");
    let allowed = ok.headers()["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("idempotency-key"), "{allowed}");
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    // A real request from the allowed origin gets the header, error responses included.
    let res = app.client.get(app.url("/v1/jobs")).header("origin", "https://app.example").send().await.unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], "https://app.example");
    problem(res, 401).await;

    let closed = spawn_with(&[]).await;
    let res = closed.client.get(closed.url("/v1/jobs")).header("origin", "https://app.example").send().await.unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none(), "CORS is off by default");
}

/// Reads what the server sends until it closes the connection or `limit` passes.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<(String, Duration)> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(start.elapsed()), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some((String::from_utf8_lossy(&got).into_owned(), start.elapsed())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn a_client_sending_its_headers_slowly_is_disconnected_after_the_header_timeout() {
    let app = spawn_with(&[("--header-read-timeout-secs", "1"), ("--idle-timeout-secs", "2")]).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let start = Instant::now();
    // A slowloris client: one more header line every 200 ms, never the blank line.
    let writer = async {
        for i in 0..25 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if stream.write_all(format!("X-Slow-{i}: a\r\n").as_bytes()).await.is_err() {
                break;
            }
        }
    };
    writer.await;
    let closed = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "the connection stayed open");
    // The writes may have failed early (the server closed); either way it did not wait 5 s.
    assert!(start.elapsed() < Duration::from_secs(10));
    // A connection that never sends anything is closed after the idle limit.
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    let (_, after) = read_until_closed(&mut idle, Duration::from_secs(6)).await.expect("idle connection closed");
    assert!(after < Duration::from_secs(4), "closed after {after:?}");
    // An event stream outlives the idle limit: its keep-alive comments are traffic (a job that
    // runs for minutes: a million steps of a tiny network ended within 4 s on a fast machine).
    let job = app.submit(&crate::helpers::minutes_long_spec()).await;
    let id = job["id"].as_str().unwrap();
    let mut res = app.get(&format!("/v1/jobs/{id}/events")).await;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        let chunk = tokio::time::timeout(Duration::from_secs(5), res.chunk()).await.expect("the stream goes on");
        assert!(chunk.unwrap().is_some(), "the stream ended after {:?}", start.elapsed());
    }
    let cancel = app.client.post(app.url(&format!("/v1/jobs/{id}/cancel"))).send().await.unwrap();
    assert_eq!(cancel.status(), StatusCode::ACCEPTED);
    app.assert_healthy().await;
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_long_urls_and_big_headers_are_refused_as_problems() {
    let app = spawn_with(&[("--body-read-timeout-secs", "1")]).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head =
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\":";
    stream.write_all(head.as_bytes()).await.unwrap();
    let (text, after) = read_until_closed(&mut stream, Duration::from_secs(10)).await.expect("an answer");
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("application/problem+json") && text.contains("/problems/body-timeout"), "{text}");
    assert!(after < Duration::from_secs(5), "answered after {after:?}");

    let long = format!("/v1/jobs?cursor={}", "c".repeat(5000));
    let p = problem(app.get(&long).await, 414).await;
    assert_eq!(p["type"], "/problems/uri-too-long");
    let big = "x".repeat(20 * 1024);
    let res = app.client.get(app.url("/v1/jobs")).header("x-big", big).send().await.unwrap();
    let p = problem(res, 431).await;
    assert_eq!(p["type"], "/problems/headers-too-large");
    app.assert_healthy().await;
}
