//! The `buildsrs-node` command line.
//!
//! `--data-dir` is global: every subcommand accepts it, and it defaults to a per-user data
//! dir (`~/.local/share/buildsrs-node`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::datadir::{DataDir, default_data_dir};
use crate::state::NodeState;

/// A buildsrs builder node: builds crates in a sandbox and signs what it built.
#[derive(Debug, Parser)]
#[command(name = "buildsrs-node", version, about, max_term_width = 100)]
pub struct Cli {
    /// The node's data dir (identity, configuration, state, artifacts).
    #[arg(
        long,
        global = true,
        env = "BUILDSRS_NODE_DATA_DIR",
        value_name = "DIR"
    )]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the data dir: a new identity and a default config file.
    Init,
    /// Show the node's identity, configuration and what it has done.
    Status(StatusArgs),
    /// Build one crate version locally and write its archive and bundle.
    Build(Box<crate::build_cmd::BuildArgs>),
    /// Join a coordinator's network and build what it hands out, until SIGINT/SIGTERM.
    Run(RunArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The coordinator's libp2p address, ending in /p2p/<peer id> (it prints it at start).
    #[arg(long, env = "BUILDSRS_COORDINATOR", value_name = "MULTIADDR")]
    coordinator: String,
    /// The name shown in the coordinator's builder list [default: the host name].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Where the blob server (iroh-blobs) binds; the coordinator fetches artifacts from it.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    blobs_bind: std::net::SocketAddr,
    /// Seconds running jobs may take to finish after SIGINT/SIGTERM.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    shutdown_grace: u64,
    /// Build without the sandbox: the crate's build scripts run with your rights. Only for
    /// trying the network on a machine without bubblewrap.
    #[arg(long)]
    insecure_no_sandbox: bool,
    /// Start even when builds would run without a memory, process or disk limit (no cgroups
    /// and no /proc, or a limit set to 0 in config.toml).
    #[arg(long)]
    allow_unlimited_builds: bool,
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// How many recent jobs to list.
    #[arg(long, default_value_t = 10)]
    jobs: u32,
}

impl Cli {
    fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }
}

/// Runs the command line; returns the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BUILDSRS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match &cli.command {
        Command::Init => init(&cli),
        Command::Status(args) => status(&cli, args),
        Command::Build(args) => return crate::build_cmd::run(&cli.data_dir(), args),
        Command::Run(args) => run(&cli, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: &Cli, args: &RunArgs) -> Result<()> {
    let dir = DataDir::open(&cli.data_dir())?;
    let coordinator = args
        .coordinator
        .parse()
        .map_err(|e| anyhow::anyhow!("--coordinator {:?}: {e}", args.coordinator))?;
    let mut options = crate::run::RunOptions::new(coordinator);
    if let Some(name) = &args.name {
        options.name.clone_from(name);
    }
    options.blobs_bind = args.blobs_bind;
    options.shutdown_grace = std::time::Duration::from_secs(args.shutdown_grace);
    options.insecure_no_sandbox = args.insecure_no_sandbox;
    options.allow_unlimited_builds = args.allow_unlimited_builds;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let shutdown = tokio_util::sync::CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        crate::run::run(dir, options, shutdown).await
    })
}

/// Cancels `token` on the first SIGINT or SIGTERM.
async fn cancel_on_signal(token: tokio_util::sync::CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot listen for signals; stop the node with SIGKILL");
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => tracing::info!("SIGINT: stopping"),
        _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
    }
    token.cancel();
}

fn init(cli: &Cli) -> Result<()> {
    let root = cli.data_dir();
    let (dir, identity) = DataDir::init(&root)?;
    println!("initialised {}", dir.root().display());
    println!("public key:  {}", identity.public_key());
    println!("fingerprint: {}", identity.fingerprint());
    println!("peer id:     {}", identity.peer_id());
    println!("config:      {}", dir.config_path().display());
    Ok(())
}

fn status(cli: &Cli, args: &StatusArgs) -> Result<()> {
    let dir = DataDir::open(&cli.data_dir())?;
    let identity = dir.identity()?;
    let config = dir.config()?;
    let (state, abandoned) = NodeState::open(&dir.state_path())?;
    for job in &abandoned {
        println!(
            "abandoned: job {} ({} {} for {}) was interrupted",
            job.id, job.start.crate_name, job.start.version, job.start.target
        );
    }
    let summary = state.summary()?;
    println!("data dir:    {}", dir.root().display());
    println!("public key:  {}", identity.public_key());
    println!("fingerprint: {}", identity.fingerprint());
    let targets: Vec<&str> = config
        .targets
        .iter()
        .map(buildsrs_domain::TargetTriple::as_str)
        .collect();
    println!("targets:     {}", targets.join(", "));
    println!("registry:    {}", config.registry);
    println!(
        "jobs:        {} finished, {} running, {} abandoned",
        summary.finished, summary.running, summary.abandoned
    );
    println!(
        "artifacts:   {} ({} bytes), {} attestations",
        summary.artifacts, summary.artifact_bytes, summary.attestations
    );
    let recent = state.recent_jobs(args.jobs)?;
    if !recent.is_empty() {
        println!("last jobs:");
    }
    for job in recent {
        let when = jiff::Timestamp::from_second(job.started_at)
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        let took = job
            .finished_at
            .map(|end| format!("{} s", end - job.started_at))
            .unwrap_or_else(|| "-".into());
        println!(
            "  #{:<5} {when} {:>6}  {:<22} {} {} {}: {}",
            job.id,
            took,
            job.outcome.as_deref().unwrap_or(&job.state),
            job.start.crate_name,
            job.start.version,
            job.start.target,
            job.detail.as_deref().unwrap_or("")
        );
    }
    Ok(())
}
