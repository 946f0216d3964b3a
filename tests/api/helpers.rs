//! Spawning the server and talking to it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gradscope::config::ServeArgs;
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// A running server and a client for it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub client: Client,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Flags every test server gets unless a test overrides them: small pools, short grace period,
/// test hooks on.
const DEFAULTS: [(&str, &str); 5] = [
    ("--bind", "127.0.0.1:0"),
    ("--workers", "2"),
    ("--queue-capacity", "16"),
    ("--shutdown-grace-secs", "1"),
    ("--max-body-bytes", "65536"),
];

/// A name no other test server in any process uses.
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A server with the default test flags.
pub async fn spawn_app() -> TestApp {
    spawn_with(&[]).await
}

/// A server with `overrides` replacing (or adding to) the default test flags.
pub async fn spawn_with(overrides: &[(&str, &str)]) -> TestApp {
    let mut flags: Vec<(String, String)> = DEFAULTS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    for (k, v) in overrides {
        match flags.iter_mut().find(|(f, _)| f == k) {
            Some(slot) => slot.1 = v.to_string(),
            None => flags.push((k.to_string(), v.to_string())),
        }
    }
    // Each server its own SQLite store (the default store) in a fresh directory, unless the test
    // names another.
    if !flags.iter().any(|(f, _)| f == "--data-dir" || f == "--store" || f == "--database-url") {
        let dir = std::env::temp_dir().join(format!("gradscope-api-test-{}", uuid_like()));
        flags.push(("--data-dir".into(), dir.display().to_string()));
    }
    let mut args = vec!["gradscope".to_string(), "--test-hooks".to_string()];
    for (k, v) in flags {
        args.push(k);
        args.push(v);
    }
    if std::env::var_os("TEST_LOG").is_some() {
        gradscope::api::init_tracing(gradscope::config::LogFormat::Pretty);
    }
    let args = ServeArgs::try_parse_from(args).expect("test flags parse");
    let server = gradscope::api::Server::bind(&args).await.expect("bind");
    let addr = server.local_addr().expect("local addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    TestApp {
        addr,
        base: format!("http://{addr}"),
        client: Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
        stop: Some(stop),
        done: Some(done),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client.post(self.url(path)).json(body).send().await.expect("POST")
    }

    /// Submits `spec`; asserts 202 and returns the job.
    pub async fn submit(&self, spec: &Value) -> Value {
        let res = self.post_json("/v1/jobs", spec).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED, "{:?}", res.text().await);
        res.json().await.unwrap()
    }

    pub async fn job(&self, id: &str) -> Value {
        let res = self.get(&format!("/v1/jobs/{id}")).await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    /// Polls the job until `done(job)` or the timeout.
    pub async fn wait_for(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let job = self.job(id).await;
            if done(&job) {
                return job;
            }
            assert!(Instant::now() < deadline, "job {id} never became {what}: {job}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn wait_for_status(&self, id: &str, status: &str) -> Value {
        self.wait_for(id, status, |j| j["status"] == status).await
    }

    /// Waits until the job runs and has done at least one step.
    pub async fn wait_until_training(&self, id: &str) -> Value {
        self.wait_for(id, "training", |j| j["status"] == "running" && j["progress"]["step"].as_u64() > Some(0)).await
    }

    /// The server still answers and is ready.
    pub async fn assert_healthy(&self) {
        assert_eq!(self.get("/livez").await.status(), StatusCode::OK);
        let ready = self.get("/readyz").await;
        assert_eq!(ready.status(), StatusCode::OK, "{:?}", ready.text().await);
    }

    /// Triggers the graceful shutdown and waits for `run` to return.
    pub async fn shut_down(&mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.done.take() {
            Some(done) => done.await.expect("server task"),
            None => Ok(()),
        }
    }

    /// Starts the shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Asserts a problem+json response with `status`; returns the problem.
pub async fn problem(res: Response, status: u16) -> Value {
    assert_eq!(res.status().as_u16(), status, "status");
    let ct = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(ct.as_deref(), Some("application/problem+json"));
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["status"], status, "{p}");
    assert!(p["type"].as_str().unwrap().starts_with("/problems/"), "{p}");
    assert!(p["title"].is_string() && p["detail"].is_string(), "{p}");
    p
}

/// The pointers of a problem's `errors`.
pub fn pointers(p: &Value) -> Vec<String> {
    p["errors"]
        .as_array()
        .map(|a| a.iter().map(|e| e["pointer"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// A spec that trains in milliseconds.
pub fn tiny_spec(steps: u64) -> Value {
    json!({
        "model": {"input_dim": 2, "layers": [{"type": "dense", "units": 4, "activation": "tanh"}, {"type": "dense", "units": 2}]},
        "data": {"type": "xor", "samples": 32},
        "training": {"steps": steps, "batch_size": 8},
        "probes": {"every": 5}
    })
}

/// A spec that trains for seconds (a million steps of a tiny network: 3.4 s on an AVX-512 Xeon,
/// longer elsewhere); tests cancel it, time it out or wait for it. A test that needs a job
/// still running after a few seconds takes [`minutes_long_spec`].
pub fn long_spec() -> Value {
    tiny_spec(1_000_000)
}

/// A job that trains for minutes (about 20 MFLOP a step, a million steps) unless stopped.
pub fn minutes_long_spec() -> Value {
    json!({
        "model": {"input_dim": 16, "layers": [
            {"type": "mlp", "depth": 4, "width": 128, "activation": "tanh"},
            {"type": "dense", "units": 4}
        ]},
        "data": {"type": "blobs", "samples": 512, "classes": 4, "dims": 16},
        "training": {"steps": 1_000_000, "batch_size": 64},
        "probes": {"every": 1000}
    })
}

/// A spec whose run diverges at step 2 (SGD with a learning rate of a million).
pub fn diverging_spec() -> Value {
    json!({
        "model": {"input_dim": 1, "layers": [{"type": "dense", "units": 8, "activation": "relu"}, {"type": "dense", "units": 1}]},
        "data": {"type": "sine", "samples": 32},
        "training": {"steps": 50, "batch_size": 8, "loss": "mse", "optimizer": {"type": "sgd", "lr": 1e6}},
        "probes": {"every": 1}
    })
}

/// Reads an SSE body into (id, event, data) triples.
pub fn parse_sse(text: &str) -> Vec<(u64, String, Value)> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let (mut id, mut event, mut data) = (None, None, None);
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id: ") {
                id = v.parse().ok();
            } else if let Some(v) = line.strip_prefix("event: ") {
                event = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = serde_json::from_str(v).ok();
            }
        }
        if let (Some(id), Some(event), Some(data)) = (id, event, data) {
            out.push((id, event, data));
        }
    }
    out
}
