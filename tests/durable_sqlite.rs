//! The SQLite job store survives `kill -9` (issue 14, must-show 1), refuses a second process on
//! its data directory, and ends a job that crashes the process `failed`/`worker_lost` after three
//! attempts.
//!
//! Everything runs the real binary (`serve --log-format json`, stderr collected), on
//! `--bind 127.0.0.1:0`: each start gets a fresh port, read back from its "gradscope listening"
//! log line, so a restart never races another process for a port. Attempts are not in the API:
//! they are read from the `jobs.attempt` column of `gradscope.db` (with `sqlx`) once the last
//! server is gone, and cross-checked against the "job started" log lines (span field
//! `attempt`) of every process.
//!
//! The kill test's randomness (which spec each submission uses, when the kill lands) comes from
//! a seeded RNG: `GRADSCOPE_DURABLE_SEED` overrides the default seed, which is printed.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::ConnectOptions;
use tokio::task::JoinSet;

/// Rounds of submit / kill / restart.
const ROUNDS: usize = 20;
/// Submissions per round.
const PER_ROUND: usize = 50;
/// Submissions of a round are spread this far apart (50 take 735 ms), so that a kill at a
/// random moment in the first ~1.5 s lands during the submissions about half the time.
const SPACING: Duration = Duration::from_millis(15);
/// The kill lands uniformly in `0..=KILL_WINDOW_MS` after the round's first submission.
const KILL_WINDOW_MS: u64 = 1500;
/// Attempts a job may take (the server's default `--max-attempts`).
const MAX_ATTEMPTS: i64 = 3;
/// A submission the live server left unanswered this long is a stall (a `POST /v1/jobs` takes
/// milliseconds; each is a transaction of a few rows).
const STALL: Duration = Duration::from_secs(1);
const DEFAULT_SEED: u64 = 14;

/// The flags of every server here; `overrides` in [`Server::spawn`] replace or extend them.
const FLAGS: [(&str, &str); 8] = [
    ("--bind", "127.0.0.1:0"),
    ("--workers", "2"),
    ("--queue-capacity", "100000"),
    ("--max-queued-per-tenant", "0"),
    ("--rate-limit-per-second", "100000"),
    ("--rate-limit-burst", "100000"),
    ("--shutdown-grace-secs", "1"),
    ("--log-format", "json"),
];

// ---- specs ---------------------------------------------------------------------------------

/// The specs of the kill test, with their weights: runs of ~15 ms, ~30 ms, ~0.4 s and ~70 ms
/// (test profile, 2 loaded cores). On average a round's submissions keep the two workers less
/// than busy, so that a kill finds a run going sometimes (always one of the long ones when it
/// runs) and idle workers other times.
fn specs() -> Vec<(Value, u32)> {
    vec![
        (
            json!({"name": "durable: xor, 8 tanh", "seed": 11,
                   "model": {"input_dim": 2, "layers": [{"type": "dense", "units": 8, "activation": "tanh"}, {"type": "dense", "units": 2}]},
                   "data": {"type": "xor", "samples": 64}, "training": {"steps": 100, "batch_size": 16}, "probes": {"every": 10}}),
            45,
        ),
        (
            json!({"name": "durable: blobs, 3 x 16 relu", "seed": 12,
                   "model": {"input_dim": 4, "layers": [{"type": "mlp", "depth": 3, "width": 16, "activation": "relu"}, {"type": "dense", "units": 3}]},
                   "data": {"type": "blobs", "samples": 128, "classes": 3, "dims": 4}, "training": {"steps": 400, "batch_size": 32}, "probes": {"every": 20}}),
            40,
        ),
        (
            json!({"name": "durable: xor, 4 x 32 tanh", "seed": 13,
                   "model": {"input_dim": 2, "layers": [{"type": "mlp", "depth": 4, "width": 32, "activation": "tanh"}, {"type": "dense", "units": 2}]},
                   "data": {"type": "xor", "samples": 256}, "training": {"steps": 1500, "batch_size": 64}, "probes": {"every": 50}}),
            5,
        ),
        (
            json!({"name": "durable: blobs, 2 x 32 tanh", "seed": 14,
                   "model": {"input_dim": 4, "layers": [{"type": "mlp", "depth": 2, "width": 32, "activation": "tanh"}, {"type": "dense", "units": 4}]},
                   "data": {"type": "blobs", "samples": 256, "classes": 4, "dims": 4}, "training": {"steps": 400, "batch_size": 32}, "probes": {"every": 40}}),
            10,
        ),
    ]
}

/// A spec that trains for about a second.
fn second_long_spec() -> Value {
    json!({"name": "durable: a second of training", "seed": 21,
           "model": {"input_dim": 2, "layers": [{"type": "mlp", "depth": 4, "width": 32, "activation": "tanh"}, {"type": "dense", "units": 2}]},
           "data": {"type": "xor", "samples": 256}, "training": {"steps": 5000, "batch_size": 64}, "probes": {"every": 100}})
}

