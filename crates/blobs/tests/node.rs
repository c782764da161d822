//! Real in-process peers on 127.0.0.1: add, fetch, export, fallback on every kind of bad
//! provider, persistence, addresses. Blobs stay small: iroh is slow in debug builds.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use buildsrs_blobs::{BlobAddress, BlobError, FailureKind};
use buildsrs_keys::{ArtifactId, Blake3Hash};
use support::*;

/// Above the FsStore's 16 KiB inline limit, so the data lives in its own file.
const BLOB_LEN: usize = 300 * 1024 + 17;

fn failures(err: BlobError) -> Vec<buildsrs_blobs::ProviderFailure> {
    match err {
        BlobError::FetchFailed { failures, .. } => failures,
        other => panic!("expected FetchFailed, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_fetch_export_round_trip_with_fs_stores() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = test_bytes(BLOB_LEN, 1);
    let artifact = dir.path().join("artifact.tar.gz");
    std::fs::write(&artifact, &bytes).unwrap();

    let provider = fs_node(&dir.path().join("provider-store")).await;
    let id = provider.add_file(&artifact).await.unwrap();
    assert_eq!(id, ArtifactId::of_bytes(&bytes));
    assert!(provider.has(&id.blake3).await.unwrap());
    // The store holds its own copy: the original may go.
    std::fs::remove_file(&artifact).unwrap();

    let fetcher = fs_node(&dir.path().join("fetcher-store")).await;
    assert!(!fetcher.has(&id.blake3).await.unwrap());
    let served_by = fetcher.fetch(&id.blake3, &[provider.addr()]).await.unwrap();
    assert_eq!(served_by, provider.addr());
    assert!(fetcher.has(&id.blake3).await.unwrap());

    // Export replaces an existing file and leaves no temporary file behind.
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let dest = out_dir.join("artifact.tar.gz");
    std::fs::write(&dest, b"old contents").unwrap();
    fetcher.export(&id.blake3, &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    assert_eq!(ArtifactId::of_file(&dest).unwrap(), id);
    let names: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("artifact.tar.gz")]);

    // Fetching what is already here dials nobody and names this node.
    let again = fetcher
        .fetch(&id.blake3, &[unreachable_addr()])
        .await
        .unwrap();
    assert_eq!(again, fetcher.addr());

    fetcher.shutdown().await.unwrap();
    provider.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_bytes_matches_artifact_id_and_small_blobs_work() {
    let node = mem_node().await;
    for len in [0, 1, 1024, 16 * 1024, 16 * 1024 + 1] {
        let bytes = test_bytes(len, len as u64);
        let id = node.add_bytes(bytes.clone()).await.unwrap();
        assert_eq!(id, ArtifactId::of_bytes(&bytes), "len {len}");
        // Adding again is harmless.
        assert_eq!(node.add_bytes(bytes).await.unwrap(), id);
        assert!(node.has(&id.blake3).await.unwrap());
    }
    let other = mem_node().await;
    let bytes = test_bytes(5000, 9);
    let id = node.add_bytes(bytes.clone()).await.unwrap();
    other.fetch(&id.blake3, &[node.addr()]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("nested/dir/small.bin");
    other.export(&id.blake3, &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    other.shutdown().await.unwrap();
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_falls_back_when_first_provider_is_unreachable() {
    let good = mem_node().await;
    let id = good.add_bytes(test_bytes(BLOB_LEN, 2)).await.unwrap();
    let fetcher = mem_node().await;
    let served_by = fetcher
        .fetch(&id.blake3, &[unreachable_addr(), good.addr()])
        .await
        .unwrap();
    assert_eq!(served_by, good.addr());
    assert!(fetcher.has(&id.blake3).await.unwrap());
    fetcher.shutdown().await.unwrap();
    good.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_falls_back_when_first_provider_lacks_the_blob() {
    let empty = mem_node().await;
    let good = mem_node().await;
    let id = good.add_bytes(test_bytes(BLOB_LEN, 3)).await.unwrap();
    let fetcher = mem_node().await;

    let err = fetcher
        .fetch(&id.blake3, &[empty.addr()])
        .await
        .unwrap_err();
    let only = failures(err);
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].kind, FailureKind::NotServed, "{}", only[0]);

    let served_by = fetcher
        .fetch(&id.blake3, &[empty.addr(), good.addr()])
        .await
        .unwrap();
    assert_eq!(served_by, good.addr());
    for node in [fetcher, good, empty] {
        node.shutdown().await.unwrap();
    }
}

/// Disk rot at a provider: its store still lists the blob as complete, but one byte of the
/// data file is wrong. iroh-blobs' provider verifies what it reads before sending, so it
/// stops at the damaged chunk and resets the stream; the fetcher keeps whatever verified
/// chunks arrived, fails that provider and gets the rest from the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_falls_back_when_a_provider_store_is_corrupt_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("rotten-store");
    let bytes = test_bytes(BLOB_LEN, 4);
    let key = secret_key();

    let rotten = spawn(key.clone(), Some(store_dir.clone())).await;
    let id = rotten.add_bytes(bytes.clone()).await.unwrap();
    rotten.shutdown().await.unwrap();
    corrupt_stored_data(&store_dir, &id.blake3, 200_000);
    let rotten = spawn(key, Some(store_dir)).await;
    // The store does not know: nothing re-hashes data at rest.
    assert!(rotten.has(&id.blake3).await.unwrap());

    let good = mem_node().await;
    good.add_bytes(bytes.clone()).await.unwrap();

    let fetcher = mem_node().await;
    let err = fetcher
        .fetch(&id.blake3, &[rotten.addr()])
        .await
        .unwrap_err();
    let only = failures(err);
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].provider, rotten.addr());
    // The provider stops and resets the stream: never bad bytes on the wire. A reset
    // discards what was still queued, so whether any chunks arrived first (Transfer) or
    // not even the header did (NotServed) depends on timing.
    assert!(
        matches!(only[0].kind, FailureKind::Transfer | FailureKind::NotServed),
        "{}",
        only[0]
    );
    assert!(!fetcher.has(&id.blake3).await.unwrap());

    let served_by = fetcher
        .fetch(&id.blake3, &[rotten.addr(), good.addr()])
        .await
        .unwrap();
    assert_eq!(served_by, good.addr());
    let out = dir.path().join("out.bin");
    fetcher.export(&id.blake3, &out).await.unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), bytes);

    // The rotten node would also refuse to export its copy.
    let rotten_out = dir.path().join("rotten-out.bin");
    let err = rotten.export(&id.blake3, &rotten_out).await.unwrap_err();
    assert!(
        matches!(err, BlobError::ExportMismatch { .. }),
        "expected ExportMismatch, got {err}"
    );
    assert!(!rotten_out.exists());

    for node in [fetcher, good, rotten] {
        node.shutdown().await.unwrap();
    }
}

