//! Real builds of fixture crates, each asserting the exact outcome: what builds, what does
//! not, what the sandbox denies, and that two nodes produce the same bytes.

#![allow(clippy::unwrap_used)] // Tests fail loudly on broken fixtures.

mod support;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;

use anyhow::Result;
use buildsrs_archive::{Limits, unpack_tar_gz};
use buildsrs_fixture_registry::FixtureRegistry;
use buildsrs_keys::{ArtifactId, Bundle, Expectations, Keyring, Policy, verify_bundle};
use buildsrs_node::outcome::{self, BuildOutcome, Built, Ended, OutcomeKind};
use support::{TARGET, TestNode, fixture_copy};

fn built(report: &buildsrs_node::pipeline::JobReport) -> (ArtifactId, Vec<String>) {
    match &report.outcome {
        BuildOutcome::Built(Built {
            artifact, binaries, ..
        }) => (*artifact, binaries.clone()),
        other => panic!("expected a build, got {other}\n{}", report.log),
    }
}

#[tokio::test]
async fn one_binary_builds_runs_and_its_attestation_verifies() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    let published = registry.publish("hello-bin", "0.1.0")?;
    let node = TestNode::new(|_| {}).await?;
    let report = node.build(&registry, &published).await?;
    let (artifact, binaries) = built(&report);
    assert_eq!(binaries, ["hello-bin"]);

    let archive = report.archive().unwrap().to_path_buf();
    assert_eq!(ArtifactId::of_file(&archive)?, artifact);
    let out = tempfile::tempdir()?;
    let top = format!("hello-bin-0.1.0-{TARGET}");
    let unpacked = unpack_tar_gz(
        std::fs::File::open(&archive)?,
        out.path(),
        &top,
        Limits::CRATE_SOURCE,
    )?;
    let run = std::process::Command::new(unpacked.root.join("bin/hello-bin")).output()?;
    assert!(run.status.success());
    assert!(!run.stdout.is_empty());

    let attestation = report.attestation().unwrap().clone();
    let statement = &attestation.statement;
    assert_eq!(statement.source_sha256.unwrap().to_hex(), published.cksum);
    assert!(statement.cargo_lock_sha256.is_some() && statement.settings_digest.is_some());
    assert_eq!(&statement.toolchain, node.pipeline.toolchain());
    let mut bundle = Bundle::new(artifact);
    bundle.push(&attestation)?;
    let mut keyring = Keyring::default();
    keyring.push(node.pipeline.identity().public_key(), "node")?;
    let policy = Policy {
        threshold: 1,
        expect: Expectations {
            crate_name: Some("hello-bin".parse().unwrap()),
            ..Default::default()
        },
    };
    assert!(verify_bundle(artifact, &bundle, &keyring, &policy).verified);

    let held = node.state.artifact(&artifact.blake3)?.unwrap();
    assert_eq!(held.path, archive);
    assert_eq!(node.state.attestations_for(&artifact.blake3)?.len(), 1);
    assert_eq!(
        std::fs::read_dir(node.dir.work_dir())?.count(),
        0,
        "scratch space is removed"
    );
    Ok(())
}

#[tokio::test]
async fn several_binaries_and_no_binaries() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    let node = TestNode::new(|_| {}).await?;
    let report = node
        .build(&registry, &registry.publish("multi-bin", "1.0.0")?)
        .await?;
    assert_eq!(built(&report).1, ["alpha", "beta"]);
    let report = node
        .build(&registry, &registry.publish("lib-only", "0.1.0")?)
        .await?;
    assert!(
        report.outcome.kind() == OutcomeKind::NoBinaries,
        "{}",
        report.outcome
    );
    assert!(report.attestation().is_none() && report.archive().is_none());
    Ok(())
}

