//! Load on the durable job stores (issue 14, must-show 6), through the real binary.
//!
//! ```text
//! cargo bench --bench store_load [-- --submit-secs 5 --clients 64 --rate 5000 --get-secs 10]
//! ```
//!
//! For each store — SQLite in a fresh temporary `--data-dir`, and PostgreSQL in a fresh database
//! when `GRADSCOPE_TEST_DATABASE_URL` or `PGHOST` names a server (else it says it skipped it) —
//! the benchmark starts `gradscope serve` (the bench profile's binary, `CARGO_BIN_EXE_gradscope`)
//! with two workers, no per-tenant or rate limits and a queue that cannot fill, and measures:
//!
//! - **(a) submissions:** `--clients` tasks each post a tiny spec in a loop (one request at a
//!   time) for `--submit-secs`; accepted submissions (202) per second, and the latency of a
//!   `POST /v1/jobs`. The workers train the accepted jobs meanwhile. Target: ≥ 2,000/s on
//!   SQLite.
//! - **(b) reads under training:** on a fresh server whose every worker trains a long job,
//!   `GET /v1/jobs/{id}` at a fixed offered rate of `--rate` per second for `--get-secs`, open
//!   loop: `--tickers` tasks issue requests at fixed intervals (each request its own task, so a
//!   slow answer never delays the next request), and each latency is measured from the moment
//!   the request was due. Target: p99 < 10 ms.
//!
//! The client shares the machine's cores with the server; the table says how many there are.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use clap::Parser;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sqlx::Connection;

#[derive(Parser, Debug)]
#[command(about = "gradscope job-store load benchmark (see the module doc)")]
struct Args {
    /// Seconds of phase (a), the submission burst.
    #[arg(long, default_value_t = 5.0)]
    submit_secs: f64,
    /// Concurrent clients of phase (a).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Offered rate of phase (b), requests per second.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// Seconds of phase (b).
    #[arg(long, default_value_t = 10.0)]
    get_secs: f64,
    /// Tasks that issue phase (b)'s requests, each at `rate / tickers` per second.
    #[arg(long, default_value_t = 10)]
    tickers: u64,
    /// Worker threads of the server.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Only this store (`sqlite` or `postgres`).
    #[arg(long)]
    store: Option<String>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Where a server keeps its jobs.
#[derive(Debug, Clone)]
enum Store {
    Sqlite(PathBuf),
    Postgres(String),
}

/// A `gradscope serve` child, killed when dropped.
struct Server {
    child: Child,
    base: String,
    warnings: Arc<AtomicU64>,
    first_warnings: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    fn start(store: &Store, workers: usize) -> Result<Server, String> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gradscope"));
        cmd.args(["serve", "--bind", "127.0.0.1:0", "--log-format", "json"])
            .args(["--workers", &workers.to_string(), "--queue-capacity", "10000000", "--max-queued-per-tenant", "0"])
            .args(["--rate-limit-per-second", "100000", "--rate-limit-burst", "100000", "--shutdown-grace-secs", "1"]);
        match store {
            Store::Sqlite(dir) => cmd.args(["--store", "sqlite", "--data-dir"]).arg(dir),
            Store::Postgres(url) => cmd.args(["--store", "postgres", "--database-url", url]),
        };
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", env!("CARGO_BIN_EXE_gradscope")))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = mpsc::channel();
        let warnings = Arc::new(AtomicU64::new(0));
        let first_warnings = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (count, first) = (Arc::clone(&warnings), Arc::clone(&first_warnings));
        // Drains the log (the server would block on a full pipe); keeps the address and counts
        // warnings and errors.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                if v["fields"]["message"] == "gradscope listening" {
                    let _ = tx.send(Ok(v["fields"]["addr"].as_str().unwrap_or_default().to_string()));
                } else if v.is_null() {
                    let _ = tx.send(Err(line.clone()));
                }
                if let Some(level @ ("WARN" | "ERROR")) = v["level"].as_str() {
                    count.fetch_add(1, Ordering::Relaxed);
                    let mut first = first.lock().unwrap_or_else(|e| e.into_inner());
                    if first.len() < 3 {
                        let f = &v["fields"];
                        let error = f["error"].as_str().or(f["classification"].as_str()).unwrap_or_default();
                        first.push(format!("{level} {}: {error}", f["message"].as_str().unwrap_or_default()));
                    }
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(addr)) => Ok(Server { child, base: format!("http://{addr}"), warnings, first_warnings }),
            Ok(Err(line)) => {
                let _ = child.kill();
                Err(format!("the server did not start: {line}"))
            }
            Err(_) => {
                let _ = child.kill();
                Err("the server did not start within 60 s".into())
            }
        }
    }

    /// Warnings and errors the server logged, with the first few.
    fn warnings(&self) -> (u64, Vec<String>) {
        let first = self.first_warnings.lock().unwrap_or_else(|e| e.into_inner()).clone();
        (self.warnings.load(Ordering::Relaxed), first)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds each thread group of process `pid` has used so far (`/proc/PID/task/*/stat`,
/// utime + stime in clock ticks of 1/100 s), keyed by thread name with digits dropped
/// ("tokio-rt-worker", "sqlx-sqlite-wor", "gradscope-worke", …).
fn thread_cpu(pid: u32) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let name: String = stat[open + 1..close].chars().filter(|c| !c.is_ascii_digit()).collect();
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // After the name: state is field 3 of stat(5); utime and stime are fields 14 and 15.
        let ticks: f64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<f64>().ok()).sum();
        *out.entry(name).or_insert(0.0) += ticks / 100.0;
    }
    out
}

