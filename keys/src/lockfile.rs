//! A crate's source as a `Cargo.lock` records it: the registry (`source`) and the `.crate`
//! file's SHA-256 (`checksum`), so `verify --cargo-lock` can hold attestations to the source
//! the user's own project locked, without asking any server.

use serde::Deserialize;

use crate::hash::Sha256Digest;
use crate::names::{CrateName, CrateVersion, RegistryUrl};
use crate::verify::Source;

/// Why a lock file named no usable source for the crate.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Not a lock file.
    #[error("not a Cargo.lock: {0}")]
    Malformed(String),
    /// The crate at that version is not in it.
    #[error("the lock file has no package {name} {version}")]
    Missing {
        /// The crate.
        name: CrateName,
        /// The version.
        version: CrateVersion,
    },
    /// It is there, but not from a registry with a checksum (a path or git dependency, or an
    /// old lock format that keeps checksums elsewhere).
    #[error("{name} {version} in the lock file has no registry source with a checksum")]
    NoChecksum {
        /// The crate.
        name: CrateName,
        /// The version.
        version: CrateVersion,
    },
    /// It is there from more than one registry: which one is meant is not for us to guess.
    #[error("{name} {version} is locked from more than one registry")]
    Ambiguous {
        /// The crate.
        name: CrateName,
        /// The version.
        version: CrateVersion,
    },
    /// The source or checksum breaks its rule.
    #[error("{name} {version} in the lock file: {reason}")]
    Invalid {
        /// The crate.
        name: CrateName,
        /// The version.
        version: CrateVersion,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Deserialize)]
struct LockFile {
    #[serde(default)]
    package: Vec<LockedPackage>,
}

#[derive(Deserialize)]
struct LockedPackage {
    name: String,
    version: String,
    source: Option<String>,
    checksum: Option<String>,
}

/// The source `lock` (a `Cargo.lock`'s text) records for `name` `version`.
pub fn locked_source(
    lock: &str,
    name: &CrateName,
    version: &CrateVersion,
) -> Result<Source, LockError> {
    let file: LockFile = toml::from_str(lock).map_err(|e| LockError::Malformed(e.to_string()))?;
    let mut matching = file
        .package
        .iter()
        .filter(|p| p.name == name.as_str() && p.version == version.as_str());
    let (Some(package), None) = (matching.next(), matching.next()) else {
        let error = if file
            .package
            .iter()
            .any(|p| p.name == name.as_str() && p.version == version.as_str())
        {
            LockError::Ambiguous {
                name: name.clone(),
                version: version.clone(),
            }
        } else {
            LockError::Missing {
                name: name.clone(),
                version: version.clone(),
            }
        };
        return Err(error);
    };
    let (Some(source), Some(checksum)) = (&package.source, &package.checksum) else {
        return Err(LockError::NoChecksum {
            name: name.clone(),
            version: version.clone(),
        });
    };
    let invalid = |reason: String| LockError::Invalid {
        name: name.clone(),
        version: version.clone(),
        reason,
    };
    let registry = RegistryUrl::from_index_url(source)
        .map_err(|e| invalid(format!("source {source:?}: {e}")))?;
    let sha256: Sha256Digest = checksum
        .parse()
        .map_err(|e| invalid(format!("checksum {checksum:?}: {e}")))?;
    Ok(Source { registry, sha256 })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHECKSUM: &str = "8a3c2ab20c7ad1a7c13e6fb5d4b4f4e1c4f7b4a2e0d1c9b8a7f6e5d4c3b2a190";

    fn lock(packages: &str) -> String {
        format!("version = 4\n\n{packages}")
    }

    fn package(name: &str, version: &str, source: &str) -> String {
        format!(
            "[[package]]\nname = \"{name}\"\nversion = \"{version}\"\nsource = \"{source}\"\n\
             checksum = \"{CHECKSUM}\"\n\n"
        )
    }

    #[test]
    fn reads_the_registry_and_checksum_of_a_locked_crate() {
        let text = lock(&format!(
            "{}{}",
            package(
                "ripgrep",
                "14.1.1",
                "registry+https://github.com/rust-lang/crates.io-index"
            ),
            package("ripgrep", "13.0.0", "sparse+http://127.0.0.1:1/index/"),
        ));
        let source = locked_source(
            &text,
            &"ripgrep".parse().unwrap(),
            &"14.1.1".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(source.registry, RegistryUrl::crates_io());
        assert_eq!(source.sha256.to_string(), CHECKSUM);
        let older = locked_source(
            &text,
            &"ripgrep".parse().unwrap(),
            &"13.0.0".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(older.registry, "sparse+http://127.0.0.1:1/index/");
    }

    #[test]
    fn refuses_what_names_no_single_registry_source() {
        let name: CrateName = "ripgrep".parse().unwrap();
        let version: CrateVersion = "14.1.1".parse().unwrap();
        let of = |text: &str| locked_source(text, &name, &version).unwrap_err();
        assert!(matches!(of("[[package]"), LockError::Malformed(_)));
        assert!(matches!(of(&lock("")), LockError::Missing { .. }));
        let path = lock("[[package]]\nname = \"ripgrep\"\nversion = \"14.1.1\"\n");
        assert!(matches!(of(&path), LockError::NoChecksum { .. }));
        let twice = lock(&format!(
            "{}{}",
            package("ripgrep", "14.1.1", "sparse+https://index.crates.io/"),
            package("ripgrep", "14.1.1", "sparse+http://127.0.0.1:1/index/"),
        ));
        assert!(matches!(of(&twice), LockError::Ambiguous { .. }));
        let git = lock(&package(
            "ripgrep",
            "14.1.1",
            "git+https://example.org/r#abc",
        ));
        assert!(matches!(of(&git), LockError::Invalid { .. }));
    }
}
