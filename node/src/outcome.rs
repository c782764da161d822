//! How a build ended: the one outcome of `buildsrs-domain`, whose built result carries what the
//! node made ([`Built`]: the archive's hash and size, the binaries). Every job ends in exactly
//! one outcome (and a capped log, kept by the sandbox's `CappedLog`).
//!
//! The crate's outcomes (it built, it has no binaries, it does not compile, it ran too long,
//! used too much memory or disk or printed too much, its source is not what the index says)
//! are facts about the crate version that other builders should be able to confirm. A node
//! error (the sandbox could not start, the disk is full, the network to the registry failed)
//! and a toolchain too old for the crate are facts about this machine and never count against
//! the crate.
//!
//! The functions here word the limits the same way everywhere (the node's log, the build log,
//! the reason the coordinator stores).

use std::fmt;
use std::path::PathBuf;

pub use buildsrs_domain::{Ended, Outcome, OutcomeKind};
use buildsrs_keys::{ArtifactId, SignedAttestation};

/// How a node's build ended.
pub type BuildOutcome = Outcome<Built>;

/// What a build that succeeded made: the archive, what it is, and the node's signed word
/// for it, together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Built {
    /// The archive's hash and size.
    pub artifact: ArtifactId,
    /// The binaries in it.
    pub binaries: Vec<String>,
    /// Where the archive is, in the data dir.
    pub archive: PathBuf,
    /// The node's signed attestation of it.
    pub attestation: SignedAttestation,
}

impl fmt::Display for Built {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.artifact, self.binaries.join(", "))
    }
}

/// A phase ran past its wall-clock limit of `limit_secs`.
pub fn timed_out(limit_secs: u64) -> BuildOutcome {
    Outcome::timed_out(format!("ran past its limit of {limit_secs} s"))
}

/// The build ran out of memory: under a limit for the whole build (MiB), or an allocation
/// failed without one.
pub fn out_of_memory(limit_mib: Option<u64>) -> BuildOutcome {
    Outcome::out_of_memory(match limit_mib {
        Some(limit) => format!("limit {limit} MiB for the whole build"),
        None => "an allocation failed".to_owned(),
    })
}

/// The build printed more than `limit_mib`.
pub fn output_too_large(limit_mib: u64) -> BuildOutcome {
    Outcome::output_too_large(format!("more than {limit_mib} MiB printed"))
}

/// A phase wrote more than `limit_mib` to disk.
pub fn disk_limit(limit_mib: u64) -> BuildOutcome {
    Outcome::disk_limit(format!("more than {limit_mib} MiB written"))
}

/// The crate's `rust-version` is above this node's Rust.
pub fn needs_newer_toolchain(required: &str, available: &str) -> BuildOutcome {
    Outcome::needs_newer_toolchain(format!(
        "the crate's rust-version is {required}, this node has {available}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_named_and_only_the_builders_faults_spare_the_crate() {
        assert_eq!(
            out_of_memory(Some(768)).to_string(),
            "out of memory: limit 768 MiB for the whole build"
        );
        assert_eq!(
            disk_limit(48).to_string(),
            "disk limit: more than 48 MiB written"
        );
        assert!(BuildOutcome::node_error("disk full").is_builder_fault());
        assert!(needs_newer_toolchain("1.99", "1.95.0").is_builder_fault());
        assert!(!out_of_memory(None).is_builder_fault());
        assert_eq!(timed_out(5).kind(), OutcomeKind::TimedOut);
    }
}
