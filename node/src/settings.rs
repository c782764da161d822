//! Everything about a build that can change its output, and its digest.
//!
//! Two builders with equal settings, toolchain and source must produce equal bytes; when they
//! do not, the settings tell whose build differs and why. The digest goes into every
//! attestation (`settings_digest`): BLAKE3 over the canonical JSON of [`BuildSettings`].

use std::collections::BTreeMap;

use buildsrs_keys::{Blake3Hash, canonical_json};
use serde::Serialize;

/// The build settings a node applies. Field values are what the sandbox sees.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BuildSettings {
    /// The buildsrs version, which fixes the archive writer and compressor.
    pub buildsrs_version: String,
    /// The artifact manifest format.
    pub archive_format: u32,
    /// The cargo command line of the compile phase (without the manifest path).
    pub cargo_args: Vec<String>,
    /// The environment of the compile phase.
    pub env: BTreeMap<String, String>,
    /// The sandbox's own description of its mounts and strategy.
    pub sandbox: Vec<String>,
}

impl BuildSettings {
    /// The digest attestations carry.
    pub fn digest(&self) -> Blake3Hash {
        Blake3Hash::of_bytes(&canonical_json(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BuildSettings {
        BuildSettings {
            buildsrs_version: "0.1.0".into(),
            archive_format: 1,
            cargo_args: vec!["build".into(), "--release".into()],
            env: BTreeMap::from([("RUSTFLAGS".into(), "--remap-path-prefix=/a=/b".into())]),
            sandbox: vec!["strategy=bubblewrap".into()],
        }
    }

    #[test]
    fn the_digest_changes_with_any_setting_and_only_then() {
        let base = settings().digest();
        assert_eq!(base, settings().digest());
        let mut flag = settings();
        flag.env.insert("RUSTFLAGS".into(), "-C opt-level=2".into());
        let mut arg = settings();
        arg.cargo_args.push("--locked".into());
        let mut version = settings();
        version.buildsrs_version = "0.2.0".into();
        for changed in [flag, arg, version] {
            assert_ne!(changed.digest(), base);
        }
    }
}
