//! `buildsrs-node build NAME VERSION --out DIR`: one local build, exactly as the network would
//! run it, for volunteers checking their setup and crate authors checking their
//! `[package.metadata.buildsrs]`.
//!
//! Writes `DIR/NAME-VERSION-TARGET.tar.gz`, its bundle `….tar.gz.buildsrs.json` (one
//! attestation, by this node) and the build log `….log`. Exit codes: 0 built, 1 the crate did
//! not build (any other crate outcome), 2 a usage error or a node-side problem.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use buildsrs_keys::{Bundle, CrateName, CrateVersion, RegistryUrl, TargetTriple};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::datadir::DataDir;
use crate::job::JobSpec;
use crate::outcome::{BuildOutcome, Built, OutcomeKind};
use crate::pipeline::{Pipeline, Stage};
use crate::state::NodeState;

/// Arguments of `build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The crate's name.
    pub name: CrateName,
    /// The version to build.
    pub version: CrateVersion,
    /// The registry's sparse index URL (`sparse+http(s)://…`) [default: the config's
    /// registry].
    #[arg(long, value_name = "URL", value_parser = buildsrs_keys::cli::parse_registry)]
    pub registry: Option<RegistryUrl>,
    /// The target triple [default: the first target in the config].
    #[arg(long, value_name = "TRIPLE")]
    pub target: Option<TargetTriple>,
    /// Where to write the archive, its bundle and the build log.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Build without any sandbox. The crate's build scripts and proc macros then run with
    /// this user's rights and network access. Only for machines where bubblewrap cannot work.
    #[arg(long)]
    pub insecure_no_sandbox: bool,
}

/// Runs `build`; see the module docs for exit codes.
pub fn run(data_dir: &Path, args: &BuildArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(build(data_dir, args)) {
        Ok(outcome) => {
            if outcome.kind() == OutcomeKind::Built {
                ExitCode::SUCCESS
            } else if outcome.is_builder_fault() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn build(data_dir: &Path, args: &BuildArgs) -> Result<BuildOutcome> {
    let dir = DataDir::open(data_dir)?;
    let config = dir.config()?;
    let registry = args
        .registry
        .clone()
        .unwrap_or_else(|| config.registry.clone());
    let target = match &args.target {
        Some(target) => target.clone(),
        None => config
            .targets
            .first()
            .cloned()
            .context("the config lists no targets")?,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    if args.insecure_no_sandbox {
        eprintln!(
            "WARNING: --insecure-no-sandbox: the crate's build scripts and proc macros run \
             unconfined, with your rights and your network"
        );
    }
    let (sandbox, capabilities) =
        crate::datadir::sandbox_for(&dir, &config, args.insecure_no_sandbox).await?;
    for note in &capabilities.notes {
        eprintln!("note: {note}");
    }
    let limits = crate::limits::report(&config.limits, &capabilities);
    for missing in limits.missing() {
        eprintln!("warning: this build runs without a {missing} limit");
    }
    let lock = dir.lock()?;
    let (state, abandoned) = NodeState::open(&dir.state_path())?;
    for job in abandoned {
        eprintln!(
            "note: job {} ({} {}) was interrupted earlier and is recorded as abandoned",
            job.id, job.start.crate_name, job.start.version
        );
    }
    let pipeline = Pipeline::new(dir, sandbox, Arc::new(state), lock).await?;
    // The node's own read of its registry, the one its job check compares with.
    let found = pipeline
        .index_version(&registry, &args.name, &args.version)
        .await?;
    if found.yanked {
        eprintln!("warning: {} {} is yanked", args.name, args.version);
    }
    let spec = JobSpec {
        crate_name: args.name.clone(),
        version: args.version.clone(),
        target: target.clone(),
        source_sha256: found.cksum,
        download_url: found.download_url.clone(),
    };
    let request = pipeline.accept(spec, &registry, None).await?;

    let bar = ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(120));
    let show = |stage: Stage| match stage {
        Stage::Downloading(received, total) => {
            if let Some(total) = total {
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} downloading {bytes}/{total_bytes} {wide_bar}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar.set_length(total);
            }
            bar.set_position(received);
        }
        Stage::Planning => set_message(&bar, "reading the manifest"),
        Stage::FetchingDependencies => {
            set_message(&bar, "fetching dependencies (phase 1, network)");
        }
        Stage::Compiling => set_message(&bar, "compiling in the sandbox (phase 2, offline)"),
        Stage::Packing => set_message(&bar, "packing and signing"),
    };
    let report = pipeline.build(&request, &show).await?;
    bar.finish_and_clear();

    let stem = format!("{}-{}-{}", args.name, args.version, target);
    let log_path = args.out.join(format!("{stem}.log"));
    std::fs::write(&log_path, &report.log)?;
    println!("outcome: {}", report.outcome);
    if let Some(Built {
        archive,
        attestation,
        ..
    }) = report.outcome.built()
    {
        let out = args.out.join(format!("{stem}.tar.gz"));
        std::fs::copy(archive, &out).with_context(|| format!("writing {}", out.display()))?;
        let bundle_path = Bundle::path_for(&out);
        let mut bundle = Bundle::new(attestation.statement.artifact);
        bundle.push(attestation)?;
        bundle.save(&bundle_path)?;
        println!("blake3:  {}", attestation.statement.artifact.blake3);
        println!("archive: {}", out.display());
        println!("bundle:  {}", bundle_path.display());
    }
    println!("log:     {}", log_path.display());
    Ok(report.outcome)
}

fn set_message(bar: &ProgressBar, message: &'static str) {
    bar.set_style(ProgressStyle::default_spinner());
    bar.set_message(message);
}
