//! `buildsrs-node`: a volunteer's builder node.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    buildsrs_node::cli::main(buildsrs_node::cli::Cli::parse())
}