/// Cores used per thread group between two [`thread_cpu`] readings `secs` apart, largest first.
fn cores_used(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
    secs: f64,
) -> String {
    let mut used: Vec<(String, f64)> =
        after.iter().map(|(k, v)| (k.clone(), (v - before.get(k).copied().unwrap_or(0.0)) / secs)).collect();
    used.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = used.iter().map(|(_, c)| c).sum();
    let parts: Vec<String> = used.iter().filter(|(_, c)| *c >= 0.01).map(|(k, c)| format!("{k} {c:.2}")).collect();
    format!("{total:.2} cores: {}", parts.join(", "))
}

fn tiny_spec() -> Value {
    json!({"name": "store_load: tiny",
           "model": {"input_dim": 2, "layers": [{"type": "dense", "units": 4, "activation": "tanh"}, {"type": "dense", "units": 2}]},
           "data": {"type": "xor", "samples": 32}, "training": {"steps": 10, "batch_size": 8}})
}

/// Keeps a worker busy for minutes (as `benches/load.sh`).
fn long_spec() -> Value {
    json!({"name": "store_load: keep a worker busy",
           "model": {"input_dim": 2, "layers": [{"type": "mlp", "depth": 4, "width": 64, "activation": "tanh"}, {"type": "dense", "units": 2}]},
           "data": {"type": "spirals", "samples": 1024}, "training": {"steps": 1000000, "batch_size": 64}, "probes": {"every": 100}})
}

