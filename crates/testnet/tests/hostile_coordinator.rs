//! A hostile coordinator against honest builders: what it says about a crate is checked
//! against what the builders read from their own registry, and the user-visible result is
//! that nothing gets built or signed.

#![allow(clippy::unwrap_used)]

use anyhow::Result;
use buildsrs_store::{IndexVersion, OutcomeKind, TaskState};
use buildsrs_testnet::{Testnet, TestnetOptions};

/// The coordinator names `hello-bin 0.1.0` but hands out another crate's tarball, with that
/// tarball's true checksum and a download URL on the builders' own registry. The tarball is
/// laid out as `hello-bin-0.1.0/` (a registry that does not check what it is sent serves
/// such a thing under any name), so it unpacks and builds: without the builders' own index
/// check they would build foreign code and sign it as `hello-bin 0.1.0`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_coordinator_handing_out_another_source_gets_nothing_built_or_signed() -> Result<()> {
    let options = TestnetOptions {
        start_nodes: 0,
        ..Default::default()
    };
    let mut net = Testnet::start(options).await?;
    let foreign = net
        .registry
        .publish_raw("innocent", "1.0.0", &impostor()?, None)?;
    let real = net.registry.publish("hello-bin", "0.1.0")?;
    assert_ne!(foreign.cksum, real.cksum);
    // The coordinator's store takes its word (the first line seen for a version stands).
    let now = jiff::Timestamp::now();
    let trojan = IndexVersion {
        name: "hello-bin".parse()?,
        version: "0.1.0".parse()?,
        cksum: foreign.cksum.parse()?,
        yanked: false,
        download_url: foreign.download_url.clone(),
        rust_version: None,
    };
    net.store.upsert_versions(vec![trojan], now).await?;
    net.store.watch_crate("hello-bin", 0, now).await?;
    for node in 0..3 {
        net.start_node(node)?;
    }
    // Decided either way: verified would mean the attack worked.
    net.wait_until("the task decided", |s| s.failed + s.verified == 1)
        .await?;

    let version = net.store.version_info("hello-bin", "0.1.0").await?.unwrap();
    assert_eq!(
        version.version.cksum.to_hex(),
        foreign.cksum,
        "the coordinator's word"
    );
    let task = &version.tasks[0];
    assert_eq!(task.state, TaskState::Failed);
    assert_eq!(task.artifact, None);
    let detail = net.store.task(task.id).await?.unwrap();
    assert!(detail.results.len() >= 2, "{:?}", detail.results);
    for result in &detail.results {
        assert_eq!(
            result.outcome,
            OutcomeKind::SourceChecksumMismatch,
            "{result:?}"
        );
        assert!(result.signed.is_none(), "nobody signed anything");
        let reason = result.reason.as_deref().unwrap_or_default();
        assert!(
            reason.contains(&real.cksum),
            "names the registry's checksum: {reason}"
        );
    }
    // No builder downloaded or built anything.
    for node in &net.nodes {
        assert_eq!(std::fs::read_dir(node.dir.artifacts_dir())?.count(), 0);
    }
    let downloads: Vec<String> = net
        .registry
        .requests()
        .into_iter()
        .map(|r| r.path)
        .filter(|path| path.contains("/dl/"))
        .collect();
    assert!(downloads.is_empty(), "{downloads:?}");
    net.stop().await
}

/// Another crate's code packed as `hello-bin-0.1.0`: the multi-bin fixture under hello-bin's
/// name.
fn impostor() -> Result<Vec<u8>> {
    let dir = tempfile::tempdir()?;
    let fixture = buildsrs_fixture_registry::fixtures_dir().join("multi-bin");
    std::fs::create_dir_all(dir.path().join("src/bin"))?;
    for file in ["src/bin/alpha.rs", "src/bin/beta.rs"] {
        std::fs::copy(fixture.join(file), dir.path().join(file))?;
    }
    let manifest = std::fs::read_to_string(fixture.join("Cargo.toml"))?
        .replace("name = \"multi-bin\"", "name = \"hello-bin\"");
    std::fs::write(dir.path().join("Cargo.toml"), manifest)?;
    Ok(buildsrs_fixture_registry::pack_dir(dir.path(), "0.1.0")?.bytes)
}
