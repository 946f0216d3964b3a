//! How a command ends: what it prints and its exit code. The codes (also in `gradscope --help`
//! and README.md's "Command line"):
//!
//! | code | meaning |
//! |---:|---|
//! | 0 | success |
//! | 1 | an I/O or internal failure, an output path that cannot be written (found before anything runs), a server that is not ready (`healthcheck`) |
//! | 2 | invalid input: an RFC 9457 problem JSON on stderr (clap's usage errors exit 2 too) |
//! | 3 | `--fail-on LEVEL`: the report has a diagnostic at or above LEVEL (everything is printed and written as usual) |

use std::process::ExitCode;

use crate::analysis::pipeline::PipelineError;
use crate::problem::Problem;

/// Exit code of an I/O or internal failure.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of invalid input.
pub const EXIT_INVALID: u8 = 2;
/// Exit code of a report at or over `--fail-on`.
pub const EXIT_FAIL_ON: u8 = 3;

/// Why a command did not produce its output.
#[derive(Debug)]
pub enum Failure {
    /// The input is invalid: the problem goes to stderr as JSON (exit 2).
    Problem(Problem),
    /// An I/O or internal failure, in words (exit 1).
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

impl From<Problem> for Failure {
    fn from(p: Problem) -> Self {
        Failure::Problem(p)
    }
}

/// What a command that ran prints: its standard output, and the `--fail-on` finding that sets
/// exit code 3 (printed to stderr), if any.
#[derive(Debug)]
pub struct Done {
    /// Printed to standard output (a trailing newline is added).
    pub stdout: String,
    /// Why `--fail-on` fails the command.
    pub failed_on: Option<String>,
}

/// Prints the output (or the failure) and returns the exit code.
pub fn finish(result: Result<Done, Failure>) -> ExitCode {
    match result {
        Ok(done) => {
            println!("{}", done.stdout.trim_end_matches('\n'));
            match done.failed_on {
                Some(why) => {
                    eprintln!("gradscope: {why}");
                    ExitCode::from(EXIT_FAIL_ON)
                }
                None => ExitCode::SUCCESS,
            }
        }
        Err(Failure::Problem(p)) => {
            eprintln!("{}", serde_json::to_string_pretty(&p).unwrap_or_else(|_| p.detail.clone()));
            ExitCode::from(EXIT_INVALID)
        }
        Err(Failure::Io(msg)) => {
            eprintln!("gradscope: {msg}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