async fn ready(client: &Client, base: &str) -> Result<Value, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(res) = client.get(format!("{base}/readyz")).send().await {
            if res.status() == StatusCode::OK {
                return res.json().await.map_err(|e| e.to_string());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("{base}/readyz never answered 200"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Latency percentiles of `v` (microseconds), sorted in place.
fn pct(v: &mut [u64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[i.min(v.len() - 1)] as f64 / 1000.0
}

#[derive(Debug, Default)]
struct Submissions {
    secs: f64,
    accepted: u64,
    other: u64,
    errors: u64,
    /// Latency of accepted submissions, microseconds.
    latencies: Vec<u64>,
    example: Option<String>,
}

/// Phase (a).
async fn submissions(client: &Client, base: &str, clients: usize, secs: f64) -> Submissions {
    let spec = Arc::new(tiny_spec());
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (client, url, spec) = (client.clone(), format!("{base}/v1/jobs"), Arc::clone(&spec));
        tasks.spawn(async move {
            let mut out = Submissions::default();
            while Instant::now() < end {
                let t = Instant::now();
                match client.post(&url).json(&*spec).send().await {
                    Ok(res) if res.status() == StatusCode::ACCEPTED => {
                        out.accepted += 1;
                        out.latencies.push(t.elapsed().as_micros() as u64);
                        let _ = res.bytes().await;
                    }
                    Ok(res) => {
                        out.other += 1;
                        let status = res.status();
                        out.example.get_or_insert(format!("{status}: {}", res.text().await.unwrap_or_default()));
                    }
                    Err(e) => {
                        out.errors += 1;
                        out.example.get_or_insert(e.to_string());
                    }
                }
            }
            out
        });
    }
    let mut total = Submissions::default();
    while let Some(done) = tasks.join_next().await {
        if let Ok(s) = done {
            total.accepted += s.accepted;
            total.other += s.other;
            total.errors += s.errors;
            total.latencies.extend(s.latencies);
            if total.example.is_none() {
                total.example = s.example;
            }
        }
    }
    // Requests in flight at the end finish after it: divide by the time actually taken.
    total.secs = started.elapsed().as_secs_f64();
    total
}

#[derive(Debug, Default)]
struct Reads {
    offered: u64,
    ok: u64,
    failed: u64,
    secs: f64,
    /// From the first due request to the last answer.
    served_secs: f64,
    /// From the moment each request was due, microseconds.
    latencies: Vec<u64>,
    example: Option<String>,
}

/// Phase (b): `rate` GETs per second of `urls` (in turn) for `secs`, open loop.
async fn reads(client: &Client, urls: Vec<String>, rate: u64, tickers: u64, secs: f64) -> Reads {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Result<(u64, tokio::time::Instant), String>>();
    let per_ticker = Duration::from_secs_f64(tickers as f64 / rate as f64);
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let end = start + Duration::from_secs_f64(secs);
    let offered = Arc::new(AtomicU64::new(0));
    let urls = Arc::new(urls);
    let mut tickers_set = tokio::task::JoinSet::new();
    for k in 0..tickers {
        let (client, tx, offered, urls) = (client.clone(), tx.clone(), Arc::clone(&offered), Arc::clone(&urls));
        // Staggered so that the tickers together issue one request every 1/rate s.
        let first = start + Duration::from_secs_f64(k as f64 / rate as f64);
        tickers_set.spawn(async move {
            let mut interval = tokio::time::interval_at(first, per_ticker);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut n = k as usize;
            loop {
                let due = interval.tick().await;
                if due >= end {
                    return;
                }
                offered.fetch_add(1, Ordering::Relaxed);
                let (client, tx, url) = (client.clone(), tx.clone(), urls[n % urls.len()].clone());
                n += 1;
                tokio::spawn(async move {
                    let result = match client.get(&url).send().await {
                        Ok(res) if res.status() == StatusCode::OK => match res.bytes().await {
                            Ok(_) => Ok((due.elapsed().as_micros() as u64, tokio::time::Instant::now())),
                            Err(e) => Err(e.to_string()),
                        },
                        Ok(res) => Err(format!("status {}", res.status())),
                        Err(e) => Err(e.to_string()),
                    };
                    let _ = tx.send(result);
                });
            }
        });
    }
    drop(tx);
    while tickers_set.join_next().await.is_some() {}
    let mut out = Reads { offered: offered.load(Ordering::Relaxed), ..Reads::default() };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut last = start;
    while out.ok + out.failed < out.offered {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Ok((us, at)))) => {
                out.ok += 1;
                out.latencies.push(us);
                last = last.max(at);
            }
            Ok(Some(Err(e))) => {
                out.failed += 1;
                out.example.get_or_insert(e);
            }
            Ok(None) | Err(_) => break,
        }
    }
    out.failed = out.offered - out.ok;
    out.secs = secs;
    // Served per second: answers over the time it took to give them all.
    out.served_secs = (last - start).as_secs_f64().max(secs);
    out
}

