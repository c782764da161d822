//! Every test body runs against both backends: `local::*` in a temporary directory, `s3::*`
//! against the S3 server at `BUILDSRS_TEST_S3_ENDPOINT` (moto, see `scripts/ensure-moto`),
//! each test in a fresh bucket that is emptied and deleted when the test passes. Without
//! `BUILDSRS_TEST_S3_ENDPOINT` the S3 tests skip (`buildsrs_test_support::skip`: a loud
//! SKIPPED line locally, a failure under `CI=true`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use buildsrs_storage::object_store::ObjectStoreExt;
use buildsrs_storage::{ArtifactStorage, PART_SIZE, PutOutcome, StorageConfig, StorageError};
use buildsrs_test_support::s3::TestBucket;
use bytes::Bytes;
use futures::TryStreamExt;
use tempfile::TempDir;

/// One backend under test, plus a scratch directory for the files to upload.
struct Backend {
    storage: ArtifactStorage,
    /// The storage root, for the local backend.
    local_root: Option<PathBuf>,
    /// The S3 bucket, to delete afterwards.
    s3_bucket: Option<TestBucket>,
    scratch: TempDir,
}

impl Backend {
    fn local() -> Result<Backend> {
        let scratch = tempfile::tempdir()?;
        let root = scratch.path().join("storage/nested");
        let storage = ArtifactStorage::open(&StorageConfig::Local { root: root.clone() })?;
        ensure!(root.is_dir(), "open did not create {}", root.display());
        Ok(Backend {
            storage,
            local_root: Some(root),
            s3_bucket: None,
            scratch,
        })
    }

    fn s3(test: &str) -> Result<Option<Backend>> {
        let Some(bucket) = TestBucket::create(&format!("s3::{test}"))? else {
            return Ok(None);
        };
        let storage = ArtifactStorage::open(&StorageConfig::S3 {
            endpoint: bucket.endpoint.clone(),
            bucket: bucket.name.clone(),
            region: TestBucket::REGION.into(),
            access_key_id: TestBucket::ACCESS_KEY_ID.into(),
            secret_access_key: TestBucket::SECRET_ACCESS_KEY.into(),
            allow_http: true,
        })?;
        Ok(Some(Backend {
            storage,
            local_root: None,
            s3_bucket: Some(bucket),
            scratch: tempfile::tempdir()?,
        }))
    }

    /// Empties and deletes the test's bucket (moto keeps everything in memory).
    async fn cleanup(self) -> Result<()> {
        let Some(bucket) = self.s3_bucket else {
            return Ok(());
        };
        let keys: Vec<_> = self
            .storage
            .object_store()
            .list(None)
            .map_ok(|meta| meta.location)
            .try_collect()
            .await?;
        for key in keys {
            self.storage.object_store().delete(&key).await?;
        }
        // S3 deletes only an empty bucket. (A short blocking request to loopback.)
        bucket.delete()?;
        Ok(())
    }

    /// Writes `content` to a scratch file and returns its path.
    fn file(&self, name: &str, content: &[u8]) -> Result<PathBuf> {
        let path = self.scratch.path().join(name);
        std::fs::write(&path, content)?;
        Ok(path)
    }

    /// Every object in the store, and for the local backend every file under its root
    /// (multipart staging files included, which object_store's listing hides).
    async fn everything_stored(&self) -> Result<Vec<String>> {
        let mut found: Vec<String> = self
            .storage
            .object_store()
            .list(None)
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await?;
        if let Some(root) = &self.local_root {
            walk_files(root, &mut found)?;
        }
        Ok(found)
    }
}

fn walk_files(dir: &Path, found: &mut Vec<String>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            walk_files(&entry.path(), found)?;
        } else {
            found.push(entry.path().display().to_string());
        }
    }
    Ok(())
}

/// Deterministic, incompressible-looking bytes (xorshift64*).
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn hash(content: &[u8]) -> String {
    blake3::hash(content).to_hex().to_string()
}