#[tokio::test]
async fn metadata_chooses_features_and_binaries_and_warns_about_unknown_keys() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    let node = TestNode::new(|_| {}).await?;
    let report = node
        .build(&registry, &registry.publish("features-bin", "0.1.0")?)
        .await?;
    let (_, binaries) = built(&report);
    assert_eq!(binaries, ["features-bin"]);
    assert!(
        report.log.contains("unknown key `colour`"),
        "{}",
        report.log
    );
    let features = &report.attestation().unwrap().clone().statement.features;
    assert!(
        features.contains(&"shout".to_owned()) && features.contains(&"greet".to_owned()),
        "{features:?}"
    );
    assert!(!features.contains(&"extra-tool".to_owned()));

    let report = node
        .build(&registry, &registry.publish("bad-metadata", "0.1.0")?)
        .await?;
    match &report.outcome {
        BuildOutcome::Ended(ended @ Ended { reason, .. })
            if ended.kind() == OutcomeKind::BuildFailed =>
        {
            assert!(reason.contains("does-not-exist"), "{reason}");
        }
        other => panic!("{other}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_dependency_on_another_crate_comes_from_the_registry() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    registry.publish("lib-only", "0.1.0")?;
    let node = TestNode::new(|_| {}).await?;
    let report = node
        .build(&registry, &registry.publish("dep-user", "0.1.0")?)
        .await?;
    assert_eq!(built(&report).1, ["dep-user"]);
    assert!(report.log.contains("lib-only"), "{}", report.log);
    Ok(())
}

#[tokio::test]
async fn a_shipped_lock_is_kept_and_once_its_dependencies_are_cached_nothing_is_fetched()
-> Result<()> {
    let registry = FixtureRegistry::start().await?;
    registry.publish("lib-only", "0.1.0")?;
    let published = registry.publish_locked("dep-user", "0.1.0").await?;
    let node = TestNode::new(|_| {}).await?;

    let first = node.build(&registry, &published).await?;
    let (artifact, _) = built(&first);
    assert!(
        first.log.contains("== phase 1: cargo fetch --locked"),
        "{}",
        first.log
    );
    assert!(first.log.contains("== steps: download"), "{}", first.log);

    let second = node.build(&registry, &published).await?;
    assert!(second.log.contains("== phase 1: skipped"), "{}", second.log);
    assert_eq!(
        built(&second).0,
        artifact,
        "the same bytes without the fetch"
    );

    // A cache that looks complete but is not: without cargo's index cache the offline
    // build cannot resolve, so the node fetches after all and builds again.
    let mut removed = 0;
    for home in std::fs::read_dir(node.dir.cargo_home())? {
        let Ok(indexes) = std::fs::read_dir(home?.path().join("registry/index")) else {
            continue;
        };
        for index in indexes {
            let cache = index?.path().join(".cache");
            if cache.is_dir() {
                std::fs::remove_dir_all(&cache)?;
                removed += 1;
            }
        }
    }
    assert!(removed > 0, "the node's index cache was found");
    let third = node.build(&registry, &published).await?;
    assert!(
        third.log.contains("needed something not cached"),
        "{}",
        third.log
    );
    assert_eq!(built(&third).0, artifact);
    Ok(())
}

#[tokio::test]
async fn a_compile_error_is_a_failed_build_and_its_log_ends_with_the_step_timings() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    let node = TestNode::new(|_| {}).await?;
    let report = node
        .build(&registry, &registry.publish("compile-error", "0.1.0")?)
        .await?;
    match &report.outcome {
        BuildOutcome::Ended(ended @ Ended { reason, .. })
            if ended.kind() == OutcomeKind::BuildFailed =>
        {
            assert!(
                reason.starts_with("cargo build failed (exit code 101): error[E0308]"),
                "the reason names the first error: {reason}"
            );
        }
        other => panic!("{other}\n{}", report.log),
    }
    assert!(report.log.contains("error[E0308]"), "{}", report.log);
    let tail: Vec<&str> = report.log.lines().rev().take(2).collect();
    assert!(tail[0].starts_with("== outcome: build failed"), "{tail:?}");
    assert!(
        tail[1].starts_with("== steps: download ")
            && tail[1].contains(", phase 2 ")
            && tail[1].contains(", total "),
        "{tail:?}"
    );
    Ok(())
}

/// A crate cannot make its own failure look like the node's (which never counts and would
/// use up the task's retries), nor make the node fetch and build it twice, by printing what
/// a full disk or a missing download prints.
#[tokio::test]
async fn a_build_that_prints_node_trouble_is_still_the_crates_failure() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    // With a shipped lock and nothing to download, phase 1 is skipped: the retry path is armed.
    let published = registry.publish_locked("lying-build", "0.1.0").await?;
    let node = TestNode::new(|_| {}).await?;
    let report = node.build(&registry, &published).await?;
    match &report.outcome {
        BuildOutcome::Ended(ended @ Ended { reason, .. })
            if ended.kind() == OutcomeKind::BuildFailed =>
        {
            assert!(reason.contains("exit code 101"), "{reason}");
        }
        other => panic!("{other}\n{}", report.log),
    }
    assert!(report.log.contains("== phase 1: skipped"), "{}", report.log);
    assert!(
        !report.log.contains("needed something not cached"),
        "the crate's words made the node build it again:\n{}",
        report.log
    );
    Ok(())
}

