//! `buildsrs`: see the `buildsrs_cli` library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    buildsrs_cli::run(buildsrs_cli::Cli::parse())
}
