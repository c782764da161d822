//! A crate's source as the user's own read of the registry's index lists it: the registry
//! and the `.crate` checksum that `buildsrs fetch` (always) and `buildsrs verify
//! --check-index` (when asked) hold attestations to.
//!
//! The coordinator is not asked: a coordinator that handed builders another tarball under a
//! real name, and found a builder to sign it, still fails here, because the checksum the
//! attestation names is not the one the registry lists.

use anyhow::{Context, Result, bail};
use buildsrs_index::SparseFollower;
use buildsrs_keys::{CrateName, CrateVersion, RegistryUrl, Source};

/// The source `registry`'s index lists for `name` `version`, fetched now.
pub async fn indexed_source(
    registry: &RegistryUrl,
    name: &CrateName,
    version: &CrateVersion,
) -> Result<Source> {
    let mut follower =
        SparseFollower::new(registry).with_context(|| format!("reading the index {registry}"))?;
    let report = follower
        .poll(&[name.as_str()])
        .await
        .with_context(|| format!("reading the index {registry}"))?;
    if let Some((_, error)) = report.errors.first() {
        bail!("reading the index file of {name} from {registry}: {error}");
    }
    let listed = follower
        .known_versions(name)
        .and_then(|versions| versions.iter().find(|v| v.version == *version))
        .with_context(|| format!("the index {registry} lists no version {version} of {name}"))?;
    Ok(Source {
        registry: registry.clone(),
        sha256: listed.cksum,
    })
}