/// The attack: while binary `b` compiles, its proc macro swaps the finished binary `a` for a
/// link to the node's secret key (or for a FIFO). The node must not follow it: the build is
/// the crate's failure, nothing is packed or signed, and the key is in no archive.
#[tokio::test]
async fn a_binary_swapped_for_a_link_to_the_node_key_is_never_read() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    registry.publish("fx-link-swapper", "0.1.0")?;
    let node = TestNode::new(|_| {}).await?;
    let key = std::fs::read(node.dir.key_path())?;
    let scratch = tempfile::tempdir()?;
    for (mode, version, kind) in [
        ("key", "0.1.0", "is a symbolic link"),
        ("fifo", "0.2.0", "is a FIFO"),
    ] {
        let crate_dir = fixture_copy("link-swap", &scratch.path().join(mode))?;
        std::fs::write(crate_dir.join("swap-mode.txt"), mode)?;
        let published = registry.publish_dir(&crate_dir, version)?;
        // A FIFO opened for reading would wait forever for a writer: bound the test.
        let report = tokio::time::timeout(
            std::time::Duration::from_secs(600),
            node.build(&registry, &published),
        )
        .await??;
        assert!(
            report.log.contains(&format!("swapper: {mode}: Ok(())")),
            "the attack did not run:\n{}",
            report.log
        );
        match &report.outcome {
            BuildOutcome::Ended(ended @ Ended { reason, .. })
                if ended.kind() == OutcomeKind::BuildFailed =>
            {
                assert!(
                    reason.contains("x86_64-unknown-linux-gnu/release/a")
                        && reason.contains(kind)
                        && reason.contains("not a file the build wrote"),
                    "{reason}"
                );
            }
            other => panic!("{mode}: {other}\n{}", report.log),
        }
        assert!(report.archive().is_none() && report.attestation().is_none());
    }
    for held in std::fs::read_dir(node.dir.artifacts_dir())? {
        let bytes = std::fs::read(held?.path())?;
        assert!(
            !bytes.windows(key.len()).any(|w| w == key.as_slice()),
            "the node's key is in an artifact"
        );
    }
    assert!(node.state.artifacts()?.is_empty());
    Ok(())
}

/// A `.crate` cut short in the dependency cache (a job killed while cargo wrote it) is
/// found, removed and fetched again, instead of failing every later build that needs it.
#[tokio::test]
async fn a_damaged_download_in_the_cache_is_fetched_again() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    registry.publish("lib-only", "0.1.0")?;
    let published = registry.publish_locked("dep-user", "0.1.0").await?;
    let node = TestNode::new(|_| {}).await?;
    let first = node.build(&registry, &published).await?;
    let (artifact, _) = built(&first);

    let mut damaged = 0;
    for home in std::fs::read_dir(node.dir.cargo_home())? {
        let Ok(caches) = std::fs::read_dir(home?.path().join("registry/cache")) else {
            continue;
        };
        for cache in caches {
            let file = cache?.path().join("lib-only-0.1.0.crate");
            if file.is_file() {
                let bytes = std::fs::read(&file)?;
                std::fs::write(&file, &bytes[..bytes.len() / 2])?;
                damaged += 1;
            }
        }
    }
    assert_eq!(damaged, 1, "the cached download was found");
    let second = node.build(&registry, &published).await?;
    assert!(
        second
            .log
            .contains("== removed 1 damaged download(s) from the dependency cache"),
        "{}",
        second.log
    );
    assert!(
        second.log.contains("== phase 1: cargo fetch --locked"),
        "{}",
        second.log
    );
    assert_eq!(built(&second).0, artifact);
    Ok(())
}

