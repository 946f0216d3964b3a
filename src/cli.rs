//! The command line: `gradscope run` and `gradscope analyze` work on one spec file without a
//! server. Parses arguments, reads the file, calls one function of the layer below, prints.
//!
//! Exit codes: 0 success, 1 I/O or internal failure, 2 invalid input (with an RFC 9457
//! problem JSON on stderr).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::analysis::pipeline::{self, PipelineError};
use crate::problem::Problem;

/// gradscope: why does my neural network not learn?
#[derive(Debug, Parser)]
#[command(name = "gradscope", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train one spec and print its gradient-flow report as JSON.
    Run {
        /// The spec file (`-` reads standard input).
        spec: String,
        /// Also write the trained parameters, as the expanded spec with explicit parameters
        /// (it runs as it is).
        #[arg(long)]
        params_out: Option<PathBuf>,
        /// Print training progress to standard error.
        #[arg(long)]
        progress: bool,
    },
    /// One forward/backward at initialisation (or with the given weights): the report of step 0.
    Analyze {
        /// The spec file (`-` reads standard input).
        spec: String,
        /// Include every parameter's gradient, in the explicit-parameter layout.
        #[arg(long)]
        gradients: bool,
    },
}

/// Runs the command line; returns the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Run { spec, params_out, progress } => read(&spec).and_then(|body| {
            let mut on_progress = |p: crate::engine::train::Progress| {
                if progress && (p.step % 100 == 0 || p.step == p.total_steps) {
                    eprintln!("step {}/{} loss {:.6}", p.step, p.total_steps, p.loss);
                }
            };
            let out = pipeline::run_json(&body, &crate::spec::Limits::default(), &Default::default(), &mut on_progress)
                .map_err(Failure::from)?;
            if let Some(path) = params_out {
                let text =
                    serde_json::to_string_pretty(&out.spec_with_params).map_err(|e| Failure::Io(e.to_string()))?;
                std::fs::write(&path, text).map_err(|e| Failure::Io(format!("{}: {e}", path.display())))?;
            }
            Ok(out.report)
        }),
        Command::Analyze { spec, gradients } => read(&spec).and_then(|body| {
            pipeline::analyze_json(&body, &crate::spec::Limits::default(), gradients).map_err(Failure::from)
        }),
    };
    match result.and_then(|report| serde_json::to_string_pretty(&report).map_err(|e| Failure::Io(e.to_string()))) {
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
