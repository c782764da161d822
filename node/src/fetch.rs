//! Downloading a crate's source: streamed, capped, and checked against the index checksum
//! before anything else looks at it.
//!
//! The `.crate` goes to a temporary file beside its destination while its SHA-256 is computed
//! on the fly. Only when the size stayed under the cap and the digest equals the index
//! `cksum` is it renamed into place; otherwise it is deleted and nothing is built.

use std::path::{Path, PathBuf};

use buildsrs_keys::Sha256Digest;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// crates.io refuses uploads above 10 MiB; we allow some slack for other registries.
pub const DEFAULT_MAX_CRATE_BYTES: u64 = 64 << 20;

/// Why a source could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The registry answered with an error status.
    #[error("GET {url}: HTTP {status}")]
    Status {
        /// The download URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The request or the transfer failed.
    #[error("GET {url}: {source}")]
    Transfer {
        /// The download URL.
        url: String,
        /// What went wrong.
        source: reqwest::Error,
    },
    /// The body is larger than allowed.
    #[error("GET {url}: the .crate is larger than {max} bytes")]
    TooLarge {
        /// The download URL.
        url: String,
        /// The cap.
        max: u64,
    },
    /// The bytes are not what the index promised.
    #[error("source checksum mismatch: the index says sha256 {expected}, the download is {actual}")]
    ChecksumMismatch {
        /// From the index.
        expected: Sha256Digest,
        /// Of the downloaded bytes.
        actual: Sha256Digest,
    },
    /// Writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

impl FetchError {
    /// Whether the crate (or its registry entry) is at fault rather than the node or network.
    pub fn is_source_fault(&self) -> bool {
        matches!(self, Self::ChecksumMismatch { .. } | Self::TooLarge { .. })
    }
}

/// Downloads `url` to `dest`, checking size and SHA-256. `progress` is called with the bytes
/// received so far and the total when the server said it.
pub async fn download_crate(
    client: &reqwest::Client,
    url: &str,
    expected: &Sha256Digest,
    max_bytes: u64,
    dest: &Path,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<u64, FetchError> {
    let transfer = |source| FetchError::Transfer {
        url: url.to_owned(),
        source,
    };
    let response = client.get(url).send().await.map_err(transfer)?;
    if !response.status().is_success() {
        return Err(FetchError::Status {
            url: url.to_owned(),
            status: response.status().as_u16(),
        });
    }
    let total = response.content_length();
    if total.is_some_and(|len| len > max_bytes) {
        return Err(FetchError::TooLarge {
            url: url.to_owned(),
            max: max_bytes,
        });
    }
    let partial = dest.with_extension("crate.partial");
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| FetchError::Io { path, source }
    };
    let mut file = tokio::fs::File::create(&partial)
        .await
        .map_err(io(&partial))?;
    let result = async {
        let mut hasher = Sha256::new();
        let mut received: u64 = 0;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(transfer)?;
            received += chunk.len() as u64;
            if received > max_bytes {
                return Err(FetchError::TooLarge {
                    url: url.to_owned(),
                    max: max_bytes,
                });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(io(&partial))?;
            progress(received, total);
        }
        file.sync_all().await.map_err(io(&partial))?;
        let actual = Sha256Digest::from_bytes(hasher.finalize().into());
        if &actual != expected {
            return Err(FetchError::ChecksumMismatch {
                expected: *expected,
                actual,
            });
        }
        Ok(received)
    }
    .await;
    match result {
        Ok(received) => {
            tokio::fs::rename(&partial, dest).await.map_err(io(dest))?;
            Ok(received)
        }
        Err(error) => {
            let _ = tokio::fs::remove_file(&partial).await;
            Err(error)
        }
    }
}
