//! The command line. `gradscope` alone (or `gradscope serve`) runs the HTTP service;
//! `gradscope run` and `gradscope analyze` work on one spec file without a server (a spec, or
//! `{"preset": NAME}` as the API accepts it); `gradscope presets` lists the presets;
//! `gradscope openapi` prints the OpenAPI document; `gradscope healthcheck` asks a running
//! server's `/readyz` (container images have no curl). `run` and `analyze` also write the HTML
//! report (`--html FILE`) and the plots (`--plots DIR`, one `NAME.svg` per plot that applies).
//! Parses arguments, calls one function of the layer below, prints.
//!
//! Exit codes: 0 success, 1 I/O or internal failure (or not ready), 2 invalid input (with an
//! RFC 9457 problem JSON on stderr).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::analysis::pipeline::{self, PipelineError};
use crate::analysis::{html, plots};
use crate::config::ServeArgs;
use crate::jobs::WorkerPriority;
use crate::problem::Problem;
use crate::spec::presets::{self, PresetList};

/// gradscope: why does my neural network not learn?
#[derive(Debug, Parser)]
#[command(name = "gradscope", version, about)]
pub struct Cli {
    /// What to do (default: `serve`).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (the default). Every flag also reads an environment variable.
    Serve(Box<ServeArgs>),
    /// Print the OpenAPI document (JSON) of the service.
    Openapi,
    /// GET a running server's /readyz: exit 0 when ready, 1 otherwise.
    Healthcheck {
        /// The URL to ask (default: /readyz on the `GRADSCOPE_BIND` address, loopback when
        /// that address is unspecified like 0.0.0.0).
        #[arg(long)]
        url: Option<String>,
        /// The address the server binds (only used to build the default URL).
        #[arg(long, env = "GRADSCOPE_BIND", default_value = "127.0.0.1:8080")]
        bind: SocketAddr,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3.0)]
        timeout_secs: f64,
    },
    /// List the presets (`{"preset": NAME}` runs one): name and title.
    Presets {
        /// Print the list as JSON, the body of `GET /v1/presets` (every preset's full spec).
        #[arg(long)]
        json: bool,
    },
    /// Train one spec and print its gradient-flow report as JSON.
    Run {
        /// The spec file, or a file `{"preset": NAME}` (`-` reads standard input).
        spec: String,
        /// Also write the trained parameters, as the expanded spec with explicit parameters
        /// (it runs as it is).
        #[arg(long)]
        params_out: Option<PathBuf>,
        /// Print training progress to standard error.
        #[arg(long)]
        progress: bool,
        /// Share of the run's compute that verifying its recommendations may take (each
        /// patched spec trained for a short budget against the baseline); 0 switches it off.
        #[arg(long, default_value_t = crate::analysis::verify::DEFAULT_VERIFY_SHARE)]
        verify_share: f64,
        /// Estimated peak memory of the run, in bytes or as a size ("4GiB", "500MB"); over it
        /// the spec is refused (exit 2, the `invalid-spec` problem). Default: 80% of the
        /// machine's memory (the cgroup's limit when lower).
        #[arg(long, env = "GRADSCOPE_MAX_JOB_MEMORY", value_name = "BYTES", value_parser = crate::config::parse_bytes)]
        max_job_memory: Option<u64>,
        /// Output files besides the JSON report.
        #[command(flatten)]
        outputs: Outputs,
    },
    /// Run an experiment (variants x seeds, as `POST /v1/experiments` takes it) on local worker
    /// threads and print the experiment with its result as JSON.
    Experiment {
        /// The experiment file, or a file `{"preset": NAME}` naming an experiment preset (`-`
        /// reads standard input).
        file: String,
        /// Worker threads (default: one per core).
        #[arg(long)]
        workers: Option<usize>,
        /// Print progress to standard error.
        #[arg(long)]
        progress: bool,
        /// Print the ranked result as a Markdown table instead of JSON.
        #[arg(long)]
        table: bool,
        /// Estimated peak memory of one run, in bytes or as a size ("4GiB", "500MB"); over it
        /// the spec is refused (exit 2, the `invalid-spec` problem). Default: 80% of the
        /// machine's memory (the cgroup's limit when lower) divided by the workers.
        #[arg(long, env = "GRADSCOPE_MAX_JOB_MEMORY", value_name = "BYTES", value_parser = crate::config::parse_bytes)]
        max_job_memory: Option<u64>,
        /// Also write the self-contained HTML page to this file.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Also write every plot that applies as DIR/NAME.svg (the directory is created).
        #[arg(long, value_name = "DIR")]
        plots: Option<PathBuf>,
    },
    /// One forward/backward at initialisation (or with the given weights): the report of step 0.
    Analyze {
        /// The spec file, or a file `{"preset": NAME}` (`-` reads standard input).
        spec: String,
        /// Include every parameter's gradient, in the explicit-parameter layout.
        #[arg(long)]
        gradients: bool,
        /// Estimated peak memory of the analysis, in bytes or as a size ("4GiB", "500MB"); over it
        /// the spec is refused (exit 2, the `invalid-spec` problem). Default: 80% of the
        /// machine's memory (the cgroup's limit when lower).
        #[arg(long, env = "GRADSCOPE_MAX_JOB_MEMORY", value_name = "BYTES", value_parser = crate::config::parse_bytes)]
        max_job_memory: Option<u64>,
        /// Output files besides the JSON report.
        #[command(flatten)]
        outputs: Outputs,
    },
}