/// The whole blob or a range of it, collected; with the reported total size.
async fn read(
    storage: &ArtifactStorage,
    hash_hex: &str,
    range: Option<std::ops::Range<u64>>,
) -> Result<Option<(u64, Vec<u8>)>> {
    let Some((size, stream)) = storage.get_blob_range(hash_hex, range).await? else {
        return Ok(None);
    };
    let chunks: Vec<Bytes> = stream.try_collect().await?;
    Ok(Some((size, chunks.concat())))
}

// ---------------------------------------------------------------------------------------
// Test bodies.

async fn blob_round_trip(b: &Backend) -> Result<()> {
    let content = pseudo_random(300_000, 1);
    let h = hash(&content);
    let file = b.file("blob", &content)?;
    ensure!(!b.storage.has_blob(&h).await?);
    assert_eq!(
        b.storage.put_blob_file(&h, &file).await?,
        PutOutcome::Stored
    );
    ensure!(b.storage.has_blob(&h).await?);
    assert_eq!(b.storage.blob_size(&h).await?, Some(content.len() as u64));
    let (size, back) = read(&b.storage, &h, None).await?.context("blob missing")?;
    assert_eq!(size, content.len() as u64);
    ensure!(back == content, "read back different bytes");
    assert_eq!(
        b.everything_stored()
            .await?
            .iter()
            .filter(|k| k.contains(&h))
            .count(),
        if b.local_root.is_some() { 2 } else { 1 },
        "one object (and, locally, its one file)"
    );
    Ok(())
}

async fn second_put_is_already_present(b: &Backend) -> Result<()> {
    let content = pseudo_random(5_000, 2);
    let h = hash(&content);
    let file = b.file("blob", &content)?;
    assert_eq!(
        b.storage.put_blob_file(&h, &file).await?,
        PutOutcome::Stored
    );
    assert_eq!(
        b.storage.put_blob_file(&h, &file).await?,
        PutOutcome::AlreadyPresent
    );
    // A stored blob is never touched again, not even by a put whose file has changed since.
    let other = b.file("other", b"not the same bytes")?;
    assert_eq!(
        b.storage.put_blob_file(&h, &other).await?,
        PutOutcome::AlreadyPresent
    );
    // Nor is the file read: it need not even exist.
    let missing = b.scratch.path().join("does-not-exist");
    assert_eq!(
        b.storage.put_blob_file(&h, &missing).await?,
        PutOutcome::AlreadyPresent
    );
    let (_, back) = read(&b.storage, &h, None).await?.context("blob missing")?;
    ensure!(back == content, "content changed");
    Ok(())
}

async fn concurrent_puts_agree(b: &Backend) -> Result<()> {
    // Small (conditional PUT) and big (multipart) blobs, four writers each.
    for (len, seed) in [(70_000, 3), (PART_SIZE + 1_000, 4)] {
        let content = pseudo_random(len, seed);
        let h = hash(&content);
        let file = b.file(&format!("blob-{seed}"), &content)?;
        let puts = (0..4).map(|_| b.storage.put_blob_file(&h, &file));
        let outcomes = futures::future::try_join_all(puts).await?;
        ensure!(
            outcomes.contains(&PutOutcome::Stored),
            "nobody stored it: {outcomes:?}"
        );
        let (_, back) = read(&b.storage, &h, None).await?.context("blob missing")?;
        ensure!(back == content, "content differs after concurrent puts");
    }
    Ok(())
}