#[tokio::test]
async fn a_file_over_the_size_limit_is_named_in_the_outcome() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    let node = TestNode::new(|c| c.limits.file_size_mib = 16).await?;
    let report = node
        .build(&registry, &registry.publish("big-file", "0.1.0")?)
        .await?;
    match &report.outcome {
        BuildOutcome::Ended(ended @ Ended { reason, .. })
            if ended.kind() == OutcomeKind::BuildFailed =>
        {
            assert!(
                reason.contains("hit the file size limit (16 MiB per file)"),
                "{reason}\n{}",
                report.log
            );
        }
        other => panic!("{other}\n{}", report.log),
    }
    // Under the limit the same crate builds.
    let roomy = TestNode::new(|c| c.limits.file_size_mib = 128).await?;
    built(
        &roomy
            .build(&registry, &registry.publish("big-file", "0.1.1")?)
            .await?,
    );
    Ok(())
}

/// With cgroups and without (the sandbox's watchdog enforces the limit then).
#[tokio::test]
async fn too_many_processes_are_named_in_the_outcome() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    for (cgroups, version) in [(true, "0.1.0"), (false, "0.1.1")] {
        let node = TestNode::new(|c| {
            c.limits.processes = 64;
            c.limits.cgroups = cgroups;
        })
        .await?;
        let report = node
            .build(&registry, &registry.publish("fork-storm", version)?)
            .await?;
        match &report.outcome {
            BuildOutcome::Ended(ended @ Ended { reason, .. })
                if ended.kind() == OutcomeKind::BuildFailed =>
            {
                assert!(
                    reason.contains("hit the process limit (64 processes and threads)"),
                    "cgroups {cgroups}: {reason}\n{}",
                    report.log
                );
            }
            other => panic!("cgroups {cgroups}: {other}\n{}", report.log),
        }
    }
    Ok(())
}

/// Many files, each under the per-file limit, together over the disk limit: the probe that
/// wrote 2.4 GB in six files and was reported built.
#[tokio::test]
async fn writing_more_than_the_disk_limit_is_named_in_the_outcome() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    let node = TestNode::new(|c| {
        c.limits.disk_mib = 48;
        c.limits.file_size_mib = 32;
    })
    .await?;
    let report = node
        .build(&registry, &registry.publish("disk-filler", "0.1.0")?)
        .await?;
    assert_eq!(report.outcome, outcome::disk_limit(48), "{}", report.log);
    assert!(
        report
            .log
            .ends_with("== outcome: disk limit: more than 48 MiB written\n"),
        "{}",
        report.log
    );
    // The job's directories are gone afterwards: nothing it wrote stays on the node.
    let leftovers = node.dir.work_dir();
    let left: Vec<_> = std::fs::read_dir(&leftovers)?.flatten().collect();
    assert!(left.is_empty(), "{left:?}");
    // Under a roomier limit the same crate builds.
    let roomy = TestNode::new(|c| c.limits.disk_mib = 1024).await?;
    built(
        &roomy
            .build(&registry, &registry.publish("disk-filler", "0.1.1")?)
            .await?,
    );
    Ok(())
}

/// A node killed mid-job leaves its job dir (with whatever the build made unwritable); the
/// next start removes it. While one process builds with a data dir, no other may.
#[tokio::test]
async fn a_restarted_node_removes_what_an_interrupted_job_left() -> Result<()> {
    let node = TestNode::new(|_| {}).await?;
    let refused = node.dir.lock().expect_err("the data dir is taken");
    assert!(
        refused
            .to_string()
            .contains("another buildsrs-node process"),
        "{refused}"
    );
    let job = node.dir.work_dir().join("job-41");
    std::fs::create_dir_all(job.join("target/release/locked"))?;
    std::fs::write(job.join("target/release/locked/half-written"), b"...")?;
    std::fs::set_permissions(
        job.join("target/release/locked"),
        std::fs::Permissions::from_mode(0o500),
    )?;
    let node = node.restart().await?;
    assert!(!job.exists(), "the interrupted job's dir is still there");
    assert!(node.dir.work_dir().is_dir());
    Ok(())
}

