//! `/metrics`: the two exposition formats (the Prometheus text read back by a parser that is not
//! the encoder, `openmetrics-parser`; OpenMetrics checked for its metadata and for the same
//! samples), every refusal counted by status and problem type, the process and build metrics,
//! and route labels that are the published templates.
//!
//! OpenMetrics is not parsed here: openmetrics-parser 0.5 refuses what OpenMetrics 1.0 allows
//! (a `# UNIT` on a histogram, a family without samples). `scripts/check-metrics.sh`, run by
//! `.ci/run`, parses both formats as served with the reference parsers: `promtool check metrics`
//! and Python's `prometheus_client`.

use std::collections::BTreeMap;

use openmetrics_parser::{MetricsExposition, PrometheusType, PrometheusValue};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One sample, flattened: `(type, value)` by `name{label="value",...}` (labels sorted); a
/// histogram series by its `_count`.
type Series = BTreeMap<String, (String, f64)>;

fn key(name: &str, labels: impl Iterator<Item = (String, String)>) -> String {
    let mut labels: Vec<(String, String)> = labels.collect();
    labels.sort();
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

fn labels_of<T: openmetrics_parser::RenderableMetricValue + Clone>(
    sample: &openmetrics_parser::Sample<T>,
) -> impl Iterator<Item = (String, String)> {
    let set = sample.get_labelset().expect("labels");
    set.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>().into_iter()
}

fn prometheus_series(exposition: &MetricsExposition<PrometheusType, PrometheusValue>) -> Series {
    let mut out = Series::new();
    for (name, family) in &exposition.families {
        for sample in family.iter_samples() {
            let labels = labels_of(sample);
            let (kind, name, value) = match &sample.value {
                PrometheusValue::Counter(c) => ("counter", name.clone(), c.value.as_f64()),
                PrometheusValue::Gauge(g) => ("gauge", name.clone(), g.as_f64()),
                PrometheusValue::Histogram(h) => ("histogram", format!("{name}_count"), h.count.unwrap() as f64),
                other => panic!("{name}: a type gradscope does not use: {other:?}"),
            };
            out.insert(key(&name, labels), (kind.to_owned(), value));
        }
    }
    out
}

/// `/metrics` in the default format: checks the media type, parses it.
async fn scrape_text(app: &TestApp) -> (String, Series) {
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[CONTENT_TYPE], PROMETHEUS_TEXT);
    let text = res.text().await.unwrap();
    let parsed = openmetrics_parser::prometheus::parse_prometheus(&text)
        .unwrap_or_else(|e| panic!("not Prometheus text 0.0.4: {e:?}\n{text}"));
    (text.clone(), prometheus_series(&parsed))
}

/// `/metrics` asked for as OpenMetrics: checks the media type; the text.
async fn scrape_openmetrics(app: &TestApp) -> String {
    let res = app.client.get(app.url("/metrics")).header(ACCEPT, "application/openmetrics-text; version=1.0.0").send();
    let res = res.await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[CONTENT_TYPE], OPENMETRICS);
    res.text().await.unwrap()
}

/// The refusals counted so far: `(status, reason)` -> count.
async fn refusals(app: &TestApp) -> BTreeMap<(u16, String), u64> {
    let (_, series) = scrape_text(app).await;
    let mut out = BTreeMap::new();
    for (k, (_, v)) in series {
        let Some(labels) = k.strip_prefix("gradscope_http_refusals_total{") else { continue };
        let label = |name: &str| {
            let start = labels.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
            labels[start..start + labels[start..].find('"').unwrap()].to_owned()
        };
        out.insert((label("status").parse().unwrap(), label("reason")), v as u64);
    }
    out
}

