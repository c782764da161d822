//! The `buildsrs-coordinator` command line: a thin layer that turns flags into a [`Config`]
//! and runs the service until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use buildsrs_index::read_names_file;
use buildsrs_store::{Policy, Store};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{CRATES_IO_SPARSE, Config, IndexSource};

/// The buildsrs coordinator: follows the registry index, plans and schedules builds.
#[derive(Debug, Parser)]
#[command(
    name = "buildsrs-coordinator",
    version,
    about,
    max_term_width = 100,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(flatten)]
    run: RunArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print what the store holds: schema version, watched crates, queue.
    Status(StoreArgs),
}

#[derive(Debug, Args)]
struct StoreArgs {
    /// The coordinator's data dir (holds the SQLite store by default).
    #[arg(long, env = "BUILDSRS_DATA_DIR", value_name = "DIR")]
    data_dir: PathBuf,
    /// A Postgres URL (`postgres://…`) instead of SQLite in the data dir.
    #[arg(long, env = "BUILDSRS_DATABASE_URL", value_name = "URL")]
    database_url: Option<String>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The coordinator's data dir (holds the SQLite store by default).
    #[arg(long, env = "BUILDSRS_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A Postgres URL (`postgres://…`) instead of SQLite in the data dir.
    #[arg(long, env = "BUILDSRS_DATABASE_URL", value_name = "URL")]
    database_url: Option<String>,
    /// The registry index: `sparse+https://…` (polled for watched crates) or a git index
    /// (`git+https://…`, `file://…`, a path; every crate is followed).
    #[arg(long, default_value = CRATES_IO_SPARSE, value_name = "URL")]
    index: String,
    /// Crates to watch, comma-separated (added to those already watched).
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    watch: Vec<String>,
    /// A file of crate names to watch, one per line (`#` comments).
    #[arg(long, value_name = "FILE")]
    watch_file: Option<PathBuf>,
    /// Seconds between polls of the index.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    poll_interval: u64,
    /// Target triples to build (repeatable).
    #[arg(
        long = "target",
        value_name = "TRIPLE",
        default_value = "x86_64-unknown-linux-gnu"
    )]
    targets: Vec<String>,
    /// Toolchains to build with (repeatable) [default: the local `rustc` release].
    #[arg(long = "toolchain", value_name = "RELEASE")]
    toolchains: Vec<String>,
    /// Distinct approved builders that must agree before an artifact is verified.
    #[arg(long, default_value_t = 2, value_name = "N")]
    quorum: u32,
}

/// Parses, sets up logging, runs; returns the exit code (2 for errors).
pub fn main(cli: Cli) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BUILDSRS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::Status(args)) => status(&args).await,
            None => serve(cli.run).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn config_from(args: RunArgs) -> Result<Config> {
    let data_dir = args
        .data_dir
        .context("--data-dir (or BUILDSRS_DATA_DIR) is required")?;
    let mut config = Config::new(data_dir);
    config.database_url = args.database_url;
    config.index = IndexSource::parse(&args.index)?;
    config.watch = args.watch;
    if let Some(file) = &args.watch_file {
        config.watch.extend(read_names_file(file)?);
    }
    for name in &config.watch {
        buildsrs_keys::statement::validate_crate_name(name)
            .map_err(|e| anyhow::anyhow!("--watch: {e}"))?;
    }
    config.poll_interval = Duration::from_secs(args.poll_interval.max(1));
    config.targets = args.targets;
    config.toolchains = if args.toolchains.is_empty() {
        let local = buildsrs_keys::cli::detect_toolchain()
            .context("no --toolchain given and the local rustc could not be asked")?;
        vec![local.release]
    } else {
        args.toolchains
    };
    config.policy = Policy {
        quorum: args.quorum,
        plan_all_crates: matches!(config.index, IndexSource::Git(_)),
        ..Policy::default()
    };
    config.policy.validate()?;
    Ok(config)
}

async fn serve(args: RunArgs) -> Result<()> {
    let config = config_from(args)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    tracing::info!(
        "coordinator starting: data dir {}, index {:?}",
        config.data_dir.display(),
        config.index
    );
    crate::run(config, shutdown).await?;
    tracing::info!("coordinator stopped cleanly");
    Ok(())
}

/// Cancels `token` on the first SIGINT or SIGTERM.
pub async fn cancel_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot listen for signals; stop the coordinator with SIGKILL");
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
    }
    token.cancel();
}

async fn status(args: &StoreArgs) -> Result<()> {
    let mut config = Config::new(&args.data_dir);
    config.database_url.clone_from(&args.database_url);
    let store = Store::open(&config.store_config()?).await?;
    let stats = store.queue_stats(jiff::Timestamp::now()).await?;
    let watched = store.watched_crates().await?;
    println!("schema version: {}", store.schema_version().await?);
    println!("watched crates: {}", watched.len());
    println!(
        "tasks:          {} queued ({} ready), {} building, {} verified, {} mismatch, {} failed, \
         {} no binaries, {} cancelled",
        stats.queued,
        stats.ready,
        stats.building,
        stats.verified,
        stats.mismatch,
        stats.failed,
        stats.no_binaries,
        stats.cancelled
    );
    println!(
        "leases:         {} active; builders pending approval: {}",
        stats.active_leases, stats.builders_pending
    );
    Ok(())
}