/// A long-running node does not keep everything: an artifact past the retention rule loses
/// its archive, its record and its blob; its attestation stays. A fresh one stays whole.
#[tokio::test]
async fn retention_prunes_old_artifacts_and_keeps_fresh_ones() -> Result<()> {
    use buildsrs_node::retention::{RetentionConfig, prune};
    let registry = FixtureRegistry::start().await?;
    let node = TestNode::new(|_| {}).await?;
    let report = node
        .build(&registry, &registry.publish("hello-bin", "0.1.0")?)
        .await?;
    let (artifact, _) = built(&report);
    let archive = report.archive().expect("an archive").to_path_buf();
    let blob_dir = tempfile::tempdir()?;
    let blobs = buildsrs_blobs::BlobNode::spawn(buildsrs_blobs::BlobConfig {
        secret_key: node.dir.identity()?.iroh_secret_key(),
        store_dir: Some(blob_dir.path().to_owned()),
        bind: "127.0.0.1:0".parse()?,
        gc_interval: Some(std::time::Duration::from_millis(100)),
    })
    .await?;
    assert_eq!(blobs.add_file(&archive).await?, artifact);
    let now = jiff::Timestamp::now().as_second();
    let artifacts_dir = node.dir.artifacts_dir();

    let kept = prune(
        &node.state,
        &artifacts_dir,
        Some(&blobs),
        &RetentionConfig::default(),
        now,
    )
    .await?;
    assert_eq!(kept.artifacts, 0);
    assert!(archive.exists() && blobs.has(&artifact.blake3).await?);

    let pruned = prune(
        &node.state,
        &artifacts_dir,
        Some(&blobs),
        &RetentionConfig::default(),
        now + 15 * 86_400,
    )
    .await?;
    assert_eq!(pruned.artifacts, 1);
    assert_eq!(pruned.bytes, artifact.size);
    assert!(!archive.exists(), "the archive is still there");
    assert!(node.state.artifact(&artifact.blake3)?.is_none());
    assert_eq!(node.state.attestations_for(&artifact.blake3)?.len(), 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while blobs.has(&artifact.blake3).await? {
        assert!(
            std::time::Instant::now() < deadline,
            "the blob is still kept"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    blobs.shutdown().await?;
    Ok(())
}

/// Plain cargo lets build scripts write into their package directory (completions, man
/// pages, generated code), the crate's own and its registry dependencies'. Each build gets a
/// writable copy of both; the node's shared dependency cache stays as phase 1 left it.
#[tokio::test]
async fn build_scripts_may_write_into_their_own_package_and_the_cache_stays_untouched() -> Result<()>
{
    let registry = FixtureRegistry::start().await?;
    registry.publish("fx-dir-writer", "0.1.0")?;
    let node = TestNode::new(|_| {}).await?;
    for (crate_name, prints) in [
        ("writes-own-dir", "generated next to the sources"),
        ("dep-writer-user", "squares: [0, 1, 4, 9, 16, 25, 36, 49]"),
    ] {
        let report = node
            .build(&registry, &registry.publish(crate_name, "0.1.0")?)
            .await?;
        let (_, binaries) = built(&report);
        let said = support::run_built(&report, crate_name, "0.1.0", &binaries[0], &[], "");
        assert_eq!(said.trim(), prints);
    }
    let mut generated = Vec::new();
    let mut pending = vec![node.dir.cargo_home()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "generated" || name == "table.rs" || name == "completions" {
                generated.push(entry.path());
            }
            if entry.file_type()?.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    assert!(
        generated.is_empty(),
        "build scripts wrote into the shared cache: {generated:?}"
    );
    Ok(())
}

/// A build script, `date` and a proc macro all read the time while building; with the
/// clock frozen at `SOURCE_DATE_EPOCH` they embed that exact instant, and two nodes agree.
#[tokio::test]
async fn what_builds_read_as_the_time_is_source_date_epoch_so_two_nodes_agree() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    registry.publish("fx-now", "0.1.0")?;
    let published = registry.publish("build-time", "0.1.0")?;
    let first = TestNode::new(|_| {}).await?;
    let second = TestNode::new(|_| {}).await?;
    let a = first.build(&registry, &published).await?;
    // Far enough apart that a real clock would differ in whole seconds.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let b = second.build(&registry, &published).await?;
    assert_eq!(built(&a).0, built(&b).0, "the two nodes disagree");

    let said = support::run_built(&a, "build-time", "0.1.0", "build-time", &[], "");
    let epoch = buildsrs_node::pipeline::SOURCE_DATE_EPOCH;
    assert_eq!(
        said,
        format!(
            "build script: {epoch}.000000000\ndate: {epoch}.000000000\nproc macro: {epoch}.000000000\n"
        )
    );
    Ok(())
}

#[tokio::test]
async fn a_crate_needing_a_newer_rust_is_not_built_and_not_failed() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    let scratch = tempfile::tempdir()?;
    let crate_dir = fixture_copy("hello-bin", scratch.path())?;
    let manifest = crate_dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)?.replace(
        "edition = \"2021\"",
        "edition = \"2021\"\nrust-version = \"1.999\"",
    );
    std::fs::write(&manifest, text)?;
    let node = TestNode::new(|_| {}).await?;
    let report = node
        .build(&registry, &registry.publish_dir(&crate_dir, "0.1.0")?)
        .await?;
    assert_eq!(
        report.outcome,
        outcome::needs_newer_toolchain("1.999.0", &node.pipeline.toolchain().release),
        "{}",
        report.log
    );
    // Not the crate's failure: the builder's Rust is too old, and that never counts.
    assert!(report.outcome.is_builder_fault());
    assert!(!report.log.contains("== phase 1"), "nothing was fetched");
    Ok(())
}

#[tokio::test]
async fn build_scripts_get_no_network() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let scratch = tempfile::tempdir()?;
    let probe = fixture_copy("net-probe", scratch.path())?;
    std::fs::write(
        probe.join("probe-port.txt"),
        listener.local_addr()?.port().to_string(),
    )?;
    let node = TestNode::new(|_| {}).await?;
    let report = node
        .build(&registry, &registry.publish_dir(&probe, "0.1.0")?)
        .await?;
    built(&report);
    assert!(
        report.log.contains("buildsrs-probe network"),
        "{}",
        report.log
    );
    assert!(report.log.contains("denied"), "{}", report.log);
    assert!(!report.log.contains("ALLOWED"), "{}", report.log);
    assert!(
        listener.accept().is_err(),
        "the build script reached a host port"
    );
    Ok(())
}

