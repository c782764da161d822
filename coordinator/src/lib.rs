//! The buildsrs coordinator: follows the registry index into the job store, plans build tasks,
//! hands them to builder nodes over libp2p, decides quorum, and publishes verified artifacts
//! to object storage.
//!
//! - [`config`]: what the process is told to do and where its files are.
//! - [`ingest`]: the index follower feeding the store.
//! - [`jobs`]: what the coordinator answers to each job-protocol request.
//! - [`network`]: the libp2p peer serving [`jobs`], within limits per peer and in total.
//! - [`publish`]: verified artifacts from builders' blob servers into object storage.
//! - [`sessions`]: who said hello and where they serve blobs (in memory).
//! - the web UI, JSON API and downloads come from `buildsrs-web`, served by [`run`] on
//!   `--http`.
//! - [`cli`]: the `buildsrs-coordinator` command line.
//!
//! [`run`] is the whole service; tests call it in-process with a cancellation token.

pub mod cli;
pub mod config;
pub mod ingest;
pub mod jobs;
pub mod network;
pub mod publish;
pub mod sessions;

use std::sync::Arc;

use anyhow::{Context, Result};
use buildsrs_blobs::{BlobConfig, BlobNode};
use buildsrs_index::WatchList;
use buildsrs_keys::Identity;
use buildsrs_storage::ArtifactStorage;
use buildsrs_store::Store;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{Config, IndexSource};

/// Opens the store, applies the configuration (targets, toolchains, watched crates) and runs
/// the index follower and the lease sweeper until `shutdown` fires. Every step is a store
/// transaction, so stopping at any point (or being killed) loses nothing: a restart continues
/// where the store says things are.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let store = Store::open(&config.store_config()?)
        .await
        .context("opening the job store")?;
    tracing::info!(
        "job store: {:?}, schema version {}",
        store.backend(),
        store.schema_version().await?
    );
    let watch = apply_configuration(&config, &store).await?;
    let storage_config = config.storage_config();
    let storage = ArtifactStorage::open(&storage_config)
        .with_context(|| format!("opening {}", storage_config.describe()))?;
    let providers = sessions::FeedProviders::default();
    let web = match config.http {
        Some(addr) => Some(
            start_web(
                &config,
                addr,
                &store,
                &storage,
                providers.clone(),
                shutdown.clone(),
            )
            .await?,
        ),
        None => None,
    };

    let sweeper = tokio::spawn(sweep_expired_leases(
        store.clone(),
        config.expiry_interval,
        shutdown.clone(),
    ));
    let network = if config.listen.is_empty() {
        None
    } else {
        match start_network(&config, &store, storage, providers, shutdown.clone()).await {
            Ok(network) => Some(network),
            Err(error) => {
                shutdown.cancel();
                let _ = sweeper.await;
                if let Some(web) = web {
                    let _ = web.await;
                }
                return Err(error);
            }
        }
    };
    let followed = ingest::follow_index(&config, store.clone(), watch, shutdown.clone()).await;
    // The follower only returns early on a setup error; stop the rest with it.
    shutdown.cancel();
    sweeper.await.context("the lease sweeper panicked")?;
    if let Some(network) = network {
        network.stop().await?;
    }
    if let Some(web) = web {
        web.await.context("the web server panicked")?;
    }
    followed
}

/// Binds the HTTP listener (an error here stops the start: the operator asked for it) and
/// serves the web UI, API and downloads until `shutdown`.
async fn start_web(
    config: &Config,
    addr: std::net::SocketAddr,
    store: &Store,
    storage: &ArtifactStorage,
    providers: sessions::FeedProviders,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the web server to {addr}"))?;
    let local = listener.local_addr()?;
    let url = format!("http://{local}");
    let state = buildsrs_web::WebState::new(
        store.clone(),
        storage.clone(),
        buildsrs_web::WebConfig {
            admin_token: config.admin_token.clone(),
            public_url: Some(config.public_url.clone().unwrap_or_else(|| url.clone())),
            presign_downloads: config.presign_downloads,
            providers: Some(Arc::new(providers)),
            page_cache_ttl: config.page_cache_ttl,
        },
    )?;
    std::fs::write(config.http_path(), format!("{url}\n"))
        .with_context(|| format!("writing {}", config.http_path().display()))?;
    tracing::info!(
        "web UI and API at {url}/{}",
        if config.admin_token.is_some() {
            " (admin pages at /admin)"
        } else {
            " (admin pages off: no admin token)"
        }
    );
    Ok(tokio::spawn(async move {
        if let Err(error) = buildsrs_web::serve(listener, state, shutdown).await {
            tracing::error!("the web server stopped: {error}");
        }
    }))
}

