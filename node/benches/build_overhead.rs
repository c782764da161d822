//! Benchmark: what the node adds to a build. `buildsrs-node`'s pipeline (download, checksum,
//! unpack, plan, sandboxed phases, pack, sign, record) against a plain
//! `cargo build --release --locked` of the same unpacked crate, in the same run, with the
//! dependencies fetched beforehand for both and a fresh target dir for every build.
//!
//! Run with `cargo bench -p buildsrs-node --bench build_overhead` (or `scripts/bench`).
//! Prints medians and the ratio node / plain; the goal is at most 1.10.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use buildsrs_fixture_registry::FixtureRegistry;
use buildsrs_node::datadir::DataDir;
use buildsrs_node::outcome::BuildOutcome;
use buildsrs_node::pipeline::{BuildRequest, Pipeline};
use buildsrs_node::state::NodeState;
use buildsrs_sandbox::Sandbox;

const ROUNDS: usize = 5;

#[tokio::main]
async fn main() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    registry.publish("lib-only", "0.1.0")?;
    let published = registry.publish("dep-user", "0.1.0")?;
    let scratch = tempfile::tempdir()?;

    // The node.
    let (dir, _) = DataDir::init(&scratch.path().join("node"))?;
    let (sandbox, _) = Sandbox::detect(dir.protected_paths()).await?;
    let (state, _) = NodeState::open(&dir.state_path())?;
    let pipeline = Pipeline::new(dir, sandbox, Arc::new(state)).await?;
    let request = BuildRequest {
        crate_name: published.name.clone(),
        version: published.version.clone(),
        target: "x86_64-unknown-linux-gnu".into(),
        source_sha256: published.cksum.parse()?,
        download_url: published.download_url.clone(),
        registry: Some(registry.index_url()),
        lease: None,
    };

    // The baseline: the same crate unpacked, its dependencies fetched, built by plain cargo.
    let plain = scratch.path().join("plain");
    let cargo_home = scratch.path().join("cargo-home");
    std::fs::create_dir_all(&cargo_home)?;
    std::fs::write(
        cargo_home.join("config.toml"),
        format!(
            "[source.crates-io]\nreplace-with = \"fixture\"\n[source.fixture]\nregistry = \"{}\"\n",
            registry.index_url()
        ),
    )?;
    let packed = buildsrs_fixture_registry::pack_dir(
        &buildsrs_fixture_registry::fixtures_dir().join("dep-user"),
        "0.1.0",
    )?;
    buildsrs_archive::unpack_tar_gz(
        packed.bytes.as_slice(),
        &plain,
        "dep-user-0.1.0",
        buildsrs_archive::Limits::CRATE_SOURCE,
    )?;
    let source = plain.join("dep-user-0.1.0");
    cargo(&cargo_home, &source, &["generate-lockfile"], None)?;
    cargo(&cargo_home, &source, &["fetch", "--locked"], None)?;

    // Warm both (the node's own dependency cache fills on its first build).
    ensure_built(pipeline.build(&request, &|_| {}).await?.outcome)?;
    let mut node_times = Vec::new();
    let mut plain_times = Vec::new();
    for round in 0..ROUNDS {
        let start = Instant::now();
        ensure_built(pipeline.build(&request, &|_| {}).await?.outcome)?;
        node_times.push(start.elapsed());

        let target = scratch.path().join(format!("target-{round}"));
        let start = Instant::now();
        cargo(
            &cargo_home,
            &source,
            &["build", "--release", "--locked", "--offline"],
            Some(&target),
        )?;
        plain_times.push(start.elapsed());
    }
    let node = median(&mut node_times);
    let plain = median(&mut plain_times);
    println!("build overhead: dep-user (one registry dependency), median of {ROUNDS} rounds");
    println!(
        "  plain cargo build --release --locked   {:>8.0} ms",
        ms(plain)
    );
    println!(
        "  buildsrs-node pipeline (sandboxed)     {:>8.0} ms",
        ms(node)
    );
    println!(
        "  ratio {:.2}x of plain cargo (goal <= 1.10)",
        node.as_secs_f64() / plain.as_secs_f64()
    );
    Ok(())
}

fn ensure_built(outcome: BuildOutcome) -> Result<()> {
    ensure!(
        matches!(outcome, BuildOutcome::Built { .. }),
        "not built: {outcome}"
    );
    Ok(())
}

fn cargo(cargo_home: &Path, source: &Path, args: &[&str], target: Option<&Path>) -> Result<()> {
    let mut command = Command::new("cargo");
    command
        .args(args)
        .arg("--manifest-path")
        .arg(source.join("Cargo.toml"))
        .env("CARGO_HOME", cargo_home)
        .env_remove("CARGO_TARGET_DIR")
        .env("CARGO_INCREMENTAL", "0");
    if let Some(target) = target {
        command.env("CARGO_TARGET_DIR", target);
    }
    let output = command.output().context("running cargo")?;
    ensure!(
        output.status.success(),
        "cargo {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
