//! Reproducibility on real crates: each crate of a list of real binary crates from crates.io
//! (build scripts, proc macros, C code through `cc`, no lock file, debug info in the release
//! profile, a build script that embeds the build time, …) is built by two fresh nodes with
//! different data dirs, and the two artifacts are compared byte for byte. In the same run
//! the same source is built by plain `cargo build --release` (`--locked` when the crate ships
//! a lock), with a fresh `CARGO_HOME` so that it fetches what it needs as the nodes do: the
//! baseline for the time, and the check that whatever plain cargo builds, the node builds
//! too.
//!
//! Needs crates.io. Run with `cargo bench -p buildsrs-node --bench reproducibility` (or
//! `scripts/bench`); `BUILDSRS_REPRO_CRATES=name@version,…` replaces the list. Prints one
//! line per crate and a summary; it asserts nothing about time.

// The node set-up the tests use.
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use buildsrs_fixture_registry::crates_io;
use buildsrs_node::outcome::{BuildOutcome, Built};
use buildsrs_node::pipeline::{BuildRequest, JobReport};
use support::{TARGET, TestNode};

/// The crates, pinned by version, and the shapes each stands for. Chosen (2026-12) to cover
/// the shapes that break reproducibility or sandboxing; each builds with plain cargo 1.95.
const CRATES: &[(&str, &str, &str)] = &[
    ("rustfilt", "0.2.2", "tiny, lock"),
    ("hexyl", "0.5.1", "tiny, no lock"),
    ("names", "0.14.0", "build script, proc macro, lock"),
    ("xsv", "0.13.0", "no lock, debug = true in release"),
    ("sd", "0.6.5", "no lock, build script, proc macro"),
    ("b3sum", "1.8.7", "C and assembly via cc, lock"),
    ("vivid", "0.10.1", "proc macro, lock"),
    ("hexyl", "0.17.0", "proc macros, lock"),
    ("zoxide", "0.10.0", "build script writes into its package"),
    ("du-dust", "1.2.7", "build script writes into its package"),
    ("fd-find", "10.5.0", "medium, proc macro, lock"),
    ("ripgrep", "15.2.0", "build script, debug = 1 in release"),
    ("tokei", "15.0.0", "build script generates code, medium"),
    (
        "mise",
        "2024.5.24",
        "built 0.7.3 embeds the build time, cc, OpenSSL, large",
    ),
];

#[derive(Debug)]
struct Row {
    name: String,
    version: String,
    shape: String,
    lock: Option<bool>,
    node_a: Result<(String, Duration), String>,
    node_b: Result<(String, Duration), String>,
    plain: Result<Duration, String>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let crates: Vec<(String, String, String)> = match std::env::var("BUILDSRS_REPRO_CRATES") {
        Ok(list) => list
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|spec| {
                let (name, version) = spec
                    .trim()
                    .split_once('@')
                    .with_context(|| format!("{spec:?} is not name@version"))?;
                Ok((name.to_owned(), version.to_owned(), String::new()))
            })
            .collect::<Result<_>>()?,
        Err(_) => CRATES
            .iter()
            .map(|(n, v, s)| ((*n).to_owned(), (*v).to_owned(), (*s).to_owned()))
            .collect(),
    };
    if !crates_io::available("reproducibility bench", "rustfilt")
        .await
        .map_err(anyhow::Error::msg)?
    {
        return Ok(());
    }
    println!(
        "reproducibility on real crates: {} crates, each built by two fresh nodes and by plain \
         cargo (fresh CARGO_HOME) in this run",
        crates.len()
    );
    println!(
        "{:<22} {:>4} {:>9} {:>9} {:>9} {:>6}  {:<9} shape",
        "crate", "lock", "node A s", "node B s", "plain s", "ratio", "result"
    );
    let mut rows = Vec::new();
    for (name, version, shape) in crates {
        let row = measure(&name, &version, &shape).await?;
        print_row(&row);
        rows.push(row);
    }
    summarise(&rows);
    Ok(())
}

async fn measure(name: &str, version: &str, shape: &str) -> Result<Row> {
    let scratch = tempfile::tempdir()?;
    let a = TestNode::new(|_| {}).await?;
    let b = TestNode::new(|_| {}).await?;
    let request = a.crates_io_request(name, version).await?;
    let node_a = node_build(&a, &request).await?;
    let node_b = node_build(&b, &request).await?;
    let (lock, plain) = plain_build(&request, scratch.path()).await?;
    Ok(Row {
        name: name.to_owned(),
        version: version.to_owned(),
        shape: shape.to_owned(),
        lock,
        node_a,
        node_b,
        plain,
    })
}

