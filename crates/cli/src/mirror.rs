//! `buildsrs mirror`: keep a copy of every verified artifact, by content hash, and serve it.
//!
//! Following: the coordinator's feed (`/api/v1/verified?since=N`) lists artifacts in the
//! order they were published, each with a feed number and the iroh-blobs addresses of peers
//! that hold it. For each, the mirror fetches the bundle, optionally checked against a
//! keyring (what fails is not kept), and the blob: from peers over iroh-blobs (`--peer`
//! addresses and the listed ones; BLAKE3-verified as it streams) or over HTTP from the
//! coordinator, which is also the fallback. Object storage refuses the blob unless its bytes
//! hash to its name, whichever way it came. The last feed number whose
//! predecessors are all done is saved in `DIR/mirror.cursor` after every page, so an
//! interrupted mirror resumes there, and what it already holds is never fetched again.
//!
//! The directory has the coordinator's storage layout (`blobs/<hash>`,
//! `attestations/<hash>.json`), so `buildsrs mirror serve` answers the same routes with the
//! same code (`buildsrs_storage::http`), and `buildsrs fetch --coordinator` can use it for
//! blobs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use buildsrs_api::answers::FeedItem;
use buildsrs_api::params::{Cursor, Limit};
use buildsrs_blobs::{BlobAddress, BlobConfig, BlobNode};
use buildsrs_keys::{ArtifactId, Blake3Hash, Bundle, Identity, Keyring, Policy, verify_bundle};
use buildsrs_storage::{ArtifactStorage, PutOutcome, StorageConfig, StorageError};
use clap::{Args, Subcommand};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::api::Coordinator;
use crate::fetch::DEFAULT_COORDINATOR;

/// Feed items asked for per page.
const FEED_PAGE: Limit = match Limit::new(100) {
    Some(limit) => limit,
    None => panic!("100 is a page size"),
};

/// `buildsrs mirror`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MirrorArgs {
    #[command(subcommand)]
    command: Option<MirrorCommand>,
    /// The coordinator whose verified artifacts to copy.
    #[arg(
        long,
        env = "BUILDSRS_COORDINATOR",
        default_value = DEFAULT_COORDINATOR,
        value_name = "URL"
    )]
    pub coordinator: String,
    /// The mirror's directory (`blobs/`, `attestations/`, `mirror.cursor`).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Copy what is listed now, then stop (default: keep following).
    #[arg(long)]
    pub once: bool,
    /// Seconds between polls when following.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub interval: u64,
    /// Keep only artifacts whose bundle verifies against this keyring.
    #[arg(long, value_name = "FILE")]
    pub keyring: Option<PathBuf>,
    /// With --keyring: how many distinct trusted builders must have signed.
    #[arg(long, default_value_t = 2, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub threshold: u32,
    /// Downloads at once.
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: u32,
    /// A peer that serves blobs over iroh-blobs (`ENDPOINT_ID@IP:PORT[,IP:PORT]`,
    /// repeatable); asked before those the coordinator lists.
    #[arg(long = "peer", value_name = "ADDR")]
    pub peers: Vec<BlobAddress>,
    /// Where blobs come from: peers first with HTTP as the fallback, or only one of them.
    #[arg(long, value_enum, default_value_t = Source::Auto)]
    pub from: Source,
    /// The UDP address the iroh endpoint binds (loopback unless peers are elsewhere).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub blobs_bind: std::net::SocketAddr,
}

/// Where blobs are fetched from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// Peers over iroh-blobs when any are known, else (or when they fail) HTTP.
    Auto,
    /// Only HTTP from the coordinator.
    Http,
    /// Only peers over iroh-blobs.
    Peers,
}

#[derive(Debug, Subcommand)]
enum MirrorCommand {
    /// Serve the mirror's blobs and bundles as the coordinator does.
    Serve(ServeArgs),
}

/// `buildsrs mirror serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The mirror's directory.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8090", value_name = "ADDR")]
    pub http: std::net::SocketAddr,
}

/// What happened to one artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Done {
    /// Fetched and stored (bytes, and whether from peers).
    Stored(u64, bool),
    /// Already here.
    Present,
    /// Its bundle did not verify against the keyring: not kept.
    Refused,
}

/// Counts for the summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    /// Artifacts fetched and stored.
    pub stored: u64,
    /// Of those, fetched from peers over iroh-blobs.
    pub from_peers: u64,
    /// Bytes fetched.
    pub bytes: u64,
    /// Artifacts already held.
    pub present: u64,
    /// Artifacts refused by the keyring check.
    pub refused: u64,
    /// Artifacts that failed (will be tried again).
    pub failed: u64,
    /// The saved cursor.
    pub cursor: i64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} new ({} bytes; {} from peers), {} already here, {} refused by the keyring, {} \
             failed; cursor {}",
            self.stored,
            self.bytes,
            self.from_peers,
            self.present,
            self.refused,
            self.failed,
            self.cursor
        )
    }
}

