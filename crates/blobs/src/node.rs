//! [`BlobNode`]: an iroh endpoint, a blob store and a router that serves the store.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use buildsrs_keys::{ArtifactId, Blake3Hash};
use futures::StreamExt;
use iroh::endpoint::{Connection, PortmapperConfig, presets};
use iroh::protocol::Router;
use iroh::{Endpoint, NetReportConfig, RelayMode, SecretKey};
use iroh_blobs::api::Store;
use iroh_blobs::api::blobs::BlobStatus;
use iroh_blobs::api::remote::GetProgressItem;
use iroh_blobs::get::GetError;
use iroh_blobs::get::fsm::{AtBlobHeaderNextError, DecodeError};
use iroh_blobs::store::GcConfig;
use iroh_blobs::store::fs::FsStore;
use iroh_blobs::store::fs::options::Options as FsOptions;
use iroh_blobs::store::mem::{MemStore, Options as MemOptions};
use iroh_blobs::{ALPN, BlobsProtocol, Hash, HashAndFormat};
use tracing::{debug, warn};

use crate::error::{FailureKind, ProviderFailure};

/// How long each step of [`BlobNode::shutdown`] may take.
pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);
use crate::{BlobAddress, BlobError, IrohAddress};

/// How to start a [`BlobNode`].
pub struct BlobConfig {
    /// The node's identity (`buildsrs_keys::Identity::iroh_secret_key()`); its public key is
    /// the endpoint id others dial.
    pub secret_key: SecretKey,
    /// `None`: an in-memory store (tests; everything is lost at shutdown). `Some(dir)`: an
    /// iroh-blobs `FsStore` in that directory, created if missing. Only one process may
    /// have a store directory open at a time.
    pub store_dir: Option<PathBuf>,
    /// The one UDP address the endpoint binds, e.g. `127.0.0.1:0`. Nothing else is bound:
    /// no unspecified-address default socket, no IPv6 socket unless this is IPv6.
    pub bind: SocketAddr,
    /// How often blobs nobody keeps any more ([`BlobNode::forget`]) are deleted. `None`:
    /// never; every blob stays until the store is removed.
    pub gc_interval: Option<std::time::Duration>,
}

impl fmt::Debug for BlobConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret key is never printed; its public half identifies the node.
        f.debug_struct("BlobConfig")
            .field("endpoint_id", &self.secret_key.public().to_string())
            .field("store_dir", &self.store_dir)
            .field("bind", &self.bind)
            .finish()
    }
}

/// Time limits for [`BlobNode::fetch`], per provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchTimeouts {
    /// How long to wait for the QUIC handshake with one provider.
    pub connect: Duration,
    /// How long a transfer may go without receiving any verified data before the provider
    /// is given up. A limit on progress rather than on the whole transfer, so a large
    /// artifact on a slow but working link is not cut off.
    pub stall: Duration,
}

impl Default for FetchTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            stall: Duration::from_secs(30),
        }
    }
}

/// A running blob node: an iroh endpoint, a blob store, and a router serving that store to
/// anyone who connects over [`iroh_blobs::ALPN`] (artifacts are public; what protects users
/// is the BLAKE3 hash, which every fetcher verifies).
///
/// Cloning is cheap (handles to the same endpoint and store). [`BlobNode::shutdown`] on any
/// clone stops the node for all clones; later calls on the others fail with store or
/// connection errors.
#[derive(Debug, Clone)]
pub struct BlobNode {
    router: Router,
    store: Store,
    timeouts: FetchTimeouts,
}

/// Tag names start with this, followed by the blob's hex hash. A named tag per hash makes
/// keeping a blob idempotent (adding the same artifact twice leaves one tag) and lets an
/// operator see what the node keeps.
const TAG_PREFIX: &str = "buildsrs/blob/";

