//! Errors of the blob node. iroh and iroh-blobs report failures through their own error
//! stacks (`n0_error`), which do not all implement `std::error::Error`; their messages are
//! kept as text here, with the context (path, hash, provider) this crate knows about.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use buildsrs_keys::Blake3Hash;

use crate::BlobAddress;

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// The blob store could not be opened (directory not writable, database locked by
    /// another process, ...).
    #[error("cannot open the blob store in {dir}: {reason}")]
    OpenStore { dir: PathBuf, reason: String },
    /// The iroh endpoint could not be bound.
    #[error("cannot bind the blob endpoint on {bind}: {reason}")]
    Bind { bind: SocketAddr, reason: String },
    /// A file or byte buffer could not be imported into the store.
    #[error("cannot import {what} into the blob store: {reason}")]
    Import { what: String, reason: String },
    /// The local store failed an operation that should not fail.
    #[error("blob store failure while {action}: {reason}")]
    Store {
        action: &'static str,
        reason: String,
    },
    /// The blob is not (completely) in the local store.
    #[error("blob {hash} is not in the local store")]
    NotFound { hash: Blake3Hash },
    /// A provider address could not be used (malformed endpoint id, no socket address).
    #[error("unusable provider address {endpoint_id:?}: {reason}")]
    InvalidAddr { endpoint_id: String, reason: String },
    /// `fetch` was given an empty provider list.
    #[error("cannot fetch blob {hash}: no providers given")]
    NoProviders { hash: Blake3Hash },
    /// Every provider failed; one entry per provider, in the order they were tried.
    #[error("cannot fetch blob {hash}: all {} providers failed: {}", failures.len(), FailureList(failures))]
    FetchFailed {
        hash: Blake3Hash,
        failures: Vec<ProviderFailure>,
    },
    /// Writing the exported file failed.
    #[error("cannot export blob {hash} to {dest}: {source}")]
    Export {
        hash: Blake3Hash,
        dest: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The exported bytes do not hash to the blob's hash: the local store is damaged. The
    /// destination was left untouched.
    #[error(
        "refusing to export blob {hash} to {dest}: the stored bytes hash to {actual} (store damaged)"
    )]
    ExportMismatch {
        hash: Blake3Hash,
        dest: PathBuf,
        actual: Blake3Hash,
    },
    /// Shutting down the router, endpoint or store failed.
    #[error("blob node shutdown failed: {reason}")]
    Shutdown { reason: String },
}

/// What went wrong with one provider during a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// The address could not be used at all (malformed id, no socket address).
    InvalidAddr,
    /// The address is this node's own endpoint (iroh cannot connect to itself).
    SelfAddr,
    /// No QUIC connection could be made (nothing listening, wrong key, timeout).
    Unreachable,
    /// Connected, but the provider did not send the blob (it does not have it, or stopped).
    NotServed,
    /// The provider sent bytes that failed BLAKE3 verification.
    Corrupt,
    /// The transfer made no progress for the stall timeout.
    Stalled,
    /// Anything else that broke the transfer (connection lost, protocol error).
    Transfer,
    /// The local store failed while receiving.
    Local,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidAddr => "invalid address",
            Self::SelfAddr => "own address",
            Self::Unreachable => "unreachable",
            Self::NotServed => "blob not served",
            Self::Corrupt => "corrupt data",
            Self::Stalled => "stalled",
            Self::Transfer => "transfer failed",
            Self::Local => "local store failure",
        })
    }
}

/// One provider's failure in a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderFailure {
    /// The provider, as it was given to `fetch`.
    pub provider: BlobAddress,
    /// The kind of failure, for callers that react differently (e.g. distrust a peer that
    /// sent corrupt data, retry one that was unreachable).
    pub kind: FailureKind,
    /// The underlying error message.
    pub detail: String,
}

impl fmt::Display for ProviderFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.provider, self.kind, self.detail)
    }
}

struct FailureList<'a>(&'a [ProviderFailure]);

impl fmt::Display for FailureList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, failure) in self.0.iter().enumerate() {
            write!(f, "\n  {}. {failure}", i + 1)?;
        }
        Ok(())
    }
}