/// Runs `buildsrs mirror` (or `mirror serve`) until done or `shutdown`; the exit code.
pub async fn run(args: MirrorArgs, shutdown: CancellationToken) -> Result<u8> {
    if let Some(MirrorCommand::Serve(serve_args)) = args.command {
        serve(&serve_args, shutdown).await?;
        return Ok(crate::EXIT_OK);
    }
    let dir = args.dir.clone().context("--dir is required")?;
    let mirror = Mirror::open(&args, &dir).await?;
    let code = loop {
        let summary = match mirror.catch_up(&shutdown).await {
            Ok(summary) => summary,
            Err(error) => {
                mirror.close().await;
                return Err(error);
            }
        };
        eprintln!("mirror: {summary}");
        if args.once || shutdown.is_cancelled() {
            break if summary.failed > 0 {
                crate::EXIT_ERROR
            } else {
                crate::EXIT_OK
            };
        }
        tokio::select! {
            () = shutdown.cancelled() => break crate::EXIT_OK,
            () = tokio::time::sleep(Duration::from_secs(args.interval.max(1))) => {}
        }
    };
    mirror.close().await;
    Ok(code)
}

struct Mirror {
    coordinator: Coordinator,
    storage: ArtifactStorage,
    dir: PathBuf,
    keyring: Option<(Keyring, u32)>,
    jobs: usize,
    source: Source,
    peers: Vec<BlobAddress>,
    /// The iroh-blobs client (not for `--from http`), with a scratch store under `tmp/`.
    blobs: Option<BlobNode>,
}

impl Mirror {
    async fn open(args: &MirrorArgs, dir: &Path) -> Result<Self> {
        let storage = ArtifactStorage::open(&StorageConfig::Local {
            root: dir.to_owned(),
        })
        .with_context(|| format!("opening the mirror directory {}", dir.display()))?;
        // Partial downloads of an interrupted run.
        let scratch = dir.join("tmp");
        if scratch.exists() {
            tokio::fs::remove_dir_all(&scratch).await?;
        }
        tokio::fs::create_dir_all(&scratch).await?;
        let keyring = match &args.keyring {
            Some(path) => Some((
                Keyring::load(path).with_context(|| format!("keyring {}", path.display()))?,
                args.threshold,
            )),
            None => None,
        };
        let blobs = match args.from {
            Source::Http => None,
            Source::Auto | Source::Peers => Some(
                BlobNode::spawn(BlobConfig {
                    // A throwaway identity: the mirror only fetches.
                    secret_key: Identity::generate()?.iroh_secret_key(),
                    store_dir: Some(scratch.join("iroh")),
                    bind: args.blobs_bind,
                    gc_interval: None,
                })
                .await
                .context("starting the iroh-blobs client")?,
            ),
        };
        Ok(Mirror {
            coordinator: Coordinator::new(&args.coordinator)?,
            storage,
            dir: dir.to_owned(),
            keyring,
            jobs: args.jobs as usize,
            source: args.from,
            peers: args.peers.clone(),
            blobs,
        })
    }

    async fn close(self) {
        if let Some(blobs) = self.blobs
            && let Err(error) = blobs.shutdown().await
        {
            eprintln!("warning: stopping the iroh-blobs client: {error}");
        }
    }

    fn cursor_path(&self) -> PathBuf {
        self.dir.join("mirror.cursor")
    }