impl BlobNode {
    /// Opens the store, binds the endpoint and starts serving.
    ///
    /// The endpoint follows the project's network rules: no relays, no address lookup (DNS,
    /// pkarr, mDNS), no port mapping, a net report without HTTPS probes or captive-portal
    /// checks, and a single socket on `config.bind`. It only ever dials addresses passed
    /// to [`BlobNode::fetch`].
    pub async fn spawn(config: BlobConfig) -> Result<Self, BlobError> {
        let gc = config.gc_interval.map(|interval| GcConfig {
            interval,
            add_protected: None,
        });
        let store: Store = match &config.store_dir {
            None => MemStore::new_with_opts(MemOptions { gc_config: gc }).into(),
            Some(dir) => {
                let open_err = |reason: String| BlobError::OpenStore {
                    dir: dir.clone(),
                    reason,
                };
                std::fs::create_dir_all(dir).map_err(|err| open_err(err.to_string()))?;
                let mut options = FsOptions::new(dir);
                options.gc = gc;
                FsStore::load_with_opts(dir.join("blobs.db"), options)
                    .await
                    .map_err(|err| open_err(format!("{err:#}")))?
                    .into()
            }
        };
        let endpoint = match bind_endpoint(config.secret_key, config.bind).await {
            Ok(endpoint) => endpoint,
            Err(err) => {
                // Close the store, or its database stays locked until this process exits
                // and a retry with the same directory would fail.
                store.shutdown().await.ok();
                return Err(err);
            }
        };
        let router = Router::builder(endpoint)
            .accept(ALPN, BlobsProtocol::new(&store, None))
            .spawn();
        let node = Self {
            router,
            store,
            timeouts: FetchTimeouts::default(),
        };
        debug!(addr = %node.addr(), "blob node started");
        Ok(node)
    }