async fn wrong_hash_stores_nothing(b: &Backend) -> Result<()> {
    // Small (one PUT) and big (multipart, aborted) uploads.
    for (len, seed) in [(10_000, 5), (12 * 1024 * 1024, 6)] {
        let content = pseudo_random(len, seed);
        let claimed = hash(b"something else entirely");
        let file = b.file(&format!("blob-{seed}"), &content)?;
        match b.storage.put_blob_file(&claimed, &file).await {
            Err(StorageError::HashMismatch {
                expected, actual, ..
            }) => {
                assert_eq!(expected, claimed);
                assert_eq!(actual, hash(&content));
            }
            other => bail!("expected HashMismatch, got {other:?}"),
        }
        ensure!(!b.storage.has_blob(&claimed).await?);
        ensure!(!b.storage.has_blob(&hash(&content)).await?);
        let stored = b.everything_stored().await?;
        ensure!(stored.is_empty(), "left behind: {stored:?}");
    }
    Ok(())
}

async fn invalid_hashes_are_refused(b: &Backend) -> Result<()> {
    let file = b.file("blob", b"x")?;
    let good = hash(b"x");
    let upper = good.to_uppercase();
    let traversal = format!("../../{}", &good[6..]);
    for bad in ["", "abc", upper.as_str(), traversal.as_str(), &good[1..]] {
        let invalid = |r: Result<(), StorageError>| match r {
            Err(StorageError::InvalidHash(_)) => Ok(()),
            other => Err(anyhow::anyhow!(
                "{bad:?}: expected InvalidHash, got {other:?}"
            )),
        };
        invalid(b.storage.put_blob_file(bad, &file).await.map(drop))?;
        invalid(b.storage.put_bundle(bad, Bytes::new()).await.map(drop))?;
        invalid(b.storage.has_blob(bad).await.map(drop))?;
        invalid(b.storage.blob_size(bad).await.map(drop))?;
        invalid(b.storage.get_bundle(bad).await.map(drop))?;
        invalid(b.storage.get_blob_range(bad, None).await.map(drop))?;
    }
    let stored = b.everything_stored().await?;
    ensure!(stored.is_empty(), "stored: {stored:?}");
    Ok(())
}