    fn read_cursor(&self) -> Result<i64> {
        match std::fs::read_to_string(self.cursor_path()) {
            Ok(text) => text
                .trim()
                .parse()
                .with_context(|| format!("{} is not a cursor", self.cursor_path().display())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(error) => Err(error.into()),
        }
    }

    /// Writes the cursor so that a crash leaves the old or the new one, never half.
    fn write_cursor(&self, cursor: i64) -> Result<()> {
        let temp = self.dir.join("mirror.cursor.tmp");
        std::fs::write(&temp, format!("{cursor}\n"))?;
        std::fs::File::open(&temp)?.sync_all()?;
        std::fs::rename(&temp, self.cursor_path())?;
        Ok(())
    }

    /// Copies everything the feed lists after the saved cursor.
    async fn catch_up(&self, shutdown: &CancellationToken) -> Result<Summary> {
        let mut summary = Summary {
            cursor: self.read_cursor()?,
            ..Summary::default()
        };
        let progress = ProgressBar::no_length();
        progress.set_draw_target(ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("mirror {pos} artifacts {msg}") {
            progress.set_style(style);
        }
        while !shutdown.is_cancelled() {
            let since = Cursor::new(summary.cursor)
                .with_context(|| format!("{} is not a feed cursor", summary.cursor))?;
            let page = self
                .coordinator
                .feed(since, FEED_PAGE)
                .await
                .context("reading the coordinator's feed")?;
            if page.items.is_empty() {
                break;
            }
            let mut results: Vec<(i64, Result<Done>)> = futures::stream::iter(page.items)
                .map(|item| async move { (item.seq, self.copy(&item).await) })
                .buffer_unordered(self.jobs)
                .collect()
                .await;
            results.sort_by_key(|(seq, _)| *seq);
            let mut advancing = true;
            for (seq, result) in results {
                progress.inc(1);
                match result {
                    Ok(done) => {
                        match done {
                            Done::Stored(bytes, from_peers) => {
                                summary.stored += 1;
                                summary.bytes += bytes;
                                summary.from_peers += u64::from(from_peers);
                            }
                            Done::Present => summary.present += 1,
                            Done::Refused => summary.refused += 1,
                        }
                        if advancing {
                            summary.cursor = seq;
                        }
                    }
                    Err(error) => {
                        progress.suspend(|| eprintln!("mirror: #{seq}: {error:#}"));
                        summary.failed += 1;
                        // Later items are kept, but the cursor stays before this one.
                        advancing = false;
                    }
                }
            }
            self.write_cursor(summary.cursor)?;
            if !advancing {
                break;
            }
        }
        progress.finish_and_clear();
        Ok(summary)
    }

    /// Fetches one artifact unless it is here already.
    async fn copy(&self, item: &FeedItem) -> Result<Done> {
        let hash = item.hash;
        let hex = hash.to_hex();
        if self.storage.has_blob(&hex).await? && self.storage.has_bundle(&hex).await? {
            return Ok(Done::Present);
        }
        let bundle_bytes = self.coordinator.get_small(&item.bundle).await?;
        let artifact = ArtifactId {
            blake3: hash,
            size: item.size,
        };
        if let Some((keyring, threshold)) = &self.keyring {
            let trusted = Bundle::from_json(&bundle_bytes).is_ok_and(|bundle| {
                let policy = Policy {
                    threshold: *threshold as usize,
                    expect: Default::default(),
                };
                verify_bundle(artifact, &bundle, keyring, &policy).verified
            });
            if !trusted {
                return Ok(Done::Refused);
            }
        }
        let part = self.dir.join("tmp").join(format!("{hex}.part"));
        let (fetched, from_peers) = self.fetch(item, &hash, &part).await;
        let stored = match fetched {
            Ok(bytes) if bytes != item.size => Err(anyhow::anyhow!(
                "the server sent {bytes} bytes for {hex}, the feed says {}",
                item.size
            )),
            Ok(_) => match self.storage.put_blob_file(&hex, &part).await {
                Ok(PutOutcome::Stored | PutOutcome::AlreadyPresent) => Ok(()),
                Err(StorageError::HashMismatch { actual, .. }) => Err(anyhow::anyhow!(
                    "rejected {hex}: the bytes served hash to {actual}"
                )),
                Err(error) => Err(error.into()),
            },
            Err(error) => Err(error),
        };
        let _ = tokio::fs::remove_file(&part).await;
        stored?;
        // The blob first, then the bundle: "present" means both are here.
        self.storage.put_bundle(&hex, bundle_bytes.into()).await?;
        Ok(Done::Stored(item.size, from_peers))
    }

    /// Gets the blob into `part` from peers or over HTTP, as `--from` says; returns the
    /// bytes written and whether peers served it.
    async fn fetch(&self, item: &FeedItem, hash: &Blake3Hash, part: &Path) -> (Result<u64>, bool) {
        let providers: Vec<BlobAddress> =
            self.peers.iter().chain(&item.providers).cloned().collect();
        if let Some(blobs) = &self.blobs
            && (self.source == Source::Peers || !providers.is_empty())
        {
            let fetched = async {
                blobs.fetch(hash, &providers).await?;
                blobs.export(hash, part).await?;
                Ok::<u64, anyhow::Error>(tokio::fs::metadata(part).await?.len())
            }
            .await;
            match fetched {
                Ok(bytes) => return (Ok(bytes), true),
                Err(error) if self.source == Source::Peers => return (Err(error), true),
                Err(error) => {
                    eprintln!("mirror: {hash} from peers failed, trying HTTP: {error:#}");
                }
            }
        }
        let label = hash.to_hex();
        (
            self.coordinator
                .download(&item.blob, part, &label[..12], item.size)
                .await,
            false,
        )
    }
}

/// `buildsrs mirror serve`: the mirror's blobs and bundles over HTTP until `shutdown`.
async fn serve(args: &ServeArgs, shutdown: CancellationToken) -> Result<()> {
    if !args.dir.join("blobs").is_dir() {
        bail!(
            "{} holds no mirror (no blobs/ directory); run `buildsrs mirror --dir` first",
            args.dir.display()
        );
    }
    let storage = ArtifactStorage::open(&StorageConfig::Local {
        root: args.dir.clone(),
    })?;
    let listener = tokio::net::TcpListener::bind(args.http)
        .await
        .with_context(|| format!("binding {}", args.http))?;
    println!(
        "serving {} at http://{}",
        args.dir.display(),
        listener.local_addr()?
    );
    axum::serve(listener, buildsrs_storage::http::routes(storage))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}