    /// The same node with other fetch time limits (this handle only).
    pub fn with_fetch_timeouts(mut self, timeouts: FetchTimeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// This node's address, to hand to others: its endpoint id and the direct addresses
    /// of its socket. Bound to `127.0.0.1:0` that is exactly `127.0.0.1:<port>`; bound to
    /// `0.0.0.0` iroh lists the machine's interface addresses instead.
    pub fn addr(&self) -> BlobAddress {
        BlobAddress::from_endpoint_addr(&self.router.endpoint().addr())
    }

    /// The underlying iroh endpoint (for diagnostics and tests).
    pub fn endpoint(&self) -> &Endpoint {
        self.router.endpoint()
    }

    /// Imports a file (copied into the store, so the original may be deleted afterwards)
    /// and keeps it. Returns its BLAKE3 hash and size.
    pub async fn add_file(&self, path: &Path) -> Result<ArtifactId, BlobError> {
        let import_err = |reason: String| BlobError::Import {
            what: path.display().to_string(),
            reason,
        };
        // iroh-blobs refuses relative paths.
        let path = std::path::absolute(path).map_err(|err| import_err(err.to_string()))?;
        // The temp tag protects the blob until the named tag exists.
        let temp = self
            .store
            .add_path(&path)
            .temp_tag()
            .await
            .map_err(|err| import_err(format!("{err:#}")))?;
        self.keep(temp.hash()).await?;
        let hash = temp.hash();
        drop(temp);
        let size = self.complete_size(hash).await?.ok_or_else(|| {
            import_err("the store lost the blob right after importing it".to_owned())
        })?;
        Ok(ArtifactId {
            blake3: from_iroh(hash),
            size,
        })
    }

    /// Imports bytes held in memory and keeps them. Returns their BLAKE3 hash and size.
    pub async fn add_bytes(&self, bytes: Vec<u8>) -> Result<ArtifactId, BlobError> {
        let size = bytes.len() as u64;
        let temp = self
            .store
            .add_bytes(bytes)
            .temp_tag()
            .await
            .map_err(|err| BlobError::Import {
                what: format!("{size} bytes"),
                reason: format!("{err:#}"),
            })?;
        self.keep(temp.hash()).await?;
        Ok(ArtifactId {
            blake3: from_iroh(temp.hash()),
            size,
        })
    }

    /// Stops keeping a blob: it is no longer served, and the store deletes it at its next
    /// garbage collection (see [`BlobConfig::gc_interval`]). Forgetting a blob that is not
    /// kept does nothing.
    pub async fn forget(&self, hash: &Blake3Hash) -> Result<(), BlobError> {
        let tag = format!("{TAG_PREFIX}{}", to_iroh(hash).to_hex());
        self.store
            .tags()
            .delete(tag)
            .await
            .map(|_| ())
            .map_err(|err| BlobError::Store {
                action: "untagging a blob",
                reason: format!("{err:#}"),
            })
    }

    /// Whether the complete blob is in the local store (a partial download is not).
    pub async fn has(&self, hash: &Blake3Hash) -> Result<bool, BlobError> {
        Ok(self.complete_size(to_iroh(hash)).await?.is_some())
    }

    /// Fetches a blob into the local store and keeps it.
    ///
    /// Providers are tried in order; the first that delivers the whole blob wins and is
    /// returned. iroh-blobs verifies every 16 KiB chunk group against the BLAKE3 tree
    /// before storing it, so corrupt data is never stored: a provider that sends some,
    /// like one that is unreachable, lacks the blob, stalls or breaks off, is recorded and
    /// the next one is tried. Verified chunks already received are kept, so the next
    /// provider is only asked for what is still missing.
    ///
    /// If the blob is already complete locally, nothing is dialled and this node's own
    /// address is returned. Otherwise an empty `providers` is [`BlobError::NoProviders`],
    /// and if every provider fails, [`BlobError::FetchFailed`] lists each failure.
    pub async fn fetch(
        &self,
        hash: &Blake3Hash,
        providers: &[BlobAddress],
    ) -> Result<BlobAddress, BlobError> {
        let iroh_hash = to_iroh(hash);
        if self.complete_size(iroh_hash).await?.is_some() {
            self.keep(iroh_hash).await?;
            return Ok(self.addr());
        }
        if providers.is_empty() {
            return Err(BlobError::NoProviders { hash: *hash });
        }
        let mut failures = Vec::new();
        for provider in providers {
            match self.fetch_from(iroh_hash, provider).await {
                Ok(()) => {
                    self.keep(iroh_hash).await?;
                    debug!(%hash, %provider, "fetched blob");
                    return Ok(provider.clone());
                }
                Err((kind, detail)) => {
                    warn!(%hash, %provider, %kind, %detail, "provider failed, trying the next");
                    failures.push(ProviderFailure {
                        provider: provider.clone(),
                        kind,
                        detail,
                    });
                }
            }
        }
        Err(BlobError::FetchFailed {
            hash: *hash,
            failures,
        })
    }

    /// Writes a complete blob to `dest`, atomically: the bytes go to a temporary file
    /// next to `dest`, are hashed again, synced, and only then renamed over `dest`. A
    /// damaged store ([`BlobError::ExportMismatch`]) or any failure leaves `dest` as it
    /// was. The parent directory is created if missing.
    ///
    /// Re-hashing costs about as much as `b3sum` (memory-mapped, all cores); it is there
    /// because iroh-blobs exports by copying its data file without checking it, and what
    /// this writes is an artifact someone will run.
    pub async fn export(&self, hash: &Blake3Hash, dest: &Path) -> Result<(), BlobError> {
        let export_err = |source: std::io::Error| BlobError::Export {
            hash: *hash,
            dest: dest.to_owned(),
            source,
        };
        let iroh_hash = to_iroh(hash);
        if self.complete_size(iroh_hash).await?.is_none() {
            return Err(BlobError::NotFound { hash: *hash });
        }
        let dest_abs = std::path::absolute(dest).map_err(export_err)?;
        let (Some(parent), Some(name)) = (dest_abs.parent(), dest_abs.file_name()) else {
            return Err(export_err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "destination has no file name",
            )));
        };
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(export_err)?;
        let temp = parent.join(temp_name(name));
        let result = async {
            self.store
                .export(iroh_hash, &temp)
                .finish()
                .await
                .map_err(|err| export_err(std::io::Error::other(format!("{err:#}"))))?;
            let check = temp.clone();
            let actual = tokio::task::spawn_blocking(move || -> std::io::Result<ArtifactId> {
                let id = ArtifactId::of_file(&check)?;
                std::fs::File::open(&check)?.sync_all()?;
                Ok(id)
            })
            .await
            .map_err(|err| export_err(std::io::Error::other(err)))?
            .map_err(export_err)?;
            if actual.blake3 != *hash {
                return Err(BlobError::ExportMismatch {
                    hash: *hash,
                    dest: dest.to_owned(),
                    actual: actual.blake3,
                });
            }
            tokio::fs::rename(&temp, &dest_abs)
                .await
                .map_err(export_err)?;
            // Make the rename itself durable; failing to sync a directory is not worth
            // failing an export that has happened.
            if let Ok(dir) = std::fs::File::open(parent) {
                dir.sync_all().ok();
            }
            Ok(())
        }
        .await;
        if result.is_err() {
            tokio::fs::remove_file(&temp).await.ok();
        }
        result
    }

    /// Stops accepting connections, closes the endpoint and shuts the store down (for an
    /// `FsStore`: its database is closed and can be opened again at once).
    ///
    /// Each step gets [`SHUTDOWN_LIMIT`]: closing the endpoint waits for peers to acknowledge,
    /// and a process that is asked to stop must stop even when a peer never answers (the
    /// store's database survives being left open, as it survives kill -9).
    pub async fn shutdown(self) -> Result<(), BlobError> {
        // The router closes the endpoint and calls the blobs protocol's shutdown, which
        // shuts down the store it serves.
        let limited = tokio::time::timeout(SHUTDOWN_LIMIT, self.router.shutdown()).await;
        let routed = match limited {
            Ok(result) => result.map_err(|err| BlobError::Shutdown {
                reason: err.to_string(),
            }),
            Err(_) => Err(BlobError::Shutdown {
                reason: format!(
                    "the endpoint did not close within {} s",
                    SHUTDOWN_LIMIT.as_secs()
                ),
            }),
        };
        // Shutting down an already stopped store is harmless; this covers a router whose
        // accept loop had already ended (then the protocol shutdown may not have run), and
        // one that timed out above.
        tokio::time::timeout(SHUTDOWN_LIMIT, self.store.shutdown())
            .await
            .ok();
        routed
    }

    /// The blob's size if it is complete locally.
    async fn complete_size(&self, hash: Hash) -> Result<Option<u64>, BlobError> {
        match self.store.status(hash).await {
            Ok(BlobStatus::Complete { size }) => Ok(Some(size)),
            Ok(_) => Ok(None),
            Err(err) => Err(BlobError::Store {
                action: "reading a blob's status",
                reason: err.to_string(),
            }),
        }
    }

    /// Tags the blob so that garbage collection never drops it. (The stores this crate
    /// opens run no GC today; the tag is what keeps that safe if one is enabled.)
    async fn keep(&self, hash: Hash) -> Result<(), BlobError> {
        self.store
            .tags()
            .set(
                format!("{TAG_PREFIX}{}", hash.to_hex()),
                HashAndFormat::raw(hash),
            )
            .await
            .map_err(|err| BlobError::Store {
                action: "tagging a blob",
                reason: format!("{err:#}"),
            })
    }

    /// One provider: connect, then receive until done, failed or stalled.
    async fn fetch_from(
        &self,
        hash: Hash,
        provider: &BlobAddress,
    ) -> Result<(), (FailureKind, String)> {
        let addr = provider
            .to_endpoint_addr()
            .map_err(|err| (FailureKind::InvalidAddr, err.to_string()))?;
        let endpoint = self.router.endpoint();
        if addr.id == endpoint.id() {
            return Err((
                FailureKind::SelfAddr,
                "this is the fetching node's own endpoint".to_owned(),
            ));
        }
        let connect = self.timeouts.connect;
        let conn = match tokio::time::timeout(connect, endpoint.connect(addr, ALPN)).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(err)) => return Err((FailureKind::Unreachable, format!("{err:#}"))),
            Err(_) => {
                return Err((
                    FailureKind::Unreachable,
                    format!("no connection within {connect:?}"),
                ));
            }
        };
        let result = self.receive(conn.clone(), hash).await;
        // Close at once, so the provider's handler ends now rather than at the idle timeout.
        conn.close(0u32.into(), b"done");
        result?;
        // Belt and braces: a get that ends cleanly has stored every requested chunk, but
        // only a complete blob counts as fetched.
        match self.complete_size(hash).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err((
                FailureKind::NotServed,
                "the transfer ended but the blob is incomplete".to_owned(),
            )),
            Err(err) => Err((FailureKind::Local, err.to_string())),
        }
    }

    async fn receive(&self, conn: Connection, hash: Hash) -> Result<(), (FailureKind, String)> {
        let stall = self.timeouts.stall;
        // `fetch` asks only for the ranges not already stored (a previous provider may
        // have delivered part of the blob).
        let progress = self.store.remote().fetch(conn, hash).stream();
        let mut progress = std::pin::pin!(progress);
        loop {
            match tokio::time::timeout(stall, progress.next()).await {
                Err(_) => {
                    return Err((FailureKind::Stalled, format!("no data for {stall:?}")));
                }
                Ok(None) => {
                    return Err((
                        FailureKind::Transfer,
                        "the transfer ended without a result".to_owned(),
                    ));
                }
                Ok(Some(GetProgressItem::Progress(_))) => {}
                Ok(Some(GetProgressItem::Done(_))) => return Ok(()),
                Ok(Some(GetProgressItem::Error(err))) => {
                    return Err((classify(&err), format!("{err:#}")));
                }
            }
        }
    }
}