/// The artifact hash and the time, or the outcome when it did not build.
async fn node_build(
    node: &TestNode,
    request: &BuildRequest,
) -> Result<Result<(String, Duration), String>> {
    let start = Instant::now();
    let report: JobReport = node.pipeline.build(request, &|_| {}).await?;
    let took = start.elapsed();
    Ok(match &report.outcome {
        BuildOutcome::Built(Built { artifact, .. }) => Ok((artifact.blake3.to_hex(), took)),
        other => {
            let tail: Vec<&str> = report.log.lines().rev().take(12).collect();
            eprintln!(
                "  {} {}: {other}\n    {}",
                request.crate_name,
                request.version,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n    ")
            );
            Err(other.to_string())
        }
    })
}

/// Plain cargo on the same `.crate`: whether it ships a lock, and the build time.
async fn plain_build(
    request: &BuildRequest,
    scratch: &Path,
) -> Result<(Option<bool>, Result<Duration, String>)> {
    let bytes = reqwest::get(request.download_url.as_str())
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let top = format!("{}-{}", request.crate_name, request.version);
    buildsrs_archive::unpack_tar_gz(
        bytes.as_ref(),
        &scratch.join("src"),
        &top,
        buildsrs_archive::Limits::CRATE_SOURCE,
    )?;
    let source = scratch.join("src").join(&top);
    let lock = source.join("Cargo.lock").is_file();
    let mut command = Command::new("cargo");
    command.args(["build", "--release", "--target", TARGET]);
    if lock {
        command.arg("--locked");
    }
    command
        .arg("--manifest-path")
        .arg(source.join("Cargo.toml"))
        .env("CARGO_HOME", scratch.join("cargo-home"))
        .env("CARGO_TARGET_DIR", scratch.join("target"))
        .env("CARGO_INCREMENTAL", "0")
        .env_remove("RUSTFLAGS");
    let start = Instant::now();
    let output = command.output().context("running cargo")?;
    let took = start.elapsed();
    let result = if output.status.success() {
        Ok(took)
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let reason = stderr
            .lines()
            .find(|l| l.starts_with("error"))
            .unwrap_or("cargo failed")
            .to_owned();
        Err(reason)
    };
    Ok((Some(lock), result))
}

fn print_row(row: &Row) {
    let secs = |r: &Result<(String, Duration), String>| match r {
        Ok((_, d)) => format!("{:.1}", d.as_secs_f64()),
        Err(_) => "-".into(),
    };
    let plain = match &row.plain {
        Ok(d) => format!("{:.1}", d.as_secs_f64()),
        Err(_) => "fails".into(),
    };
    let ratio = match (&row.node_a, &row.plain) {
        (Ok((_, node)), Ok(plain)) => format!("{:.2}", node.as_secs_f64() / plain.as_secs_f64()),
        _ => "-".into(),
    };
    println!(
        "{:<22} {:>4} {:>9} {:>9} {:>9} {:>6}  {:<9} {}",
        format!("{} {}", row.name, row.version),
        match row.lock {
            Some(true) => "yes",
            Some(false) => "no",
            None => "?",
        },
        secs(&row.node_a),
        secs(&row.node_b),
        plain,
        ratio,
        verdict(row),
        row.shape
    );
}

fn verdict(row: &Row) -> &'static str {
    match (&row.node_a, &row.node_b) {
        (Ok((a, _)), Ok((b, _))) if a == b => "identical",
        (Ok(_), Ok(_)) => "DIFFERS",
        _ if row.plain.is_err() => "no build",
        _ => "NODE FAIL",
    }
}

fn summarise(rows: &[Row]) {
    let count = |v: &str| rows.iter().filter(|r| verdict(r) == v).count();
    let plain_builds = rows.iter().filter(|r| r.plain.is_ok()).count();
    let mut ratios: Vec<f64> = rows
        .iter()
        .filter_map(|r| match (&r.node_a, &r.plain) {
            (Ok((_, node)), Ok(plain)) => Some(node.as_secs_f64() / plain.as_secs_f64()),
            _ => None,
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    let median = ratios.get(ratios.len() / 2).copied().unwrap_or(f64::NAN);
    println!(
        "summary: {} of {} crates byte-identical on two nodes; {} differ; plain cargo built {}, \
         the node failed {} of those; node/plain time median {median:.2}x (range {:.2}-{:.2})",
        count("identical"),
        rows.len(),
        count("DIFFERS"),
        plain_builds,
        count("NODE FAIL"),
        ratios.first().copied().unwrap_or(f64::NAN),
        ratios.last().copied().unwrap_or(f64::NAN),
    );
}
