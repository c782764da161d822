//! Fixtures shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use buildsrs_keys::{ArtifactId, Blake3Hash, Identity, PublicKey};
use buildsrs_store::{
    BuildOutcome, IndexVersion, Lease, NewBuilder, Store, StoredBuild, Submission, SubmitReport,
};
use jiff::Timestamp;

pub const TARGET: &str = "x86_64-unknown-linux-gnu";
pub const TOOLCHAIN: &str = "1.95.0";

/// A fixed point in time plus `seconds`.
pub fn t(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).unwrap()
}

/// Builder number `n`'s key.
pub fn key(n: u8) -> PublicKey {
    Identity::from_seed([n; 32]).public_key()
}

/// A distinct, well-formed checksum per `n`.
pub fn cksum(n: u64) -> String {
    format!("{n:064x}")
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

/// One target and one toolchain.
pub async fn matrix(store: &Store) {
    store.set_target(TARGET, true, t(0)).await.unwrap();
    store.set_toolchain(TOOLCHAIN, true, t(0)).await.unwrap();
}

/// Registers and approves builder `n` for the default target and toolchain.
pub async fn builder(store: &Store, n: u8) -> PublicKey {
    let public_key = key(n);
    store
        .register_builder(
            NewBuilder {
                public_key,
                name: format!("builder-{n}"),
                targets: vec![TARGET.to_owned()],
                toolchains: vec![TOOLCHAIN.to_owned()],
            },
            t(0),
        )
        .await
        .unwrap();
    store.approve_builder(&public_key, t(0)).await.unwrap();
    public_key
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

pub async fn lease(store: &Store, builder: &PublicKey, now: Timestamp) -> Lease {
    store
        .lease_next(builder, now)
        .await
        .unwrap()
        .expect("a task to lease")
}

pub async fn submit(
    store: &Store,
    lease: &Lease,
    builder: &PublicKey,
    outcome: BuildOutcome,
    now: Timestamp,
) -> SubmitReport {
    store
        .submit(
            Submission {
                lease_id: lease.lease_id,
                epoch: lease.epoch,
                builder: *builder,
                outcome,
                log: None,
            },
            now,
        )
        .await
        .unwrap()
}