/// A provider that sends corrupt bytes: the fetcher's verification rejects them (nothing
/// corrupt is stored) and the next provider delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_rejects_corrupt_bytes_on_the_wire_and_falls_back() {
    let bytes = test_bytes(BLOB_LEN, 5);
    let id = ArtifactId::of_bytes(&bytes);
    let (liar, liar_router) = LyingProvider::spawn(std::slice::from_ref(&bytes)).await;
    let good = mem_node().await;
    good.add_bytes(bytes.clone()).await.unwrap();

    let fetcher = mem_node().await;
    let err = fetcher
        .fetch(&id.blake3, std::slice::from_ref(&liar))
        .await
        .unwrap_err();
    let only = failures(err);
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].kind, FailureKind::Corrupt, "{}", only[0]);
    assert!(!fetcher.has(&id.blake3).await.unwrap());
    // The chunks verified before the bad one were kept; the good provider supplies the
    // rest and the result is whole.
    let served_by = fetcher.fetch(&id.blake3, &[good.addr()]).await.unwrap();
    assert_eq!(served_by, good.addr());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("resumed.bin");
    fetcher.export(&id.blake3, &out).await.unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
    fetcher.shutdown().await.unwrap();

    let fetcher = mem_node().await;
    let served_by = fetcher
        .fetch(&id.blake3, &[liar, good.addr()])
        .await
        .unwrap();
    assert_eq!(served_by, good.addr());
    let out = dir.path().join("out.bin");
    fetcher.export(&id.blake3, &out).await.unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), bytes);

    liar_router.shutdown().await.unwrap();
    fetcher.shutdown().await.unwrap();
    good.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_with_no_providers_is_a_clear_error() {
    let fetcher = mem_node().await;
    let hash = Blake3Hash::of_bytes(b"nobody has this");
    let err = fetcher.fetch(&hash, &[]).await.unwrap_err();
    assert!(matches!(err, BlobError::NoProviders { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&hash.to_hex()) && text.contains("no providers"),
        "{text}"
    );
    fetcher.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_with_all_providers_failing_names_each() {
    let holder = mem_node().await;
    let id = holder.add_bytes(test_bytes(BLOB_LEN, 6)).await.unwrap();
    let empty = mem_node().await;
    let fetcher = mem_node().await;

    let unreachable = unreachable_addr();
    let malformed = BlobAddress {
        endpoint_id: "not-an-endpoint-id".to_owned(),
        addrs: holder.addr().addrs,
    };
    // The holder's socket, but another key: the TLS handshake fails.
    let wrong_key = BlobAddress {
        endpoint_id: unreachable_addr().endpoint_id,
        addrs: holder.addr().addrs,
    };
    let providers = [
        unreachable.clone(),
        empty.addr(),
        malformed.clone(),
        wrong_key.clone(),
        fetcher.addr(),
    ];
    let err = fetcher.fetch(&id.blake3, &providers).await.unwrap_err();
    let text = err.to_string();
    let list = failures(err);
    let kinds: Vec<_> = list.iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        [
            FailureKind::Unreachable,
            FailureKind::NotServed,
            FailureKind::InvalidAddr,
            FailureKind::Unreachable,
            FailureKind::SelfAddr,
        ],
        "{text}"
    );
    for (failure, provider) in list.iter().zip(&providers) {
        assert_eq!(&failure.provider, provider);
        assert!(text.contains(&provider.endpoint_id), "{text}");
    }
    assert!(
        text.contains(&id.blake3.to_hex()) && text.contains("all 5 providers"),
        "{text}"
    );
    for node in [fetcher, empty, holder] {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_store_keeps_blobs_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let key = secret_key();
    let big = test_bytes(BLOB_LEN, 7);
    let small = test_bytes(100, 8);

    let node = spawn(key.clone(), Some(store_dir.clone())).await;
    let big_id = node.add_bytes(big.clone()).await.unwrap();
    let small_id = node.add_bytes(small.clone()).await.unwrap();
    let first_id = node.addr().endpoint_id;
    node.shutdown().await.unwrap();

    // Same directory, same key: same identity, blobs still there and servable.
    let node = spawn(key, Some(store_dir)).await;
    assert_eq!(node.addr().endpoint_id, first_id);
    assert!(node.has(&big_id.blake3).await.unwrap());
    assert!(node.has(&small_id.blake3).await.unwrap());

    let fetcher = mem_node().await;
    for (id, bytes) in [(big_id, &big), (small_id, &small)] {
        assert_eq!(
            fetcher.fetch(&id.blake3, &[node.addr()]).await.unwrap(),
            node.addr()
        );
        let out = dir.path().join(id.blake3.to_hex());
        fetcher.export(&id.blake3, &out).await.unwrap();
        assert_eq!(&std::fs::read(&out).unwrap(), bytes);
    }
    fetcher.shutdown().await.unwrap();
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_node_on_an_open_store_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = fs_node(dir.path()).await;
    let err = buildsrs_blobs::BlobNode::spawn(buildsrs_blobs::BlobConfig {
        secret_key: secret_key(),
        store_dir: Some(dir.path().to_owned()),
        bind: LOOPBACK.parse().unwrap(),
        gc_interval: None,
    })
    .await
    .unwrap_err();
    assert!(matches!(err, BlobError::OpenStore { .. }), "{err}");
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addr_lists_only_the_loopback_socket_it_was_bound_to() {
    let key = secret_key();
    let node = spawn(key.clone(), None).await;
    let addr = node.addr();
    assert_eq!(addr.endpoint_id, key.public().to_string());
    assert!(!addr.addrs.is_empty());
    let bound = node.endpoint().bound_sockets();
    for sock in &addr.addrs {
        assert!(sock.ip().is_loopback(), "{addr}");
        assert!(
            bound.contains(sock),
            "{sock} not among bound sockets {bound:?}"
        );
    }

    // The wire forms the node and coordinator use: CBOR in messages, JSON on disk.
    let json = serde_json::to_string(&addr).unwrap();
    assert_eq!(
        json,
        format!(
            r#"{{"endpoint_id":"{}","addrs":["{}"]}}"#,
            addr.endpoint_id, addr.addrs[0]
        )
    );
    assert_eq!(serde_json::from_str::<BlobAddress>(&json).unwrap(), addr);
    let mut cbor = Vec::new();
    ciborium::into_writer(&addr, &mut cbor).unwrap();
    assert_eq!(
        ciborium::from_reader::<BlobAddress, _>(cbor.as_slice()).unwrap(),
        addr
    );
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_of_a_missing_blob_leaves_the_destination_alone() {
    let node = mem_node().await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("keep.bin");
    std::fs::write(&dest, b"keep me").unwrap();
    let err = node
        .export(&Blake3Hash::of_bytes(b"absent"), &dest)
        .await
        .unwrap_err();
    assert!(matches!(err, BlobError::NotFound { .. }), "{err}");
    assert_eq!(std::fs::read(&dest).unwrap(), b"keep me");
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_file_of_a_missing_path_is_an_import_error() {
    let node = mem_node().await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-artifact");
    let err = node.add_file(&missing).await.unwrap_err();
    assert!(matches!(err, BlobError::Import { .. }), "{err}");
    assert!(err.to_string().contains("no-such-artifact"), "{err}");
    let err = node.add_file(dir.path()).await.unwrap_err();
    assert!(matches!(err, BlobError::Import { .. }), "{err}");
    node.shutdown().await.unwrap();
}

/// Retention on a builder node: a forgotten blob is deleted by the store's garbage
/// collection and no longer served; a kept one stays.
#[tokio::test]
async fn a_forgotten_blob_is_collected_and_a_kept_one_stays() {
    let dir = tempfile::tempdir().unwrap();
    let node = buildsrs_blobs::BlobNode::spawn(buildsrs_blobs::BlobConfig {
        secret_key: support::secret_key(),
        store_dir: Some(dir.path().to_owned()),
        bind: support::LOOPBACK.parse().unwrap(),
        gc_interval: Some(Duration::from_millis(100)),
    })
    .await
    .unwrap();
    let old = node
        .add_bytes(support::test_bytes(200_000, 1))
        .await
        .unwrap();
    let kept = node
        .add_bytes(support::test_bytes(200_000, 2))
        .await
        .unwrap();
    node.forget(&old.blake3).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while node.has(&old.blake3).await.unwrap() {
        assert!(
            std::time::Instant::now() < deadline,
            "the forgotten blob is still there"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Several collections later, the kept one is still whole.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(node.has(&kept.blake3).await.unwrap());
    // A second consumer asking for the forgotten one gets nothing.
    let peer = support::mem_node().await;
    assert!(peer.fetch(&old.blake3, &[node.addr()]).await.is_err());
    node.shutdown().await.unwrap();
}
