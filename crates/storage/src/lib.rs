//! Object storage for verified artifacts: a local directory or an S3-compatible bucket,
//! keyed by content hash.
//!
//! Once a quorum of builders agree on an artifact, the coordinator mirrors it here:
//!
//! | key | holds |
//! |---|---|
//! | `blobs/<blake3 hex>` | the artifact archive's bytes |
//! | `attestations/<blake3 hex>.json` | its attestation bundle (JSON; replaced as it grows) |
//!
//! The hash is always 64 lowercase hex digits ([`ArtifactStorage::blob_key`] refuses anything
//! else), so a key can never escape its prefix. A blob is immutable: storing one checks that
//! the bytes hash to the key, never leaves a partial object under it, and is a no-op when it
//! is already there.
//!
//! ```no_run
//! # async fn demo() -> Result<(), buildsrs_storage::StorageError> {
//! use buildsrs_storage::{ArtifactStorage, PutOutcome, StorageConfig};
//! let storage = ArtifactStorage::open(&StorageConfig::Local { root: "/var/lib/buildsrs/artifacts".into() })?;
//! let hash = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
//! let outcome = storage.put_blob_file(hash, "/tmp/artifact.tar.gz".as_ref()).await?;
//! assert!(matches!(outcome, PutOutcome::Stored | PutOutcome::AlreadyPresent));
//! storage.put_bundle(hash, bytes::Bytes::from_static(b"{}")).await?;
//! assert_eq!(storage.blob_size(hash).await?, Some(0));
//! # Ok(()) }
//! ```
//!
//! With the `http` feature, [`http`] serves blobs and bundles from any storage, the same way
//! for the coordinator and for mirrors.
//!
//! Both backends are [`object_store`] implementations (`LocalFileSystem`, `AmazonS3`); one
//! test suite (`tests/conformance.rs`) runs every test body against both, S3 against a moto
//! server (`scripts/ensure-moto`).

mod config;
mod error;
#[cfg(feature = "http")]
pub mod http;
mod storage;

pub use config::StorageConfig;
pub use error::StorageError;
pub use storage::{ArtifactStorage, PART_SIZE, PutOutcome};

/// Re-exported so callers can name [`ArtifactStorage::blob_key`]'s result and
/// [`ArtifactStorage::object_store`] without depending on `object_store` themselves.
pub use object_store;

/// Installs ring's rustls provider as the process-wide default, once; does nothing if some
/// provider is installed already.
///
/// The workspace enables both of rustls' providers (ring through iroh and libp2p, aws-lc-rs
/// through object_store and reqwest), and then rustls cannot pick one by itself:
/// `rustls::ClientConfig::builder()` panics. Every binary and test harness that makes TLS
/// connections should call this (or install a provider itself) before the first one.
/// [`ArtifactStorage::open`] calls it for S3.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means a provider was installed first (by someone else): that one stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
