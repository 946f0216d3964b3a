//! A cluster end to end: real `gradscope serve` processes (this build's binary) sharing one
//! PostgreSQL database, each on its own port. Replicas are killed with SIGKILL, a spec aborts
//! its process, the database is stopped for 20 s — and every accepted job still ends exactly
//! once, with the report a single process gives.
//!
//! Needs PostgreSQL: `GRADSCOPE_TEST_DATABASE_URL`, or the `PG*` variables `pg_virtualenv`
//! sets (`pg_virtualenv -t cargo test --test cluster_postgres`). Without either every test
//! prints "skipped: no PostgreSQL" and passes. Each test works in a database of its own
//! (`CREATE DATABASE` through the admin connection, dropped at the end). The tests run one at a
//! time (one of them stops the database server; all of them measure latencies on two cores).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sqlx::PgConnection;

mod common;
use common::TestDb;

/// One test at a time (see the module doc).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The admin URL of the test server, from the variables the conformance suite reads.
fn admin_url() -> Option<String> {
    let url = gradscope::jobs::store::postgres::test_database_url();
    if url.is_none() {
        eprintln!("skipped: no PostgreSQL (set GRADSCOPE_TEST_DATABASE_URL or run under pg_virtualenv)");
    }
    url
}

/// A free port on loopback (bound, read and released: the server binds it next).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// A `gradscope serve` process.
struct Replica {
    child: Child,
    base: String,
    log: PathBuf,
    args: Vec<String>,
}

impl Replica {
    /// Starts a replica on `database` with `flags` (beside the defaults of the tests) and waits
    /// until it is ready.
    async fn start(database: &str, flags: &[&str]) -> Replica {
        let r = Replica::spawn(database, flags);
        r.wait_ready(Duration::from_secs(30)).await;
        r
    }

    /// Starts a replica without waiting for it (`database` empty: no `--database-url`).
    fn spawn(database: &str, flags: &[&str]) -> Replica {
        let port = free_port();
        let mut args: Vec<String> = [
            "serve",
            "--test-hooks",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--shutdown-grace-secs",
            "1",
            "--verify-share",
            "0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if !database.is_empty() {
            args.extend(["--database-url".to_owned(), database.to_owned()]);
        }
        args.extend(flags.iter().map(|s| s.to_string()));
        Replica::spawn_args(args, port)
    }

    fn spawn_args(args: Vec<String>, port: u16) -> Replica {
        let dir = std::env::temp_dir().join("gradscope-cluster-tests");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join(format!("replica-{port}-{}.log", uuid::Uuid::now_v7().simple()));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_gradscope"))
            .args(&args)
            .env_remove("GRADSCOPE_STORE")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("spawn gradscope serve");
        Replica { child, base: format!("http://127.0.0.1:{port}"), log, args }
    }