/// The parts that run only with a network: the libp2p peer and the publisher.
struct Running {
    swarm: JoinHandle<()>,
    publisher: JoinHandle<()>,
}

impl Running {
    async fn stop(self) -> Result<()> {
        self.publisher.await.context("the publisher panicked")?;
        self.swarm.await.context("the network actor panicked")?;
        Ok(())
    }
}

async fn start_network(
    config: &Config,
    store: &Store,
    storage: ArtifactStorage,
    providers: sessions::FeedProviders,
    shutdown: CancellationToken,
) -> Result<Running> {
    let identity = load_or_create_identity(&config.identity_path())?;
    let storage_config = config.storage_config();
    let sessions = providers.sessions.clone();
    let verified = Arc::new(Notify::new());
    let service = jobs::JobService::new(
        store.clone(),
        config.auto_approve,
        sessions.clone(),
        Arc::clone(&verified),
    );
    let (handle, swarm) = network::start(
        &identity,
        &config.listen,
        service,
        config.network_limits,
        shutdown.clone(),
    )
    .await?;
    let addrs: Vec<String> = handle
        .listen_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    std::fs::write(config.addr_path(), addrs.join("\n") + "\n")
        .with_context(|| format!("writing {}", config.addr_path().display()))?;
    let blobs = BlobNode::spawn(BlobConfig {
        secret_key: identity.iroh_secret_key(),
        store_dir: Some(config.data_dir.join("blobs")),
        bind: config.blobs_bind,
        gc_interval: None,
    })
    .await
    .context("starting the blob client")?;
    let _ = providers.own.set(blobs.addr());
    tracing::info!(
        "coordinator {} ready; artifacts go to {}",
        identity.fingerprint(),
        storage_config.describe()
    );
    let publisher = publish::Publisher {
        store: store.clone(),
        storage,
        blobs,
        sessions,
        scratch: config.data_dir.join("tmp"),
    };
    let publisher = tokio::spawn(async move {
        let blobs = publisher.blobs.clone();
        publisher.run(verified, shutdown).await;
        if let Err(error) = blobs.shutdown().await {
            tracing::warn!("stopping the blob client: {error}");
        }
    });
    Ok(Running { swarm, publisher })
}

/// Reads the coordinator's key, or makes one on first start.
fn load_or_create_identity(path: &std::path::Path) -> Result<Identity> {
    if path.exists() {
        return Identity::load(path).with_context(|| format!("reading {}", path.display()));
    }
    let identity = Identity::generate()?;
    identity
        .save(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(identity)
}

/// Enables the configured targets and toolchains, marks the configured crates watched, and
/// returns the full watch list (configured and previously watched crates).
async fn apply_configuration(config: &Config, store: &Store) -> Result<WatchList> {
    let now = jiff::Timestamp::now();
    for target in &config.targets {
        store.set_target(target, true, now).await?;
    }
    for toolchain in &config.toolchains {
        store.set_toolchain(toolchain, true, now).await?;
    }
    for (name, backfill) in config::watch_requests(config)? {
        let planned = store.watch_crate(&name, backfill, now).await?;
        if planned > 0 {
            tracing::info!("watching {name} (backfill {backfill}): {planned} task(s) planned");
        }
    }
    let names = store.watched_crates().await?;
    tracing::info!("watching {} crate(s)", names.len());
    Ok(WatchList::from_names(names)?)
}

/// Requeues tasks whose leases ran out (a builder vanished) every `interval`.
async fn sweep_expired_leases(
    store: Store,
    interval: std::time::Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        match store.expire_leases(jiff::Timestamp::now()).await {
            Ok(report) if report.expired > 0 => {
                tracing::info!(
                    "{} lease(s) expired: {} task(s) requeued, {} stopped after too many \
                     node-side failures",
                    report.expired,
                    report.requeued,
                    report.stopped
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!("sweeping expired leases: {error}"),
        }
    }
}
