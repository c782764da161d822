//! How long a node keeps what it built, so a long-running volunteer's disk does not fill.
//!
//! An artifact is worth keeping while the coordinator may still fetch it: it asks the builders
//! for the blob once enough of them agree, which takes minutes to hours, and mirrors it to its
//! own storage then. After that the node's copy serves nobody. So an artifact is pruned
//! `keep_days` after it was (last) built here, and, oldest first, while all of them take more
//! than `max_mib` — except those built in the last day, which the coordinator may not have
//! fetched yet. Pruning removes the archive, the state's record and the blob's tag (the blob
//! store deletes it at its next garbage collection); the attestations stay, as the record of
//! what this node built.

use std::path::Path;

use anyhow::{Context, Result};
use buildsrs_blobs::BlobNode;
use serde::{Deserialize, Serialize};

use crate::state::{ArtifactRecord, NodeState};

/// Never pruned for size: built within this many seconds.
const SIZE_GRACE_SECS: i64 = 24 * 3600;

/// The retention rule, in the config file (`[retention]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Days an artifact is kept after it was built. 0: pruned at the next check.
    pub keep_days: u64,
    /// The most all artifacts may take, in MiB, before the oldest (older than a day) go.
    pub max_mib: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            keep_days: 14,
            max_mib: 10 * 1024,
        }
    }
}

/// What a prune removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Artifacts removed.
    pub artifacts: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// The artifacts the rule removes at `now` (Unix seconds), oldest first. `artifacts` is in
/// the order the state lists them (oldest first).
pub fn expired(
    artifacts: &[ArtifactRecord],
    rule: &RetentionConfig,
    now: i64,
) -> Vec<ArtifactRecord> {
    let keep_secs = i64::try_from(rule.keep_days.saturating_mul(86_400)).unwrap_or(i64::MAX);
    let (old, young): (Vec<&ArtifactRecord>, Vec<&ArtifactRecord>) = artifacts
        .iter()
        .partition(|artifact| now.saturating_sub(artifact.added_at) >= keep_secs);
    let mut chosen: Vec<ArtifactRecord> = old.into_iter().cloned().collect();
    let max_bytes = rule.max_mib.saturating_mul(1 << 20);
    let mut held: u64 = young.iter().map(|artifact| artifact.id.size).sum();
    for artifact in young {
        if held <= max_bytes {
            break;
        }
        if now.saturating_sub(artifact.added_at) < SIZE_GRACE_SECS {
            continue;
        }
        held = held.saturating_sub(artifact.id.size);
        chosen.push(artifact.clone());
    }
    chosen
}

/// Applies the rule: removes each expired artifact's archive (only below `artifacts_dir`),
/// its record and its blob tag.
pub async fn prune(
    state: &NodeState,
    artifacts_dir: &Path,
    blobs: Option<&BlobNode>,
    rule: &RetentionConfig,
    now: i64,
) -> Result<Pruned> {
    let mut pruned = Pruned::default();
    for artifact in expired(&state.artifacts()?, rule, now) {
        if artifact.path.starts_with(artifacts_dir) {
            match std::fs::remove_file(&artifact.path) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(error)
                        .with_context(|| format!("removing {}", artifact.path.display()));
                }
                _ => {}
            }
        }
        if let Some(blobs) = blobs {
            blobs.forget(&artifact.id.blake3).await?;
        }
        state.remove_artifact(&artifact.id.blake3)?;
        pruned.artifacts += 1;
        pruned.bytes += artifact.id.size;
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use buildsrs_keys::{ArtifactId, Blake3Hash};

    fn artifact(seed: u8, size_mib: u64, added_at: i64) -> ArtifactRecord {
        ArtifactRecord {
            id: ArtifactId {
                blake3: Blake3Hash::of_bytes(&[seed]),
                size: size_mib << 20,
            },
            path: format!("/d/artifacts/{seed}.tar.gz").into(),
            crate_name: "c".parse().unwrap(),
            version: "1.0.0".parse().unwrap(),
            target: "x86_64-unknown-linux-gnu".parse().unwrap(),
            job_id: i64::from(seed),
            added_at,
        }
    }

    const DAY: i64 = 86_400;

    #[test]
    fn old_artifacts_go_and_size_prunes_oldest_first_but_never_the_last_days() {
        let now = 100 * DAY;
        let list = vec![
            artifact(1, 10, now - 20 * DAY), // past keep_days
            artifact(2, 10, now - 5 * DAY),
            artifact(3, 10, now - 3 * DAY),
            artifact(4, 10, now - 3600), // an hour old
            artifact(5, 10, now - 60),
        ];
        let rule = RetentionConfig {
            keep_days: 14,
            max_mib: 25,
        };
        let gone: Vec<i64> = expired(&list, &rule, now)
            .iter()
            .map(|a| a.job_id)
            .collect();
        // 1 by age; then 2 and 3 by size (40 MiB left → 20); 4 and 5 are too young.
        assert_eq!(gone, [1, 2, 3]);

        let tight = RetentionConfig {
            keep_days: 14,
            max_mib: 0,
        };
        let gone = expired(&list, &tight, now).len();
        assert_eq!(gone, 3, "the last day's artifacts stay whatever the size");

        let roomy = RetentionConfig::default();
        assert_eq!(expired(&list, &roomy, now).len(), 1);
    }
}
