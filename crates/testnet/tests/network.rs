//! The network end to end: a fixture registry, a coordinator and three builder nodes on
//! loopback, quorum 2, real sandboxed builds, artifacts over iroh-blobs into object storage.

#![allow(clippy::unwrap_used)]

use anyhow::Result;
use buildsrs_api::answers::FeedPage;
use buildsrs_keys::{ArtifactId, Bundle, Expectations, Policy, verify_bundle};
use buildsrs_storage::{ArtifactStorage, StorageConfig};
use buildsrs_store::TaskState;
use buildsrs_test_support::s3::TestBucket;
use buildsrs_testnet::{Testnet, TestnetOptions};
use futures::StreamExt;

/// Every verified task's artifact is in storage, its bytes hash to its name, and its bundle
/// passes offline verification against the nodes' keyring with threshold 2.
async fn assert_published(net: &Testnet, crate_name: &str, versions: &[&str]) -> Result<()> {
    let keyring = net.keyring()?;
    let storage = ArtifactStorage::open(&net.config.storage_config())?;
    for version in versions {
        let v = net.store.version_info(crate_name, version).await?.unwrap();
        assert!(!v.tasks.is_empty());
        for task in &v.tasks {
            assert_eq!(
                task.state,
                TaskState::Verified,
                "{crate_name} {version}: {task:?}"
            );
            let artifact = task.artifact.unwrap();
            let stored = net.store.artifact(&artifact.blake3).await?.unwrap();
            assert!(stored.storage_key.is_some(), "published to storage");
            let hex = artifact.blake3.to_hex();
            let (size, mut stream) = storage.get_blob_range(&hex, None).await?.unwrap();
            let mut blob = Vec::new();
            while let Some(chunk) = stream.next().await {
                blob.extend_from_slice(&chunk?);
            }
            assert_eq!(size, artifact.size);
            assert_eq!(ArtifactId::of_bytes(&blob), artifact);
            let bundle = Bundle::from_json(&storage.get_bundle(&hex).await?.unwrap())?;
            let policy = Policy {
                threshold: 2,
                expect: Expectations {
                    crate_name: Some(crate_name.parse().unwrap()),
                    version: Some((*version).parse().unwrap()),
                    ..Default::default()
                },
            };
            let report = verify_bundle(artifact, &bundle, &keyring, &policy);
            assert!(report.verified, "{report:?}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_verify_two_versions_on_sqlite_and_a_directory() -> Result<()> {
    let options = TestnetOptions {
        watch: vec!["hello-bin:1".into()],
        ..Default::default()
    };
    let net = Testnet::start(options).await?;
    net.registry.publish("hello-bin", "0.1.0")?;
    net.registry.publish("hello-bin", "0.2.0")?;
    net.wait_until("two verified tasks", |s| s.verified == 2)
        .await?;
    // Publishing follows verification; wait for storage too.
    net.wait_published().await?;
    assert_published(&net, "hello-bin", &["0.1.0", "0.2.0"]).await?;
    assert_downloadable_over_http(&net, "hello-bin", "0.2.0").await?;
    net.stop().await
}

/// What a user does with curl: the archive from the coordinator's download URL (`latest`
/// resolves to the newest version), its bundle, and the coordinator's keyring; the archive
/// verifies offline. The feed mirrors follow lists every published artifact.
async fn assert_downloadable_over_http(
    net: &Testnet,
    crate_name: &str,
    latest: &str,
) -> Result<()> {
    let url = net.http_url()?;
    let get = async |path: &str| -> Result<Vec<u8>> {
        let response = reqwest::get(format!("{url}{path}")).await?;
        anyhow::ensure!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        Ok(response.bytes().await?.to_vec())
    };
    let target = &net.config.targets[0];
    let archive = get(&format!("/crates/{crate_name}/latest/{target}")).await?;
    let v = net.store.version_info(crate_name, latest).await?.unwrap();
    let artifact = v.tasks[0].artifact.unwrap();
    assert_eq!(
        ArtifactId::of_bytes(&archive),
        artifact,
        "latest is {latest}"
    );
    let bundle = Bundle::from_json(&get(&format!("/attestations/{}", artifact.blake3)).await?)?;
    let served = buildsrs_keys::Keyring::parse(&String::from_utf8(get("/keyring").await?)?)?;
    assert_eq!(served.entries().len(), net.keyring()?.entries().len());
    let policy = Policy {
        threshold: 2,
        expect: Expectations::default(),
    };
    let report = verify_bundle(artifact, &bundle, &served, &policy);
    assert!(report.verified, "{report:?}");
    let feed: FeedPage = serde_json::from_slice(&get("/api/v1/verified").await?)?;
    let published = net.store.published_since(0, 100).await?;
    // The feed lists what the store published, in its order, by number and hash.
    let fed: Vec<_> = feed
        .items
        .iter()
        .map(|item| (item.seq, item.hash))
        .collect();
    let stored: Vec<_> = published
        .iter()
        .map(|p| (p.seq, p.artifact.blake3))
        .collect();
    assert_eq!(fed, stored);
    Ok(())
}

/// No builder is counted twice for one task, and each verified task counted exactly quorum
/// results.
async fn assert_counted_once(net: &Testnet, crate_name: &str, version: &str) -> Result<()> {
    let v = net.store.version_info(crate_name, version).await?.unwrap();
    for task in v.tasks {
        let detail = net.store.task(task.id).await?.unwrap();
        let counted: Vec<_> = detail
            .results
            .iter()
            .filter(|r| r.counted)
            .map(|r| r.builder)
            .collect();
        let mut distinct = counted.clone();
        distinct.sort_by_key(ToString::to_string);
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            counted.len(),
            "a builder counted twice: {detail:?}"
        );
        if task.state == TaskState::Verified {
            // Quorum 2; an extra lease running when the decision fell may add a late,
            // agreeing result from a third builder, never a second one from the same.
            assert!(counted.len() >= 2, "{detail:?}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_mid_build_loses_its_lease_and_another_builds_the_task() -> Result<()> {
    let options = TestnetOptions {
        watch: vec!["hello-bin".into()],
        start_nodes: 1,
        lease_duration: std::time::Duration::from_secs(4),
        // No extra leases: the task's second slot is free, but once node 0 dies its slot
        // comes back only through expiry.
        extra_leases: 0,
        ..Default::default()
    };
    let mut net = Testnet::start(options).await?;
    net.registry.publish("hello-bin", "0.1.0")?;
    net.wait_until("node 0 holds a lease", |s| s.active_leases >= 1)
        .await?;
    net.kill_node(0).await;
    net.start_node(1)?;
    net.start_node(2)?;
    net.wait_until("the task verified", |s| s.verified == 1)
        .await?;
    let leases = net.leases().await?;
    assert!(
        leases
            .iter()
            .any(|(i, l)| *i == 0 && l.state == buildsrs_store::LeaseState::Expired),
        "node 0's lease expired: {leases:?}"
    );
    net.wait_published().await?;
    assert_published(&net, "hello-bin", &["0.1.0"]).await?;
    assert_counted_once(&net, "hello-bin", "0.1.0").await?;
    net.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_coordinator_killed_mid_run_resumes_with_nothing_lost_or_counted_twice() -> Result<()> {
    let options = TestnetOptions {
        watch: vec!["hello-bin:1".into()],
        lease_duration: std::time::Duration::from_secs(6),
        ..Default::default()
    };
    let mut net = Testnet::start(options).await?;
    net.registry.publish("hello-bin", "0.1.0")?;
    net.registry.publish("hello-bin", "0.2.0")?;
    net.wait_until("a build running", |s| s.active_leases >= 1)
        .await?;
    net.kill_coordinator().await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    net.start_coordinator().await?;
    net.wait_until("both tasks verified", |s| s.verified == 2)
        .await?;
    net.wait_published().await?;
    assert_published(&net, "hello-bin", &["0.1.0", "0.2.0"]).await?;
    for version in ["0.1.0", "0.2.0"] {
        assert_counted_once(&net, "hello-bin", version).await?;
    }
    net.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_builder_with_different_output_is_outvoted_and_never_verified() -> Result<()> {
    let options = TestnetOptions {
        watch: vec!["hello-bin".into()],
        start_nodes: 0,
        configure_node: |i, config| {
            if i == 2 {
                // Part of the build settings: changes the bytes, and the attestation says so.
                config.extra_rustflags = vec!["-Cmetadata=odd-builder".into()];
            }
        },
        ..Default::default()
    };
    let mut net = Testnet::start(options).await?;
    // Node 2 (the odd one) and node 0 first: they disagree.
    net.start_node(2)?;
    net.start_node(0)?;
    net.registry.publish("hello-bin", "0.1.0")?;
    net.wait_until("a mismatch", |s| s.mismatch == 1).await?;
    // Node 1 breaks the tie.
    net.start_node(1)?;
    net.wait_until("the task verified", |s| s.verified == 1)
        .await?;
    let v = net.store.version_info("hello-bin", "0.1.0").await?.unwrap();
    let detail = net.store.task(v.tasks[0].id).await?.unwrap();
    let odd_key = net.nodes[2].identity.public_key();
    let odd = detail
        .results
        .iter()
        .find(|r| r.builder == odd_key)
        .unwrap();
    assert_ne!(
        odd.artifact, v.tasks[0].artifact,
        "the odd build never becomes the artifact"
    );
    let builders = net.store.builders().await?;
    let odd_info = builders.iter().find(|b| b.public_key == odd_key).unwrap();
    assert_eq!(odd_info.outvoted, 1, "{odd_info:?}");
    net.wait_published().await?;
    assert_published(&net, "hello-bin", &["0.1.0"]).await?;
    net.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unapproved_node_gets_no_work() -> Result<()> {
    let options = TestnetOptions {
        watch: vec!["hello-bin:1".into()],
        auto_approve: false,
        ..Default::default()
    };
    let net = Testnet::start(options).await?;
    let now = jiff::Timestamp::now();
    for node in &net.nodes[..2] {
        net.store
            .approve_builder(&node.identity.public_key(), now)
            .await?;
    }
    net.registry.publish("hello-bin", "0.1.0")?;
    net.registry.publish("hello-bin", "0.2.0")?;
    net.wait_until("both tasks verified", |s| s.verified == 2)
        .await?;
    let pending_key = net.nodes[2].identity.public_key();
    assert!(
        net.leases().await?.iter().all(|(i, _)| *i != 2),
        "node 2 got no lease"
    );
    let info = net.store.builder(&pending_key).await?.unwrap();
    assert_eq!(info.status, buildsrs_store::BuilderStatus::Pending);
    assert_eq!(info.built, 0);
    net.wait_published().await?;
    net.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_verify_two_versions_on_postgres_and_s3() -> Result<()> {
    let Some(bucket) = TestBucket::create("three_nodes_verify_two_versions_on_postgres_and_s3")?
    else {
        return Ok(());
    };
    let storage = StorageConfig::S3 {
        endpoint: bucket.endpoint,
        bucket: bucket.name,
        region: TestBucket::REGION.into(),
        access_key_id: TestBucket::ACCESS_KEY_ID.into(),
        secret_access_key: TestBucket::SECRET_ACCESS_KEY.into(),
        allow_http: true,
    };
    let database = buildsrs_store::testing::FreshDatabase::create().await;
    let options = TestnetOptions {
        watch: vec!["hello-bin:1".into()],
        database_url: Some(database.url.clone()),
        storage: Some(storage),
        ..Default::default()
    };
    let net = Testnet::start(options).await?;
    net.registry.publish("hello-bin", "0.1.0")?;
    net.registry.publish("hello-bin", "0.2.0")?;
    net.wait_until("two verified tasks", |s| s.verified == 2)
        .await?;
    net.wait_published().await?;
    assert_published(&net, "hello-bin", &["0.1.0", "0.2.0"]).await?;
    net.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blob_rotten_on_its_first_provider_is_fetched_from_another() -> Result<()> {
    let options = TestnetOptions {
        watch: vec!["hello-bin".into()],
        start_nodes: 1,
        ..Default::default()
    };
    let mut net = Testnet::start(options).await?;
    net.registry.publish("hello-bin", "0.1.0")?;
    // Node 0 builds first, so it is the first provider the publisher asks.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    let artifact = loop {
        let v = net.store.version_info("hello-bin", "0.1.0").await?;
        if let Some(task) = v.and_then(|v| v.tasks.into_iter().next()) {
            let detail = net.store.task(task.id).await?.unwrap();
            if let Some(a) = detail.results.iter().find_map(|r| r.artifact) {
                break a;
            }
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "node 0 never built");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    // Rot one byte of its stored copy (with the node stopped: the store is closed).
    net.stop_node(0).await?;
    let data = net.nodes[0]
        .dir
        .root()
        .join("blobs/data")
        .join(format!("{}.data", artifact.blake3.to_hex()));
    let mut bytes = std::fs::read(&data)?;
    bytes[1000] ^= 0xff;
    std::fs::write(&data, &bytes)?;
    net.start_node(0)?;
    net.start_node(1)?;
    net.wait_until("the task verified", |s| s.verified == 1)
        .await?;
    net.wait_published().await?;
    // What storage holds hashes right, although node 0 serves rotten bytes.
    assert_published(&net, "hello-bin", &["0.1.0"]).await?;
    net.stop().await
}
