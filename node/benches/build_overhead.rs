//! Benchmark: what the node adds to a build. `buildsrs-node`'s pipeline (download, checksum,
//! unpack, plan, sandboxed phases, pack, sign, record) against a plain
//! `cargo build --release --locked` of the same unpacked crate, in the same run, with the
//! dependencies fetched beforehand for both and a fresh target dir for every build.
//!
//! The crate is the `few-deps` fixture (a binary with three dependencies, one with a build
//! script), published twice: with a `Cargo.lock` in the `.crate`, as `cargo package` ships
//! binaries (the case the goal is about), and without one, where the node must resolve and
//! lock on every build. Rounds alternate node and plain builds so that load changes hit both.
//!
//! Run with `cargo bench -p buildsrs-node --bench build_overhead` (or `scripts/bench`);
//! `BUILDSRS_BENCH_ROUNDS` sets the rounds (default 5). Prints medians, the node's step
//! times from its log, and the ratio node / plain; the goal is at most 1.10.

// The node and request set-up the tests use.
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use buildsrs_fixture_registry::{FixtureRegistry, Published};
use buildsrs_node::outcome::OutcomeKind;
use buildsrs_node::pipeline::{BuildRequest, Pipeline};
use support::{TARGET, TestNode};

#[tokio::main]
async fn main() -> Result<()> {
    let rounds: usize = std::env::var("BUILDSRS_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let registry = FixtureRegistry::start().await?;
    for dependency in ["fx-lexer", "fx-stats", "fx-report"] {
        registry.publish(dependency, "0.1.0")?;
    }
    let locked = registry.publish_locked("few-deps", "0.1.0").await?;
    let unlocked = registry.publish("few-deps", "0.2.0")?;
    let scratch = tempfile::tempdir()?;

    let node = TestNode::new(|_| {}).await?;
    let pipeline = &node.pipeline;
    let cargo_home = scratch.path().join("cargo-home");
    std::fs::create_dir_all(&cargo_home)?;
    std::fs::write(
        cargo_home.join("config.toml"),
        format!(
            "[source.crates-io]\nreplace-with = \"fixture\"\n[source.fixture]\nregistry = \"{}\"\n",
            registry.index_url()
        ),
    )?;

    println!(
        "build overhead: few-deps (three registry dependencies, one build script), \
         median of {rounds} rounds"
    );
    for (label, published) in [
        ("with the shipped Cargo.lock", &locked),
        ("no Cargo.lock in the .crate", &unlocked),
    ] {
        let request = node.request(&registry, published).await?;
        let source = plain_source(published, &cargo_home, scratch.path()).await?;
        // Warm both: the node's dependency cache fills on its first build, the plain
        // build's with `cargo fetch`, and the toolchain's files are in the page cache.
        let mut steps = node_build(pipeline, &request).await?.1;
        plain_build(&cargo_home, &source, &scratch.path().join("target-warm"))?;

        let (mut node_times, mut plain_times) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let (took, round_steps) = node_build(pipeline, &request).await?;
            node_times.push(took);
            steps = round_steps;
            let target = scratch
                .path()
                .join(format!("target-{}-{round}", published.version));
            let start = Instant::now();
            plain_build(&cargo_home, &source, &target)?;
            plain_times.push(start.elapsed());
            std::fs::remove_dir_all(&target)?;
        }
        let node = median(&mut node_times);
        let plain = median(&mut plain_times);
        println!("  {label}:");
        println!(
            "    plain cargo build --release --locked {:>8.0} ms",
            ms(plain)
        );
        println!(
            "    buildsrs-node pipeline (sandboxed)   {:>8.0} ms",
            ms(node)
        );
        println!("    node steps (last round): {steps}");
        println!(
            "    ratio {:.2}x of plain cargo (goal <= 1.10)",
            node.as_secs_f64() / plain.as_secs_f64()
        );
    }
    registry.shutdown().await;
    Ok(())
}

/// One node build; its time and the `== steps:` line of its log.
async fn node_build(pipeline: &Pipeline, request: &BuildRequest) -> Result<(Duration, String)> {
    let start = Instant::now();
    let report = pipeline.build(request, &|_| {}).await?;
    let took = start.elapsed();
    ensure!(
        report.outcome.kind() == OutcomeKind::Built,
        "not built: {}\n{}",
        report.outcome,
        report.log
    );
    let steps = report
        .log
        .lines()
        .find_map(|line| line.strip_prefix("== steps: "))
        .unwrap_or("(no steps line)")
        .to_owned();
    Ok((took, steps))
}

/// The published crate unpacked for plain cargo, locked (if it came without a lock) and its
/// dependencies fetched.
async fn plain_source(published: &Published, cargo_home: &Path, scratch: &Path) -> Result<PathBuf> {
    let bytes = reqwest::get(&published.download_url)
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let top = format!("{}-{}", published.name, published.version);
    let dir = scratch.join(format!("plain-{}", published.version));
    buildsrs_archive::unpack_tar_gz(
        bytes.as_ref(),
        &dir,
        &top,
        buildsrs_archive::Limits::CRATE_SOURCE,
    )?;
    let source = dir.join(&top);
    if !source.join("Cargo.lock").exists() {
        cargo(cargo_home, &source, &["generate-lockfile"], None)?;
    }
    cargo(cargo_home, &source, &["fetch", "--locked"], None)?;
    Ok(source)
}

fn plain_build(cargo_home: &Path, source: &Path, target: &Path) -> Result<()> {
    cargo(
        cargo_home,
        source,
        &[
            "build",
            "--release",
            "--locked",
            "--offline",
            "--target",
            TARGET,
        ],
        Some(target),
    )
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
