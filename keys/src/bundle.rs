//! The attestation bundle: the file that travels next to an artifact
//! (`<artifact>.buildsrs.json`), naming the artifact and holding the signed attestations.
//!
//! ```json
//! {
//!   "buildsrs_bundle": 1,
//!   "artifact": { "blake3": "…64 hex…", "size": 123 },
//!   "attestations": [ { "signature": "…", "statement": { … } } ]
//! }
//! ```
//!
//! The envelope is parsed strictly; each attestation is kept as raw JSON and decoded one by
//! one at verification time, so a single malformed or future-schema entry is reported and
//! skipped instead of hiding the others.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::attestation::{AttestationError, SignedAttestation};
use crate::hash::ArtifactId;

/// The bundle format this code writes and reads.
pub const BUNDLE_FORMAT: u32 = 1;

/// The largest bundle file we read: far more than any real bundle, small enough to never
/// exhaust memory on hostile input.
pub const MAX_BUNDLE_BYTES: u64 = 16 * 1024 * 1024;

/// The most attestations one bundle may hold.
pub const MAX_ATTESTATIONS: usize = 4096;

/// The file name suffix of a bundle next to its artifact.
pub const BUNDLE_SUFFIX: &str = ".buildsrs.json";

/// Why a bundle could not be read, parsed or written.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The bundle file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The file is larger than [`MAX_BUNDLE_BYTES`].
    #[error("{path}: larger than the {MAX_BUNDLE_BYTES}-byte limit for bundles")]
    TooLarge {
        /// The bundle file.
        path: PathBuf,
    },
    /// The bytes are not a bundle.
    #[error("malformed bundle: {0}")]
    Malformed(String),
    /// An attestation added to a bundle is for another artifact.
    #[error("the attestation is for {attested}, but the bundle is for {bundle}")]
    ArtifactMismatch {
        /// The bundle's artifact.
        bundle: ArtifactId,
        /// The attestation's artifact.
        attested: ArtifactId,
    },
    /// The attestation to add does not verify.
    #[error(transparent)]
    Attestation(#[from] AttestationError),
}

/// An artifact's attestations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// Always [`BUNDLE_FORMAT`].
    pub buildsrs_bundle: u32,
    /// The artifact every attestation must name.
    pub artifact: ArtifactId,
    /// The signed attestations, as raw JSON (see the module docs).
    pub attestations: Vec<serde_json::Value>,
}

impl Bundle {
    /// An empty bundle for an artifact.
    pub fn new(artifact: ArtifactId) -> Self {
        Self {
            buildsrs_bundle: BUNDLE_FORMAT,
            artifact,
            attestations: Vec::new(),
        }
    }

    /// Where the bundle of an artifact file lives by convention.
    pub fn path_for(artifact: &Path) -> PathBuf {
        let mut name = artifact.as_os_str().to_owned();
        name.push(BUNDLE_SUFFIX);
        PathBuf::from(name)
    }

    /// Parses a bundle from JSON text.
    pub fn from_json(bytes: &[u8]) -> Result<Self, BundleError> {
        let bundle: Self =
            serde_json::from_slice(bytes).map_err(|e| BundleError::Malformed(e.to_string()))?;
        if bundle.buildsrs_bundle != BUNDLE_FORMAT {
            return Err(BundleError::Malformed(format!(
                "bundle format {} is not supported (this is {BUNDLE_FORMAT})",
                bundle.buildsrs_bundle
            )));
        }
        if bundle.attestations.len() > MAX_ATTESTATIONS {
            return Err(BundleError::Malformed(format!(
                "{} attestations, more than the limit of {MAX_ATTESTATIONS}",
                bundle.attestations.len()
            )));
        }
        Ok(bundle)
    }

