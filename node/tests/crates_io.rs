//! The crates.io group: the builder node builds small real crates, pinned by version, from
//! the real crates.io, the way a fresh volunteer's node does (the default registry, no
//! fixture registry, no source replacement). Fixtures once hid that a fresh node could not
//! build a single real crate; this group keeps the real path tested, in CI. Where the
//! registry does not answer it prints a loud SKIPPED line, and under `CI=true` it fails (see
//! `buildsrs_fixture_registry::crates_io`). No other test touches the internet.

#![allow(clippy::unwrap_used)] // Tests fail loudly.

mod support;

use anyhow::Result;
use buildsrs_fixture_registry::crates_io;
use buildsrs_node::outcome::{BuildOutcome, Built, OutcomeKind};
use buildsrs_node::pipeline::JobReport;
use support::TestNode;

/// Builds and returns the report; the test fails with the log when it did not build.
async fn build(node: &TestNode, name: &str, version: &str) -> Result<JobReport> {
    let report = node
        .pipeline
        .build(&node.crates_io_request(name, version).await?, &|_| {})
        .await?;
    match &report.outcome {
        BuildOutcome::Built(Built { binaries, .. }) => {
            assert_eq!(binaries.len(), 1, "{binaries:?}");
        }
        other => panic!("{name} {version}: {other}\n{}", report.log),
    }
    Ok(report)
}

/// `rustfilt` ships a `Cargo.lock`; a second node with another data dir builds the very same
/// bytes; the shared dependency cache holds downloads only (every build unpacks its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crates_io_a_crate_with_a_lock_builds_and_reproduces_on_a_second_node() -> Result<()> {
    if !crates_io::available("crates_io_a_crate_with_a_lock_builds_…", "rustfilt")
        .await
        .map_err(anyhow::Error::msg)?
    {
        return Ok(());
    }
    let first = TestNode::new(|_| {}).await?;
    let second = TestNode::new(|_| {}).await?;
    let a = build(&first, "rustfilt", "0.2.2").await?;
    assert!(
        a.log.contains("== phase 1: cargo fetch --locked"),
        "the shipped lock is used: {}",
        a.log
    );
    let b = build(&second, "rustfilt", "0.2.2").await?;
    let hash = |r: &JobReport| match &r.outcome {
        BuildOutcome::Built(Built { artifact, .. }) => *artifact,
        _ => unreachable!(),
    };
    assert_eq!(hash(&a), hash(&b), "two nodes disagree on rustfilt 0.2.2");
    let demangled = support::run_built(
        &a,
        "rustfilt",
        "0.2.2",
        "rustfilt",
        &[],
        "_ZN4core3fmt5write17h0123456789abcdefE\n",
    );
    assert_eq!(demangled, "core::fmt::write\n");
    let cache = first.dir.cargo_home().join("crates-io/registry");
    assert!(cache.join("cache").is_dir(), "downloads are cached");
    let unpacked_in_cache = std::fs::read_dir(cache.join("src"))?.count();
    assert_eq!(
        unpacked_in_cache, 0,
        "no build unpacks into the shared cache"
    );
    Ok(())
}

/// `hexyl` 0.5.1 ships no lock: phase 1 resolves one from the registry, then it builds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crates_io_a_crate_without_a_lock_is_resolved_and_built() -> Result<()> {
    if !crates_io::available("crates_io_a_crate_without_a_lock_…", "hexyl")
        .await
        .map_err(anyhow::Error::msg)?
    {
        return Ok(());
    }
    let node = TestNode::new(|_| {}).await?;
    let report = build(&node, "hexyl", "0.5.1").await?;
    assert!(
        report.log.contains("== phase 1: cargo fetch --target"),
        "no --locked without a shipped lock: {}",
        report.log
    );
    // Phase 1 went through the node's registry proxy (CONNECT to crates.io's hosts only).
    let proxied = report
        .log
        .lines()
        .find_map(|l| l.trim().strip_prefix("registry proxy: "))
        .unwrap_or_default();
    assert!(
        proxied.ends_with("allowed") && !proxied.starts_with("0 "),
        "{}",
        report.log
    );
    let dump = support::run_built(
        &report,
        "hexyl",
        "0.5.1",
        "hexyl",
        &["--color", "never"],
        "buildsrs",
    );
    assert!(dump.contains("62 75 69 6c 64 73 72 73"), "{dump}");
    Ok(())
}

/// A real library crate ends as "no binaries" from its manifest alone, before any fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crates_io_a_library_has_no_binaries_and_fetches_nothing() -> Result<()> {
    if !crates_io::available("crates_io_a_library_has_no_binaries_…", "rot13")
        .await
        .map_err(anyhow::Error::msg)?
    {
        return Ok(());
    }
    let node = TestNode::new(|_| {}).await?;
    let report = node
        .pipeline
        .build(&node.crates_io_request("rot13", "0.1.1").await?, &|_| {})
        .await?;
    assert!(
        report.outcome.kind() == OutcomeKind::NoBinaries,
        "{}\n{}",
        report.outcome,
        report.log
    );
    assert!(!report.log.contains("== phase 1"), "{}", report.log);
    Ok(())
}