/// A spec that trains in milliseconds.
fn small_spec(seed: u64) -> Value {
    json!({"seed": seed,
           "model": {"input_dim": 2, "layers": [{"type": "dense", "units": 4, "activation": "tanh"}, {"type": "dense", "units": 2}]},
           "data": {"type": "xor", "samples": 32}, "training": {"steps": 20, "batch_size": 8}})
}

fn pick(rng: &mut ChaCha8Rng, weights: &[u32]) -> usize {
    let total: u32 = weights.iter().sum();
    let mut x = rng.random_range(0..total);
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

// ---- the server process --------------------------------------------------------------------

/// A `gradscope serve` child; SIGKILLed when dropped.
struct Server {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
    listening: mpsc::Receiver<String>,
    base: Option<String>,
}

impl Server {
    /// Starts `serve` on `dir` with [`FLAGS`] and `overrides` (does not wait for anything).
    fn spawn(dir: &Path, overrides: &[(&str, &str)]) -> Server {
        let mut flags: Vec<(String, String)> = FLAGS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        flags.push(("--data-dir".into(), dir.display().to_string()));
        for (k, v) in overrides {
            match flags.iter_mut().find(|(f, _)| f == k) {
                Some(slot) => slot.1 = v.to_string(),
                None => flags.push((k.to_string(), v.to_string())),
            }
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gradscope"));
        cmd.arg("serve");
        for (k, v) in &flags {
            // A flag without a value (`--test-hooks`) is passed with an empty one.
            cmd.arg(k);
            if !v.is_empty() {
                cmd.arg(v);
            }
        }
        let mut child = cmd
            .env("RUST_LOG", "info,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gradscope serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, listening) = mpsc::channel();
        let sink = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["fields"]["message"] == "gradscope listening" {
                        let _ = tx.send(v["fields"]["addr"].as_str().unwrap_or_default().to_string());
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        Server { child, log, reader: Some(reader), listening, base: None }
    }

    /// Starts a server and waits until it listens; panics with its log if it does not.
    fn start(dir: &Path, overrides: &[(&str, &str)]) -> Server {
        let mut server = Server::spawn(dir, overrides);
        if server.wait_listening(Duration::from_secs(60)).is_none() {
            let status = server.kill();
            panic!("the server did not start ({status}): {}", server.log_text());
        }
        server
    }

    /// Waits for the "gradscope listening" line; `None` when the process exits first or the
    /// time is up.
    fn wait_listening(&mut self, timeout: Duration) -> Option<String> {
        tokio::task::block_in_place(|| self.wait_listening_blocking(timeout))
    }

    fn wait_listening_blocking(&mut self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.listening.recv_timeout(Duration::from_millis(20)) {
                Ok(addr) => {
                    let base = format!("http://{addr}");
                    self.base = Some(base.clone());
                    return Some(base);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if self.child.try_wait().expect("try_wait").is_some() {
                        return None;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
        None
    }

    fn base(&self) -> String {
        self.base.clone().expect("the server listens")
    }

    /// Waits for the process to exit by itself; `None` if it is still running after `timeout`.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        tokio::task::block_in_place(|| loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.join_reader();
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        })
    }

    /// The fields of the first log line whose message is `message`, waiting for it up to
    /// `timeout`.
    fn wait_log(&self, message: &str, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        tokio::task::block_in_place(|| loop {
            if let Some(f) = self.log_fields(message) {
                return Some(f);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        })
    }

    /// SIGKILL (`Child::kill` on Unix), reaped; every log line read.
    fn kill(&mut self) -> ExitStatus {
        tokio::task::block_in_place(|| {
            let _ = self.child.kill();
            let status = self.child.wait().expect("wait for the server");
            self.join_reader();
            status
        })
    }

    fn join_reader(&mut self) {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }

    fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn log_text(&self) -> String {
        self.log_lines().join("\n")
    }

    /// The fields of the first JSON log line whose message is `message`.
    fn log_fields(&self, message: &str) -> Option<Value> {
        self.log_lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["fields"]["message"] == message)
            .map(|v| v["fields"].clone())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh directory under the system's temp dir.
fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gradscope-durable-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// `(job id, attempt)` of every "job started" line of `lines`.
fn started(lines: &[String]) -> Vec<(String, i64)> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "job started")
        .filter_map(|v| Some((v["span"]["job.id"].as_str()?.to_string(), v["span"]["attempt"].as_i64()?)))
        .collect()
}

// ---- HTTP ------------------------------------------------------------------------------------

fn client() -> Client {
    Client::builder().timeout(Duration::from_secs(20)).connect_timeout(Duration::from_secs(2)).build().unwrap()
}

async fn wait_ready(client: &Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(res) = client.get(format!("{base}/readyz")).send().await {
            if res.status() == StatusCode::OK {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{base}/readyz never answered 200");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What a submission came to.
#[derive(Debug)]
enum Submitted {
    /// 202: the job's id (from `Location`, which comes with the status line).
    Accepted(String),
    /// Another HTTP status (none is expected here).
    Refused(u16, String),
    /// No response: the connection failed or broke (the server was killed).
    NoResponse(String),
}

async fn submit(client: &Client, base: &str, spec: &Value) -> Submitted {
    match client.post(format!("{base}/v1/jobs")).json(spec).send().await {
        Ok(res) if res.status() == StatusCode::ACCEPTED => {
            let location = res.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            let id = location.strip_prefix("/v1/jobs/").unwrap_or_default().to_string();
            assert!(!id.is_empty(), "a 202 without a job Location: {location:?}");
            Submitted::Accepted(id)
        }
        Ok(res) => {
            let status = res.status().as_u16();
            Submitted::Refused(status, res.text().await.unwrap_or_default())
        }
        Err(e) => Submitted::NoResponse(describe(&e)),
    }
}

/// A client error with its causes (`reqwest`'s own message hides them), saying when it was the
/// client's timeout.
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() { format!("no answer within the client's timeout: {e}") } else { e.to_string() };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

async fn submit_ok(client: &Client, base: &str, spec: &Value) -> String {
    match submit(client, base, spec).await {
        Submitted::Accepted(id) => id,
        other => panic!("submission not accepted: {other:?}"),
    }
}

async fn get_json(client: &Client, url: &str) -> (StatusCode, Value) {
    let res = client.get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn is_terminal(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "cancelled")
}

/// Every job of the listing, walking `GET /v1/jobs?limit=LIMIT&cursor=…` to its end.
async fn list_all(client: &Client, base: &str, limit: usize) -> Vec<Value> {
    let mut jobs = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100_000 {
        let url = match &cursor {
            Some(c) => format!("{base}/v1/jobs?limit={limit}&cursor={c}"),
            None => format!("{base}/v1/jobs?limit={limit}"),
        };
        let (status, page) = get_json(client, &url).await;
        assert_eq!(status, StatusCode::OK, "{url}: {page}");
        jobs.extend(page["jobs"].as_array().expect("jobs").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return jobs,
        }
    }
    panic!("the listing never ended");
}

/// Waits until every job in `ids` is terminal.
async fn wait_terminal(client: &Client, base: &str, ids: &[String], timeout: Duration) -> HashMap<String, Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let jobs: HashMap<String, Value> = list_all(client, base, 1000)
            .await
            .into_iter()
            .map(|j| (j["id"].as_str().unwrap().to_string(), j))
            .collect();
        let pending: Vec<&String> = ids
            .iter()
            .filter(|id| !jobs.get(*id).is_some_and(|j| is_terminal(j["status"].as_str().unwrap_or(""))))
            .collect();
        if pending.is_empty() {
            return jobs;
        }
        if Instant::now() >= deadline {
            let sample: Vec<String> = pending
                .iter()
                .take(10)
                .map(|id| format!("{id}: {}", jobs.get(*id).map_or("absent".to_string(), |j| j["status"].to_string())))
                .collect();
            panic!("{} of {} jobs not terminal after {timeout:?}, e.g. {sample:?}", pending.len(), ids.len());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The `(id, event, data)` of every event of an SSE body.
fn parse_sse(text: &str) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let (mut id, mut event, mut data) = (None, None, None);
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id:") {
                id = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("event:") {
                event = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("data:") {
                data = Some(serde_json::from_str(v.trim()).unwrap_or(Value::String(v.to_string())));
            }
        }
        if let (Some(id), Some(event), Some(data)) = (id, event, data) {
            out.push((id, event, data));
        }
    }
    out
}

/// A job's event log, read through `GET /v1/jobs/{id}/events` (the job has ended: the stream
/// replays every event and closes).
async fn events(client: &Client, base: &str, id: &str) -> Result<Vec<(String, String, Value)>, String> {
    let res = client.get(format!("{base}/v1/jobs/{id}/events")).send().await.map_err(|e| e.to_string())?;
    if res.status() != StatusCode::OK {
        return Err(format!("status {}", res.status()));
    }
    let text = res.text().await.map_err(|e| format!("the stream did not close cleanly: {e}"))?;
    Ok(parse_sse(&text))
}

/// What is wrong with a finished job's event log (`None`: numbered 1..=n without gaps, exactly
/// one `status` event, last, saying `status`); and whether its progress steps went backwards
/// (a run lost to a kill and started again).
fn check_events(evs: &[(String, String, Value)], status: &str) -> (Option<String>, bool) {
    let ids: Vec<&str> = evs.iter().map(|(id, _, _)| id.as_str()).collect();
    let expected: Vec<String> = (1..=evs.len()).map(|n| n.to_string()).collect();
    if evs.is_empty() {
        return (Some("no events".into()), false);
    }
    if ids != expected.iter().map(String::as_str).collect::<Vec<_>>() {
        return (Some(format!("event ids are not 1..={}: {ids:?}", evs.len())), false);
    }
    let statuses: Vec<usize> = evs.iter().enumerate().filter(|(_, (_, e, _))| e == "status").map(|(i, _)| i).collect();
    if statuses != [evs.len() - 1] {
        let kinds: Vec<&str> = evs.iter().map(|(_, e, _)| e.as_str()).collect();
        return (Some(format!("the status event is not exactly the last one: {kinds:?}")), false);
    }
    let last = &evs[evs.len() - 1].2;
    if last["status"] != status {
        return (Some(format!("the final event says {} but the job is {status}", last["status"])), false);
    }
    let steps: Vec<u64> =
        evs.iter().filter(|(_, e, _)| e == "progress").filter_map(|(_, _, d)| d["step"].as_u64()).collect();
    (None, steps.windows(2).any(|w| w[1] < w[0]))
}

// ---- reports ---------------------------------------------------------------------------------

/// The report's wall-clock fields: `"duration_ms":<digits>` becomes `"duration_ms":null`,
/// byte for byte (the report is compact JSON as the worker serialised it). `summary.duration_ms`
/// is the only field of a report measured on a clock (`analysis::report::Summary`); the
/// reference run checks that two runs of one spec differ nowhere else.
fn normalise(report: &[u8]) -> Vec<u8> {
    const KEY: &[u8] = b"\"duration_ms\":";
    let mut out = Vec::with_capacity(report.len());
    let mut i = 0;
    while i < report.len() {
        if report[i..].starts_with(KEY) {
            out.extend_from_slice(KEY);
            i += KEY.len();
            let digits = report[i..].iter().take_while(|b| b.is_ascii_digit()).count();
            if digits > 0 {
                out.extend_from_slice(b"null");
                i += digits;
            }
        } else {
            out.push(report[i]);
            i += 1;
        }
    }
    out
}

/// JSON pointers where `a` and `b` differ (at most `max`).
fn json_diff(a: &Value, b: &Value, path: &str, out: &mut Vec<String>, max: usize) {
    if out.len() >= max {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                json_diff(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    &format!("{path}/{k}"),
                    out,
                    max,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                json_diff(p, q, &format!("{path}/{i}"), out, max);
            }
        }
        _ if a != b => out.push(format!("{path}: {} vs {}", short(a), short(b))),
        _ => {}
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        format!("{}…", &s[..80])
    } else {
        s
    }
}

async fn report(client: &Client, base: &str, id: &str) -> Result<Vec<u8>, String> {
    let res = client.get(format!("{base}/v1/jobs/{id}/report")).send().await.map_err(|e| e.to_string())?;
    if res.status() != StatusCode::OK {
        return Err(format!("status {}: {}", res.status(), res.text().await.unwrap_or_default()));
    }
    res.bytes().await.map(|b| b.to_vec()).map_err(|e| e.to_string())
}

/// Each spec run twice on a `--store memory` server: the reference report of each (raw bytes),
/// after checking that the two runs differ in nothing but the normalised fields. Returns the
/// references and, per spec, the pointers where the two raw runs differed.
async fn reference_reports(client: &Client, specs: &[Value]) -> (Vec<Vec<u8>>, Vec<Vec<String>>) {
    let dir = fresh_dir("reference");
    let server = Server::start(&dir, &[("--store", "memory")]);
    let base = server.base();
    wait_ready(client, &base).await;
    let mut ids = Vec::new();
    for spec in specs {
        ids.push((submit_ok(client, &base, spec).await, submit_ok(client, &base, spec).await));
    }
    let all: Vec<String> = ids.iter().flat_map(|(a, b)| [a.clone(), b.clone()]).collect();
    let jobs = wait_terminal(client, &base, &all, Duration::from_secs(120)).await;
    let mut references = Vec::new();
    let mut differing = Vec::new();
    for (i, (a, b)) in ids.iter().enumerate() {
        for id in [a, b] {
            assert_eq!(jobs[id]["status"], "succeeded", "reference run of spec {i}: {}", jobs[id]);
        }
        let (ra, rb) = (report(client, &base, a).await.unwrap(), report(client, &base, b).await.unwrap());
        let mut diff = Vec::new();
        json_diff(&serde_json::from_slice(&ra).unwrap(), &serde_json::from_slice(&rb).unwrap(), "", &mut diff, 20);
        assert!(
            normalise(&ra) == normalise(&rb),
            "two runs of spec {i} differ beyond duration_ms (a field to normalise?): {diff:?}"
        );
        differing.push(diff);
        references.push(ra);
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    (references, differing)
}

// ---- the database ------------------------------------------------------------------------------

/// `id -> (attempt, status)` of every row of `jobs`, read from the database file (no server runs).
async fn attempts_in(dir: &Path) -> HashMap<String, (i64, String)> {
    let mut conn = SqliteConnectOptions::new()
        .filename(dir.join("gradscope.db"))
        .create_if_missing(false)
        .connect()
        .await
        .expect("open gradscope.db");
    let rows: Vec<(String, i64, String)> =
        sqlx::query_as("SELECT id, attempt, status FROM jobs").fetch_all(&mut conn).await.expect("read jobs");
    rows.into_iter().map(|(id, attempt, status)| (id, (attempt, status))).collect()
}

// ---- the tests -------------------------------------------------------------------------------

/// One accepted submission.
#[derive(Debug, Clone)]
struct Accepted {
    id: String,
    spec: usize,
    round: usize,
}

/// Must-show 1: 20 rounds of submitting 50 jobs, SIGKILLing the server at a random moment while
/// the submissions go on, and restarting it on the same data directory. Afterwards every job
/// that got a 202 exists and is terminal; succeeded reports are byte-identical to a reference run
/// (durations aside); no job took more than 3 attempts; every job's events are numbered 1..=n
/// and end with its status event; the paginated listing names every job exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_survive_twenty_kill_9_restarts_on_the_same_data_directory() {
    let began = Instant::now();
    let seed = std::env::var("GRADSCOPE_DURABLE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_SEED);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let weighted = specs();
    let specs: Vec<Value> = weighted.iter().map(|(s, _)| s.clone()).collect();
    let weights: Vec<u32> = weighted.iter().map(|(_, w)| *w).collect();
    let client = client();

    let (references, reference_diffs) = reference_reports(&client, &specs).await;
    let reference_secs = began.elapsed().as_secs_f64();

    let dir = fresh_dir("kill");
    let mut accepted: Vec<Accepted> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    let mut no_response = 0usize;
    let mut no_response_example: Option<String> = None;
    let mut slowest_202 = Duration::ZERO;
    let mut stalls: Vec<String> = Vec::new();
    let mut kills_during_submissions = 0usize;
    let mut logs: Vec<Vec<String>> = Vec::new();
    // What each start found running (the previous process's runs: the kill landed mid-run).
    let mut requeued_at_start: Vec<u64> = Vec::new();
    let mut ended_at_start: Vec<u64> = Vec::new();
    let mut round_lines = Vec::new();

    for round in 0..ROUNDS {
        let mut server = Server::start(&dir, &[]);
        let base = server.base();
        wait_ready(&client, &base).await;
        let store = server.log_fields("job store: SQLite").expect("the store's start line");
        requeued_at_start.push(store["requeued"].as_u64().unwrap_or(0));
        ended_at_start.push(store["ended"].as_u64().unwrap_or(0));

        let kill_after = Duration::from_millis(rng.random_range(0..=KILL_WINDOW_MS));
        let picks: Vec<usize> = (0..PER_ROUND).map(|_| pick(&mut rng, &weights)).collect();
        let t0 = tokio::time::Instant::now();
        let mut tasks = JoinSet::new();
        for (i, &s) in picks.iter().enumerate() {
            let (client, base, spec) = (client.clone(), base.clone(), specs[s].clone());
            tasks.spawn(async move {
                let at = SPACING * i as u32;
                tokio::time::sleep_until(t0 + at).await;
                (s, at, submit(&client, &base, &spec).await, t0.elapsed())
            });
        }
        tokio::time::sleep_until(t0 + kill_after).await;
        let status = server.kill();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "round {round}: the server had exited by itself: {status}");
        if kill_after < SPACING * (PER_ROUND as u32 - 1) {
            kills_during_submissions += 1;
        }
        let mut ok = 0;
        let mut stalled = Vec::new();
        while let Some(done) = tasks.join_next().await {
            let (s, sent, outcome, ended) = done.expect("submission task");
            match outcome {
                Submitted::Accepted(id) => {
                    ok += 1;
                    slowest_202 = slowest_202.max(ended.saturating_sub(sent));
                    accepted.push(Accepted { id, spec: s, round });
                }
                Submitted::Refused(code, body) => refused.push(format!("round {round}: {code} {body}")),
                Submitted::NoResponse(e) => {
                    no_response += 1;
                    // Sent long before the kill and still unanswered: the live server stalled.
                    if kill_after.saturating_sub(sent) >= STALL {
                        stalled.push(kill_after.saturating_sub(sent).as_millis());
                    }
                    no_response_example.get_or_insert(e);
                }
            }
        }
        if !stalled.is_empty() {
            stalls.push(format!(
                "round {round}: {} submissions were still unanswered when the kill came {:?} ms after they were sent \
                 (kill at {} ms, {ok} accepted)",
                stalled.len(),
                stalled,
                kill_after.as_millis()
            ));
        }
        round_lines.push(format!("round {round:2}: kill at {:4} ms, {ok:2} accepted", kill_after.as_millis()));
        logs.push(server.log_lines());
    }

    // The last start: every accepted job must end.
    let mut server = Server::start(&dir, &[]);
    let base = server.base();
    wait_ready(&client, &base).await;
    let store = server.log_fields("job store: SQLite").expect("the store's start line");
    requeued_at_start.push(store["requeued"].as_u64().unwrap_or(0));
    ended_at_start.push(store["ended"].as_u64().unwrap_or(0));
    let ids: Vec<String> = accepted.iter().map(|a| a.id.clone()).collect();
    let rounds_done = Instant::now();
    wait_terminal(&client, &base, &ids, Duration::from_secs(150)).await;
    let drain_secs = rounds_done.elapsed().as_secs_f64();

    let mut problems: Vec<String> = Vec::new();
    problems.extend(refused.iter().map(|r| format!("a submission got neither 202 nor a broken connection: {r}")));
    problems.extend(stalls.iter().cloned());

    // Each accepted id once in the accepted list (ids are unique per job).
    let unique: HashSet<&String> = ids.iter().collect();
    if unique.len() != ids.len() {
        problems.push(format!("two 202s named the same job id ({} ids, {} distinct)", ids.len(), unique.len()));
    }

    // The listing, 100 per page: every accepted id exactly once, nothing twice.
    let listed = list_all(&client, &base, 100).await;
    let mut times_listed: HashMap<String, usize> = HashMap::new();
    for j in &listed {
        *times_listed.entry(j["id"].as_str().unwrap().to_string()).or_default() += 1;
    }
    for (id, n) in &times_listed {
        if *n != 1 {
            problems.push(format!("job {id} is listed {n} times"));
        }
    }
    for a in &accepted {
        if !times_listed.contains_key(&a.id) {
            problems.push(format!("accepted job {} (round {}, spec {}) is not listed", a.id, a.round, a.spec));
        }
    }
    // Jobs committed whose 202 never arrived (the kill came between the commit and the
    // response): they are not counted, but must end and be as well-formed as the others.
    let orphans: Vec<String> = times_listed.keys().filter(|id| !unique.contains(id)).cloned().collect();
    wait_terminal(&client, &base, &orphans, Duration::from_secs(150)).await;

    // Every job: exists, terminal, its events, its report.
    let spec_of: HashMap<String, usize> = accepted.iter().map(|a| (a.id.clone(), a.spec)).collect();
    let everyone: Vec<String> = ids.iter().chain(orphans.iter()).cloned().collect();
    let mut checks = JoinSet::new();
    let mut status_of: BTreeMap<String, String> = BTreeMap::new();
    let mut restarted_runs = 0usize;
    let mut events_checked = 0usize;
    let mut report_mismatches = 0usize;
    let references = Arc::new(references);
    for chunk in everyone.chunks(everyone.len().div_ceil(8).max(1)) {
        let (client, base, chunk, spec_of, references) =
            (client.clone(), base.clone(), chunk.to_vec(), spec_of.clone(), Arc::clone(&references));
        checks.spawn(async move {
            let mut out = Vec::new();
            for id in chunk {
                let (code, job) = get_json(&client, &format!("{base}/v1/jobs/{id}")).await;
                let status = job["status"].as_str().unwrap_or("").to_string();
                let mut problems = Vec::new();
                if code != StatusCode::OK {
                    problems.push(format!("GET job {id}: {code} {job}"));
                } else if !is_terminal(&status) {
                    problems.push(format!("job {id} is {status}"));
                } else if status != "succeeded" && job["error"]["code"] != "worker_lost" {
                    problems.push(format!("job {id} ended {status}: {}", job["error"]));
                }
                let mut restarted = false;
                let mut n_events = 0;
                match events(&client, &base, &id).await {
                    Ok(evs) => {
                        let (problem, back) = check_events(&evs, &status);
                        restarted = back;
                        n_events = evs.len();
                        if let Some(p) = problem {
                            problems.push(format!("job {id} ({status}): {p}"));
                        }
                    }
                    Err(e) => problems.push(format!("events of job {id}: {e}")),
                }
                let mut mismatch = false;
                if let (Some(&s), "succeeded") = (spec_of.get(&id), status.as_str()) {
                    match report(&client, &base, &id).await {
                        Ok(bytes) if normalise(&bytes) == normalise(&references[s]) => {}
                        Ok(bytes) => {
                            mismatch = true;
                            let mut diff = Vec::new();
                            json_diff(
                                &serde_json::from_slice(&references[s]).unwrap_or(Value::Null),
                                &serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                                "",
                                &mut diff,
                                10,
                            );
                            problems.push(format!(
                                "report of job {id} (spec {s}) differs from the reference ({} vs {} bytes): {diff:?}",
                                references[s].len(),
                                bytes.len()
                            ));
                        }
                        Err(e) => problems.push(format!("report of succeeded job {id}: {e}")),
                    }
                }
                out.push((id, status, restarted, mismatch, n_events, problems));
            }
            out
        });
    }
    while let Some(done) = checks.join_next().await {
        for (id, status, restarted, mismatch, n_events, p) in done.expect("check task") {
            status_of.insert(id, status);
            events_checked += n_events;
            restarted_runs += usize::from(restarted);
            report_mismatches += usize::from(mismatch);
            problems.extend(p);
        }
    }

    // Attempts: the database, once no process holds it; and the logs of every process.
    let status = server.kill();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "the last server had exited by itself: {status}");
    logs.push(server.log_lines());
    let rows = attempts_in(&dir).await;
    let mut max_attempt = 0;
    for id in &everyone {
        match rows.get(id) {
            None => problems.push(format!("job {id} has no row in gradscope.db")),
            Some((attempt, db_status)) => {
                max_attempt = max_attempt.max(*attempt);
                if !(1..=MAX_ATTEMPTS).contains(attempt) {
                    problems.push(format!("job {id} ({db_status}) took {attempt} attempts"));
                }
                if db_status == "failed" && *attempt != MAX_ATTEMPTS {
                    problems
                        .push(format!("job {id} failed after {attempt} attempts (worker_lost needs {MAX_ATTEMPTS})"));
                }
            }
        }
    }
    for (id, (attempt, _)) in &rows {
        if *attempt > MAX_ATTEMPTS {
            problems.push(format!("job {id} took {attempt} attempts"));
        }
    }
    let mut starts: HashMap<String, Vec<i64>> = HashMap::new();
    for lines in &logs {
        for (id, attempt) in started(lines) {
            starts.entry(id).or_default().push(attempt);
        }
    }
    for (id, attempts) in &starts {
        let distinct: HashSet<&i64> = attempts.iter().collect();
        if distinct.len() != attempts.len() {
            problems.push(format!("job {id}: an attempt number started twice: {attempts:?}"));
        }
        let db = rows.get(id).map_or(0, |(a, _)| *a);
        if attempts.iter().any(|a| *a > db) {
            problems.push(format!("job {id}: logged attempts {attempts:?} above the database's {db}"));
        }
    }

    let succeeded = ids.iter().filter(|id| status_of.get(*id).map(String::as_str) == Some("succeeded")).count();
    let lost = ids.len() - succeeded;
    // Start k found what the kill of round k - 1 interrupted.
    let kills_mid_run = (1..requeued_at_start.len()).filter(|&k| requeued_at_start[k] + ended_at_start[k] > 0).count();
    let runs_lost: u64 = requeued_at_start.iter().chain(ended_at_start.iter()).sum();
    for line in &round_lines {
        eprintln!("{line}");
    }
    eprintln!("a submission without a response: {no_response_example:?}");
    eprintln!(
        "reference runs: fields that differed between two runs of one spec: {:?}",
        reference_diffs.iter().flatten().map(|d| d.split(':').next().unwrap_or("").to_string()).collect::<HashSet<_>>()
    );
    println!(
        "durable_sqlite: seed {seed}: {ROUNDS} rounds x {PER_ROUND} submissions, accepted {} ({} got no response, {} \
         committed without a 202), succeeded {succeeded}, failed worker_lost {lost}, max attempt {max_attempt}, kills \
         mid-run {kills_mid_run}/{ROUNDS} ({runs_lost} runs lost), kills during submissions \
         {kills_during_submissions}/{ROUNDS}, slowest 202 {} ms, events checked {events_checked} (logs with a restarted run {restarted_runs}), report mismatches \
         {report_mismatches}; references {reference_secs:.1} s, drain {drain_secs:.1} s, total {:.1} s",
        ids.len(),
        no_response,
        orphans.len(),
        slowest_202.as_millis(),
        began.elapsed().as_secs_f64()
    );
    assert!(
        problems.is_empty(),
        "{} problems (data directory kept: {}):\n{}",
        problems.len(),
        dir.display(),
        problems.iter().take(50).cloned().collect::<Vec<_>>().join("\n")
    );
    assert!(!ids.is_empty() && succeeded > 0, "nothing was accepted or nothing succeeded");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A second `serve` on a data directory in use exits non-zero and names the lock; the first
/// keeps serving; once the first is gone the directory can be opened again, with its jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_data_directory_is_refused() {
    let dir = fresh_dir("lock");
    let client = client();
    let mut first = Server::start(&dir, &[]);
    let base = first.base();
    wait_ready(&client, &base).await;

    let mut second = Server::spawn(&dir, &[]);
    let status = second.wait_exit(Duration::from_secs(30));
    let Some(status) = status else {
        let log = second.log_text();
        second.kill();
        panic!("a second process on the same data directory is still running after 30 s: {log}");
    };
    let log = second.log_text();
    assert!(!status.success(), "the second process exited successfully: {log}");
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("gradscope.lock") && log.contains("in use by another gradscope process"), "{log}");
    assert!(second.log_fields("gradscope listening").is_none(), "the second process listened: {log}");

    // The first is unaffected.
    wait_ready(&client, &base).await;
    let id = submit_ok(&client, &base, &small_spec(1)).await;
    let jobs = wait_terminal(&client, &base, std::slice::from_ref(&id), Duration::from_secs(60)).await;
    assert_eq!(jobs[&id]["status"], "succeeded", "{}", jobs[&id]);

    // The lock goes with the process: a new one opens the directory and finds the job.
    first.kill();
    let third = Server::start(&dir, &[]);
    let base = third.base();
    wait_ready(&client, &base).await;
    let (code, job) = get_json(&client, &format!("{base}/v1/jobs/{id}")).await;
    assert_eq!((code, job["status"].as_str()), (StatusCode::OK, Some("succeeded")), "{job}");
    drop(third);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A spec that aborts the process (`--test-hooks`, name `__gradscope_test_abort__`) is taken
/// back at each restart and ends `failed` with `worker_lost` once its three attempts are used;
/// a job queued behind it through every crash still succeeds, and the server keeps serving.
///
/// One worker: the jobs run one at a time, in order. A first job trains for about a second, so
/// the poison and the job behind it are both accepted while it runs; then the poison's run
/// aborts the process (attempt 1), and at each restart it is claimed first again (the oldest
/// queued job) and aborts it again (attempts 2 and 3). The third restart finds it at its last
/// attempt and fails it; the job behind it then runs. (With two workers, a job that happens to
/// run beside the poison loses an attempt at each of its crashes too.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_spec_fails_worker_lost_after_three_attempts() {
    let dir = fresh_dir("poison");
    let client = client();
    let hooks = [("--test-hooks", ""), ("--workers", "1")];
    let mut server = Server::start(&dir, &hooks);
    let base = server.base();
    wait_ready(&client, &base).await;
    let first = submit_ok(&client, &base, &second_long_spec()).await;
    let mut poison_spec = small_spec(2);
    poison_spec["name"] = json!("__gradscope_test_abort__");
    let poison = match submit(&client, &base, &poison_spec).await {
        Submitted::Accepted(id) => id,
        other => panic!("the poison was not accepted while the first job trained: {other:?}"),
    };
    let behind = match submit(&client, &base, &small_spec(3)).await {
        Submitted::Accepted(id) => id,
        other => panic!("the job behind the poison was not accepted (did the first job end too soon?): {other:?}"),
    };

    let mut aborts = Vec::new();
    for crash in 1..=3 {
        let status = server.wait_exit(Duration::from_secs(60));
        let status =
            status.unwrap_or_else(|| panic!("crash {crash}: the process is still running: {}", server.log_text()));
        assert_eq!(status.signal(), Some(libc::SIGABRT), "crash {crash}: {status}: {}", server.log_text());
        let hook = server.log_lines().iter().any(|l| l.contains("test hook: the spec asked this process to abort"));
        assert!(hook, "crash {crash} was not the hook: {}", server.log_text());
        let attempts: Vec<i64> =
            started(&server.log_lines()).into_iter().filter(|(id, _)| *id == poison).map(|(_, a)| a).collect();
        aborts.push(attempts);
        // Restart on the same directory. Before the third crash the poison is claimed as soon as
        // the workers start; it may abort the process before it listens.
        server = Server::spawn(&dir, &hooks);
        if crash < 3 {
            let store = server
                .wait_log("job store: SQLite", Duration::from_secs(60))
                .unwrap_or_else(|| panic!("restart {crash} never opened the store: {}", server.log_text()));
            assert_eq!(
                (store["requeued"].as_u64(), store["ended"].as_u64()),
                (Some(1), Some(0)),
                "restart {crash}: {store}"
            );
        }
    }
    assert_eq!(aborts, vec![vec![1], vec![2], vec![3]], "the poison's attempts per crashed process");

    // The third restart: the poison has used its attempts; the server serves.
    let base = server
        .wait_listening(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("the third restart did not start: {}", server.log_text()));
    wait_ready(&client, &base).await;
    let store = server.log_fields("job store: SQLite").expect("the store's start line");
    assert_eq!((store["requeued"].as_u64(), store["ended"].as_u64()), (Some(0), Some(1)), "{store}");
    let after = submit_ok(&client, &base, &small_spec(4)).await;
    let all = [first.clone(), poison.clone(), behind.clone(), after.clone()];
    let jobs = wait_terminal(&client, &base, &all, Duration::from_secs(60)).await;
    assert_eq!(jobs[&poison]["status"], "failed", "{}", jobs[&poison]);
    assert_eq!(jobs[&poison]["error"]["code"], "worker_lost", "{}", jobs[&poison]);
    for id in [&first, &behind, &after] {
        assert_eq!(jobs[id]["status"], "succeeded", "{}", jobs[id]);
        report(&client, &base, id).await.unwrap_or_else(|e| panic!("report of {id}: {e}"));
    }
    for id in &all {
        let evs = events(&client, &base, id).await.unwrap();
        let (problem, _) = check_events(&evs, jobs[id]["status"].as_str().unwrap());
        assert!(problem.is_none(), "job {id}: {problem:?}");
    }
    wait_ready(&client, &base).await;
    assert!(server.child.try_wait().unwrap().is_none(), "the server exited");

    server.kill();
    let rows = attempts_in(&dir).await;
    let attempt = |id: &String| rows.get(id).map(|(a, _)| *a);
    assert_eq!(
        [attempt(&first), attempt(&poison), attempt(&behind), attempt(&after)],
        [Some(1), Some(3), Some(1), Some(1)],
        "attempts of the first job, the poison, the job behind it and the one after"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