    /// Reads a bundle file.
    pub fn load(path: &Path) -> Result<Self, BundleError> {
        let io_err = |source| BundleError::Io {
            path: path.to_owned(),
            source,
        };
        let file = fs::File::open(path).map_err(io_err)?;
        let mut bytes = Vec::new();
        file.take(MAX_BUNDLE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err)?;
        if bytes.len() as u64 > MAX_BUNDLE_BYTES {
            return Err(BundleError::TooLarge {
                path: path.to_owned(),
            });
        }
        Self::from_json(&bytes)
    }

    /// The bundle as pretty-printed JSON (object keys sorted).
    pub fn to_json_pretty(&self) -> Vec<u8> {
        let tree = serde_json::to_value(self).expect("a bundle always serializes");
        let mut bytes = serde_json::to_vec_pretty(&tree).expect("a JSON value always serializes");
        bytes.push(b'\n');
        bytes
    }

    /// Writes the bundle atomically: a temporary file in the same directory, synced, then
    /// renamed over the target, so a reader never sees half a bundle.
    pub fn save(&self, path: &Path) -> Result<(), BundleError> {
        let io_err = |source| BundleError::Io {
            path: path.to_owned(),
            source,
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err)?;
        tmp.write_all(&self.to_json_pretty()).map_err(io_err)?;
        tmp.as_file().sync_all().map_err(io_err)?;
        tmp.persist(path).map_err(|e| io_err(e.error))?;
        Ok(())
    }

    /// Adds a verified attestation for this bundle's artifact.
    pub fn push(&mut self, attestation: &SignedAttestation) -> Result<(), BundleError> {
        attestation.verify_signature()?;
        if attestation.statement.artifact != self.artifact {
            return Err(BundleError::ArtifactMismatch {
                bundle: self.artifact,
                attested: attestation.statement.artifact,
            });
        }
        if self.attestations.len() >= MAX_ATTESTATIONS {
            return Err(BundleError::Malformed(format!(
                "a bundle holds at most {MAX_ATTESTATIONS} attestations"
            )));
        }
        let value = serde_json::to_value(attestation).expect("an attestation always serializes");
        self.attestations.push(value);
        Ok(())
    }

    /// Decodes every attestation, each on its own.
    pub fn decode_attestations(
        &self,
    ) -> impl Iterator<Item = Result<SignedAttestation, AttestationError>> + '_ {
        self.attestations.iter().map(SignedAttestation::from_value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_path_appends_the_suffix() {
        assert_eq!(
            Bundle::path_for(Path::new("/tmp/rg.tar.zst")),
            PathBuf::from("/tmp/rg.tar.zst.buildsrs.json")
        );
    }

    #[test]
    fn malformed_envelopes_are_refused() {
        let artifact = ArtifactId::of_bytes(b"x");
        let good = Bundle::new(artifact).to_json_pretty();
        assert!(Bundle::from_json(&good).is_ok());
        for bad in [
            &b""[..],
            b"[]",
            b"{}",
            b"{\"buildsrs_bundle\":1}",
            b"not json",
        ] {
            assert!(matches!(
                Bundle::from_json(bad),
                Err(BundleError::Malformed(_))
            ));
        }
        let mut value: serde_json::Value = serde_json::from_slice(&good).unwrap();
        value["buildsrs_bundle"] = 2.into();
        assert!(Bundle::from_json(value.to_string().as_bytes()).is_err());
        let mut value: serde_json::Value = serde_json::from_slice(&good).unwrap();
        value["unexpected"] = true.into();
        assert!(Bundle::from_json(value.to_string().as_bytes()).is_err());
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.buildsrs.json");
        let bundle = Bundle::new(ArtifactId::of_bytes(b"x"));
        bundle.save(&path).unwrap();
        assert_eq!(Bundle::load(&path).unwrap(), bundle);
    }

    #[test]
    fn oversized_bundle_files_are_refused_without_reading_them_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.json");
        let file = fs::File::create(&path).unwrap();
        file.set_len(MAX_BUNDLE_BYTES + 10).unwrap();
        assert!(matches!(
            Bundle::load(&path),
            Err(BundleError::TooLarge { .. })
        ));
    }
}
