//! Everything about a build that can change its output, and its digest.
//!
//! Two builders with equal settings, toolchain and source must produce equal bytes; when they
//! do not, the settings tell whose build differs and why. The digest goes into every
//! attestation (`settings_digest`): BLAKE3 over the canonical JSON of [`BuildSettings`].
//! Resource limits are not settings: they decide whether a build finishes, never its bytes.

use buildsrs_keys::{Blake3Hash, canonical_json};
use serde::Serialize;

/// The build settings a node applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BuildSettings {
    /// The buildsrs version, which fixes the archive writer and its compressor.
    pub buildsrs_version: String,
    /// The artifact manifest format.
    pub archive_format: u32,
    /// The sandbox's description of the compile phase: strategy, program, arguments, the
    /// whole environment (flags, `SOURCE_DATE_EPOCH`, path remapping) and the canonical
    /// mounts.
    pub compile: String,
    /// The wall clock builds read ([`BuildSettings::frozen_clock`]).
    pub clock: String,
}

impl BuildSettings {
    /// The clock of phase 2: frozen at `epoch` by the sandbox's clock library, named by a
    /// digest of its source (what it does), not of its compiled bytes (which vary with the
    /// C compiler that built the node).
    pub fn frozen_clock(epoch: u64) -> String {
        let source = Blake3Hash::of_bytes(buildsrs_sandbox::clock::SHIM_SOURCE.as_bytes());
        format!(
            "frozen at {epoch} by buildsrs-clock {}",
            &source.to_hex()[..16]
        )
    }

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
            compile: "strategy=\"bubblewrap\"\nenv.RUSTFLAGS=\"\"".into(),
            clock: BuildSettings::frozen_clock(1_700_000_000),
        }
    }

    #[test]
    fn the_digest_changes_with_any_setting_and_only_then() {
        let base = settings().digest();
        assert_eq!(base, settings().digest());
        let mut flags = settings();
        flags.compile.push_str(" -C opt-level=2");
        let mut format = settings();
        format.archive_format = 2;
        let mut version = settings();
        version.buildsrs_version = "0.2.0".into();
        let mut clock = settings();
        clock.clock = BuildSettings::frozen_clock(1_700_000_001);
        for changed in [flags, format, version, clock] {
            assert_ne!(changed.digest(), base);
        }
    }
}
