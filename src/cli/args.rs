//! The command line's grammar: the subcommands and their flags (clap derive). What they do is in
//! `cli/commands.rs`; this file only names and documents them.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::analysis::findings::Severity;
use crate::config::ServeArgs;

/// gradscope: why does my neural network not learn?
///
/// On a terminal, `run`, `analyze` and `experiment` print a short summary; the JSON goes to
/// standard output with `--json` (the default when standard output is not a terminal) and to a
/// file with `-o FILE`. Exit codes: 0 success; 1 an I/O or internal failure (an output path
/// that cannot be written is found before anything runs); 2 invalid input (an RFC 9457 problem
/// JSON on stderr) or an invalid command line; 3 `--fail-on LEVEL` and the report has a
/// diagnostic at or above LEVEL.
#[derive(Debug, Parser)]
#[command(name = "gradscope", version = env!("GRADSCOPE_VERSION"), about, long_about)]
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
    /// Train one spec and report its gradient flow: a summary on a terminal, the report JSON
    /// otherwise (see `--json`, `-o`).
    Run {
        /// The spec file, or a file `{"preset": NAME}` (`-` reads standard input).
        spec: String,
        /// Also write the trained parameters, as the expanded spec with explicit parameters
        /// (it runs as it is).
        #[arg(long, value_name = "FILE")]
        params_out: Option<PathBuf>,
        /// Training progress on standard error.
        #[command(flatten)]
        progress: ProgressArgs,
        /// Share of the run's compute that verifying its recommendations may take (each
        /// patched spec trained for a short budget against the baseline); 0 switches it off.
        #[arg(long, default_value_t = crate::analysis::verify::DEFAULT_VERIFY_SHARE)]
        verify_share: f64,
        /// Estimated peak memory of the run, in bytes or as a size ("4GiB", "500MB"); over it
        /// the spec is refused (exit 2, the `invalid-spec` problem). Default: 80% of the
        /// machine's memory (the cgroup's limit when lower).
        #[arg(long, env = "GRADSCOPE_MAX_JOB_MEMORY", value_name = "BYTES", value_parser = crate::config::parse_bytes)]
        max_job_memory: Option<u64>,
        /// Where the report goes.
        #[command(flatten)]
        outputs: Outputs,
        /// Exit code when the report is too bad.
        #[command(flatten)]
        fail_on: FailOnArg,
    },
    /// Run an experiment (variants x seeds, as `POST /v1/experiments` takes it) on local worker
    /// threads: a line per variant on a terminal, the experiment with its result as JSON
    /// otherwise (see `--json`, `-o`).
    Experiment {
        /// The experiment file, or a file `{"preset": NAME}` naming an experiment preset (`-`
        /// reads standard input).
        file: String,
        /// Worker threads (default: one per core).
        #[arg(long)]
        workers: Option<usize>,
        /// Progress on standard error.
        #[command(flatten)]
        progress: ProgressArgs,
        /// Print the ranked result as a Markdown table instead of the summary or the JSON.
        #[arg(long, conflicts_with = "json")]
        table: bool,
        /// Estimated peak memory of one run, in bytes or as a size ("4GiB", "500MB"); over it
        /// the spec is refused (exit 2, the `invalid-spec` problem). Default: 80% of the
        /// machine's memory (the cgroup's limit when lower) divided by the workers.
        #[arg(long, env = "GRADSCOPE_MAX_JOB_MEMORY", value_name = "BYTES", value_parser = crate::config::parse_bytes)]
        max_job_memory: Option<u64>,
        /// Where the experiment goes.
        #[command(flatten)]
        outputs: Outputs,
    },
    /// One forward/backward at initialisation (or with the given weights): the report of step
    /// 0, as a summary on a terminal, the report JSON otherwise (see `--json`, `-o`).
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
        /// Where the report goes.
        #[command(flatten)]
        outputs: Outputs,
        /// Exit code when the report is too bad.
        #[command(flatten)]
        fail_on: FailOnArg,
    },
}

/// Where a report (or an experiment) goes: the JSON to standard output or a file, the HTML page
/// and the plots. Every path is checked, by creating or opening it, before anything runs.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Outputs {
    /// Print the JSON to standard output (the default when standard output is not a terminal).
    #[arg(long)]
    pub json: bool,
    /// Write the JSON to FILE; standard output then gets the summary (unless `--json`).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also write the self-contained HTML page to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Also write every plot that applies as DIR/NAME.svg (the directory is created).
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
}

/// `--progress` / `--no-progress`.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct ProgressArgs {
    /// Show progress on standard error: a bar with the rate (steps/s) and the time left when
    /// standard error is a terminal (the default there), a line at every tenth of the run
    /// otherwise.
    #[arg(long, conflicts_with = "no_progress")]
    pub progress: bool,
    /// No progress, not even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

/// `--fail-on LEVEL`.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct FailOnArg {
    /// Exit with code 3 when the report has a diagnostic of this severity or worse (a run that
    /// diverged has a critical `non_finite`). The report is printed and written as usual.
    #[arg(long, value_name = "LEVEL")]
    pub fail_on: Option<FailOn>,
}

/// The severities `--fail-on` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// A warning or a critical diagnostic.
    Warning,
    /// A critical diagnostic.
    Critical,
}

impl FailOn {
    /// The least severity that fails.
    pub fn severity(self) -> Severity {
        match self {
            FailOn::Warning => Severity::Warning,
            FailOn::Critical => Severity::Critical,
        }
    }
}
