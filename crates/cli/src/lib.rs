//! `buildsrs`, the user's command line: install a crate's verified binaries, verify an
//! artifact offline, (next) mirror every verified artifact.
//!
//! - [`api`]: the coordinator's JSON API and downloads, as a client sees them.
//! - [`fetch`]: `buildsrs fetch`: resolve, download, verify against the user's keyring,
//!   install.
//! - [`install`]: unpacking a verified archive and putting its binaries in place.
//!
//! `buildsrs verify` is `buildsrs-keys verify`: the same arguments, code and exit codes.
//!
//! **This crate trusts nothing it downloads until `buildsrs_keys::verify_bundle` said yes
//! against the user's keyring.** The coordinator's answers only say where to look.

pub mod api;
pub mod fetch;
pub mod install;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code: done.
pub const EXIT_OK: u8 = 0;
/// Exit code: the artifact is not verified to the user's standard; nothing was installed.
pub const EXIT_REFUSED: u8 = 1;
/// Exit code: usage, network or I/O error.
pub const EXIT_ERROR: u8 = 2;

/// Install binaries of Rust crates that independent builders agree on, and check them.
#[derive(Debug, Parser)]
#[command(name = "buildsrs", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Download a crate's binaries, verify them against your keyring, install them.
    Fetch(fetch::FetchArgs),
    /// Check an artifact against its bundle and your keyring (as `buildsrs-keys verify`).
    Verify(buildsrs_keys::cli::VerifyArgs),
}

/// Runs a parsed command line; returns the exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Verify(args) => buildsrs_keys::cli::run_verify(&args),
        Command::Fetch(args) => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("error: starting the async runtime: {error}");
                    return ExitCode::from(EXIT_ERROR);
                }
            };
            match runtime.block_on(fetch::fetch(&args)) {
                Ok(fetch::Outcome::Installed) => ExitCode::from(EXIT_OK),
                Ok(fetch::Outcome::Refused) => ExitCode::from(EXIT_REFUSED),
                Err(error) => {
                    eprintln!("error: {error:#}");
                    ExitCode::from(EXIT_ERROR)
                }
            }
        }
    }
}