async fn bundle_put_get_overwrite(b: &Backend) -> Result<()> {
    let h = hash(b"artifact");
    assert_eq!(b.storage.get_bundle(&h).await?, None);
    ensure!(!b.storage.has_bundle(&h).await?);
    let first = Bytes::from_static(br#"{"attestations":[1]}"#);
    let second = Bytes::from_static(br#"{"attestations":[1,2]}"#);
    assert_eq!(
        b.storage.put_bundle(&h, first.clone()).await?,
        PutOutcome::Stored
    );
    assert_eq!(b.storage.get_bundle(&h).await?, Some(first));
    ensure!(b.storage.has_bundle(&h).await?);
    assert_eq!(
        b.storage.put_bundle(&h, second.clone()).await?,
        PutOutcome::Stored
    );
    assert_eq!(b.storage.get_bundle(&h).await?, Some(second));
    // A bundle is not a blob.
    ensure!(!b.storage.has_blob(&h).await?);
    Ok(())
}

async fn blob_ranges(b: &Backend) -> Result<()> {
    let content = pseudo_random(1_000, 7);
    let h = hash(&content);
    b.storage
        .put_blob_file(&h, &b.file("blob", &content)?)
        .await?;
    for (range, expected) in [
        (0..1_000, &content[..]),
        (0..1, &content[..1]),
        (10..20, &content[10..20]),
        (990..1_000, &content[990..]),
        (999..1_000, &content[999..]),
        // Past the end: cut at the end, as HTTP does.
        (995..5_000, &content[995..]),
    ] {
        let (size, back) = read(&b.storage, &h, Some(range.clone()))
            .await?
            .context("blob missing")?;
        assert_eq!(size, 1_000, "{range:?}");
        ensure!(back == expected, "{range:?}: wrong bytes");
    }
    for start in [1_000, 1_001, u64::MAX - 1] {
        match b.storage.get_blob_range(&h, Some(start..u64::MAX)).await {
            Err(StorageError::RangeNotSatisfiable { start: s, size }) => {
                assert_eq!((s, size), (start, 1_000));
            }
            Err(e) => bail!("{start}..: expected RangeNotSatisfiable, got {e:?}"),
            Ok(r) => bail!(
                "{start}..: expected RangeNotSatisfiable, got {:?}",
                r.map(|r| r.0)
            ),
        }
    }
    for (start, end) in [(5, 5), (6, 5)] {
        match b.storage.get_blob_range(&h, Some(start..end)).await {
            Err(StorageError::InvalidRange { .. }) => {}
            Err(e) => bail!("{start}..{end}: expected InvalidRange, got {e:?}"),
            Ok(r) => bail!(
                "{start}..{end}: expected InvalidRange, got {:?}",
                r.map(|r| r.0)
            ),
        }
    }
    Ok(())
}

async fn missing_is_none(b: &Backend) -> Result<()> {
    let h = hash(b"never stored");
    ensure!(!b.storage.has_blob(&h).await?);
    assert_eq!(b.storage.blob_size(&h).await?, None);
    assert_eq!(b.storage.get_bundle(&h).await?, None);
    ensure!(read(&b.storage, &h, None).await?.is_none());
    ensure!(read(&b.storage, &h, Some(0..10)).await?.is_none());
    ensure!(read(&b.storage, &h, Some(100..200)).await?.is_none());
    // A missing file is an I/O error naming it, and stores nothing.
    let missing = b.scratch.path().join("does-not-exist");
    match b.storage.put_blob_file(&h, &missing).await {
        Err(StorageError::Io { path, .. }) => assert_eq!(path, missing),
        other => bail!("expected Io, got {other:?}"),
    }
    Ok(())
}

async fn empty_blob(b: &Backend) -> Result<()> {
    let h = hash(b"");
    assert_eq!(
        b.storage.put_blob_file(&h, &b.file("empty", b"")?).await?,
        PutOutcome::Stored
    );
    assert_eq!(b.storage.blob_size(&h).await?, Some(0));
    assert_eq!(read(&b.storage, &h, None).await?, Some((0, Vec::new())));
    match b.storage.get_blob_range(&h, Some(0..1)).await {
        Err(StorageError::RangeNotSatisfiable { start: 0, size: 0 }) => Ok(()),
        Err(e) => bail!("expected RangeNotSatisfiable, got {e:?}"),
        Ok(r) => bail!("expected RangeNotSatisfiable, got {:?}", r.map(|r| r.0)),
    }
}

async fn large_blob_multipart(b: &Backend) -> Result<()> {
    let content = pseudo_random(12 * 1024 * 1024 + 123, 8);
    ensure!(
        content.len() > PART_SIZE,
        "must take the multipart path (PART_SIZE = {PART_SIZE})"
    );
    let h = hash(&content);
    let file = b.file("big", &content)?;
    assert_eq!(
        b.storage.put_blob_file(&h, &file).await?,
        PutOutcome::Stored
    );
    assert_eq!(b.storage.blob_size(&h).await?, Some(content.len() as u64));
    let (size, back) = read(&b.storage, &h, None).await?.context("blob missing")?;
    assert_eq!(size, content.len() as u64);
    ensure!(back == content, "read back different bytes");
    // Across the part boundary.
    let boundary = PART_SIZE as u64;
    let (_, part) = read(&b.storage, &h, Some(boundary - 10..boundary + 10))
        .await?
        .context("blob missing")?;
    ensure!(part == content[PART_SIZE - 10..PART_SIZE + 10]);
    assert_eq!(
        b.storage.put_blob_file(&h, &file).await?,
        PutOutcome::AlreadyPresent
    );
    // Nothing but the blob (no staging files, no second key).
    let stored = b.everything_stored().await?;
    ensure!(
        stored.iter().all(|k| k.ends_with(&format!("blobs/{h}"))),
        "unexpected: {stored:?}"
    );
    Ok(())
}

async fn exactly_one_part(b: &Backend) -> Result<()> {
    // The boundary between the two paths: PART_SIZE bytes go multipart, as one part.
    for len in [PART_SIZE - 1, PART_SIZE] {
        let content = pseudo_random(len, len as u64);
        let h = hash(&content);
        let file = b.file("blob", &content)?;
        assert_eq!(
            b.storage.put_blob_file(&h, &file).await?,
            PutOutcome::Stored
        );
        let (size, back) = read(&b.storage, &h, None).await?.context("blob missing")?;
        assert_eq!(size, len as u64);
        ensure!(back == content, "{len}: read back different bytes");
    }
    Ok(())
}

async fn presigned_downloads(b: &Backend) -> Result<()> {
    let content = pseudo_random(5000, 9);
    let h = hash(&content);
    b.storage
        .put_blob_file(&h, &b.file("blob", &content)?)
        .await?;
    let url = b
        .storage
        .presigned_blob_url(
            &h,
            std::time::Duration::from_secs(60),
            Some("x-1.0.0.tar.gz"),
        )
        .await?;
    match (&b.s3_bucket, url) {
        (None, None) => ensure!(!b.storage.can_presign()),
        (Some(_), Some(url)) => {
            ensure!(b.storage.can_presign());
            // Anyone with the URL can fetch the bytes, without credentials.
            let response = reqwest::get(url.clone()).await?;
            ensure!(
                response.status().is_success(),
                "{url}: {}",
                response.status()
            );
            let disposition = response
                .headers()
                .get("content-disposition")
                .map(|v| v.to_str().unwrap_or_default().to_owned());
            ensure!(
                disposition.as_deref() == Some("attachment; filename=\"x-1.0.0.tar.gz\""),
                "{disposition:?}"
            );
            ensure!(response.bytes().await?.as_ref() == content.as_slice());
        }
        (bucket, url) => bail!("presigning on {bucket:?} gave {url:?}"),
    }
    assert!(matches!(
        b.storage
            .presigned_blob_url("../etc", std::time::Duration::from_secs(60), None)
            .await,
        Err(StorageError::InvalidHash(_))
    ));
    Ok(())
}

// ---------------------------------------------------------------------------------------

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    let backend = super::Backend::local()?;
                    super::$name(&backend).await?;
                    backend.cleanup().await
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    let Some(backend) = super::Backend::s3(stringify!($name))? else {
                        return Ok(());
                    };
                    super::$name(&backend).await?;
                    backend.cleanup().await
                }
            )*
        }
    };
}

