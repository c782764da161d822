//! Downloading a crate's source: streamed, capped in size and time, and checked against the
//! index checksum before anything else looks at it.
//!
//! The `.crate` goes to a temporary file beside its destination while its SHA-256 is computed
//! on the fly. Only when the size stayed under the cap and the digest equals the index
//! `cksum` is it renamed into place; otherwise it is deleted and nothing is built.
//!
//! Nothing here waits without end: the whole download (connecting, the answer, every byte of
//! the body) has a deadline ([`DownloadLimits::total`]), and a server that sends nothing for
//! [`DownloadLimits::stall`] is given up on before that. A registry that stalls or dribbles is
//! the registry's trouble (or the network's), never the crate's: [`FetchError::is_source_fault`]
//! says no.

use std::path::{Path, PathBuf};
use std::time::Duration;

use buildsrs_keys::Sha256Digest;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// crates.io refuses uploads above 10 MiB; we allow some slack for other registries.
pub const DEFAULT_MAX_CRATE_BYTES: u64 = 64 << 20;

/// The longest a download may go without receiving a byte (never more than the total).
pub const DEFAULT_STALL: Duration = Duration::from_secs(30);

/// How much a download may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DownloadLimits {
    /// The largest body accepted, in bytes.
    pub max_bytes: u64,
    /// The whole download, from connecting to the last byte.
    pub total: Duration,
    /// The longest wait for the answer or the next bytes of the body.
    pub stall: Duration,
}

impl DownloadLimits {
    /// `max_bytes` within `total`, stalling for at most [`DEFAULT_STALL`] (or `total`, when
    /// shorter).
    pub fn new(max_bytes: u64, total: Duration) -> Self {
        Self {
            max_bytes,
            total,
            stall: DEFAULT_STALL.min(total),
        }
    }
}

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
    /// The download did not finish within its deadline.
    #[error("GET {url}: not finished after {} s (the download limit; {received} bytes received)", limit.as_secs_f64())]
    TimedOut {
        /// The download URL.
        url: String,
        /// The deadline.
        limit: Duration,
        /// Bytes of the body received by then.
        received: u64,
    },
    /// The server sent nothing for too long.
    #[error("GET {url}: the server sent nothing for {} s ({received} bytes received)", limit.as_secs_f64())]
    Stalled {
        /// The download URL.
        url: String,
        /// The stall limit.
        limit: Duration,
        /// Bytes of the body received by then.
        received: u64,
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

/// Downloads `url` to `dest` within `limits`, checking size and SHA-256. `progress` is called
/// with the bytes received so far and the total when the server said it.
pub async fn download_crate(
    client: &reqwest::Client,
    url: &str,
    expected: &Sha256Digest,
    limits: DownloadLimits,
    dest: &Path,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<u64, FetchError> {
    let max_bytes = limits.max_bytes;
    let clock = Clock::start(url, limits);
    let transfer = |source| FetchError::Transfer {
        url: url.to_owned(),
        source,
    };
    let response = clock
        .wait(client.get(url).send(), 0)
        .await?
        .map_err(transfer)?;
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
        while let Some(chunk) = clock.wait(body.next(), received).await? {
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

/// The deadline and the stall limit of one download.
struct Clock<'a> {
    url: &'a str,
    limits: DownloadLimits,
    deadline: tokio::time::Instant,
}

impl<'a> Clock<'a> {
    fn start(url: &'a str, limits: DownloadLimits) -> Self {
        Self {
            url,
            limits,
            deadline: tokio::time::Instant::now() + limits.total,
        }
    }

    /// Waits for `step` until the deadline or the stall limit, whichever comes first;
    /// `received` is for the error.
    async fn wait<T>(
        &self,
        step: impl std::future::Future<Output = T>,
        received: u64,
    ) -> Result<T, FetchError> {
        let stall_end = tokio::time::Instant::now() + self.limits.stall;
        let until = stall_end.min(self.deadline);
        match tokio::time::timeout_at(until, step).await {
            Ok(value) => Ok(value),
            Err(_) if until == self.deadline => Err(FetchError::TimedOut {
                url: self.url.to_owned(),
                limit: self.limits.total,
                received,
            }),
            Err(_) => Err(FetchError::Stalled {
                url: self.url.to_owned(),
                limit: self.limits.stall,
                received,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use buildsrs_test_support::stalling_registry::{Sends, StallingRegistry};
    use std::time::Instant;

    async fn download(url: &str, limits: DownloadLimits) -> (Result<u64, FetchError>, PathBuf) {
        let dir = tempfile::tempdir().unwrap().keep();
        let dest = dir.join("x-1.0.0.crate");
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let result = download_crate(
            &client,
            url,
            &Sha256Digest::from_bytes([0; 32]),
            limits,
            &dest,
            |_, _| {},
        )
        .await;
        (result, dir)
    }

    #[tokio::test]
    async fn a_server_that_stops_sending_is_given_up_on_at_the_stall_limit() {
        let registry = StallingRegistry::start(Sends::Nothing).unwrap();
        let url = registry.download_url("x", "1.0.0");
        let limits = DownloadLimits {
            max_bytes: 1 << 20,
            total: Duration::from_secs(20),
            stall: Duration::from_millis(300),
        };
        let started = Instant::now();
        let (result, dir) = download(&url, limits).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        let error = result.unwrap_err();
        assert!(
            matches!(error, FetchError::Stalled { received: 0, .. }),
            "{error}"
        );
        assert!(!error.is_source_fault());
        assert!(
            error.to_string().contains("sent nothing for 0.3 s"),
            "{error}"
        );
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "no partial file is left"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_server_that_dribbles_is_given_up_on_at_the_deadline() {
        let registry =
            StallingRegistry::start(Sends::OneByteEvery(Duration::from_millis(20))).unwrap();
        let url = registry.download_url("x", "1.0.0");
        let limits = DownloadLimits {
            max_bytes: 1 << 20,
            total: Duration::from_millis(700),
            stall: Duration::from_millis(300),
        };
        let started = Instant::now();
        let (result, dir) = download(&url, limits).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        let error = result.unwrap_err();
        match &error {
            FetchError::TimedOut { received, .. } => assert!(*received > 0, "{error}"),
            other => panic!("expected the deadline, got {other}"),
        }
        assert!(!error.is_source_fault());
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "no partial file is left"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_stall_limit_never_exceeds_the_total() {
        assert_eq!(
            DownloadLimits::new(1, Duration::from_secs(5)).stall,
            Duration::from_secs(5)
        );
        assert_eq!(
            DownloadLimits::new(1, Duration::from_secs(300)).stall,
            DEFAULT_STALL
        );
    }
}
