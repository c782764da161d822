//! The buildsrs coordinator: follows the registry index into the job store, plans build tasks
//! and keeps the queue moving. Later it also serves the builders' job protocol and the web UI
//! from the same process.
//!
//! - [`config`]: what the process is told to do and where its files are.
//! - [`ingest`]: the index follower feeding the store.
//! - [`cli`]: the `buildsrs-coordinator` command line.
//!
//! [`run`] is the whole service; tests call it in-process with a cancellation token.

pub mod cli;
pub mod config;
pub mod ingest;

use anyhow::{Context, Result};
use buildsrs_index::WatchList;
use buildsrs_store::Store;
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

    let sweeper = tokio::spawn(sweep_expired_leases(
        store.clone(),
        config.expiry_interval,
        shutdown.clone(),
    ));
    let followed = ingest::follow_index(&config, store.clone(), watch, shutdown.clone()).await;
    // The follower only returns early on a setup error; stop the rest with it.
    shutdown.cancel();
    sweeper.await.context("the lease sweeper panicked")?;
    followed
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
    for name in &config.watch {
        let planned = store.set_crate_watched(name, true, now).await?;
        if planned > 0 {
            tracing::info!("watching {name}: {planned} task(s) planned");
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
                tracing::info!("{} expired lease(s) requeued", report.expired);
            }
            Ok(_) => {}
            Err(error) => tracing::warn!("sweeping expired leases: {error}"),
        }
    }
}
