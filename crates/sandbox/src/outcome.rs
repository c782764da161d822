//! What a run produced: its exit status, which limit (if any) stopped it, and a capped log of
//! its output.
//!
//! Everything here describes the *crate's* behaviour. Problems of the node itself (bwrap
//! missing, a cgroup that could not be made) never appear here: they are
//! [`crate::SandboxError`]s, so a broken node can never mark a crate as failing.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// How the program ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by this signal (under bubblewrap: reported by bwrap as `128 + signal`).
    Signalled(i32),
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited(code) => write!(f, "exit code {code}"),
            ExitStatus::Signalled(sig) => write!(f, "killed by signal {sig}"),
        }
    }
}

/// The one-word summary of a run, in order of precedence: a run that timed out and also
/// printed too much is reported as timed out, whatever limit the kernel hit first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// Exited with code 0 within every limit.
    Succeeded,
    /// Exited (or was killed) otherwise, within the limits we watch.
    Failed,
    /// Ran past the wall clock or a process ran past its CPU time.
    TimedOut,
    /// The memory limit killed the run, or an allocation failed.
    OutOfMemory,
    /// Printed more than the output cap.
    OutputTooLarge,
    /// Wrote more than the disk limit.
    DiskLimit,
}

/// The result of one run in the sandbox.
#[derive(Clone, Debug, Serialize)]
pub struct RunOutcome {
    /// How the program ended.
    pub status: ExitStatus,
    /// Killed at the wall clock, or a process exceeded its CPU time limit.
    pub timed_out: bool,
    /// The memory cgroup OOM-killed a process, the watchdog saw the tree over the memory
    /// limit, or the log shows an allocation failure (the address-space rlimit makes rustc
    /// abort with `memory allocation of N bytes failed`).
    pub out_of_memory: bool,
    /// Output passed the cap and the run was killed.
    pub output_too_large: bool,
    /// The process limit stopped the run: the pids cgroup refused a fork at least once, or
    /// the watchdog counted too many tasks and killed the run.
    pub pids_limit_hit: bool,
    /// The run wrote more than the disk limit and was killed.
    pub disk_limit_hit: bool,
    /// Head and tail of stdout and stderr, interleaved as they arrived.
    pub log: CappedLog,
    /// Wall-clock time from spawn to exit.
    pub wall_time: Duration,
    /// Peak memory of the whole tree, where a memory cgroup measured it.
    pub peak_memory_bytes: Option<u64>,
}

impl RunOutcome {
    /// The summary: see [`RunKind`] for the precedence.
    pub fn kind(&self) -> RunKind {
        if self.timed_out {
            RunKind::TimedOut
        } else if self.out_of_memory {
            RunKind::OutOfMemory
        } else if self.output_too_large {
            RunKind::OutputTooLarge
        } else if self.disk_limit_hit {
            RunKind::DiskLimit
        } else if self.status == ExitStatus::Exited(0) {
            RunKind::Succeeded
        } else {
            RunKind::Failed
        }
    }

    /// Exited with code 0 and no limit stopped it.
    pub fn success(&self) -> bool {
        self.kind() == RunKind::Succeeded
    }
}

/// A log that keeps the first and the last `keep / 2` bytes of everything pushed into it, and
/// counts the rest. Build logs are most useful at both ends: the first error and the final
/// summary.
#[derive(Clone, Debug, Serialize)]
pub struct CappedLog {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    head_cap: usize,
    tail_cap: usize,
    total: u64,
}

impl CappedLog {
    /// An empty log keeping at most `keep` bytes.
    pub fn new(keep: usize) -> Self {
        let head_cap = keep / 2;
        CappedLog {
            head: Vec::new(),
            tail: VecDeque::new(),
            head_cap,
            tail_cap: keep - head_cap,
            total: 0,
        }
    }

    /// Appends output.
    pub fn push(&mut self, mut bytes: &[u8]) {
        self.total = self.total.saturating_add(bytes.len() as u64);
        let room = self.head_cap - self.head.len();
        if room > 0 {
            let take = room.min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        if bytes.len() >= self.tail_cap {
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - self.tail_cap..]);
        } else {
            let overflow = (self.tail.len() + bytes.len()).saturating_sub(self.tail_cap);
            self.tail.drain(..overflow);
            self.tail.extend(bytes);
        }
    }

    /// Every byte pushed, kept or not.
    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// Bytes dropped between head and tail.
    pub fn omitted_bytes(&self) -> u64 {
        self.total - (self.head.len() + self.tail.len()) as u64
    }

    /// The kept bytes, with a `[… N bytes omitted …]` line between head and tail when
    /// anything was dropped.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.head.len() + self.tail.len() + 64);
        out.extend_from_slice(&self.head);
        let omitted = self.omitted_bytes();
        if omitted > 0 {
            if !out.ends_with(b"\n") {
                out.push(b'\n');
            }
            out.extend_from_slice(format!("[… {omitted} bytes omitted …]\n").as_bytes());
        }
        out.extend(self.tail.iter());
        out
    }

    /// [`CappedLog::to_bytes`] as text, invalid UTF-8 replaced.
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(&self.to_bytes()).into_owned()
    }

    /// Whether the kept bytes contain `needle` (head and tail are searched separately).
    pub(crate) fn contains(&self, needle: &[u8]) -> bool {
        if needle.is_empty() {
            return true;
        }
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        [&self.head[..], &tail[..]]
            .iter()
            .any(|hay| hay.windows(needle.len()).any(|w| w == needle))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_everything_under_the_cap() {
        let mut log = CappedLog::new(10);
        log.push(b"abc");
        log.push(b"de");
        assert_eq!(log.to_bytes(), b"abcde");
        assert_eq!(log.omitted_bytes(), 0);
    }

    #[test]
    fn keeps_head_and_tail() {
        let mut log = CappedLog::new(8);
        for chunk in [&b"0123"[..], b"456789", b"ab", b"cdefgh"] {
            log.push(chunk);
        }
        assert_eq!(log.total_bytes(), 18);
        assert_eq!(log.omitted_bytes(), 10);
        assert_eq!(log.to_string_lossy(), "0123\n[… 10 bytes omitted …]\nefgh");
        assert!(log.contains(b"fg"));
        assert!(!log.contains(b"89"));
    }

    #[test]
    fn one_huge_chunk() {
        let mut log = CappedLog::new(4);
        log.push(b"abcdefghij");
        assert_eq!(log.to_string_lossy(), "ab\n[… 6 bytes omitted …]\nij");
    }
}
