//! What a coordinator process is told to do, and where it keeps its files.
//!
//! ```text
//! D/coordinator.sqlite3   the job store, unless --database-url names a Postgres database
//! D/git-index/            the clone of a git index (git mode only)
//! D/git-index.cursor      the last git index commit fully ingested (git mode only)
//! D/coordinator.key       the coordinator's ed25519 identity (its libp2p peer id), mode 0600
//! D/coordinator.addr      the libp2p addresses it listens on, one per line (for scripts)
//! D/coordinator.http      the URL of its web UI and API, when it serves HTTP (for scripts)
//! D/blobs/                its iroh-blobs store: artifacts fetched from builders
//! D/artifacts/            object storage for verified artifacts, unless S3 is configured
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use buildsrs_index::WatchEntry;
use buildsrs_p2p::libp2p::Multiaddr;
use buildsrs_storage::StorageConfig;
use buildsrs_store::{Policy, StoreConfig};

use crate::network::NetworkLimits;

/// The crates.io sparse index (the default `--index`).
pub const CRATES_IO_SPARSE: &str = buildsrs_index::crates_io::INDEX;

/// Where the registry index is and how to follow it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexSource {
    /// A sparse HTTP index (`sparse+http(s)://…`), polled for the watched crates.
    Sparse(String),
    /// A git index (`git+https://…`, `file://…` or a local path), followed commit by commit
    /// for every crate in it.
    Git(String),
}

impl IndexSource {
    /// Reads `--index`: `sparse+…` is sparse, `git+…`, `file://…` and paths are git.
    pub fn parse(text: &str) -> Result<Self> {
        if text.starts_with("sparse+http://") || text.starts_with("sparse+https://") {
            Ok(Self::Sparse(text.to_owned()))
        } else if let Some(url) = text.strip_prefix("git+") {
            Ok(Self::Git(url.to_owned()))
        } else if text.starts_with("file://") {
            Ok(Self::Git(text.to_owned()))
        } else if text.starts_with('/') || text.starts_with('.') {
            Ok(Self::Git(format!(
                "file://{}",
                absolute(Path::new(text))?.display()
            )))
        } else {
            bail!(
                "--index {text:?}: expected sparse+https://…, sparse+http://…, git+https://…, \
                 file://… or a path to a git index"
            )
        }
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    Ok(std::path::absolute(path)?)
}

/// The crates of `config.watch` with the backfill each asked for (`NAME:N`, else
/// `config.backfill`), sorted by name. A crate named twice gets the larger backfill: planned
/// tasks are never taken back, so that is what it gets anyway.
pub fn watch_requests(config: &Config) -> Result<BTreeMap<String, u32>> {
    let mut requests = BTreeMap::new();
    for text in &config.watch {
        let entry: WatchEntry = text
            .parse()
            .map_err(|e| anyhow::anyhow!("--watch {text:?}: {e}"))?;
        let backfill = entry.backfill.unwrap_or(config.backfill);
        let asked = requests.entry(entry.name).or_insert(backfill);
        *asked = (*asked).max(backfill);
    }
    Ok(requests)
}

/// Everything `run` needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// The coordinator's data dir.
    pub data_dir: PathBuf,
    /// `postgres://…`; `None` means SQLite in the data dir.
    pub database_url: Option<String>,
    /// The registry index.
    pub index: IndexSource,
    /// Crates to watch (added to the store's watch list at start), each `NAME` or `NAME:N`:
    /// build the newest version and the `N` next-older ones (without `:N`, [`Self::backfill`]),
    /// then every version published from then on. See [`watch_requests`].
    pub watch: Vec<String>,
    /// The backfill of the crates in [`Self::watch`] that do not name one.
    pub backfill: u32,
    /// How often the sparse index is polled (and the git index fetched).
    pub poll_interval: Duration,
    /// Targets to build (enabled at start; the admin UI may add more).
    pub targets: Vec<String>,
    /// Toolchains to build with (enabled at start).
    pub toolchains: Vec<String>,
    /// Scheduling policy (quorum, leases, retries).
    pub policy: Policy,
    /// How often expired leases are swept back into the queue.
    pub expiry_interval: Duration,
    /// libp2p addresses to serve the job protocol on; empty means no network (the
    /// coordinator only follows the index and plans).
    pub listen: Vec<Multiaddr>,
    /// Approve every builder that says hello (local networks only).
    pub auto_approve: bool,
    /// What the coordinator takes from its libp2p peers: connections, request rates.
    pub network_limits: NetworkLimits,
    /// Where the coordinator's blob client binds.
    pub blobs_bind: SocketAddr,
    /// Where verified artifacts go; `None` means a directory in the data dir.
    pub storage: Option<StorageConfig>,
    /// Where the web UI, JSON API and downloads are served; `None` means no HTTP.
    pub http: Option<SocketAddr>,
    /// The admin token of the web UI; `None` disables the admin pages.
    pub admin_token: Option<String>,
    /// The URL people reach the web UI at, for the commands its pages show.
    pub public_url: Option<String>,
    /// Redirect downloads to presigned object storage URLs valid this long (S3 only).
    pub presign_downloads: Option<Duration>,
    /// How long rendered public pages and API answers are served from memory (zero: off).
    pub page_cache_ttl: Duration,
}

