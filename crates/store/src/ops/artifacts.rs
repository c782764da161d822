//! Artifact bookkeeping the API does: download counts per day, and where object storage
//! keeps each verified artifact.

use buildsrs_keys::{ArtifactId, Blake3Hash};
use jiff::Timestamp;

use crate::db::{Db, artifact_at, params};
use crate::error::{Result, StoreError};

/// Counts one download of a verified artifact on the current UTC day.
pub(crate) async fn record_download(
    db: &mut dyn Db,
    hash: &Blake3Hash,
    now: Timestamp,
) -> Result<()> {
    let hex = hash.to_hex();
    let day = now.as_second().div_euclid(86_400);
    let known = db
        .query_opt(
            "SELECT 1 FROM artifacts WHERE hash = $1",
            params![hex.as_str()],
        )
        .await?;
    if known.is_none() {
        return Err(StoreError::not_found(format!("artifact {hex}")));
    }
    db.execute(
        "INSERT INTO artifact_downloads (hash, day, count) VALUES ($1, $2, 1) \
         ON CONFLICT (hash, day) DO UPDATE SET count = artifact_downloads.count + 1",
        params![hex.as_str(), day],
    )
    .await?;
    Ok(())
}

/// Records where object storage keeps an artifact.
pub(crate) async fn set_storage_key(db: &mut dyn Db, hash: &Blake3Hash, key: &str) -> Result<()> {
    if key.is_empty() || key.len() > 1024 {
        return Err(StoreError::invalid("a storage key is 1 to 1024 bytes"));
    }
    let hex = hash.to_hex();
    let changed = db
        .execute(
            "UPDATE artifacts SET storage_key = $2 WHERE hash = $1",
            params![hex.as_str(), key],
        )
        .await?;
    if changed == 0 {
        return Err(StoreError::not_found(format!("artifact {hex}")));
    }
    Ok(())
}

/// Verified artifacts object storage does not hold yet, oldest verification first: the
/// coordinator's publishing backlog, which survives restarts because it is just this query.
pub(crate) async fn awaiting_storage(db: &mut dyn Db, limit: u32) -> Result<Vec<ArtifactId>> {
    let rows = db
        .query(
            "SELECT hash, size FROM artifacts \
             WHERE verified_at IS NOT NULL AND storage_key IS NULL \
             ORDER BY verified_at, hash LIMIT $1",
            params![limit],
        )
        .await?;
    let mut artifacts = Vec::with_capacity(rows.len());
    for row in &rows {
        if let Some(artifact) = artifact_at(row, 0, 1)? {
            artifacts.push(artifact);
        }
    }
    Ok(artifacts)
}
