//! How a build ended. Every job ends in exactly one outcome, with a capped log.
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
    OutOfMemory,
    /// The build printed more than the output cap.
    OutputTooLarge,
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
            Self::OutOfMemory => "out-of-memory",
            Self::OutputTooLarge => "output-too-large",
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
            Self::OutOfMemory => f.write_str("out of memory"),
            Self::OutputTooLarge => f.write_str("output too large"),
            Self::SourceChecksumMismatch { reason } => write!(f, "{reason}"),
            Self::NodeError { reason } => write!(f, "node error: {reason}"),
        }
    }
}

/// A log that keeps its head and its tail when it grows past its cap, which is where the
/// interesting lines of a build log are (what ran, and how it failed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CappedLog {
    cap: usize,
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    omitted: u64,
}

impl CappedLog {
    /// A log that keeps at most `cap` bytes (half head, half tail).
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            ..Self::default()
        }
    }

    /// Appends bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        let head_cap = self.cap / 2;
        let tail_cap = self.cap - head_cap;
        let take = head_cap.saturating_sub(self.head.len()).min(bytes.len());
        self.head.extend_from_slice(&bytes[..take]);
        for &byte in &bytes[take..] {
            if tail_cap == 0 {
                self.omitted += 1;
                continue;
            }
            if self.tail.len() == tail_cap {
                self.tail.pop_front();
                self.omitted += 1;
            }
            self.tail.push_back(byte);
        }
    }

    /// Appends a line of text.
    pub fn line(&mut self, text: &str) {
        self.push(text.as_bytes());
        self.push(b"\n");
    }

    /// The kept bytes, with a marker where bytes were left out.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.head.clone();
        if self.omitted > 0 {
            out.extend_from_slice(format!("\n[… {} bytes omitted …]\n", self.omitted).as_bytes());
        }
        out.extend(self.tail.iter());
        out
    }

    /// The kept text, lossily decoded.
    pub fn to_text(&self) -> String {
        String::from_utf8_lossy(&self.to_bytes()).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_logs_are_kept_whole() {
        let mut log = CappedLog::new(100);
        log.line("hello");
        log.push(b"world");
        assert_eq!(log.to_text(), "hello\nworld");
    }

    #[test]
    fn large_logs_keep_head_and_tail() {
        let mut log = CappedLog::new(10);
        for i in 0..100u8 {
            log.push(&[b'a' + i % 26]);
        }
        let text = log.to_text();
        assert!(
            text.starts_with("abcde\n[… 90 bytes omitted …]\n"),
            "{text}"
        );
        assert!(text.ends_with("rstuv"), "{text}");
    }

    #[test]
    fn only_node_errors_are_the_nodes_fault() {
        assert!(
            BuildOutcome::NodeError {
                reason: "disk full".into()
            }
            .is_node_fault()
        );
        assert!(!BuildOutcome::OutOfMemory.is_node_fault());
        assert_eq!(BuildOutcome::TimedOut { limit_secs: 5 }.name(), "timed-out");
    }
}
