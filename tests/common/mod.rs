//! Helpers shared by the integration tests.

// Tests may panic on a broken expectation; the crate's unwrap/expect lints are for library code.
#![allow(clippy::expect_used, clippy::unwrap_used, dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Reads a JSON file.
pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs the `gradscope` binary with `args`, feeding `stdin` when given.
pub fn gradscope(args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gradscope"));
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn gradscope");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input).expect("write stdin");
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().expect("wait for gradscope")
}

/// Runs the `gradscope` binary with `args` on a pseudo-terminal (util-linux `script`, in every
/// Debian as part of the essential `bsdutils`): standard input, output and error are the
/// terminal, 120 columns wide, with `TERM=xterm` so that a progress bar is drawn. Returns the
/// exit status and everything the terminal showed, carriage returns removed.
pub fn gradscope_on_terminal(args: &[&str]) -> (std::process::ExitStatus, String) {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let command: Vec<String> =
        std::iter::once(env!("CARGO_BIN_EXE_gradscope")).chain(args.iter().copied()).map(quote).collect();
    let shell = format!("stty cols 120 rows 40 2>/dev/null; exec {}", command.join(" "));
    let out = Command::new("script")
        .args(["-qec", &shell, "/dev/null"])
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("util-linux `script` runs (apt-get install bsdutils)");
    (out.status, String::from_utf8_lossy(&out.stdout).replace('\r', ""))
}

/// A `gradscope serve` on an ephemeral port with an in-memory store, logging at `info` to a
/// pipe that a thread reads line by line. Killed when dropped.
pub struct Server {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Server {
    /// Starts `gradscope serve --bind 127.0.0.1:0 --store memory` with `args` after those.
    pub fn start(args: &[&str]) -> Server {
        use std::io::{BufRead, BufReader};
        use std::process::Stdio;
        let mut child = Command::new(env!("CARGO_BIN_EXE_gradscope"))
            .args(["serve", "--bind", "127.0.0.1:0", "--store", "memory"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gradscope serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Server { child, lines }
    }

    /// The log up to and including the line that says "gradscope listening" (in any log
    /// format); panics when none comes within a minute.
    pub fn until_listening(&self) -> Vec<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.contains("gradscope listening");
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(e) => panic!("the server did not say where it listens ({e}); its log:\n{}", seen.join("\n")),
            }
        }
    }

    /// Stops the server and returns the rest of its log.
    pub fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The reader thread ends with the pipe: the channel then closes.
        self.lines.iter().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `value` to a fresh temporary file and returns its path.
pub fn temp_json(name: &str, value: &Value) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gradscope-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(value).expect("serialise")).expect("write temp file");
    path
}

/// Every number in a JSON tree, in document order (arrays flattened).
pub fn numbers(v: &Value, out: &mut Vec<f64>) {
    match v {
        Value::Number(n) => out.push(n.as_f64().unwrap_or(f64::NAN)),
        Value::Array(a) => a.iter().for_each(|x| numbers(x, out)),
        Value::Object(o) => o.values().for_each(|x| numbers(x, out)),
        _ => {}
    }
}

/// A dense layer with zero bias, no norm and initialised parameters: the building block of the
/// engine-level science tests.
pub fn plain_dense(
    units: usize,
    activation: gradscope::engine::config::Activation,
    init: gradscope::engine::config::Init,
) -> gradscope::engine::config::LayerConfig {
    use gradscope::engine::config::{DenseConfig, Init, LayerConfig, NormConfig};
    LayerConfig::Dense(DenseConfig {
        units,
        activation,
        init,
        bias_init: Init::Constant { value: 0.0 },
        norm: None,
        norm_config: NormConfig::default(),
        params: Default::default(),
    })
}

/// Issue 13's spec: an LSTM (or `cell`) of 512 units on the adding task, sequences of 2,000
/// steps, 1,024 samples in one batch, one training step. Data (4.1 M values) and compute are
/// within their limits; its gates alone are 16.8 GB in f32.
pub fn issue_lstm(cell: &str) -> Value {
    json!({
        "seed": 1,
        "model": {"input_dim": 2, "layers": [
            {"type": "rnn", "cell": cell, "units": 512},
            {"type": "dense", "units": 1, "activation": "linear"}
        ]},
        "data": {"type": "adding", "length": 2000, "samples": 1024, "validation_split": 0.0},
        "training": {"steps": 1, "batch_size": 1024, "loss": "mse"}
    })
}

/// A deep MLP: 40 layers of 1,024 units (42 M parameters) on 65,536 samples in one batch.
pub fn deep_mlp() -> Value {
    json!({
        "model": {"input_dim": 64, "layers": [
            {"type": "mlp", "depth": 40, "width": 1024, "activation": "relu"},
            {"type": "dense", "units": 4, "activation": "linear"}
        ]},
        "data": {"type": "blobs", "samples": 65536, "classes": 4, "dims": 64, "validation_split": 0.0},
        "training": {"steps": 1, "batch_size": 65536}
    })
}

/// A PostgreSQL `url` naming database `name` instead of its own (its query string kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let root = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

/// A fresh database for one test; dropped (with its connections) when this is dropped.
pub struct TestDb {
    admin: String,
    /// The database's name.
    pub name: String,
    /// Its URL.
    pub url: String,
}

impl TestDb {
    /// Creates `gs_{test}_…` on the server `admin` names.
    pub async fn create(admin: &str, test: &str) -> TestDb {
        let name = format!("gs_{test}_{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(admin).await.expect("connect to the admin database");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create the test database");
        conn.close().await.ok();
        TestDb { admin: admin.to_owned(), url: with_database(admin, &name), name }
    }

    /// A connection to it.
    pub async fn connect(&self) -> sqlx::PgConnection {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&self.url).await.expect("connect to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Best effort, on a thread of its own (the test's runtime may be shutting down).
        let _ = std::thread::spawn(move || {
            use sqlx::Connection;
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await.ok()
            })
        })
        .join();
    }
}
