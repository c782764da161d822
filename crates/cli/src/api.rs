//! The coordinator as a client sees it: version lookups and the feed in the JSON API (its
//! answers are the `buildsrs-api` types), and downloads.
//!
//! Nothing read here is trusted: the API says which artifact to fetch and where, and the
//! caller checks the bytes against signatures. Answers are size-capped so a hostile server
//! cannot make us hold unbounded memory.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use buildsrs_api::ErrorBody;
use buildsrs_api::answers::{FeedPage, VersionAnswer};
use buildsrs_api::params::{Cursor, Limit, VersionRef};
use buildsrs_api::routes;
use buildsrs_keys::CrateName;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::de::DeserializeOwned;
use tokio::io::AsyncWriteExt;
use url::Url;

/// The largest JSON answer or bundle we read into memory.
const MAX_SMALL_BODY: usize = 16 << 20;

/// A coordinator (or a mirror, for downloads) at a base URL.
#[derive(Clone, Debug)]
pub struct Coordinator {
    base: Url,
    http: reqwest::Client,
}

impl Coordinator {
    /// A client for the server at `base` (`http://` or `https://`).
    pub fn new(base: &str) -> Result<Self> {
        let mut base = Url::parse(base).with_context(|| format!("{base:?} is not a URL"))?;
        ensure!(
            matches!(base.scheme(), "http" | "https"),
            "{base}: expected an http:// or https:// URL"
        );
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        // reqwest's TLS needs a process-wide crypto provider; an error means one is set.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("buildsrs/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(15))
            .build()
            .context("setting up the HTTP client")?;
        Ok(Coordinator { base, http })
    }

    /// The absolute URL of a server path (`/api/v1/…`). Paths come from the server's own
    /// answers (download links, the feed's blob paths): one that names another origin, or
    /// leaves the base path, is refused, so a server cannot send us anywhere else.
    pub fn url(&self, path: &str) -> Result<Url> {
        let url = self
            .base
            .join(path.trim_start_matches('/'))
            .with_context(|| format!("{path:?} is not a path on {}", self.base))?;
        ensure!(
            url.origin() == self.base.origin() && url.path().starts_with(self.base.path()),
            "{path:?} is not a path on {}: refused",
            self.base
        );
        Ok(url)
    }

    /// The version `version` (or `latest`) of `name`.
    pub async fn version(&self, name: &CrateName, version: &VersionRef) -> Result<VersionAnswer> {
        self.get_json(&routes::version(name, version)).await
    }

    /// A page of the feed of verified artifacts after `since`.
    pub async fn feed(&self, since: Cursor, limit: Limit) -> Result<FeedPage> {
        self.get_json(&routes::feed(since, limit)).await
    }

    /// An API answer, read as its `buildsrs-api` type.
    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let bytes = self.get_small(path).await?;
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{}{path}: not the answer of a buildsrs coordinator",
                self.base.as_str().trim_end_matches('/')
            )
        })
    }

    /// A small body (JSON, a bundle, a keyring), read whole.
    pub async fn get_small(&self, path: &str) -> Result<Vec<u8>> {
        let url = self.url(path)?;
        let response = self.send(&url).await?;
        if let Some(length) = response.content_length() {
            ensure!(
                length <= MAX_SMALL_BODY as u64,
                "{url}: {length} bytes is too large an answer"
            );
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.with_context(|| format!("reading {url}"))?;
            ensure!(
                body.len() + chunk.len() <= MAX_SMALL_BODY,
                "{url}: the answer is too large"
            );
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Streams `path` into the file `dest`, with a progress bar on a terminal; returns the
    /// number of bytes written. More than `max` bytes (the size the answer named) is an
    /// error: a server cannot fill the disk.
    pub async fn download(&self, path: &str, dest: &Path, label: &str, max: u64) -> Result<u64> {
        let url = self.url(path)?;
        let response = self.send(&url).await?;
        if let Some(length) = response.content_length() {
            ensure!(
                length <= max,
                "{url}: {length} bytes, more than the {max} expected"
            );
        }
        let progress = match response.content_length() {
            Some(length) => ProgressBar::new(length),
            None => ProgressBar::no_length(),
        };
        progress.set_draw_target(ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        ) {
            progress.set_style(style);
        }
        progress.set_message(label.to_owned());
        let mut file = tokio::fs::File::create(dest)
            .await
            .with_context(|| format!("creating {}", dest.display()))?;
        let mut written = 0u64;
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.with_context(|| format!("downloading {url}"))?;
            ensure!(
                written + chunk.len() as u64 <= max,
                "{url}: more than the {max} bytes expected"
            );
            file.write_all(&chunk)
                .await
                .with_context(|| format!("writing {}", dest.display()))?;
            written += chunk.len() as u64;
            progress.set_position(written);
        }
        file.sync_all().await?;
        progress.finish_and_clear();
        Ok(written)
    }

    /// GET with the coordinator's error message on failure.
    async fn send(&self, url: &Url) -> Result<reqwest::Response> {
        let response = self
            .http
            .get(url.clone())
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.bytes().await.unwrap_or_default();
        match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(error) => bail!("{url}: {} ({status})", error.error.message),
            Err(_) => bail!("{url}: {status}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_under_the_base() {
        let c = Coordinator::new("http://127.0.0.1:8080/buildsrs").unwrap();
        assert_eq!(
            c.url("/api/v1/crates/x/latest").unwrap().as_str(),
            "http://127.0.0.1:8080/buildsrs/api/v1/crates/x/latest"
        );
        for elsewhere in [
            "http://evil.example/blobs/x",
            "https://127.0.0.1:8080/buildsrs/x",
            "http://127.0.0.1:8081/buildsrs/x",
            "../other/x",
            "/../other/x",
        ] {
            assert!(c.url(elsewhere).is_err(), "{elsewhere}");
        }
        assert!(Coordinator::new("ftp://example.invalid/").is_err());
        assert!(Coordinator::new("not a url").is_err());
    }
}
