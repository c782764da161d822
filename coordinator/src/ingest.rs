//! Following the registry index into the store.
//!
//! The follower (sparse or git, from `buildsrs-index`) produces [`CrateUpdate`]s; each becomes
//! one `upsert_versions` transaction, which records versions and yanks and plans, cancels or
//! requeues tasks. An update is retried until the store takes it (or the coordinator stops),
//! because the follower will not report an unchanged crate again: dropping an update would
//! lose its versions until the crate's index file changes.
//!
//! In git mode the last commit whose changes are all in the store is written to a cursor file
//! after they are, so a restart (even after kill -9) resumes there. Replaying a commit is
//! harmless: upserts are idempotent.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use buildsrs_index::{CrateUpdate, FollowOptions, GitFollower, SparseFollower, WatchList};
use buildsrs_store::{IndexVersion, Store, StoreError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, IndexSource};

/// Follows the configured index until `cancel` fires.
pub async fn follow_index(
    config: &Config,
    store: Store,
    watch: WatchList,
    cancel: CancellationToken,
) -> Result<()> {
    match &config.index {
        IndexSource::Sparse(url) => follow_sparse(config, url, store, watch, cancel).await,
        IndexSource::Git(url) => follow_git(config, url, store, cancel).await,
    }
}

async fn follow_sparse(
    config: &Config,
    url: &str,
    store: Store,
    watch: WatchList,
    cancel: CancellationToken,
) -> Result<()> {
    let follower = SparseFollower::new(url).with_context(|| format!("index {url}"))?;
    let options = FollowOptions {
        interval: config.poll_interval,
        ..FollowOptions::default()
    };
    let (updates, mut received) = mpsc::channel(256);
    let follower = tokio::spawn(follower.follow(watch, updates, options, cancel.clone()));
    // The channel closes when the follower stops, which it does on `cancel`.
    while let Some(update) = received.recv().await {
        ingest(&store, &update, &cancel).await;
    }
    follower.await.context("the index follower panicked")?;
    Ok(())
}

async fn follow_git(
    config: &Config,
    url: &str,
    store: Store,
    cancel: CancellationToken,
) -> Result<()> {
    let cursor_path = config.git_cursor();
    let since = read_cursor(&cursor_path)?;
    let resumed = since.is_some();
    let mut follower = GitFollower::open(config.git_checkout(), url, since)
        .await
        .with_context(|| format!("git index {url}"))?;
    if !resumed {
        // Following starts at the current head; versions published before it are not built.
        write_cursor(&cursor_path, follower.last_commit())?;
    }
    tracing::info!(
        "following git index {url} from commit {}",
        follower.last_commit()
    );
    let mut backoff = Duration::from_secs(1);
    loop {
        let polled = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            polled = follower.poll() => polled,
        };
        let wait = match polled {
            Ok(report) => {
                backoff = Duration::from_secs(1);
                if report.truncated {
                    tracing::warn!(
                        "git index history was rewritten; changes before {} may be missing",
                        report.to
                    );
                }
                for update in &report.updates {
                    if !ingest(&store, update, &cancel).await {
                        return Ok(()); // Stopped mid-way: the cursor still points before it.
                    }
                }
                write_cursor(&cursor_path, follower.last_commit())?;
                config.poll_interval
            }
            Err(error) => {
                tracing::warn!("git index {url}: {error}; retrying in {backoff:?}");
                let wait = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(300));
                wait
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Writes one crate's versions to the store, retrying while the store is unavailable.
/// Returns false when stopped by `cancel` before the update was stored.
async fn ingest(store: &Store, update: &CrateUpdate, cancel: &CancellationToken) -> bool {
    let batch: Vec<IndexVersion> = update.versions.clone();
    let mut backoff = Duration::from_millis(200);
    loop {
        match store
            .upsert_versions(batch.clone(), jiff::Timestamp::now())
            .await
        {
            Ok(report) => {
                tracing::info!(
                    crate_name = %update.name,
                    "index: {}; {} task(s) planned, {} cancelled, {} requeued",
                    update.changes.summary(),
                    report.tasks_planned,
                    report.tasks_cancelled,
                    report.tasks_requeued
                );
                return true;
            }
            Err(error @ StoreError::Invalid(_)) => {
                // Retrying cannot help; the follower already skipped malformed lines, so this
                // is a bug or a registry oddity worth a loud log line, not a crash.
                tracing::error!(crate_name = %update.name, "index update refused by the store: {error}");
                return true;
            }
            Err(error) => {
                tracing::warn!(crate_name = %update.name, "storing index update failed: {error}; retrying in {backoff:?}");
                tokio::select! {
                    () = cancel.cancelled() => return false,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

fn read_cursor(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Ok(Some(text.trim().to_owned())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Replaces the cursor atomically (write a temporary file, sync, rename).
fn write_cursor(path: &Path, commit: &str) -> Result<()> {
    let tmp = path.with_extension("cursor.tmp");
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(commit.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().with_context(|| format!("writing {}", path.display()))
}