#[tokio::test]
async fn build_scripts_cannot_write_outside_or_read_the_node_key() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    let node = TestNode::new(|_| {}).await?;
    let scratch = tempfile::tempdir()?;
    let probe = fixture_copy("escape-probe", scratch.path())?;
    std::fs::write(
        probe.join("probe-key-path.txt"),
        node.dir.key_path().to_str().unwrap(),
    )?;
    let report = node
        .build(&registry, &registry.publish_dir(&probe, "0.1.0")?)
        .await?;
    built(&report);
    assert!(
        report.log.contains("buildsrs-probe escape"),
        "{}",
        report.log
    );
    assert!(
        report.log.contains("escape: OUT_DIR: allowed-as-expected"),
        "{}",
        report.log
    );
    assert!(
        report
            .log
            .contains("escape: own source dir: allowed-as-expected"),
        "{}",
        report.log
    );
    assert!(
        report
            .log
            .contains("escape: write /buildsrs/cargo-home: denied"),
        "{}",
        report.log
    );
    assert!(!report.log.contains("ALLOWED"), "{}", report.log);
    Ok(())
}

#[tokio::test]
async fn an_endless_build_times_out() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    let node = TestNode::new(|c| c.limits.wall_clock_secs = 15).await?;
    let report = node
        .build(&registry, &registry.publish("endless-build", "0.1.0")?)
        .await?;
    assert_eq!(report.outcome, outcome::timed_out(15), "{}", report.log);
    Ok(())
}

/// With cgroups and without (the sandbox's watchdog enforces the limit then).
#[tokio::test]
async fn a_memory_hog_runs_out_of_memory() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    for (cgroups, version) in [(true, "0.1.0"), (false, "0.1.1")] {
        a_memory_hog_runs_out_of_memory_with(&registry, cgroups, version).await?;
    }
    Ok(())
}

async fn a_memory_hog_runs_out_of_memory_with(
    registry: &FixtureRegistry,
    cgroups: bool,
    version: &str,
) -> Result<()> {
    let node = TestNode::new(|c| {
        c.limits.memory_mib = 768;
        c.limits.wall_clock_secs = 120;
        c.limits.cgroups = cgroups;
    })
    .await?;
    let report = node
        .build(registry, &registry.publish("memory-hog", version)?)
        .await?;
    assert_eq!(
        report.outcome,
        outcome::out_of_memory(Some(768)),
        "{}",
        report.log
    );
    assert!(
        report
            .log
            .ends_with("== outcome: out of memory: limit 768 MiB for the whole build\n"),
        "{}",
        report.log
    );
    Ok(())
}