/// The HTML report and the plots, written beside the JSON report.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Outputs {
    /// Also write the self-contained HTML report to this file.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Also write every plot that applies as DIR/NAME.svg (the directory is created).
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
}

impl Outputs {
    /// Writes the requested files for `report`.
    fn write(&self, report: &crate::analysis::Report) -> Result<(), Failure> {
        let io = |path: &std::path::Path, e: std::io::Error| Failure::Io(format!("{}: {e}", path.display()));
        if self.html.is_none() && self.plots.is_none() {
            return Ok(());
        }
        let json = serde_json::to_value(report).map_err(|e| Failure::Io(e.to_string()))?;
        if let Some(dir) = &self.plots {
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
            for name in plots::available_json(&json) {
                let svg = plots::render_json(&json, name).map_err(|e| Failure::Io(format!("plot {name}: {e}")))?;
                let path = dir.join(format!("{name}.svg"));
                std::fs::write(&path, svg).map_err(|e| io(&path, e))?;
            }
        }
        // After the plots, so that `--plots DIR --html DIR/report.html` finds DIR created.
        if let Some(path) = &self.html {
            std::fs::write(path, html::render_json(&json)).map_err(|e| io(path, e))?;
        }
        Ok(())
    }
}

/// Runs the command line; returns the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    let command = match cli.command {
        Some(c) => c,
        None => match ServeArgs::try_parse_from(["gradscope"]) {
            Ok(args) => Command::Serve(Box::new(args)),
            Err(e) => e.exit(),
        },
    };
    let result = match command {
        Command::Serve(args) => {
            return match crate::api::serve(*args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("gradscope: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Openapi => {
            print!("{}", crate::api::openapi::document_json());
            return ExitCode::SUCCESS;
        }
        Command::Healthcheck { url, bind, timeout_secs } => {
            let url = url.unwrap_or_else(|| {
                let ip = match bind.ip() {
                    ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
                    ip if ip.is_unspecified() => "[::1]".to_owned(),
                    std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                    ip => ip.to_string(),
                };
                format!("http://{ip}:{}/readyz", bind.port())
            });
            let timeout = Duration::try_from_secs_f64(timeout_secs.clamp(0.1, 60.0)).unwrap_or(Duration::from_secs(3));
            return match healthcheck(&url, timeout) {
                Ok(200) => ExitCode::SUCCESS,
                Ok(status) => {
                    eprintln!("gradscope: {url} answered {status}");
                    ExitCode::from(1)
                }
                Err(e) => {
                    eprintln!("gradscope: {url}: {e}");
                    ExitCode::from(1)
                }
            };
        }
        Command::Presets { json } => {
            let list = presets::list();
            let text = if json {
                serde_json::to_string_pretty(&list).map_err(|e| e.to_string())
            } else {
                Ok(presets_table(&list))
            };
            return match text {
                Ok(text) => {
                    println!("{}", text.trim_end());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("gradscope: {e}");
                    ExitCode::from(1)
                }
            };
        }
        Command::Experiment { file, workers, progress, table, max_job_memory, html, plots } => {
            let args = ExperimentArgs { workers, progress, table, max_job_memory, html, plots };
            return finish(read(&file).and_then(|body| experiment(&body, &args)));
        }
        Command::Run { spec, params_out, progress, verify_share, max_job_memory, outputs } => {
            read(&spec).and_then(expand_preset).and_then(|body| {
                let mut on_progress = |p: crate::engine::train::Progress| {
                    if progress && (p.step.is_multiple_of(100) || p.step == p.total_steps) {
                        eprintln!("step {}/{} loss {:.6}", p.step, p.total_steps, p.loss);
                    }
                };
                let limits = cli_limits(max_job_memory);
                let verify_share = if verify_share.is_finite() { verify_share.max(0.0) } else { 0.0 };
                let options = pipeline::RunOptions { limits: &limits, params_out: params_out.is_some(), verify_share };
                let spec = pipeline::parse_body(&body).map_err(Failure::from)?;
                let out =
                    pipeline::run(&spec, &options, &Default::default(), &mut on_progress).map_err(Failure::from)?;
                if let (Some(path), Some(spec)) = (params_out, &out.spec_with_params) {
                    let text = serde_json::to_string_pretty(spec).map_err(|e| Failure::Io(e.to_string()))?;
                    std::fs::write(&path, text).map_err(|e| Failure::Io(format!("{}: {e}", path.display())))?;
                }
                outputs.write(&out.report)?;
                Ok(out.report)
            })
        }
        Command::Analyze { spec, gradients, max_job_memory, outputs } => {
            read(&spec).and_then(expand_preset).and_then(|body| {
                let limits = cli_limits(max_job_memory);
                let options = pipeline::AnalyzeOptions { limits: &limits, gradients };
                let spec = pipeline::parse_body(&body).map_err(Failure::from)?;
                let report = pipeline::analyze(&spec, &options).map_err(Failure::from)?;
                outputs.write(&report)?;
                Ok(report)
            })
        }
    };
    finish(result.and_then(|report| serde_json::to_string_pretty(&report).map_err(|e| Failure::Io(e.to_string()))))
}

/// Prints the output (or the problem) and returns the exit code.
fn finish(result: Result<String, Failure>) -> ExitCode {
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(Failure::Problem(p)) => {
            eprintln!("{}", serde_json::to_string_pretty(&p).unwrap_or_else(|_| p.detail.clone()));
            ExitCode::from(2)
        }
        Err(Failure::Io(msg)) => {
            eprintln!("gradscope: {msg}");
            ExitCode::from(1)
        }
    }
}

