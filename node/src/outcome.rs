//! How a build ended. Every job ends in exactly one outcome (and a capped log, kept by the
//! sandbox's `CappedLog`).
//!
//! The crate's outcomes (it built, it has no binaries, it does not compile, it ran too long,
//! used too much memory or printed too much, its source is not what the index says) are facts
//! about the crate version that other builders should be able to confirm. A `NodeError` is a
//! fact about this machine (the sandbox could not start, the disk is full, the network to the
//! registry failed) and must never count against the crate.

use std::fmt;

use buildsrs_keys::ArtifactId;
use serde::{Deserialize, Serialize};

/// The end of one build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum BuildOutcome {
    /// Binaries were built and packed into an artifact.
    Built {
        /// The archive's hash and size.
        artifact: ArtifactId,
        /// The binaries in it.
        binaries: Vec<String>,
    },
    /// The crate has no binaries to build (for this target or with these settings).
    NoBinaries {
        /// Why.
        reason: String,
    },
    /// The build failed (a compiler error, a failing build script, a refused source archive).
    BuildFailed {
        /// A one-line summary.
        reason: String,
    },
    /// A phase ran past its wall-clock limit.
    TimedOut {
        /// The limit in seconds.
        limit_secs: u64,
    },
    /// The build ran out of memory.
    OutOfMemory {
        /// The memory limit for the whole build, in MiB (`None`: unlimited, an allocation
        /// failed anyway).
        limit_mib: Option<u64>,
    },
    /// The build printed more than the output cap.
    OutputTooLarge {
        /// The cap, in MiB.
        limit_mib: u64,
    },
    /// The build wrote more to disk than the limit allows. On the wire it travels as a build
    /// failure with this text as its reason (the protocol and the coordinator's store know
    /// no such outcome yet).
    DiskLimit {
        /// The limit, in MiB.
        limit_mib: u64,
    },
    /// The crate needs a newer Rust than this node builds with (its `rust-version`). Not the
    /// crate's fault and not a failure: the coordinator should not have planned it for this
    /// toolchain. On the wire it travels as a node error (older coordinators know no such
    /// outcome), which never counts against the crate.
    NeedsNewerToolchain {
        /// The crate's `rust-version`.
        required: String,
        /// This node's toolchain release.
        available: String,
    },
    /// The downloaded `.crate` does not match the index checksum.
    SourceChecksumMismatch {
        /// Details.
        reason: String,
    },
    /// The node could not do the job; not the crate's fault.
    NodeError {
        /// What went wrong.
        reason: String,
    },
}

impl BuildOutcome {
    /// The short name used in logs, state and the protocol.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Built { .. } => "built",
            Self::NoBinaries { .. } => "no-binaries",
            Self::BuildFailed { .. } => "build-failed",
            Self::TimedOut { .. } => "timed-out",
            Self::OutOfMemory { .. } => "out-of-memory",
            Self::OutputTooLarge { .. } => "output-too-large",
            Self::DiskLimit { .. } => "disk-limit",
            Self::NeedsNewerToolchain { .. } => "needs-newer-toolchain",
            Self::SourceChecksumMismatch { .. } => "source-checksum-mismatch",
            Self::NodeError { .. } => "node-error",
        }
    }

    /// Whether this says something about this node rather than about the crate.
    pub fn is_node_fault(&self) -> bool {
        matches!(self, Self::NodeError { .. })
    }
}

impl fmt::Display for BuildOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Built { artifact, binaries } => {
                write!(f, "built {} ({})", artifact, binaries.join(", "))
            }
            Self::NoBinaries { reason } => write!(f, "no binaries: {reason}"),
            Self::BuildFailed { reason } => write!(f, "build failed: {reason}"),
            Self::TimedOut { limit_secs } => write!(f, "timed out after {limit_secs} s"),
            Self::OutOfMemory {
                limit_mib: Some(limit),
            } => write!(f, "out of memory (limit {limit} MiB for the whole build)"),
            Self::OutOfMemory { limit_mib: None } => f.write_str("out of memory"),
            Self::OutputTooLarge { limit_mib } => {
                write!(f, "output too large (more than {limit_mib} MiB printed)")
            }
            Self::DiskLimit { limit_mib } => {
                write!(f, "disk limit (more than {limit_mib} MiB written)")
            }
            Self::NeedsNewerToolchain {
                required,
                available,
            } => write!(
                f,
                "needs a newer toolchain: the crate's rust-version is {required}, this node has {available}"
            ),
            Self::SourceChecksumMismatch { reason } => write!(f, "{reason}"),
            Self::NodeError { reason } => write!(f, "node error: {reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_node_errors_are_the_nodes_fault() {
        assert!(
            BuildOutcome::NodeError {
                reason: "disk full".into()
            }
            .is_node_fault()
        );
        assert!(!BuildOutcome::OutOfMemory { limit_mib: None }.is_node_fault());
        assert_eq!(BuildOutcome::TimedOut { limit_secs: 5 }.name(), "timed-out");
    }
}
