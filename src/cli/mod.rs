//! The command line. `gradscope` alone (or `gradscope serve`) runs the HTTP service;
//! `gradscope run` and `gradscope analyze` work on one spec file without a server (a spec, or
//! `{"preset": NAME}` as the API accepts it); `gradscope experiment` runs an experiment on local
//! worker threads; `gradscope presets` lists the presets; `gradscope openapi` prints the OpenAPI
//! document; `gradscope healthcheck` asks a running server's `/readyz` (container images have
//! no curl).
//!
//! For people and for programs: on a terminal `run`, `analyze` and `experiment` print a short
//! summary (`summary.rs`) and draw a progress bar on stderr (`progress.rs`); the JSON goes to
//! standard output with `--json`, which is the default when standard output is not a terminal
//! (pipes and scripts get the JSON as before), and to a file with `-o FILE`. Output paths are
//! checked before anything runs (`files.rs`). Exit codes (`failure.rs`): 0 success, 1 an I/O or
//! internal failure (or not ready), 2 invalid input (with an RFC 9457 problem JSON on stderr),
//! 3 `--fail-on LEVEL` reached.
//!
//! Files: `args.rs` the grammar (clap) <- `commands.rs` what each command does, with
//! `experiment.rs`; both use `files.rs`, `progress.rs`, `summary.rs` (with `format.rs`) and
//! `failure.rs`. This file holds only declarations and re-exports.

mod args;
mod commands;
mod experiment;
mod failure;
mod files;
mod format;
mod progress;
mod summary;

pub use args::{Cli, Command, FailOn, Outputs, ProgressArgs};
pub use commands::main;
pub use failure::{EXIT_FAILURE, EXIT_FAIL_ON, EXIT_INVALID};
