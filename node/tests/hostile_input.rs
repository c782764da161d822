//! Nothing unbounded on the host: what a registry, a crate's manifest or a job can make the
//! node do on its own machine. A registry that stalls or dribbles ends the job within the
//! download limit as the node's trouble; `cargo metadata` reads the hostile manifest inside
//! the sandbox, so it reads nothing of the host and names no host path; a job whose fields are
//! not what they should be is refused before anything is made from them.

#![allow(clippy::unwrap_used)] // Tests fail loudly.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use buildsrs_fixture_registry::{FixtureRegistry, Published, fixtures_dir, pack};
use buildsrs_node::job::JobFields;
use buildsrs_node::outcome::{self, BuildOutcome, Ended, OutcomeKind};
use buildsrs_test_support::stalling_registry::{
    LISTED_CKSUM, LISTED_VERSION, Sends, StallingRegistry,
};
use support::{TARGET, TestNode};

#[tokio::test]
async fn a_registry_that_stalls_or_dribbles_ends_the_job_as_the_nodes_trouble_in_time() -> Result<()>
{
    const LIMIT_SECS: u64 = 2;
    let node = TestNode::new(|c| c.limits.download_secs = LIMIT_SECS).await?;
    // The stall limit (30 s) is cut to the total here, so both end at the deadline; the fetch
    // module's tests tell a stall from a dribble.
    let says = "not finished after 2 s (the download limit";
    for sends in [
        Sends::Nothing,
        Sends::OneByteEvery(Duration::from_millis(100)),
    ] {
        let registry = StallingRegistry::start(sends)?;
        let index = buildsrs_keys::RegistryUrl::from_index_url(&registry.index_url())?;
        let url = registry.download_url("hello-bin", "0.1.0");
        let fields = JobFields {
            crate_name: "hello-bin",
            version: LISTED_VERSION,
            target: TARGET,
            source_sha256: LISTED_CKSUM,
            download_url: &url,
        };
        let request = node.pipeline.accept_fields(&fields, &index, None).await?;
        let started = Instant::now();
        let report = node.pipeline.build(&request, &|_| {}).await?;
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(LIMIT_SECS + 3),
            "the job took {took:?}"
        );
        match &report.outcome {
            BuildOutcome::Ended(ended @ Ended { reason, .. })
                if ended.kind() == OutcomeKind::NodeError =>
            {
                assert!(
                    reason.contains("downloading the crate") && reason.contains(says),
                    "{reason}"
                );
                assert!(reason.contains(&url), "the reason names the URL: {reason}");
            }
            other => panic!("a stalling registry is not the crate's fault: {other}"),
        }
        assert!(report.log.contains(says), "{}", report.log);
        assert!(
            report
                .log
                .lines()
                .last()
                .unwrap()
                .starts_with("== outcome: node error"),
            "{}",
            report.log
        );
        let job = &node.state.recent_jobs(1)?[0];
        assert_eq!(job.id, report.job_id);
        assert_eq!(std::fs::read_dir(node.dir.work_dir())?.count(), 0);
    }

    // The slot is free: the same node builds the next job.
    let registry = FixtureRegistry::start().await?;
    let report = node
        .build(&registry, &registry.publish("hello-bin", "0.1.0")?)
        .await?;
    assert!(
        report.outcome.kind() == OutcomeKind::Built,
        "{}",
        report.outcome
    );
    Ok(())
}

/// hello-bin's source with `manifest` as its `Cargo.toml`, published as `hostile` `version`.
fn publish_manifest(registry: &FixtureRegistry, version: &str, manifest: &str) -> Published {
    let main = std::fs::read(fixtures_dir().join("hello-bin/src/main.rs")).unwrap();
    let files = vec![
        ("Cargo.toml".to_owned(), manifest.as_bytes().to_vec(), 0o644),
        ("src/main.rs".to_owned(), main, 0o644),
    ];
    let bytes = pack::build_archive(&format!("hostile-{version}"), &files).unwrap();
    registry
        .publish_raw("hostile", version, &bytes, None)
        .unwrap()
}

fn manifest(version: &str, extra_package: &str, dependencies: &str) -> String {
    format!(
        "[package]\nname = \"hostile\"\nversion = \"{version}\"\nedition = \"2021\"\n\
         {extra_package}\n[[bin]]\nname = \"hostile\"\npath = \"src/main.rs\"\n\n\
         [dependencies]\n{dependencies}\n"
    )
}

