//! [`StorageError`].

use std::path::PathBuf;

/// What can go wrong in [`ArtifactStorage`](crate::ArtifactStorage).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The hash given is not 64 lowercase hex digits. Holds (at most the first 80 characters
    /// of) what was given.
    #[error("{0:?} is not a BLAKE3 hash (64 lowercase hex digits)")]
    InvalidHash(String),
    /// The file does not hash to what the caller said; nothing was stored.
    #[error("{} hashes to {actual}, not to the expected {expected}; nothing stored", path.display())]
    HashMismatch {
        /// The file that was read.
        path: PathBuf,
        /// The hash the caller gave.
        expected: String,
        /// The BLAKE3 of the bytes read.
        actual: String,
    },
    /// The configuration cannot work (e.g. empty credentials, an unusable endpoint).
    #[error("invalid storage configuration: {0}")]
    Config(String),
    /// A local file or directory could not be read or created.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `"reading"`.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The object store failed an operation (after its own retries, for S3).
    #[error("object storage: {op} {key}: {source}")]
    Store {
        /// What was being done, e.g. `"put"`.
        op: &'static str,
        /// The object key.
        key: String,
        /// The cause.
        #[source]
        source: object_store::Error,
    },
    /// An empty or inverted byte range was asked for.
    #[error("invalid byte range {start}..{end}")]
    InvalidRange {
        /// Range start (inclusive).
        start: u64,
        /// Range end (exclusive).
        end: u64,
    },
    /// The range starts at or beyond the end of the blob (HTTP 416; report `bytes */size`).
    #[error("byte range starting at {start} is not within the blob of {size} bytes")]
    RangeNotSatisfiable {
        /// Range start that was asked for.
        start: u64,
        /// The blob's size.
        size: u64,
    },
}

impl StorageError {
    pub(crate) fn store(
        op: &'static str,
        key: &object_store::path::Path,
    ) -> impl FnOnce(object_store::Error) -> Self {
        let key = key.to_string();
        move |source| StorageError::Store { op, key, source }
    }
}