impl Config {
    /// A configuration with defaults for everything but the data dir.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            database_url: None,
            index: IndexSource::Sparse(CRATES_IO_SPARSE.to_owned()),
            watch: Vec::new(),
            backfill: 0,
            poll_interval: Duration::from_secs(60),
            targets: vec!["x86_64-unknown-linux-gnu".to_owned()],
            toolchains: Vec::new(),
            policy: Policy::default(),
            expiry_interval: Duration::from_secs(15),
            listen: Vec::new(),
            auto_approve: false,
            network_limits: NetworkLimits::default(),
            blobs_bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            storage: None,
            http: None,
            admin_token: None,
            public_url: None,
            presign_downloads: None,
            page_cache_ttl: Duration::from_secs(1),
        }
    }

    /// Where verified artifacts go.
    pub fn storage_config(&self) -> StorageConfig {
        self.storage
            .clone()
            .unwrap_or_else(|| StorageConfig::Local {
                root: self.data_dir.join("artifacts"),
            })
    }

    /// The coordinator's identity file.
    pub fn identity_path(&self) -> PathBuf {
        self.data_dir.join("coordinator.key")
    }

    /// Where the listen addresses are written.
    pub fn addr_path(&self) -> PathBuf {
        self.data_dir.join("coordinator.addr")
    }

    /// Where the web UI's URL is written.
    pub fn http_path(&self) -> PathBuf {
        self.data_dir.join("coordinator.http")
    }

    /// How to open the store.
    pub fn store_config(&self) -> Result<StoreConfig> {
        let config = match &self.database_url {
            Some(url) => StoreConfig::from_url(url)?,
            None => StoreConfig::sqlite(self.data_dir.join("coordinator.sqlite3")),
        };
        Ok(config.with_policy(self.policy.clone()))
    }

    /// Where a git index is cloned.
    pub fn git_checkout(&self) -> PathBuf {
        self.data_dir.join("git-index")
    }

    /// Where the git cursor is kept.
    pub fn git_cursor(&self) -> PathBuf {
        self.data_dir.join("git-index.cursor")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_requests_take_a_backfill_per_crate_or_the_default() {
        let mut config = Config::new("/nonexistent");
        config.backfill = 1;
        config.watch = ["ripgrep:3", "bat", "fd-find:0", "bat:2", "ripgrep"]
            .map(String::from)
            .to_vec();
        let requests: Vec<(String, u32)> = watch_requests(&config).unwrap().into_iter().collect();
        assert_eq!(
            requests,
            [
                ("bat".to_owned(), 2),
                ("fd-find".to_owned(), 0),
                ("ripgrep".to_owned(), 3)
            ]
        );
        config.watch = vec!["ripgrep:lots".into()];
        let error = watch_requests(&config).unwrap_err().to_string();
        assert!(error.starts_with("--watch \"ripgrep:lots\""), "{error}");
        config.watch = vec!["../etc".into()];
        assert!(watch_requests(&config).is_err());
    }

    #[test]
    fn index_sources_parse_by_scheme() {
        assert_eq!(
            IndexSource::parse(CRATES_IO_SPARSE).unwrap(),
            IndexSource::Sparse(CRATES_IO_SPARSE.into())
        );
        assert_eq!(
            IndexSource::parse("git+https://example.invalid/index").unwrap(),
            IndexSource::Git("https://example.invalid/index".into())
        );
        assert_eq!(
            IndexSource::parse("/srv/index").unwrap(),
            IndexSource::Git("file:///srv/index".into())
        );
        assert!(IndexSource::parse("https://index.crates.io/").is_err());
        assert!(IndexSource::parse("ftp://x").is_err());
    }
}