    /// The same flags on a new port: a restarted replica.
    fn respawn(&self) -> Replica {
        let port = free_port();
        let mut args = self.args.clone();
        if let Some(i) = args.iter().position(|a| a == "--bind") {
            args[i + 1] = format!("127.0.0.1:{port}");
        }
        Replica::spawn_args(args, port)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `/readyz` until 200.
    async fn wait_ready(&self, within: Duration) {
        let client = client();
        let deadline = Instant::now() + within;
        loop {
            if let Ok(r) = client.get(self.url("/readyz")).send().await {
                if r.status() == StatusCode::OK {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "replica {} not ready in {within:?}; log:\n{}",
                self.base,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ended (`Some(status)`) or still running.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL, and reap.
    fn kill(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

fn client() -> Client {
    Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

/// A small MLP on blobs, `steps` steps, seed `seed`: a few hundred steps train in well under a
/// second, so a replica always has some in flight.
fn spec(steps: u64, seed: u64) -> Value {
    json!({
        "seed": seed,
        "model": {"input_dim": 4, "layers": [
            {"type": "mlp", "depth": 2, "width": 16, "activation": "tanh"},
            {"type": "dense", "units": 3}
        ]},
        "data": {"type": "blobs", "samples": 96, "classes": 3, "dims": 4},
        "training": {"steps": steps, "batch_size": 32},
        "probes": {"every": 10}
    })
}

/// A job that trains for about two minutes unless stopped (the most steps a spec may have).
fn endless() -> Value {
    spec(1_000_000, 1)
}

async fn submit(client: &Client, r: &Replica, body: &Value) -> Value {
    let res = client.post(r.url("/v1/jobs")).json(body).send().await.expect("submit");
    let status = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "submit to {}: {text}", r.base);
    serde_json::from_str(&text).unwrap()
}

async fn job(client: &Client, r: &Replica, id: &str) -> Value {
    let res = client.get(r.url(&format!("/v1/jobs/{id}"))).send().await.expect("get job");
    assert_eq!(res.status(), StatusCode::OK, "{id}");
    res.json().await.unwrap()
}

/// Polls job `id` on `r` until `done` holds.
async fn wait_job(client: &Client, r: &Replica, id: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let j = job(client, r, id).await;
        if done(&j) {
            return j;
        }
        assert!(Instant::now() < deadline, "job {id} not as expected within {within:?}: {j}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The report without its clocks (`duration_ms`, `wall_time_ms`), which differ run to run.
fn without_clocks(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "duration_ms" | "wall_time_ms"))
                .map(|(k, v)| (k.clone(), without_clocks(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_clocks).collect()),
        other => other.clone(),
    }
}

async fn report(client: &Client, r: &Replica, id: &str) -> Value {
    let res = client.get(r.url(&format!("/v1/jobs/{id}/report"))).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "report of {id}");
    res.json().await.unwrap()
}

/// Every job id of the listing, page by page.
async fn list_all(client: &Client, r: &Replica) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = r.url("/v1/jobs?limit=37");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        for j in page["jobs"].as_array().expect("jobs") {
            ids.push(j["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return ids,
        }
    }
}

/// `(status, lease_owner, attempt)` of every job, from the database.
async fn rows(db: &mut PgConnection) -> HashMap<String, (String, Option<String>, i64)> {
    let rows: Vec<(String, String, Option<String>, i64)> =
        sqlx::query_as("SELECT id, status, lease_owner, attempt FROM jobs").fetch_all(db).await.unwrap();
    rows.into_iter().map(|(id, s, o, a)| (id, (s, o, a))).collect()
}

/// Whether lease owner `owner` is the process `pid` (owners are `host-pid-suffix`).
fn owned_by(owner: &Option<String>, pid: u32) -> bool {
    owner.as_deref().is_some_and(|o| o.contains(&format!("-{pid}-")))
}

/// Reads the SSE stream of `res` until `until` holds for the events so far or `within`
/// passes; returns `(id, event, data)` of each complete event.
async fn read_sse(
    mut res: reqwest::Response,
    within: Duration,
    until: impl Fn(&[(u64, String, Value)]) -> bool,
) -> Vec<(u64, String, Value)> {
    let deadline = Instant::now() + within;
    let mut text = String::new();
    loop {
        let events = parse_sse(&text);
        if until(&events) {
            return events;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, res.chunk()).await {
            Ok(Ok(Some(bytes))) => text.push_str(&String::from_utf8_lossy(&bytes)),
            _ => return parse_sse(&text),
        }
    }
}

/// `(id, event, data)` of each complete SSE event of `text`.
fn parse_sse(text: &str) -> Vec<(u64, String, Value)> {
    let mut out = Vec::new();
    let complete = text.rfind("\n\n").map_or("", |end| &text[..end]);
    for block in complete.split("\n\n") {
        let (mut id, mut event, mut data) = (None, None, None);
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("event:") {
                event = Some(v.trim().to_owned());
            } else if let Some(v) = line.strip_prefix("data:") {
                data = serde_json::from_str(v.trim()).ok();
            }
        }
        if let (Some(id), Some(event), Some(data)) = (id, event, data) {
            out.push((id, event, data));
        }
    }
    out
}

/// Short leases so that a dead replica's jobs come back in seconds.
const FAST_LEASES: [&str; 6] = ["--lease-ttl-secs", "3", "--lease-renew-secs", "1", "--rescue-every-secs", "1"];

fn flags<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    FAST_LEASES.iter().copied().chain(extra.iter().copied()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_run_200_jobs_exactly_once_when_one_is_killed() {
    let _serial = SERIAL.lock().await;
    let Some(admin) = admin_url() else { return };
    let db = TestDb::create(&admin, "kill").await;
    let client = client();
    let a = Replica::start(&db.url, &flags(&["--workers", "2"])).await;
    let mut b = Replica::start(&db.url, &flags(&["--workers", "2"])).await;

    // What one process alone reports for each spec (five seeds, so that a job given another
    // job's report would show).
    let single = Replica::start("", &["--store", "memory", "--workers", "2"]).await;
    let specs: Vec<Value> = (0..5).map(|seed| spec(400, seed)).collect();
    let mut expected = Vec::new();
    for s in &specs {
        let id = submit(&client, &single, s).await["id"].as_str().unwrap().to_owned();
        wait_job(&client, &single, &id, Duration::from_secs(30), |j| j["status"] == "succeeded").await;
        expected.push(without_clocks(&report(&client, &single, &id).await));
    }
    drop(single);

    let mut ids = Vec::new();
    for k in 0..200 {
        let to = if k % 2 == 0 { &a } else { &b };
        ids.push((submit(&client, to, &specs[k % 5]).await["id"].as_str().unwrap().to_owned(), k % 5));
    }

    // Kill B while it trains two jobs and some of the queue is done.
    let mut conn = db.connect().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = rows(&mut conn).await;
        let on_b = now.values().filter(|(s, o, _)| s == "running" && owned_by(o, b.pid())).count();
        let done = now.values().filter(|(s, _, _)| s == "succeeded").count();
        if on_b == 2 && done >= 10 {
            break;
        }
        assert!(Instant::now() < deadline, "B never ran two jobs at once");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b_pid = b.pid();
    b.kill();
    let killed_at = Instant::now();
    // Nothing of B moves after SIGKILL: these are the jobs it held.
    let lost: Vec<String> = rows(&mut conn)
        .await
        .into_iter()
        .filter(|(_, (s, o, _))| s == "running" && owned_by(o, b_pid))
        .map(|(id, _)| id)
        .collect();
    assert!(!lost.is_empty(), "B held running jobs when killed");

    // Each comes back within the lease TTL (3 s) plus the rescue interval (1 s, +20% jitter)
    // plus slack: claimed again (attempt 2) by A.
    let bound = Duration::from_secs_f64(3.0 + 1.2 + 2.0);
    let mut pending: HashSet<String> = lost.iter().cloned().collect();
    while !pending.is_empty() {
        let now = rows(&mut conn).await;
        pending.retain(|id| now.get(id).is_none_or(|(_, _, attempt)| *attempt < 2));
        assert!(killed_at.elapsed() < bound, "jobs {pending:?} of the killed replica not re-run within {bound:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("the killed replica's {} jobs were re-run {:?} after the kill", lost.len(), killed_at.elapsed());

    // Every job ends, through A.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let now = rows(&mut conn).await;
        let left = now.values().filter(|(s, _, _)| s == "queued" || s == "running").count();
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} jobs still unfinished");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (id, seed) in &ids {
        let j = job(&client, &a, id).await;
        assert_eq!(j["status"], "succeeded", "{j}");
        assert_eq!(without_clocks(&report(&client, &a, id).await), expected[*seed], "report of {id} (seed {seed})");
    }
    // Exactly once: one final event per job, one report per job, each id listed once.
    let finals: Vec<(String, i64)> = sqlx::query_as(
        "SELECT job_id, count(*) FROM job_events WHERE body LIKE '{\"type\":\"status\"%' GROUP BY job_id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(finals.len(), 200);
    assert!(finals.iter().all(|(_, n)| *n == 1), "a job ended twice: {finals:?}");
    let listed = list_all(&client, &a).await;
    let unique: HashSet<&String> = listed.iter().collect();
    assert_eq!((listed.len(), unique.len()), (200, 200));
    assert_eq!(unique, ids.iter().map(|(id, _)| id).collect::<HashSet<_>>());
    for id in &lost {
        let attempt: i64 =
            sqlx::query_scalar("SELECT attempt FROM jobs WHERE id = $1").bind(id).fetch_one(&mut conn).await.unwrap();
        assert_eq!(attempt, 2, "{id} ran twice: once on the killed replica, once on the survivor");
    }
}

/// A long job running on one replica, cancelled through the other; returns how long it took
/// for the job to be `cancelled`.
async fn cancel_across_replicas(flags: &[&str], test: &str) -> Option<Duration> {
    let admin = admin_url()?;
    let db = TestDb::create(&admin, test).await;
    let client = client();
    let a = Replica::start(&db.url, &[flags, &["--workers", "1"]].concat()).await;
    let b = Replica::start(&db.url, &[flags, &["--workers", "1"]].concat()).await;
    let id = submit(&client, &a, &endless()).await["id"].as_str().unwrap().to_owned();
    let mut conn = db.connect().await;
    // Which replica trains it?
    let deadline = Instant::now() + Duration::from_secs(10);
    let runner = loop {
        let now = rows(&mut conn).await;
        if let Some((s, o, _)) = now.get(&id) {
            if s == "running" && owned_by(o, a.pid()) {
                break &a;
            }
            if s == "running" && owned_by(o, b.pid()) {
                break &b;
            }
        }
        assert!(Instant::now() < deadline, "the job never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let other = if std::ptr::eq(runner, &a) { &b } else { &a };
    // Let it train a little (a few progress events), then cancel through the other replica.
    wait_job(&client, runner, &id, Duration::from_secs(10), |j| j["progress"]["step"].as_u64() > Some(0)).await;
    let asked = Instant::now();
    let res = client.post(other.url(&format!("/v1/jobs/{id}/cancel"))).send().await.unwrap();
    assert!(res.status().is_success(), "cancel: {}", res.status());
    let j = wait_job(&client, other, &id, Duration::from_secs(15), |j| j["status"] == "cancelled").await;
    let took = asked.elapsed();
    assert_eq!(j["error"]["code"], "cancelled", "{j}");
    // The run stopped: the replica that trained it is free for the next job.
    let next = submit(&client, runner, &spec(50, 2)).await["id"].as_str().unwrap().to_owned();
    wait_job(&client, runner, &next, Duration::from_secs(20), |j| j["status"] == "succeeded").await;
    Some(took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_sent_to_one_replica_stops_a_job_running_on_the_other_within_a_second() {
    let _serial = SERIAL.lock().await;
    // Renewals every 10 s: within a second only NOTIFY can carry the cancel.
    let flags =
        ["--lease-ttl-secs", "30", "--lease-renew-secs", "10", "--rescue-every-secs", "5", "--pg-notify", "true"];
    let Some(took) = cancel_across_replicas(&flags, "cancel_notify").await else { return };
    eprintln!("cancelled {took:?} after the request (NOTIFY)");
    assert!(took < Duration::from_secs(1), "the cancel took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_notify_a_cancel_reaches_the_other_replica_within_one_renew_interval() {
    let _serial = SERIAL.lock().await;
    let flags =
        ["--lease-ttl-secs", "6", "--lease-renew-secs", "1", "--rescue-every-secs", "2", "--pg-notify", "false"];
    let Some(took) = cancel_across_replicas(&flags, "cancel_poll").await else { return };
    eprintln!("cancelled {took:?} after the request (renewals only)");
    assert!(took < Duration::from_millis(1000 + 1000), "the cancel took {took:?} (renew interval 1 s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resumed_on_the_other_replica_continues_the_same_seq() {
    let _serial = SERIAL.lock().await;
    let Some(admin) = admin_url() else { return };
    let db = TestDb::create(&admin, "sse").await;
    let client = client();
    let a = Replica::start(&db.url, &flags(&["--workers", "1"])).await;
    let b = Replica::start(&db.url, &flags(&["--workers", "1"])).await;
    // A few seconds of training (about 30,000 steps a second here): progress events at most
    // ten a second.
    let id = submit(&client, &a, &spec(120_000, 3)).await["id"].as_str().unwrap().to_owned();
    let events_url = |r: &Replica| r.url(&format!("/v1/jobs/{id}/events"));

    let res = client.get(events_url(&a)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let first = read_sse(res, Duration::from_secs(20), |e| e.len() >= 5).await;
    assert!(first.len() >= 5, "five events from A: {first:?}");
    let last = first.last().unwrap().0;
    // The client reconnects to the other replica.
    let res = client
        .get(events_url(&b))
        .header("Last-Event-ID", last.to_string())
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let rest = read_sse(res, Duration::from_secs(60), |e| e.iter().any(|(_, ev, _)| ev == "status")).await;
    let ended = rest.last().expect("events from B");
    assert_eq!(ended.1, "status", "the stream on B ends with the final status: {:?}", ended);
    assert_eq!(ended.2["status"], "succeeded");
    let ids: Vec<u64> = first.iter().chain(&rest).map(|(id, _, _)| *id).collect();
    let expected: Vec<u64> = (ids[0]..ids[0] + ids.len() as u64).collect();
    assert_eq!(ids, expected, "one sequence across both replicas, no gap, no repeat");
    assert_eq!(rest[0].0, last + 1);
    // The whole stream replayed from B is the same events.
    let res = client.get(events_url(&b)).header("Last-Event-ID", "0").send().await.unwrap();
    let all = read_sse(res, Duration::from_secs(20), |e| e.iter().any(|(_, ev, _)| ev == "status")).await;
    let tail: Vec<_> = all.iter().filter(|(id, _, _)| *id > first[0].0 - 1).cloned().collect();
    assert_eq!(tail, first.iter().chain(&rest).cloned().collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_spec_fails_worker_lost_after_three_attempts_and_the_replicas_keep_serving() {
    let _serial = SERIAL.lock().await;
    let Some(admin) = admin_url() else { return };
    let db = TestDb::create(&admin, "poison").await;
    let client = client();
    let f = flags(&["--workers", "1", "--max-attempts", "3"]);
    let mut replicas = vec![Replica::start(&db.url, &f).await, Replica::start(&db.url, &f).await];
    let mut poison = spec(100, 1);
    poison["name"] = json!("__gradscope_test_abort__");
    let id = submit(&client, &replicas[0], &poison).await["id"].as_str().unwrap().to_owned();
    let mut conn = db.connect().await;

    // A supervisor: every replica that dies is started again.
    let mut aborts = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for r in replicas.iter_mut() {
            if let Some(status) = r.exited() {
                eprintln!("replica {} ended ({status}); restarting", r.base);
                aborts += 1;
                *r = r.respawn();
            }
        }
        let (status,): (String,) =
            sqlx::query_as("SELECT status FROM jobs WHERE id = $1").bind(&id).fetch_one(&mut conn).await.unwrap();
        if status == "failed" {
            break;
        }
        assert!(Instant::now() < deadline, "the poison job is still {status} after {aborts} aborts");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(aborts, 3, "each attempt killed one process, and there were three");
    for r in &replicas {
        r.wait_ready(Duration::from_secs(30)).await;
    }
    let j = job(&client, &replicas[1], &id).await;
    assert_eq!(j["error"]["code"], "worker_lost", "{j}");
    assert!(j["error"]["message"].as_str().unwrap().contains("3 attempts"), "{j}");
    // The cluster serves on: a normal job on each replica succeeds, and nothing aborts again.
    for r in &replicas {
        let next = submit(&client, r, &spec(50, 4)).await["id"].as_str().unwrap().to_owned();
        wait_job(&client, r, &next, Duration::from_secs(20), |j| j["status"] == "succeeded").await;
    }
    for r in replicas.iter_mut() {
        assert!(r.exited().is_none(), "a replica died again");
    }
}

/// The cluster `pg_virtualenv` made (`(version, name)`): the online cluster on `PGPORT` in
/// `pg_lsclusters`, else the one cluster under `PG_CLUSTER_CONF_ROOT/PGVERSION` (where
/// `pg_virtualenv -t` keeps its configuration).
fn find_cluster() -> Result<(String, String), String> {
    let port = std::env::var("PGPORT").map_err(|_| "PGPORT is not set (not under pg_virtualenv)".to_owned())?;
    let mut tried = String::new();
    for _ in 0..3 {
        match Command::new("pg_lsclusters").arg("-h").output() {
            Ok(out) => {
                let text = String::from_utf8_lossy(&out.stdout);
                let found = text
                    .lines()
                    .map(|l| l.split_whitespace().collect::<Vec<_>>())
                    .find(|f| f.len() >= 4 && f[2] == port && f[3].starts_with("online"))
                    .map(|f| (f[0].to_owned(), f[1].to_owned()));
                if let Some(c) = found {
                    return Ok(c);
                }
                tried = format!(
                    "pg_lsclusters ({}) listed no online cluster on port {port}: {text}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Err(e) => tried = format!("pg_lsclusters cannot run ({e})"),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    if let (Ok(root), Ok(version)) = (std::env::var("PG_CLUSTER_CONF_ROOT"), std::env::var("PGVERSION")) {
        let names: Vec<String> = std::fs::read_dir(std::path::Path::new(&root).join(&version))
            .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
            .unwrap_or_default();
        if let [name] = &names[..] {
            return Ok((version, name.clone()));
        }
        tried.push_str(&format!("; {root}/{version} holds {names:?}"));
    }
    Err(tried)
}

fn pg_ctlcluster(cluster: &(String, String), action: &str) {
    let mut cmd = Command::new("pg_ctlcluster");
    cmd.args([&cluster.0, &cluster.1, action]);
    if action == "stop" {
        cmd.args(["-m", "fast"]);
    }
    let out = cmd.output().expect("run pg_ctlcluster");
    assert!(out.status.success(), "pg_ctlcluster {action}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Starts the cluster again if the test ends (or fails) while it is stopped.
struct Restart(Option<(String, String)>);

impl Drop for Restart {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            let _ = Command::new("pg_ctlcluster").args([&c.0, &c.1, "start"]).output();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_gives_503_and_the_service_recovers() {
    let _serial = SERIAL.lock().await;
    let Some(admin) = admin_url() else { return };
    let cluster = match find_cluster() {
        Ok(c) => c,
        Err(why) => {
            eprintln!("skipped: cannot stop and start the PostgreSQL server: {why}");
            return;
        }
    };
    let db = TestDb::create(&admin, "outage").await;
    let client = client();
    let a = Replica::start(&db.url, &flags(&["--workers", "1"])).await;
    let b = Replica::start(&db.url, &flags(&["--workers", "1"])).await;
    // Accepted before the outage: two training (for several seconds each at about 30,000 steps
    // a second, so the outage catches them mid-run) and some queued.
    let mut accepted = Vec::new();
    for k in 0..6u64 {
        let r = if k % 2 == 0 { &a } else { &b };
        accepted.push(
            submit(&client, r, &spec(if k < 2 { 150_000 } else { 300 }, k)).await["id"].as_str().unwrap().to_owned(),
        );
    }

    pg_ctlcluster(&cluster, "stop");
    let mut restart = Restart(Some(cluster.clone()));
    let stopped = Instant::now();
    // Each replica, polled on its own, says it is not ready within 5 s.
    let not_ready = |r: &Replica| {
        let (client, url) = (client.clone(), r.url("/readyz"));
        async move {
            loop {
                let res = client.get(&url).send().await;
                if res.as_ref().is_ok_and(|res| res.status() == StatusCode::SERVICE_UNAVAILABLE) {
                    return stopped.elapsed();
                }
                assert!(stopped.elapsed() < Duration::from_secs(5), "{url} still ready without its database");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let (ta, tb) = tokio::join!(not_ready(&a), not_ready(&b));
    eprintln!("/readyz answered 503 {ta:?} (A) and {tb:?} (B) after the stop");
    assert!(ta.max(tb) < Duration::from_secs(5));
    // Submissions are refused (nothing is accepted that could be lost), as problem details.
    let mut refused = 0;
    while stopped.elapsed() < Duration::from_secs(20) {
        for r in [&a, &b] {
            let res = client.post(r.url("/v1/jobs")).json(&spec(50, 9)).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(res.headers().contains_key("retry-after"), "503 without Retry-After");
            let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
            assert!(ct.starts_with("application/problem+json"), "{ct}");
            let p: Value = res.json().await.unwrap();
            assert_eq!(p["status"], 503, "{p}");
            refused += 1;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(refused >= 6, "only {refused} submissions tried during the outage");
    pg_ctlcluster(&cluster, "start");
    restart.0 = None;
    let started = Instant::now();
    // The service recovers by itself.
    a.wait_ready(Duration::from_secs(30)).await;
    b.wait_ready(Duration::from_secs(30)).await;
    eprintln!("ready again {:?} after the database came back", started.elapsed());
    // Nothing accepted was lost: every job ends, and succeeds.
    for id in &accepted {
        let j = wait_job(&client, &a, id, Duration::from_secs(60), |j| {
            matches!(j["status"].as_str(), Some("succeeded" | "failed" | "cancelled"))
        })
        .await;
        assert_eq!(j["status"], "succeeded", "{j}");
    }
    let id = submit(&client, &b, &spec(50, 9)).await["id"].as_str().unwrap().to_owned();
    wait_job(&client, &a, &id, Duration::from_secs(20), |j| j["status"] == "succeeded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_started_at_once_apply_migrations_once() {
    let _serial = SERIAL.lock().await;
    let Some(admin) = admin_url() else { return };
    let db = TestDb::create(&admin, "migrate").await;
    let f = flags(&["--workers", "1"]);
    let replicas: Vec<Replica> = (0..3).map(|_| Replica::spawn(&db.url, &f)).collect();
    for r in &replicas {
        r.wait_ready(Duration::from_secs(30)).await;
    }
    let mut conn = db.connect().await;
    let applied: Vec<(i64, bool)> = sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let files: Vec<i64> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".sql")?.split('_').next()?.parse().ok()
        })
        .collect();
    let mut files = files;
    files.sort();
    assert_eq!(applied.iter().map(|(v, _)| *v).collect::<Vec<_>>(), files, "one row per migration");
    assert!(applied.iter().all(|(_, ok)| *ok));
    // And the three serve one queue.
    let client = client();
    let id = submit(&client, &replicas[2], &spec(50, 5)).await["id"].as_str().unwrap().to_owned();
    wait_job(&client, &replicas[0], &id, Duration::from_secs(20), |j| j["status"] == "succeeded").await;
}
