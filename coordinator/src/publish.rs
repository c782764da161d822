//! Publishing verified artifacts: fetch the blob from a builder that attested it, check it,
//! put it and its attestation bundle into object storage, mark it stored (the HTTP feed of
//! published artifacts lists it from then on).
//!
//! The backlog is a store query ([`Store::artifacts_awaiting_storage`]): an artifact is
//! verified in the store first and stored afterwards, so a coordinator killed in between
//! finds the artifact still waiting at its next start and publishes it then. Every step is
//! idempotent (object storage writes by content hash), so doing one twice is harmless. An
//! artifact that fails (no attester reachable) backs off in the store
//! ([`Store::publication_failed`]) and leaves the backlog to the others meanwhile; builders'
//! blob addresses are kept in the store, so a restarted coordinator can fetch before they
//! say hello again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use buildsrs_blobs::BlobNode;
use buildsrs_keys::{ArtifactId, Bundle, SignedAttestation};
use buildsrs_storage::ArtifactStorage;
use buildsrs_store::Store;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::sessions::Sessions;

/// Puts a verified artifact (its bytes in `file`, which is removed whatever happens) and its
/// bundle into object storage, then records where it went: the blob first, so that a bundle
/// or a recorded key always has its blob. Storage streams the file and checks its hash again.
pub async fn store_published(
    store: &Store,
    storage: &ArtifactStorage,
    artifact: ArtifactId,
    file: &Path,
    bundle: &Bundle,
) -> Result<()> {
    let hex = artifact.blake3.to_hex();
    let stored = storage.put_blob_file(&hex, file).await;
    let _ = tokio::fs::remove_file(file).await;
    stored?;
    storage
        .put_bundle(&hex, bundle.to_json_pretty().into())
        .await?;
    let key = ArtifactStorage::blob_key(&hex)?;
    store
        .set_artifact_storage_key(&artifact.blake3, key.as_ref())
        .await?;
    Ok(())
}

/// How often the backlog is looked at without being woken.
const POLL: Duration = Duration::from_secs(5);

/// Publishes verified artifacts. Runs as one task; see [`Publisher::run`].
#[derive(Debug)]
pub struct Publisher {
    /// The job store.
    pub store: Store,
    /// Where artifacts go.
    pub storage: ArtifactStorage,
    /// The coordinator's own blob node (fetches from builders).
    pub blobs: BlobNode,
    /// Connected builders' blob addresses.
    pub sessions: Sessions,
    /// Scratch space for blobs on their way to storage.
    pub scratch: PathBuf,
}

impl Publisher {
    /// Publishes the backlog, then again whenever `wake` is notified (or every few seconds),
    /// until `shutdown`.
    pub async fn run(self, wake: Arc<Notify>, shutdown: CancellationToken) {
        loop {
            self.publish_backlog(&shutdown).await;
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Publishes what is waiting; failures are logged and retried on the next round.
    pub async fn publish_backlog(&self, shutdown: &CancellationToken) {
        let backlog = match self
            .store
            .artifacts_awaiting_storage(64, jiff::Timestamp::now())
            .await
        {
            Ok(backlog) => backlog,
            Err(error) => {
                tracing::warn!("reading the publishing backlog: {error}");
                return;
            }
        };
        for artifact in backlog {
            if shutdown.is_cancelled() {
                return;
            }
            // A fetch from a slow provider must not hold up a shutdown; an interrupted
            // publication is picked up again from the backlog after a restart.
            let published = tokio::select! {
                () = shutdown.cancelled() => return,
                published = self.publish(artifact) => published,
            };
            match published {
                Ok(()) => tracing::info!("published {}", artifact.blake3),
                Err(error) => {
                    // It waits its turn again later, out of the others' way.
                    let retry = self
                        .store
                        .publication_failed(&artifact.blake3, jiff::Timestamp::now())
                        .await;
                    let when = match retry {
                        Ok(at) => format!("trying again at {at}"),
                        Err(e) => format!("not recorded: {e}"),
                    };
                    tracing::warn!("publishing {}: {error:#} ({when})", artifact.blake3);
                }
            }
        }
    }

    async fn publish(&self, artifact: ArtifactId) -> Result<()> {
        let hash = artifact.blake3;
        let hex = hash.to_hex();
        let info = self
            .store
            .artifact(&hash)
            .await?
            .context("the artifact vanished from the store")?;
        let mut bundle = Bundle::new(artifact);
        let mut providers = Vec::new();
        for attestation in info.attestations.iter().filter(|a| a.counted) {
            let Some(signed) = &attestation.signed else {
                continue;
            };
            let signed = SignedAttestation::from_json(signed)?;
            bundle.push(&signed)?;
            // Where it said it serves blobs: in this session, else at its last hello.
            let address = match self.sessions.blob_address(&attestation.builder) {
                Some(address) => Some(address),
                None => self.store.blob_address(&attestation.builder).await?,
            };
            providers.extend(address);
        }
        if !self.blobs.has(&hash).await? {
            if providers.is_empty() {
                bail!("no attesting builder that said where it serves blobs is connected");
            }
            let from = self.blobs.fetch(&hash, &providers).await?;
            tracing::info!("fetched {hex} from {}", from.endpoint_id);
        }
        // Export, then store from the file: storage streams it and checks the hash again.
        tokio::fs::create_dir_all(&self.scratch).await?;
        let file = self.scratch.join(&hex);
        self.blobs.export(&hash, &file).await?;
        store_published(&self.store, &self.storage, artifact, &file, &bundle).await?;
        Ok(())
    }
}