#[tokio::test]
async fn a_wrong_checksum_builds_nothing() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    let packed = buildsrs_fixture_registry::pack_dir(
        &buildsrs_fixture_registry::fixtures_dir().join("hello-bin"),
        "0.2.0",
    )?;
    let bytes = packed.bytes;
    let lying = registry.publish_raw("hello-bin", "0.2.0", &bytes, Some("0".repeat(64)))?;
    let node = TestNode::new(|_| {}).await?;
    let report = node.build(&registry, &lying).await?;
    assert!(
        report.outcome.kind() == OutcomeKind::SourceChecksumMismatch,
        "{}",
        report.outcome
    );
    assert!(
        !report.log.contains("phase 1"),
        "nothing may run after a checksum mismatch"
    );
    assert_eq!(std::fs::read_dir(node.dir.artifacts_dir())?.count(), 0);
    Ok(())
}

/// A `.crate` whose single entry has the given raw path (and optional link target).
fn hostile_crate(path: &str, link: Option<&str>, data: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut header = tar::Header::new_gnu();
    header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    match link {
        Some(target) => {
            header.set_entry_type(tar::EntryType::Symlink);
            header.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
        }
        None => header.set_entry_type(tar::EntryType::Regular),
    }
    header.set_cksum();
    builder.append(&header, data).unwrap();
    builder.into_inner().unwrap().finish().unwrap()
}

#[tokio::test]
async fn malicious_archives_are_refused() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    let node = TestNode::new(|c| c.limits.crate_mib = 1).await?;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "0.0.1",
            hostile_crate("evil-0.0.1/../../escape", None, b"x"),
            "refused source archive",
        ),
        (
            "0.0.2",
            hostile_crate("evil-0.0.2/link", Some("../../../etc/passwd"), b""),
            "refused source archive",
        ),
        (
            "0.0.3",
            hostile_crate("/etc/evil", None, b"x"),
            "refused source archive",
        ),
        ("0.0.4", vec![0u8; 2 << 20], "larger than"),
    ];
    for (version, bytes, expected) in cases {
        let published = registry.publish_raw("evil", version, &bytes, None)?;
        let report = node.build(&registry, &published).await?;
        match &report.outcome {
            BuildOutcome::Ended(ended @ Ended { reason, .. })
                if ended.kind() == OutcomeKind::BuildFailed =>
            {
                assert!(reason.contains(expected), "{version}: {reason}");
            }
            other => panic!("{version}: {other}\n{}", report.log),
        }
    }
    Ok(())
}

#[tokio::test]
async fn two_nodes_build_identical_archives_and_rebuilds_are_byte_identical() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    let hello = registry.publish("hello-bin", "0.1.0")?;
    let multi = registry.publish("multi-bin", "1.0.0")?;
    let first = TestNode::new(|_| {}).await?;
    let second = TestNode::new(|_| {}).await?;
    for published in [&hello, &multi] {
        let a = first.build(&registry, published).await?;
        let b = second.build(&registry, published).await?;
        assert_eq!(
            built(&a).0,
            built(&b).0,
            "{} differs between nodes",
            published.name
        );
        assert_eq!(
            a.attestation().unwrap().statement.settings_digest,
            b.attestation().unwrap().statement.settings_digest
        );
        let bytes = std::fs::read(a.archive().unwrap())?;
        let again = first.build(&registry, published).await?;
        assert_eq!(std::fs::read(again.archive().unwrap())?, bytes);
    }
    Ok(())
}

#[tokio::test]
async fn an_extra_rustflag_changes_the_settings_digest() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    let hello = registry.publish("hello-bin", "0.1.0")?;
    let plain = TestNode::new(|_| {}).await?;
    let odd = TestNode::new(|c| c.extra_rustflags = vec!["-Cmetadata=odd-builder".into()]).await?;
    let a = plain.build(&registry, &hello).await?;
    let b = odd.build(&registry, &hello).await?;
    let digest =
        |r: &buildsrs_node::pipeline::JobReport| r.attestation().unwrap().statement.settings_digest;
    assert_ne!(digest(&a), digest(&b));
    assert_ne!(built(&a).0, built(&b).0);
    Ok(())
}
