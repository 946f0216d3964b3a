//! What each command does: parse its arguments (`cli/args.rs`), call one function of the layer
//! below, write the files and print the summary or the JSON. `experiment` is in
//! `cli/experiment.rs`.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use super::args::{Cli, Command, FailOnArg, Outputs, ProgressArgs};
use super::experiment::{experiment, ExperimentArgs};
use super::failure::{finish, Done, Failure, EXIT_FAILURE};
use super::files::{self, Written};
use super::progress::{Mode, RunProgress};
use super::summary::{self, Made};
use crate::analysis::pipeline;
use crate::analysis::report::{Outcome, Report};
use crate::analysis::{html, plots};
use crate::config::ServeArgs;
use crate::spec::presets::{self, PresetList};

/// Runs the command line; returns the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    let command = match cli.command {
        Some(c) => c,
        None => match ServeArgs::try_parse_from(["gradscope"]) {
            Ok(args) => Command::Serve(Box::new(args)),
            Err(e) => e.exit(),
        },
    };
    match command {
        Command::Serve(args) => match crate::api::serve(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gradscope: {e}");
                ExitCode::from(EXIT_FAILURE)
            }
        },
        Command::Openapi => {
            print!("{}", crate::api::openapi::document_json());
            ExitCode::SUCCESS
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
            match healthcheck(&url, timeout) {
                Ok(200) => ExitCode::SUCCESS,
                Ok(status) => {
                    eprintln!("gradscope: {url} answered {status}");
                    ExitCode::from(EXIT_FAILURE)
                }
                Err(e) => {
                    eprintln!("gradscope: {url}: {e}");
                    ExitCode::from(EXIT_FAILURE)
                }
            }
        }
        Command::Presets { json } => {
            let list = presets::list();
            let text = if json {
                serde_json::to_string_pretty(&list).map_err(|e| Failure::Io(e.to_string()))
            } else {
                Ok(presets_table(&list))
            };
            finish(text.map(|stdout| Done { stdout, failed_on: None }))
        }
        Command::Experiment { file, workers, progress, table, max_job_memory, outputs } => {
            let args = ExperimentArgs { workers, progress, table, max_job_memory, outputs };
            finish(files::read(&file).and_then(|body| experiment(&body, &args)))
        }
        Command::Run { spec, params_out, progress, verify_share, max_job_memory, outputs, fail_on } => {
            let args = RunArgs { params_out, progress, verify_share, max_job_memory, outputs, fail_on };
            finish(files::read(&spec).and_then(expand_preset).and_then(|body| run(&body, args)))
        }
        Command::Analyze { spec, gradients, max_job_memory, outputs, fail_on } => {
            finish(files::read(&spec).and_then(expand_preset).and_then(|body| {
                let limits = cli_limits(max_job_memory);
                let options = pipeline::AnalyzeOptions { limits: &limits, gradients };
                let spec = pipeline::check_body(&body, &pipeline::analysis_validation_limits(&limits))?;
                files::check(&outputs, None)?;
                let report = pipeline::analyze(&spec, &options)?;
                deliver(&report, Made::Analyze, &outputs, fail_on, Vec::new())
            }))
        }
    }
}

struct RunArgs {
    params_out: Option<PathBuf>,
    progress: ProgressArgs,
    verify_share: f64,
    max_job_memory: Option<u64>,
    outputs: Outputs,
    fail_on: FailOnArg,
}

/// `gradscope run`: parse, check the output paths, train with progress, deliver.
fn run(body: &[u8], args: RunArgs) -> Result<Done, Failure> {
    let limits = cli_limits(args.max_job_memory);
    let verify_share = if args.verify_share.is_finite() { args.verify_share.max(0.0) } else { 0.0 };
    let options = pipeline::RunOptions { limits: &limits, params_out: args.params_out.is_some(), verify_share };
    let spec = pipeline::check_body(body, &limits)?;
    files::check(&args.outputs, args.params_out.as_deref())?;
    let mut shown = RunProgress::start(Mode::of(args.progress));
    let result = pipeline::run(&spec, &options, &Default::default(), &mut |p| shown.step(p));
    shown.end(result.as_ref().ok().map(|out| match out.report.summary.outcome {
        Outcome::Completed => "completed",
        Outcome::NonFinite => "stopped on NaN/Inf",
        Outcome::Cancelled => "cancelled",
        Outcome::Timeout => "timed out",
    }));
    let out = result?;
    let mut written = Vec::new();
    if let (Some(path), Some(spec)) = (&args.params_out, &out.spec_with_params) {
        let text = serde_json::to_string_pretty(spec).map_err(|e| Failure::Io(e.to_string()))?;
        written.push(files::write("parameters", path, &text)?);
    }
    deliver(&out.report, Made::Run, &args.outputs, args.fail_on, written)
}

/// Writes the report's files (`-o`, `--plots`, `--html`) after `written`, and returns what to
/// print (the JSON or the summary) and whether `--fail-on` fails the command.
fn deliver(
    report: &Report,
    made: Made,
    outputs: &Outputs,
    fail_on: FailOnArg,
    mut written: Vec<Written>,
) -> Result<Done, Failure> {
    let json = serde_json::to_string_pretty(report).map_err(|e| Failure::Io(e.to_string()))?;
    let mut files = Vec::new();
    if let Some(path) = &outputs.output {
        files.push(files::write("JSON report", path, &format!("{json}\n"))?);
    }
    if outputs.html.is_some() || outputs.plots.is_some() {
        let value = serde_json::to_value(report).map_err(|e| Failure::Io(e.to_string()))?;
        if let Some(dir) = &outputs.plots {
            let svgs = plots::available_json(&value)
                .into_iter()
                .map(|name| {
                    let svg = plots::render_json(&value, name).map_err(|e| Failure::Io(format!("plot {name}: {e}")))?;
                    Ok((name.name(), svg))
                })
                .collect::<Result<Vec<_>, Failure>>()?;
            files.push(files::write_plots(dir, svgs)?);
        }
        if let Some(path) = &outputs.html {
            files.push(files::write("HTML page", path, &html::render_json(&value))?);
        }
    }
    files.append(&mut written);
    let stdout = if files::stdout_gets_json(outputs) { json } else { summary::report(report, made, &files) };
    Ok(Done { stdout, failed_on: failed_on(report, fail_on) })
}

/// Why `--fail-on` fails the command: the diagnostics at or above its level.
fn failed_on(report: &Report, fail_on: FailOnArg) -> Option<String> {
    let level = fail_on.fail_on?.severity();
    if summary::worst(report)? < level {
        return None;
    }
    let mut codes: Vec<&str> =
        report.diagnostics.iter().filter(|d| d.severity >= level).map(|d| d.code.name()).collect();
    codes.dedup();
    let found = if codes.is_empty() { "the run diverged".to_owned() } else { codes.join(", ") };
    Some(format!(
        "--fail-on {}: verdict {}, with a diagnostic at or above {}: {found}",
        level.name(),
        report.summary.verdict.name(),
        level.name()
    ))
}

/// The spec limits of `run` and `analyze`: the defaults, with `--max-job-memory` or its
/// default for one run in flight.
fn cli_limits(max_job_memory: Option<u64>) -> crate::spec::Limits {
    let max_job_memory = max_job_memory.unwrap_or_else(|| crate::config::default_job_memory(1));
    crate::spec::Limits { max_job_memory, ..crate::spec::Limits::default() }
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
