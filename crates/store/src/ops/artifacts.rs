//! Artifact bookkeeping the API does: download counts per day, where object storage keeps
//! each verified artifact, and the publication feed mirrors follow.

use buildsrs_keys::{ArtifactId, Blake3Hash};
use jiff::Timestamp;

use crate::db::{Db, artifact_at, params};
use crate::error::{Result, StoreError};
use crate::model::{Page, PublishedArtifact};

/// Adds counted downloads per artifact and UTC day (unix day number), all in one
/// transaction. Artifacts the store does not know (storage restored from a backup) are
/// skipped; returns how many downloads were recorded.
pub(crate) async fn record_downloads(
    db: &mut dyn Db,
    counts: &[(Blake3Hash, i64, u64)],
) -> Result<u64> {
    let mut recorded = 0;
    for (hash, day, count) in counts {
        let hex = hash.to_hex();
        let count = i64::try_from(*count).map_err(|_| StoreError::invalid("count too large"))?;
        let known = db
            .query_opt(
                "SELECT 1 FROM artifacts WHERE hash = $1",
                params![hex.as_str()],
            )
            .await?;
        if known.is_none() || count == 0 {
            continue;
        }
        db.execute(
            "INSERT INTO artifact_downloads (hash, day, count) VALUES ($1, $2, $3) \
             ON CONFLICT (hash, day) DO UPDATE SET count = artifact_downloads.count + $3",
            params![hex.as_str(), *day, count],
        )
        .await?;
        recorded += count.unsigned_abs();
    }
    Ok(recorded)
}

/// Records where object storage keeps an artifact.
pub(crate) async fn set_storage_key(db: &mut dyn Db, hash: &Blake3Hash, key: &str) -> Result<()> {
    if key.is_empty() || key.len() > 1024 {
        return Err(StoreError::invalid("a storage key is 1 to 1024 bytes"));
    }
    let hex = hash.to_hex();
    let Some(row) = db
        .query_opt(
            &format!(
                "SELECT published_seq FROM artifacts WHERE hash = $1{}",
                db.for_update()
            ),
            params![hex.as_str()],
        )
        .await?
    else {
        return Err(StoreError::not_found(format!("artifact {hex}")));
    };
    let seq: Option<i64> = row.get(0)?;
    let seq = match seq {
        Some(seq) => seq,
        // First publication: the next feed number. The counter's row lock, held to commit,
        // keeps numbers in commit order (see migration 3).
        None => db
            .query_one(
                "UPDATE publication_counter SET last = last + 1 WHERE id = 1 RETURNING last",
                params![],
            )
            .await?
            .get(0)?,
    };
    db.execute(
        "UPDATE artifacts SET storage_key = $2, published_seq = $3 WHERE hash = $1",
        params![hex.as_str(), key, seq],
    )
    .await?;
    Ok(())
}

/// Published artifacts with a feed number above `after`, in feed order: what mirrors follow.
pub(crate) async fn published_since(
    db: &mut dyn Db,
    after: i64,
    limit: u32,
) -> Result<Vec<PublishedArtifact>> {
    let rows = db
        .query(
            "SELECT published_seq, hash, size, verified_at FROM artifacts \
             WHERE published_seq > $1 ORDER BY published_seq LIMIT $2",
            params![after, limit.min(Page::MAX_LIMIT)],
        )
        .await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        let artifact = artifact_at(row, 1, 2)?
            .ok_or_else(|| StoreError::corrupt("published artifact without hash"))?;
        items.push(PublishedArtifact {
            seq: row.get(0)?,
            artifact,
            verified_at: row.get(3)?,
        });
    }
    Ok(items)
}

/// Verified artifacts object storage does not hold yet and that are not backing off at
/// `now`, oldest verification first: the coordinator's publishing backlog, which survives
/// restarts because it is just this query.
pub(crate) async fn awaiting_storage(
    db: &mut dyn Db,
    limit: u32,
    now: Timestamp,
) -> Result<Vec<ArtifactId>> {
    let rows = db
        .query(
            "SELECT hash, size FROM artifacts \
             WHERE verified_at IS NOT NULL AND storage_key IS NULL AND publish_after <= $2 \
             ORDER BY verified_at, hash LIMIT $1",
            params![limit, now],
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

/// The wait before publishing is tried again after the first failure; it doubles with each
/// further one, up to [`PUBLISH_RETRY_MAX_MILLIS`].
pub const PUBLISH_RETRY_FIRST_MILLIS: i64 = 10_000;

/// The longest wait between tries to publish an artifact.
pub const PUBLISH_RETRY_MAX_MILLIS: i64 = 3_600_000;

/// Records a failed try to publish `hash`: it leaves the backlog until the returned time, so
/// an artifact that cannot be fetched never holds up the others.
pub(crate) async fn publication_failed(
    db: &mut dyn Db,
    hash: &Blake3Hash,
    now: Timestamp,
) -> Result<Timestamp> {
    let hex = hash.to_hex();
    let Some(row) = db
        .query_opt(
            "UPDATE artifacts SET publish_failures = publish_failures + 1 \
             WHERE hash = $1 RETURNING publish_failures",
            params![hex.as_str()],
        )
        .await?
    else {
        return Err(StoreError::not_found(format!("artifact {hex}")));
    };
    let failures: i64 = row.get(0)?;
    let doublings = u32::try_from(failures.clamp(1, 20) - 1).unwrap_or(0);
    let wait = PUBLISH_RETRY_FIRST_MILLIS
        .saturating_mul(1 << doublings)
        .min(PUBLISH_RETRY_MAX_MILLIS);
    let after = now.as_millisecond().saturating_add(wait);
    db.execute(
        "UPDATE artifacts SET publish_after = $2 WHERE hash = $1",
        params![hex.as_str(), after],
    )
    .await?;
    Timestamp::from_millisecond(after).map_err(|_| StoreError::invalid("time out of range"))
}
