//! Fixtures shared by the integration tests.
#![allow(dead_code, unused_imports, clippy::unwrap_used)]

use buildsrs_keys::{ArtifactId, Blake3Hash, PublicKey};
use buildsrs_store::{BuildOutcome, IndexVersion, Store, StoredBuild};
use jiff::Timestamp;

pub use buildsrs_store::testing::{TARGET, TOOLCHAIN, cksum, key, lease, submit};

/// A fixed point in time plus `seconds`.
pub fn t(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).unwrap()
}

pub fn line(name: &str, version: &str, yanked: bool) -> IndexVersion {
    let n = name.len() as u64 * 1_000_003 + version.len() as u64 * 7 + u64::from(yanked);
    IndexVersion {
        name: name.parse().expect("a crate name"),
        version: version.parse().expect("a version"),
        cksum: cksum(n).parse().expect("a sha256"),
        yanked,
        download_url: format!("https://registry.test/dl/{name}/{version}/download"),
        rust_version: None,
    }
}

/// A line with a `rust-version`.
pub fn line_needing(name: &str, version: &str, rust_version: &str) -> IndexVersion {
    IndexVersion {
        rust_version: Some(rust_version.to_owned()),
        ..line(name, version, false)
    }
}

/// One target and one toolchain, at `t(0)`.
pub async fn matrix(store: &Store) {
    buildsrs_store::testing::matrix(store, t(0)).await;
}

/// Registers and approves builder `n` for the default target and toolchain, at `t(0)`.
pub async fn builder(store: &Store, n: u8) -> PublicKey {
    buildsrs_store::testing::builder(store, n, t(0)).await
}

/// Matrix, `builders` approved builders, and one watched crate `demo` with versions
/// `1.0.0`.. `1.{versions-1}.0`, so one task per version: it is watched before the index shows
/// it, with the backfill that plans every version (the newest and all older ones).
pub async fn world(store: &Store, builders: u8, versions: u32) -> Vec<PublicKey> {
    matrix(store).await;
    let keys = futures_join(store, builders).await;
    store
        .watch_crate("demo", versions.saturating_sub(1), t(0))
        .await
        .unwrap();
    let batch = (0..versions)
        .map(|v| line("demo", &format!("1.{v}.0"), false))
        .collect();
    store.upsert_versions(batch, t(0)).await.unwrap();
    keys
}

async fn futures_join(store: &Store, builders: u8) -> Vec<PublicKey> {
    let mut keys = Vec::new();
    for n in 1..=builders {
        keys.push(builder(store, n).await);
    }
    keys
}

/// An artifact that differs per `n`.
pub fn artifact(n: u8) -> ArtifactId {
    ArtifactId {
        blake3: Blake3Hash::from_bytes([n; 32]),
        size: 1000 + u64::from(n),
    }
}

pub fn built(n: u8) -> BuildOutcome {
    BuildOutcome::Built(StoredBuild {
        artifact: artifact(n),
        signed: format!("signed attestation for artifact {n}").into_bytes(),
    })
}
