//! Where builders download a version's `.crate` from.
//!
//! The store keeps what a build needs to be checked (name, version, checksum) but not URLs:
//! those come from the registry's `config.json` (its `dl` template), read once and kept.
//! A sparse index serves it over HTTP; a git index has it in the checkout.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use buildsrs_index::{IndexConfig, SparseFollower};
use tokio::sync::Mutex;

use crate::config::{Config, IndexSource};

/// Expands download URLs for the configured index. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DownloadUrls {
    source: Source,
    config: Arc<Mutex<Option<IndexConfig>>>,
}

#[derive(Clone, Debug)]
enum Source {
    Sparse(String),
    GitCheckout(PathBuf),
}

impl DownloadUrls {
    /// For the index a coordinator is configured with.
    pub fn for_config(config: &Config) -> Self {
        let source = match &config.index {
            IndexSource::Sparse(url) => Source::Sparse(url.clone()),
            IndexSource::Git(_) => Source::GitCheckout(config.git_checkout()),
        };
        Self {
            source,
            config: Arc::new(Mutex::new(None)),
        }
    }

    /// The download URL of `name` `version` with checksum `cksum`. Reads `config.json` the
    /// first time (and again after a failure).
    pub async fn download_url(&self, name: &str, version: &str, cksum: &str) -> Result<String> {
        let mut cached = self.config.lock().await;
        if cached.is_none() {
            *cached = Some(self.load().await?);
        }
        cached
            .as_ref()
            .and_then(|c| c.download_url(name, version, cksum))
            .ok_or_else(|| anyhow!("no download URL for {name} {version} (checksum {cksum:?})"))
    }

    async fn load(&self) -> Result<IndexConfig> {
        match &self.source {
            Source::Sparse(url) => {
                let mut follower = SparseFollower::new(url)?;
                Ok(follower
                    .refresh_config()
                    .await
                    .with_context(|| format!("reading config.json of {url}"))?
                    .clone())
            }
            Source::GitCheckout(dir) => {
                let path = dir.join("config.json");
                let bytes = tokio::fs::read(&path)
                    .await
                    .with_context(|| format!("reading {}", path.display()))?;
                Ok(IndexConfig::from_json(&bytes)?)
            }
        }
    }
}