/// The spec limits of `run` and `analyze`: the defaults, with `--max-job-memory` or its
/// default for one run in flight.
fn cli_limits(max_job_memory: Option<u64>) -> crate::spec::Limits {
    let max_job_memory = max_job_memory.unwrap_or_else(|| crate::config::default_job_memory(1));
    crate::spec::Limits { max_job_memory, ..crate::spec::Limits::default() }
}

struct ExperimentArgs {
    workers: Option<usize>,
    progress: bool,
    table: bool,
    max_job_memory: Option<u64>,
    html: Option<PathBuf>,
    plots: Option<PathBuf>,
}

/// Runs an experiment on an in-process job service (the same admission, pool and summary as the
/// server) and returns what to print.
fn experiment(body: &[u8], args: &ExperimentArgs) -> Result<String, Failure> {
    use crate::analysis::experiment as exp;
    use crate::jobs::{JobService, JobsConfig, JobsError};
    let value: Value =
        serde_json::from_slice(body).map_err(|e| Failure::Problem(Problem::malformed_json(e.to_string())))?;
    // The output directory is checked before any training, so a typo does not cost the runs.
    if let Some(dir) = &args.plots {
        std::fs::create_dir_all(dir).map_err(|e| Failure::Io(format!("{}: {e}", dir.display())))?;
    }
    let defaults = JobsConfig::default();
    let workers = args.workers.unwrap_or(defaults.workers).max(1);
    let max_job_memory = args.max_job_memory.unwrap_or_else(|| crate::config::default_job_memory(workers));
    let config = JobsConfig {
        workers,
        limits: crate::spec::Limits { max_job_memory, ..defaults.limits.clone() },
        job_timeout: Duration::from_secs(24 * 3600),
        queue_capacity: usize::MAX / 2,
        worker_priority: WorkerPriority::Nice(0),
        ..defaults
    };
    // The job layer's store and upkeep are async: a small runtime beside the worker threads.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Failure::Io(format!("starting the runtime: {e}")))?;
    let service =
        runtime.block_on(JobService::start(config)).map_err(|e| Failure::Io(format!("starting the workers: {e}")))?;
    let to_failure = |e: JobsError| match e {
        JobsError::Invalid(p) => Failure::from(p),
        JobsError::NotFound { id } => Failure::Problem(Problem::new(
            "job-not-found",
            "Job not found",
            404,
            format!("no job with id `{id}`: `remedies_of` needs the server that ran the job"),
        )),
        other => Failure::Io(other.to_string()),
    };
    let submitted =
        runtime.block_on(service.submit_experiment(&crate::jobs::Tenant::open(), &value)).map_err(to_failure)?;
    let id = submitted.id.clone();
    let mut last = None;
    let done = loop {
        let e = runtime.block_on(service.get_experiment(&crate::jobs::Tenant::open(), &id)).map_err(to_failure)?;
        if args.progress && last != Some(e.progress) {
            let p = e.progress;
            eprintln!(
                "runs {}/{} ended, {} running, steps {}/{}",
                p.runs_ended, p.runs, p.runs_running, p.step, p.total_steps
            );
            last = Some(p);
        }
        if e.status.is_terminal() {
            break e;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    runtime.block_on(service.finish_shutdown(Duration::ZERO));
    let result = done.result.as_ref().ok_or_else(|| Failure::Io("the experiment ended without a result".into()))?;
    if let Some(dir) = &args.plots {
        for plot in exp::available(result) {
            let svg = exp::render(result, plot).map_err(|e| Failure::Io(format!("plot {}: {e}", plot.name())))?;
            let path = dir.join(format!("{}.svg", plot.name()));
            std::fs::write(&path, svg).map_err(|e| Failure::Io(format!("{}: {e}", path.display())))?;
        }
    }
    if let Some(path) = &args.html {
        std::fs::write(path, exp::render_html(result, result.name.as_deref().unwrap_or(&id)))
            .map_err(|e| Failure::Io(format!("{}: {e}", path.display())))?;
    }
    if args.table {
        Ok(exp::markdown_table(result))
    } else {
        serde_json::to_string_pretty(&done).map_err(|e| Failure::Io(e.to_string()))
    }
}

enum Failure {
    Problem(Problem),
    Io(String),
}

impl From<PipelineError> for Failure {
    fn from(e: PipelineError) -> Self {
        match e.problem() {
            Some(p) => Failure::Problem(p),
            None => Failure::Io(e.to_string()),
        }
    }
}

/// A body `{"preset": NAME}` becomes that preset's spec, as `POST /v1/jobs` expands it (an
/// unknown name or another field: the same `422` problem). Any other body, malformed JSON
/// included, goes on unchanged, for the pipeline to parse and report.
fn expand_preset(body: Vec<u8>) -> Result<Vec<u8>, Failure> {
    let Ok(value) = serde_json::from_slice::<Value>(&body) else { return Ok(body) };
    match presets::requested(&value) {
        Ok(None) => Ok(body),
        Ok(Some(preset)) => serde_json::to_vec(&preset.json).map_err(|e| Failure::Io(e.to_string())),
        Err(errors) => Err(Failure::Problem(errors.into())),
    }
}

/// The presets as a table: one line per preset, its name and its title.
fn presets_table(list: &PresetList) -> String {
    let width = list.presets.iter().map(|p| p.name.len()).max().unwrap_or(0).max("NAME".len());
    let mut out = format!("{:<width$}  TITLE\n", "NAME");
    for p in &list.presets {
        out.push_str(&format!("{:<width$}  {}\n", p.name, p.title));
    }
    out
}

/// GET `url` (plain `http://host:port/path`) and return the status code. A few lines of HTTP/1.1
/// over a socket keep the binary free of an HTTP client.
fn healthcheck(url: &str, timeout: Duration) -> std::io::Result<u16> {
    let invalid = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, m.to_owned());
    let rest = url.strip_prefix("http://").ok_or_else(|| invalid("only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = authority.to_socket_addrs()?.next().ok_or_else(|| invalid("the host did not resolve"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head)?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response"))
}

fn read(path: &str) -> Result<Vec<u8>, Failure> {
    let mut buf = Vec::new();
    let r = if path == "-" {
        std::io::stdin().read_to_end(&mut buf).map(|_| ())
    } else {
        std::fs::read(path).map(|b| buf = b)
    };
    r.map_err(|e| Failure::Io(format!("{path}: {e}")))?;
    Ok(buf)
}