/// One row of the table.
#[derive(Debug)]
struct Row {
    store: &'static str,
    submit: Result<Submissions, String>,
    read: Result<Reads, String>,
    warnings: Vec<(&'static str, u64, Vec<String>)>,
    /// Where the CPU went in each phase: the server's threads, and this process.
    cpu: Vec<String>,
}

/// What a phase measured, the server's warnings, and where the CPU went meanwhile.
type Measured<T> = Result<(T, (u64, Vec<String>), String), String>;

/// [`cores_used`] of the server's threads and of this process over `secs` since `before`.
fn cpu_since(server: &Server, before: &(BrTimes, BrTimes), secs: f64) -> String {
    let (server_now, own_now) = (thread_cpu(server.child.id()), thread_cpu(std::process::id()));
    format!("server {}; client {}", cores_used(&before.0, &server_now, secs), cores_used(&before.1, &own_now, secs))
}

type BrTimes = std::collections::BTreeMap<String, f64>;

async fn phase_a(args: &Args, store: &Store, client: &Client) -> Measured<Submissions> {
    let server = Server::start(store, args.workers)?;
    ready(client, &server.base).await?;
    let before = (thread_cpu(server.child.id()), thread_cpu(std::process::id()));
    let s = submissions(client, &server.base, args.clients, args.submit_secs).await;
    let cpu = cpu_since(&server, &before, s.secs);
    Ok((s, server.warnings(), cpu))
}

async fn phase_b(args: &Args, store: &Store, client: &Client) -> Measured<Reads> {
    let server = Server::start(store, args.workers)?;
    let r = ready(client, &server.base).await?;
    let workers = r["workers"].as_u64().unwrap_or(args.workers as u64);
    let mut urls = Vec::new();
    for _ in 0..workers {
        let res = client
            .post(format!("{}/v1/jobs", server.base))
            .json(&long_spec())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if res.status() != StatusCode::ACCEPTED {
            return Err(format!("long job refused: {}", res.status()));
        }
        let job: Value = res.json().await.map_err(|e| e.to_string())?;
        urls.push(format!("{}/v1/jobs/{}", server.base, job["id"].as_str().unwrap_or_default()));
    }
    // Every worker trains before the measurement starts.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = ready(client, &server.base).await?;
        if r["running"].as_u64() == Some(workers) {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("the long jobs did not all start: {r}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = (thread_cpu(server.child.id()), thread_cpu(std::process::id()));
    let reads = reads(client, urls, args.rate, args.tickers.max(1), args.get_secs).await;
    let cpu = cpu_since(&server, &before, reads.served_secs);
    let running = ready(client, &server.base).await.map(|r| r["running"].clone()).unwrap_or(Value::Null);
    if running.as_u64() != Some(workers) {
        return Err(format!("the workers were not all training during the measurement: running {running}"));
    }
    Ok((reads, server.warnings(), cpu))
}

/// A fresh database on the server of `url` (dropped by the caller); returns its URL.
async fn fresh_database(url: &str, name: &str) -> Result<String, String> {
    let mut conn = sqlx::PgConnection::connect(url).await.map_err(|e| format!("connect {}: {e}", redact(url)))?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\"")).execute(&mut conn).await.map_err(|e| e.to_string())?;
    sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&mut conn).await.map_err(|e| e.to_string())?;
    let _ = conn.close().await;
    // Replace the path of the URL (after the authority, before the query).
    let rest = url.find("://").map(|i| i + 3).ok_or("not a URL")?;
    let path = url[rest..].find('/').map(|i| i + rest).unwrap_or(url.len());
    let end = url[path..].find('?').map(|i| i + path).unwrap_or(url.len());
    Ok(format!("{}/{name}{}", &url[..path], &url[end..]))
}

async fn drop_database(url: &str, name: &str) {
    if let Ok(mut conn) = sqlx::PgConnection::connect(url).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(&mut conn).await;
        let _ = conn.close().await;
    }
}

/// `url` without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if url[s + 3..at].contains(':') => {
            let colon = url[s + 3..at].find(':').map(|i| i + s + 3).unwrap_or(at);
            format!("{}:***{}", &url[..colon], &url[at..])
        }
        _ => url.to_string(),
    }
}

