//! `buildsrs-coordinator`: follows the registry index into the job store and plans builds.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    buildsrs_coordinator::cli::main(buildsrs_coordinator::cli::Cli::parse())
}