/// The old way ran `cargo metadata` on the host: `package.workspace` made cargo read any
/// `Cargo.toml` the crate named (and quote it), and its errors put the node's data dir into
/// the published log. In the sandbox there is nothing of the host to read.
#[tokio::test]
async fn cargo_metadata_reads_nothing_of_the_host_and_names_no_host_path() -> Result<()> {
    const BAIT: &str = "BAIT-MARKER this is no manifest";
    let registry = FixtureRegistry::start().await?;
    let node = TestNode::new(|_| {}).await?;
    let outside = tempfile::tempdir()?;
    let bait = outside.path().join("bait");
    std::fs::create_dir(&bait)?;
    std::fs::write(bait.join("Cargo.toml"), BAIT)?;
    // work/job-N/src/hostile-V, four levels up, is the data dir.
    std::fs::write(node.dir.root().join("Cargo.toml"), BAIT)?;
    let bait = bait.display().to_string();
    let cases = [
        (
            "0.1.0",
            manifest("0.1.0", &format!("workspace = \"{bait}\""), ""),
        ),
        (
            "0.2.0",
            manifest("0.2.0", "workspace = \"../../../..\"", ""),
        ),
        (
            "0.3.0",
            manifest("0.3.0", "", &format!("bait = {{ path = \"{bait}\" }}")),
        ),
        ("0.4.0", manifest("0.4.0", "", "etc = { path = \"/etc\" }")),
    ];
    let data_dir = node.dir.root().display().to_string();
    for (version, manifest) in cases {
        let published = publish_manifest(&registry, version, &manifest);
        let report = node.build(&registry, &published).await?;
        assert!(
            report.outcome.kind() == OutcomeKind::BuildFailed,
            "{version}: the crate's manifest, the crate's failure: {}\n{}",
            report.outcome,
            report.log
        );
        assert!(
            !report.log.contains(&data_dir),
            "{version}: the log names the data dir {data_dir}:\n{}",
            report.log
        );
        assert!(
            !report.log.contains("BAIT-MARKER"),
            "{version}: a host file was read:\n{}",
            report.log
        );
        if version < "0.3.0" {
            assert!(
                report
                    .log
                    .contains("== plan: cargo metadata --no-deps (offline, sandboxed)")
                    && report.outcome.to_string().contains("cargo metadata failed"),
                "{version}: {}\n{}",
                report.outcome,
                report.log
            );
        }
    }
    Ok(())
}

/// Existing crates keep their outcomes (the fixture with bad settings is covered by the build
/// tests); a `cargo metadata` past `limits.metadata_secs` is the crate's, with the limit named.
#[tokio::test]
async fn cargo_metadata_past_its_limit_times_out() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    let published = registry.publish("hello-bin", "0.1.0")?;
    let node = TestNode::new(|c| c.limits.metadata_secs = 0).await?;
    let report = node.build(&registry, &published).await?;
    assert_eq!(report.outcome, outcome::timed_out(0), "{}", report.log);
    assert!(
        report
            .log
            .contains("cargo metadata ran past its limit of 0 s (limits.metadata_secs)"),
        "{}",
        report.log
    );
    assert!(!report.log.contains("== phase 1"), "{}", report.log);
    Ok(())
}

/// Every file and directory below `root`, with its size and modification time.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u64, std::time::SystemTime)> {
    let mut seen = BTreeMap::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                pending.push(entry.path());
            }
            seen.insert(entry.path(), (meta.len(), meta.modified().unwrap()));
        }
    }
    seen
}

/// A TCP listener on loopback that only counts the connections it gets.
async fn bystander() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (format!("http://{addr}"), count)
}