#[tokio::test]
async fn metrics_are_prometheus_text_by_default_and_openmetrics_with_the_same_samples_when_asked() {
    let app = spawn_app().await;
    let id = app.submit(&tiny_spec(5)).await["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "succeeded").await;
    app.get("/v1/jobs/nope").await;

    let (text, prometheus) = scrape_text(&app).await;
    let openmetrics = scrape_openmetrics(&app).await;
    assert!(openmetrics.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "{text}");
    // Counters: OpenMetrics names the family, the text format its `_total` samples.
    assert!(openmetrics.contains("# TYPE gradscope_http_requests counter\n"), "{openmetrics}");
    assert!(openmetrics.contains("# UNIT gradscope_http_request_duration_seconds seconds\n"), "{openmetrics}");
    assert!(openmetrics.contains("# TYPE gradscope_build info\n"), "{openmetrics}");
    assert!(text.contains("# TYPE gradscope_http_requests_total counter\n"), "{text}");
    assert!(text.contains("# HELP gradscope_http_requests_total "), "{text}");
    assert!(text.contains("# TYPE gradscope_build_info gauge\n"), "{text}");
    for (name, (kind, _)) in &prometheus {
        if kind == "counter" {
            assert!(name.split('{').next().unwrap().ends_with("_total"), "a counter without _total: {name}");
        }
    }
    for needle in [
        "gradscope_http_requests_total{method=\"POST\",route=\"/v1/jobs\",status=\"202\"}",
        "gradscope_jobs_finished_total{code=\"none\",status=\"succeeded\"}",
        "gradscope_http_refusals_total{reason=\"job-not-found\",status=\"404\"}",
        "gradscope_job_duration_seconds_count{}",
        "gradscope_queue_depth{}",
        "gradscope_build_info{arch=",
        "process_cpu_seconds_total{}",
    ] {
        assert!(prometheus.keys().any(|k| k.starts_with(needle)), "missing {needle} in\n{text}");
    }
    // Every TYPE line of OpenMetrics has its counterpart, and the samples are the same lines,
    // but for what the scrapes themselves change (the `/metrics` route's counts, the process).
    let samples = |t: &str| -> Vec<String> {
        let mut v: Vec<String> = t
            .lines()
            .filter(|l| !l.starts_with('#') && !l.contains("route=\"/metrics\"") && !l.starts_with("process_"))
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    assert_eq!(samples(&text), samples(&openmetrics));
    let types = |t: &str| t.lines().filter(|l| l.starts_with("# TYPE ")).count();
    assert_eq!(types(&text), types(&openmetrics));
    assert_eq!(prometheus["gradscope_jobs_submitted_total{outcome=\"accepted\"}"], ("counter".to_owned(), 1.0));
}

#[tokio::test]
async fn every_refusal_is_counted_by_status_and_problem_type() {
    let app = spawn_with(&[("--workers", "1"), ("--queue-capacity", "1")]).await;
    let running = app.submit(&long_spec()).await["id"].as_str().unwrap().to_owned();
    app.wait_until_training(&running).await;
    let queued = app.submit(&tiny_spec(5)).await["id"].as_str().unwrap().to_owned();
    let c = &app.client;

    // (status, reason) of each refusal, sent once each unless said otherwise.
    problem(app.get("/v1/jobs?limit=0").await, 400).await;
    problem(c.post(app.url("/v1/jobs")).header(CONTENT_TYPE, "application/json").body("{").send().await.unwrap(), 400)
        .await;
    problem(app.get("/v1/jobs/nope").await, 404).await;
    problem(app.get("/v1/jobs/nope/report").await, 404).await;
    problem(app.get("/no/such/route").await, 404).await;
    problem(c.request(Method::PUT, app.url("/v1/jobs")).send().await.unwrap(), 405).await;
    problem(app.get(&format!("/v1/jobs/{running}/report")).await, 409).await;
    problem(c.delete(app.url(&format!("/v1/jobs/{running}"))).send().await.unwrap(), 409).await;
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(70_000));
    problem(c.post(app.url("/v1/jobs")).header(CONTENT_TYPE, "application/json").body(big).send().await.unwrap(), 413)
        .await;
    problem(app.get(&format!("/v1/jobs?cursor={}", "c".repeat(5000))).await, 414).await;
    problem(c.post(app.url("/v1/jobs")).header(CONTENT_TYPE, "text/plain").body("{}").send().await.unwrap(), 415).await;
    problem(app.post_json("/v1/jobs", &json!({"model": {}})).await, 422).await;
    problem(c.get(app.url("/v1/jobs")).header("x-big", "x".repeat(20 * 1024)).send().await.unwrap(), 431).await;
    for _ in 0..2 {
        problem(app.post_json("/v1/jobs", &tiny_spec(5)).await, 503).await;
    }

    let counted = refusals(&app).await;
    let expected: BTreeMap<(u16, String), u64> = [
        ((400, "bad-request"), 1),
        ((400, "malformed-json"), 1),
        ((404, "job-not-found"), 2),
        ((404, "not-found"), 1),
        ((405, "method-not-allowed"), 1),
        ((409, "report-not-ready"), 1),
        ((409, "job-not-finished"), 1),
        ((413, "body-too-large"), 1),
        ((414, "uri-too-long"), 1),
        ((415, "unsupported-media-type"), 1),
        ((422, "invalid-spec"), 1),
        ((431, "headers-too-large"), 1),
        ((503, "queue-full"), 2),
    ]
    .into_iter()
    .map(|((s, r), n)| ((s, r.to_owned()), n))
    .collect();
    assert_eq!(counted, expected);

    // The per-route counter has them too: 414 and 431 are answered before routing.
    let (text, _) = scrape_text(&app).await;
    for needle in [
        "gradscope_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"414\"} 1",
        "gradscope_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"431\"} 1",
        "gradscope_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1",
        "gradscope_http_requests_total{method=\"POST\",route=\"/v1/jobs\",status=\"503\"} 2",
        "gradscope_http_requests_total{method=\"GET\",route=\"/v1/jobs/{id}/report\",status=\"409\"} 1",
        "gradscope_jobs_submitted_total{outcome=\"queue_full\"} 2",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in\n{text}");
    }

    for id in [&queued, &running] {
        c.post(app.url(&format!("/v1/jobs/{id}/cancel"))).send().await.unwrap();
    }
}

#[tokio::test]
async fn refusals_of_authentication_and_rate_are_counted() {
    const TOKEN: &str = "alice-token-0123456789";
    let tokens = format!("alice:{TOKEN}");
    let app = spawn_with(&[
        ("--api-tokens", tokens.as_str()),
        ("--rate-limit-per-second", "0.01"),
        ("--rate-limit-burst", "2"),
    ])
    .await;
    problem(app.get("/v1/jobs").await, 401).await;
    problem(app.client.get(app.url("/v1/jobs")).bearer_auth("not-a-known-token-000").send().await.unwrap(), 401).await;
    for _ in 0..2 {
        let res = app.client.get(app.url("/v1/jobs")).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    problem(app.client.get(app.url("/v1/jobs")).bearer_auth(TOKEN).send().await.unwrap(), 429).await;

    let counted = refusals(&app).await;
    assert_eq!(counted.get(&(401, "unauthorized".to_owned())), Some(&2), "{counted:?}");
    assert_eq!(counted.get(&(429, "rate-limited".to_owned())), Some(&1), "{counted:?}");
    assert_eq!(counted.len(), 2, "{counted:?}");
}

#[tokio::test]
async fn process_and_build_metrics_are_exposed() {
    let app = spawn_app().await;
    let (text, series) = scrape_text(&app).await;
    let value = |name: &str| series.get(&format!("{name}{{}}")).unwrap_or_else(|| panic!("no {name} in\n{text}")).1;
    assert!(value("process_cpu_seconds_total") > 0.0);
    assert!(value("process_resident_memory_bytes") > 1e6);
    assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
    assert!(value("process_open_fds") >= 3.0 && value("process_open_fds") <= value("process_max_fds"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let started = value("process_start_time_seconds");
    assert!(started <= now + 1.0 && started > now - 30.0 * 86_400.0, "start {started}, now {now}");
    assert_eq!(series["process_cpu_seconds_total{}"].0, "counter");
    let build = format!(
        "gradscope_build_info{{arch=\"{}\",os=\"{}\",profile=\"{}\",version=\"{}\"}}",
        std::env::consts::ARCH,
        std::env::consts::OS,
        if cfg!(debug_assertions) { "debug" } else { "release" },
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(series.get(&build), Some(&("gauge".to_owned(), 1.0)), "{text}");
}

#[tokio::test]
async fn route_labels_are_the_published_templates() {
    let app = spawn_app().await;
    let id = app.submit(&tiny_spec(5)).await["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "succeeded").await;
    assert_eq!(app.get(&format!("/v1/jobs/{id}/plots/loss.svg")).await.status(), StatusCode::OK);
    app.get(&format!("/v1/jobs/{id}/report")).await;
    app.get(&format!("/v1/experiments/{id}/plots/loss.svg")).await;
    app.get("/v1/presets").await;
    app.get("/openapi.json").await;

    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let service_md = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/service.md")).unwrap();
    let (text, series) = scrape_text(&app).await;
    let routes: Vec<String> = series
        .keys()
        .filter(|k| k.starts_with("gradscope_http_requests_total{"))
        .map(|k| {
            let start = k.find("route=\"").unwrap() + 7;
            k[start..start + k[start..].find('"').unwrap()].to_owned()
        })
        .collect();
    assert!(routes.contains(&"/v1/jobs/{id}/plots/{name}.svg".to_owned()), "{text}");
    assert!(routes.contains(&"/v1/experiments/{id}/plots/{name}.svg".to_owned()), "{text}");
    assert!(service_md.contains("`GET /v1/jobs/{id}/plots/{name}.svg`"));
    for route in routes {
        let documented = doc["paths"].get(&route).is_some() || route == "/openapi.json";
        assert!(documented, "route label `{route}` is not a path of the OpenAPI document");
    }
}