conformance!(
    blob_round_trip,
    second_put_is_already_present,
    concurrent_puts_agree,
    wrong_hash_stores_nothing,
    invalid_hashes_are_refused,
    bundle_put_get_overwrite,
    blob_ranges,
    missing_is_none,
    empty_blob,
    large_blob_multipart,
    exactly_one_part,
    presigned_downloads,
);

#[test]
fn s3_config_without_credentials_is_refused() {
    let config = StorageConfig::S3 {
        endpoint: "http://127.0.0.1:1".into(),
        bucket: "b".into(),
        region: "us-east-1".into(),
        access_key_id: String::new(),
        secret_access_key: "s".into(),
        allow_http: true,
    };
    assert!(matches!(
        ArtifactStorage::open(&config),
        Err(StorageError::Config(_))
    ));
}

#[tokio::test]
async fn unreachable_s3_is_an_error_not_a_hang() -> Result<()> {
    // Nothing listens on port 1: connection refused, retried by object_store (10 times with
    // backoff, ~2 s here), then a Store error.
    let storage = ArtifactStorage::open(&StorageConfig::S3 {
        endpoint: "http://127.0.0.1:1".into(),
        bucket: "b".into(),
        region: "us-east-1".into(),
        access_key_id: "a".into(),
        secret_access_key: "s".into(),
        allow_http: true,
    })?;
    match storage.has_blob(&hash(b"x")).await {
        Err(StorageError::Store { .. }) => Ok(()),
        other => bail!("expected a Store error, got {other:?}"),
    }
}
