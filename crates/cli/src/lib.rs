//! `buildsrs`, the user's command line: install a crate's verified binaries, verify an
//! artifact offline, mirror every verified artifact and serve the mirror.
//!
//! - [`api`]: the coordinator's JSON API and downloads, as a client sees them.
//! - [`fetch`]: `buildsrs fetch`: resolve, download, verify against the user's keyring,
//!   install.
//! - [`install`]: unpacking a verified archive and putting its binaries in place.
//! - [`mirror`]: `buildsrs mirror` and `buildsrs mirror serve`.
//!
//! - [`source`]: a crate's source as the user's own read of the registry's index lists it.
//!
//! `buildsrs verify` is `buildsrs-keys verify` (the same arguments, code and exit codes) plus
//! `--check-index`, which reads the expected source from the index itself.
//!
//! **This crate trusts nothing it downloads until `buildsrs_keys::verify_bundle` said yes
//! against the user's keyring.** The coordinator's answers only say where to look.

pub mod api;
pub mod fetch;
pub mod install;
pub mod mirror;
pub mod source;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

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
    Verify(VerifyCommand),
    /// Copy every verified artifact and its bundle into a directory, by content hash;
    /// `mirror serve` serves that directory.
    Mirror(mirror::MirrorArgs),
}

/// `buildsrs verify`: `buildsrs-keys verify`'s arguments, and `--check-index`.
#[derive(Debug, clap::Args)]
struct VerifyCommand {
    #[command(flatten)]
    keys: buildsrs_keys::cli::VerifyArgs,
    /// Read the source of --crate at --version from the registry's index now (--registry,
    /// crates.io by default): attestations of another source do not count.
    #[arg(
        long,
        requires_all = ["crate_name", "version"],
        conflicts_with_all = ["source_sha256", "cargo_lock"]
    )]
    check_index: bool,
}

/// `buildsrs verify`: offline unless `--check-index`.
fn verify(args: &VerifyCommand) -> ExitCode {
    let keys = &args.keys;
    if !args.check_index {
        return buildsrs_keys::cli::run_verify(keys);
    }
    let verdict = (|| {
        let (Some(name), Some(version)) = (&keys.crate_name, &keys.version) else {
            anyhow::bail!("--check-index needs --crate and --version");
        };
        let registry = keys
            .registry
            .clone()
            .unwrap_or_else(buildsrs_keys::RegistryUrl::crates_io);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let source = runtime.block_on(source::indexed_source(&registry, name, version))?;
        buildsrs_keys::cli::verify_against(keys, Some(source))
    })();
    buildsrs_keys::cli::print_verdict(keys, verdict)
}

/// Runs a parsed command line; returns the exit code.
pub fn run(cli: Cli) -> ExitCode {
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    };
    let result = match cli.command {
        Command::Verify(args) => return verify(&args),
        Command::Fetch(args) => runtime()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(fetch::fetch(&args)))
            .map(|outcome| match outcome {
                fetch::Outcome::Installed => EXIT_OK,
                fetch::Outcome::Refused => EXIT_REFUSED,
            }),
        Command::Mirror(args) => runtime().map_err(anyhow::Error::from).and_then(|rt| {
            rt.block_on(async {
                let shutdown = CancellationToken::new();
                tokio::spawn(cancel_on_signal(shutdown.clone()));
                mirror::run(args, shutdown).await
            })
        }),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Cancels `token` on SIGINT or SIGTERM, so a mirror saves its cursor and a server stops
/// cleanly.
async fn cancel_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    token.cancel();
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