#[tokio::test]
async fn a_hostile_job_is_refused_and_changes_nothing() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    let published = registry.publish("hello-bin", "0.1.0")?;
    let node = TestNode::new(|_| {}).await?;
    let (other, knocks) = bystander().await;
    let good = JobFields {
        crate_name: &published.name,
        version: &published.version,
        target: TARGET,
        source_sha256: &published.cksum,
        download_url: &published.download_url,
    };
    let base = registry.base_url();
    let other_url = format!("{other}/dl/hello-bin/0.1.0/download");
    let localhost = published.download_url.replace("127.0.0.1", "localhost");
    let with_user = published
        .download_url
        .replace("http://", "http://user:secret@");
    let bad_checksum = "g".repeat(64);
    let upper_checksum = published.cksum.to_uppercase();
    // Well-formed, but not the registry's: what a coordinator serving its own tarball under
    // the crate's name would send.
    let trojan_checksum = if published.cksum == "1".repeat(64) {
        "2".repeat(64)
    } else {
        "1".repeat(64)
    };
    let cases: Vec<(JobFields<'_>, &str)> = vec![
        (
            JobFields {
                crate_name: "../x",
                ..good
            },
            "not a crate name",
        ),
        (
            JobFields {
                crate_name: "hello-bin/../../x",
                ..good
            },
            "not a crate name",
        ),
        (
            JobFields {
                version: "1.0.0/../../x",
                ..good
            },
            "not a semver version",
        ),
        (
            JobFields {
                target: "x86_64-unknown-linux-gnu/../../x",
                ..good
            },
            "not a target triple",
        ),
        (
            JobFields {
                target: "..",
                ..good
            },
            "not a target triple",
        ),
        (
            JobFields {
                target: "aarch64-unknown-linux-gnu",
                ..good
            },
            "does not build target aarch64-unknown-linux-gnu",
        ),
        (
            JobFields {
                source_sha256: &bad_checksum,
                ..good
            },
            "64 lowercase hex digits",
        ),
        (
            JobFields {
                source_sha256: &upper_checksum,
                ..good
            },
            "64 lowercase hex digits",
        ),
        (
            JobFields {
                source_sha256: "",
                ..good
            },
            "64 lowercase hex digits",
        ),
        (
            JobFields {
                download_url: &other_url,
                ..good
            },
            "where the node's registry serves downloads",
        ),
        (
            JobFields {
                download_url: &localhost,
                ..good
            },
            "where the node's registry serves downloads",
        ),
        (
            JobFields {
                download_url: "file:///etc/passwd",
                ..good
            },
            "only http and https",
        ),
        (
            JobFields {
                source_sha256: &trojan_checksum,
                ..good
            },
            "in this node's index of",
        ),
        (
            JobFields {
                version: "9.9.9",
                ..good
            },
            "has no version 9.9.9 in this node's index of",
        ),
        (
            JobFields {
                download_url: &with_user,
                ..good
            },
            "user or password",
        ),
    ];
    let before = snapshot(node.dir.root());
    for (fields, says) in &cases {
        let error = node
            .pipeline
            .accept_fields(fields, &registry.registry(), None)
            .await
            .unwrap_err();
        assert!(!error.is_node_fault(), "{error}");
        let text = error.to_string();
        assert!(
            text.starts_with("refused job: ") && text.contains(says),
            "{fields:?}: {text}"
        );
    }
    assert_eq!(
        snapshot(node.dir.root()),
        before,
        "a refused job created or changed something in the data dir"
    );
    assert!(
        node.state.recent_jobs(10)?.is_empty(),
        "no job was recorded"
    );
    assert_eq!(
        knocks.load(Ordering::SeqCst),
        0,
        "the other host saw a request"
    );
    // The node read its registry's config.json and the crate's index file, and nothing was
    // downloaded.
    let asked: Vec<String> = registry.requests().into_iter().map(|r| r.path).collect();
    assert!(
        asked
            .iter()
            .all(|path| path == "/config.json" || path.ends_with("/hello-bin")),
        "only the registry's config.json and the crate's index file were read ({base}): \
         {asked:?}"
    );
    assert!(
        asked.iter().any(|path| path.ends_with("/hello-bin")),
        "{asked:?}"
    );

    // The same fields, in order, are accepted.
    let request = node
        .pipeline
        .accept_fields(&good, &registry.registry(), None)
        .await?;
    assert_eq!(request.crate_name.as_str(), "hello-bin");
    assert_eq!(request.download_url.as_str(), published.download_url);
    Ok(())
}

/// `buildsrs-node build` takes the same path: a bad name is refused before the registry is
/// asked, a target the node does not build before anything is downloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_refuses_the_same_jobs() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    registry.publish("hello-bin", "0.1.0")?;
    let scratch = tempfile::tempdir()?;
    let data = scratch.path().join("node");
    let out = scratch.path().join("out");
    let index = registry.index_url();
    let node = |args: Vec<String>| {
        let data = data.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_buildsrs-node"))
                .arg("--data-dir")
                .arg(&data)
                .args(&args)
                .output()
        })
    };
    let args = |extra: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        all.extend(["--registry".into(), index.clone(), "--out".into()]);
        all.push(out.display().to_string());
        all
    };
    assert!(node(vec!["init".into()]).await??.status.success());

    registry.clear_requests();
    let refused = node(args(&["build", "../x", "0.1.0"])).await??;
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("not a crate name"), "{stderr}");
    assert!(registry.requests().is_empty(), "the registry was asked");

    let refused = node(args(&[
        "build",
        "hello-bin",
        "0.1.0",
        "--target",
        "aarch64-unknown-linux-gnu",
    ]))
    .await??;
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("does not build target aarch64-unknown-linux-gnu"),
        "{stderr}"
    );
    assert!(
        !registry
            .requests()
            .iter()
            .any(|r| r.path.starts_with("/dl/")),
        "something was downloaded"
    );
    Ok(())
}
