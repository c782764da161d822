//! `buildsrs-keys`: generate identities, sign attestations, verify artifacts offline.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    buildsrs_keys::cli::run(buildsrs_keys::cli::Cli::parse())
}