/// Sorts a get failure into what a caller may want to act on.
fn classify(err: &GetError) -> FailureKind {
    match err {
        GetError::Decode { source, .. } => match source {
            DecodeError::LeafHashMismatch { .. } | DecodeError::ParentHashMismatch { .. } => {
                FailureKind::Corrupt
            }
            DecodeError::ChunkNotFound { .. }
            | DecodeError::LeafNotFound { .. }
            | DecodeError::ParentNotFound { .. } => FailureKind::NotServed,
            DecodeError::Write { .. } => FailureKind::Local,
            // A reset stream in the middle of the data: the provider stopped sending (it
            // does this when its own copy fails verification) or the connection broke.
            _ => FailureKind::Transfer,
        },
        // An empty response, or the provider resetting the stream before the first byte
        // (what iroh-blobs' provider does when it has no such blob): not served.
        GetError::AtBlobHeaderNext {
            source: AtBlobHeaderNextError::NotFound { .. },
            ..
        } => FailureKind::NotServed,
        GetError::AtBlobHeaderNext { .. } if err.iroh_error_code().is_some() => {
            FailureKind::NotServed
        }
        GetError::LocalFailure { .. } => FailureKind::Local,
        _ => FailureKind::Transfer,
    }
}

async fn bind_endpoint(secret_key: SecretKey, bind: SocketAddr) -> Result<Endpoint, BlobError> {
    let bind_err = |reason: String| BlobError::Bind { bind, reason };
    Endpoint::builder(presets::Minimal)
        .secret_key(secret_key)
        .relay_mode(RelayMode::Disabled)
        .clear_address_lookup()
        // Drop the default 0.0.0.0 and [::] sockets; bind exactly what was asked for.
        .clear_ip_transports()
        .bind_addr(bind)
        .map_err(|err| bind_err(format!("{err:#}")))?
        .portmapper_config(PortmapperConfig::Disabled)
        .net_report_config(NetReportConfig::minimal())
        .bind()
        .await
        .map_err(|err| bind_err(format!("{err:#}")))
}

/// A temporary file name next to the destination that no concurrent export in this
/// process or another uses: hidden, with the pid and a counter.
fn temp_name(dest_name: &std::ffi::OsStr) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        ".{}.{}-{}.part",
        dest_name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn to_iroh(hash: &Blake3Hash) -> Hash {
    Hash::from_bytes(*hash.as_bytes())
}

fn from_iroh(hash: Hash) -> Blake3Hash {
    Blake3Hash::from_bytes(*hash.as_bytes())
}
