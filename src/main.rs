//! The `gradscope` binary: parses the command line and hands over to [`gradscope::cli`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    gradscope::cli::main(gradscope::cli::Cli::parse())
}