async fn run_store(args: &Args, label: &'static str, client: &Client) -> Option<Row> {
    let mut row = Row {
        store: label,
        submit: Err("not run".into()),
        read: Err("not run".into()),
        warnings: Vec::new(),
        cpu: Vec::new(),
    };
    // Each phase on a fresh store: a data directory, or a database on the PostgreSQL server.
    let postgres = match label {
        "SQLite" => None,
        _ => match gradscope::jobs::store::postgres::test_database_url() {
            Some(url) => Some(url),
            None => {
                println!("PostgreSQL: skipped (set GRADSCOPE_TEST_DATABASE_URL, or PGHOST, e.g. under pg_virtualenv)");
                return None;
            }
        },
    };
    for phase in ["a", "b"] {
        let name = format!("gradscope_store_load_{}_{phase}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        let store = match &postgres {
            None => {
                let _ = std::fs::remove_dir_all(&dir);
                Store::Sqlite(dir.clone())
            }
            Some(url) => match fresh_database(url, &name).await {
                Ok(db) => Store::Postgres(db),
                Err(e) => {
                    println!("PostgreSQL: skipped (cannot create a database on {}: {e})", redact(url));
                    return None;
                }
            },
        };
        let mut keep = |w: (u64, Vec<String>), cpu: String| {
            row.warnings.push((phase, w.0, w.1));
            row.cpu.push(format!("({phase}) {cpu}"));
        };
        if phase == "a" {
            row.submit = phase_a(args, &store, client).await.map(|(s, w, cpu)| {
                keep(w, cpu);
                s
            });
        } else {
            row.read = phase_b(args, &store, client).await.map(|(r, w, cpu)| {
                keep(w, cpu);
                r
            });
        }
        match &postgres {
            None => {
                let _ = std::fs::remove_dir_all(&dir);
            }
            Some(url) => drop_database(url, &name).await,
        }
    }
    Some(row)
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!("{cores} cores ({model}), load average {}", load.join(" "))
}

fn main() {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("store_load: cannot start a runtime: {e}");
            std::process::exit(1);
        }
    };
    runtime.block_on(async {
        let client = match Client::builder().timeout(Duration::from_secs(60)).pool_max_idle_per_host(1024).build() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("store_load: cannot build the HTTP client: {e}");
                std::process::exit(1);
            }
        };
        println!(
            "store_load: {}; server: {}, {} workers; (a) {} clients x {} s of tiny submissions; (b) GET /v1/jobs/{{id}} \
             at {}/s for {} s, every worker training",
            machine(),
            env!("CARGO_BIN_EXE_gradscope"),
            args.workers,
            args.clients,
            args.submit_secs,
            args.rate,
            args.get_secs
        );
        let mut rows = Vec::new();
        for label in ["SQLite", "PostgreSQL"] {
            let wanted = args.store.as_deref().is_none_or(|s| label.to_lowercase().starts_with(&s.to_lowercase()));
            if wanted {
                if let Some(row) = run_store(&args, label, &client).await {
                    rows.push(row);
                }
            }
        }
        println!();
        println!(
            "| store | accepted submissions/s (target ≥ 2,000) | POST p50 / p99 | GET offered / served per s | GET p50 / p99 / max (target p99 < 10 ms) | GET errors |"
        );
        println!("|---|---|---|---|---|---|");
        for row in &mut rows {
            let (a, post) = match &mut row.submit {
                Ok(s) => (
                    format!("{:.0} ({} in {:.1} s; {} other, {} errors)", s.accepted as f64 / s.secs, s.accepted, s.secs, s.other, s.errors),
                    format!("{:.1} / {:.1} ms", pct(&mut s.latencies, 50.0), pct(&mut s.latencies, 99.0)),
                ),
                Err(e) => (format!("failed: {e}"), "-".into()),
            };
            let (rate, lat, errors) = match &mut row.read {
                Ok(r) => (
                    format!("{:.0} / {:.0}", r.offered as f64 / r.secs, r.ok as f64 / r.served_secs),
                    format!(
                        "{:.2} / {:.2} / {:.1} ms",
                        pct(&mut r.latencies, 50.0),
                        pct(&mut r.latencies, 99.0),
                        pct(&mut r.latencies, 100.0)
                    ),
                    format!("{} of {}", r.failed, r.offered),
                ),
                Err(e) => (format!("failed: {e}"), "-".into(), "-".into()),
            };
            println!("| {} | {a} | {post} | {rate} | {lat} | {errors} |", row.store);
        }
        println!("(after the runs: {})", machine());
        for row in &rows {
            for (phase, n, first) in &row.warnings {
                if *n > 0 {
                    println!("{}: ({phase}) the server logged {n} warnings/errors, the first: {first:?}", row.store);
                }
            }
            for cpu in &row.cpu {
                println!("{}: CPU {cpu}", row.store);
            }
            if let Ok(Submissions { example: Some(e), .. }) = &row.submit {
                println!("{}: (a) a submission that was not a 202: {e}", row.store);
            }
            if let Ok(Reads { example: Some(e), .. }) = &row.read {
                println!("{}: (b) a failed GET: {e}", row.store);
            }
        }
    });
}
