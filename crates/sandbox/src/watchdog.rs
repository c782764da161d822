//! Limits enforced by watching the run from outside, for what no kernel mechanism bounds on
//! every machine.
//!
//! - **Disk**: a build writes into bind-mounted host directories (the target dir, its source
//!   copy, its dependency sources). rlimits cap each file, not the total, and no unprivileged
//!   mechanism caps a directory tree. The watchdog walks the run's writable host directories
//!   (without following links) and stops the run once they hold more than the limit above
//!   what they held at its start. The sandbox's own tmpfs mounts are capped by size instead
//!   (see `crate::sandbox`).
//! - **Processes and memory where cgroups are not writable** (cgroup v2 without delegation, a
//!   node under systemd `User=`, or cgroups switched off): the watchdog counts the tasks and
//!   sums the resident memory of every process descended from the run's wrapper. Inside a pid
//!   namespace every orphan is re-parented to the namespace's init, so nothing leaves the
//!   tree by double-forking.
//!
//! A watchdog acts after the fact: a fork storm or an allocation burst runs for up to one
//! interval before the run is killed. Where cgroups work, they bound processes and memory
//! in the kernel and the watchdog leaves those two alone.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

/// How often the process tree is measured.
pub(crate) const TREE_INTERVAL: Duration = Duration::from_millis(100);
/// The disk walk's interval is this many times the last walk's duration, and never shorter
/// than [`TREE_INTERVAL`]: a huge target dir is walked less often than a small one, so the
/// watchdog costs a bounded share of one core.
const DISK_WALK_COST_FACTOR: u32 = 20;

/// A limit the watchdog saw exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Breach {
    /// More tasks (processes and threads) than allowed.
    Processes(u64),
    /// More resident memory than allowed, in bytes.
    Memory(u64),
    /// More bytes written to the writable directories than allowed.
    Disk(u64),
}

/// What one run's watchdog checks.
#[derive(Debug)]
pub(crate) struct Watchdog {
    /// The process whose descendants (and itself) are the run's tree.
    root: Option<u32>,
    max_tasks: Option<u64>,
    max_memory: Option<u64>,
    disk: Option<DiskWatch>,
    page_size: u64,
}

#[derive(Debug)]
struct DiskWatch {
    dirs: Vec<PathBuf>,
    baseline: u64,
    limit: u64,
    next_walk: tokio::time::Instant,
}

impl Watchdog {
    /// A watchdog for `max_tasks` and `max_memory` (pass them only where the kernel does not
    /// enforce them) and for `disk_limit` over the writable `dirs`, measured now as the
    /// baseline. It watches a tree once [`Watchdog::set_root`] names its root.
    pub(crate) async fn new(
        max_tasks: Option<u64>,
        max_memory: Option<u64>,
        dirs: Vec<PathBuf>,
        disk_limit: Option<u64>,
    ) -> Self {
        let disk = match disk_limit {
            Some(limit) => {
                let walked = dirs.clone();
                let baseline = tokio::task::spawn_blocking(move || disk_usage(&walked))
                    .await
                    .unwrap_or(0);
                Some(DiskWatch {
                    baseline,
                    dirs,
                    limit,
                    next_walk: tokio::time::Instant::now(),
                })
            }
            None => None,
        };
        Watchdog {
            root: None,
            max_tasks,
            max_memory,
            disk,
            page_size: rustix::param::page_size() as u64,
        }
    }

    /// The process whose tree is the run (the wrapper, which execs bwrap).
    pub(crate) fn set_root(&mut self, pid: Option<u32>) {
        self.root = pid;
    }

    /// Whether there is anything to watch.
    pub(crate) fn is_active(&self) -> bool {
        self.disk.is_some()
            || (self.root.is_some() && (self.max_tasks.is_some() || self.max_memory.is_some()))
    }

    /// The disk measured once more, whatever the interval: a run may write its burst and
    /// end between two walks, and what it left still counts.
    pub(crate) async fn final_disk_check(&mut self) -> Option<Breach> {
        if let Some(disk) = self.disk.as_mut() {
            disk.next_walk = tokio::time::Instant::now();
        }
        self.root = None;
        self.check().await
    }

    /// One round of checks: the tree every time, the disk when its interval has passed.
    pub(crate) async fn check(&mut self) -> Option<Breach> {
        if let Some(breach) = self.check_tree() {
            return Some(breach);
        }
        let disk = self.disk.as_mut()?;
        let now = tokio::time::Instant::now();
        if now < disk.next_walk {
            return None;
        }
        let dirs = disk.dirs.clone();
        let started = std::time::Instant::now();
        // A walk of a big target dir takes tens of milliseconds of blocking file system calls.
        let used = tokio::task::spawn_blocking(move || disk_usage(&dirs))
            .await
            .unwrap_or(0);
        let cost = started.elapsed();
        disk.next_walk = now + (cost * DISK_WALK_COST_FACTOR).max(TREE_INTERVAL);
        let written = used.saturating_sub(disk.baseline);
        (written > disk.limit).then_some(Breach::Disk(written))
    }

    fn check_tree(&self) -> Option<Breach> {
        let root = self.root?;
        if self.max_tasks.is_none() && self.max_memory.is_none() {
            return None;
        }
        let tree = measure_tree(root, self.page_size);
        if let Some(max) = self.max_tasks
            && tree.tasks > max
        {
            return Some(Breach::Processes(tree.tasks));
        }
        if let Some(max) = self.max_memory
            && tree.resident_bytes > max
        {
            return Some(Breach::Memory(tree.resident_bytes));
        }
        None
    }
}

/// Whether this machine lets the watchdog see process trees (a readable `/proc`).
pub(crate) fn available() -> bool {
    measure_tree(std::process::id(), rustix::param::page_size() as u64).tasks > 0
}

/// The size of a process tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TreeSize {
    /// Processes and their threads.
    pub(crate) tasks: u64,
    /// Resident memory, summed over processes (pages shared between them count once per
    /// process, so this errs high).
    pub(crate) resident_bytes: u64,
}

/// One process's line in `/proc/PID/stat`.
struct ProcStat {
    ppid: u32,
    threads: u64,
    resident_pages: u64,
}

/// Measures `root` and all its descendants from `/proc`.
pub(crate) fn measure_tree(root: u32, page_size: u64) -> TreeSize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return TreeSize::default();
    };
    let mut stats: HashMap<u32, ProcStat> = HashMap::new();
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // A process may exit between the listing and the read: it is simply not counted.
        let Some(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|text| parse_stat(&text))
        else {
            continue;
        };
        children.entry(stat.ppid).or_default().push(pid);
        stats.insert(pid, stat);
    }
    let mut size = TreeSize::default();
    let mut pending = vec![root];
    while let Some(pid) = pending.pop() {
        if let Some(stat) = stats.remove(&pid) {
            size.tasks += stat.threads;
            size.resident_bytes += stat.resident_pages * page_size;
        }
        if let Some(kids) = children.remove(&pid) {
            pending.extend(kids);
        }
    }
    size
}

/// Parses the fields we need from `/proc/PID/stat`. The command name (field 2) is in
/// parentheses and may itself hold spaces and parentheses, so fields are counted from the
/// last `)`.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let after_name = &text[text.rfind(')')? + 1..];
    // Fields 3.. : state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
    // utime stime cutime cstime priority nice num_threads itrealvalue starttime vsize rss
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    Some(ProcStat {
        ppid: fields.get(1)?.parse().ok()?,
        threads: fields.get(17)?.parse().ok()?,
        resident_pages: fields.get(21)?.parse().ok()?,
    })
}

/// Bytes allocated on disk to everything under `dirs`, walked without following links.
/// Unreadable entries and entries that vanish during the walk count as nothing.
pub(crate) fn disk_usage(dirs: &[PathBuf]) -> u64 {
    let mut total = 0u64;
    let mut pending: Vec<PathBuf> = dirs.to_vec();
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            // `DirEntry::metadata` does not follow a symlink: a link counts as itself.
            let Ok(meta) = entry.metadata() else { continue };
            total = total.saturating_add(meta.blocks().saturating_mul(512));
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_whose_name_holds_parentheses_and_spaces() {
        let text = "4242 (a) b (c) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 \
                    555 1000000 250 18446744073709551615";
        let stat = parse_stat(text).expect("parses");
        assert_eq!(stat.ppid, 17);
        assert_eq!(stat.threads, 3);
        assert_eq!(stat.resident_pages, 250);
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn measures_this_process_and_its_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("spawn sleep");
        let size = measure_tree(std::process::id(), rustix::param::page_size() as u64);
        let _ = child.kill();
        let _ = child.wait();
        // This test's threads, plus the sleep.
        assert!(size.tasks >= 2, "{size:?}");
        assert!(size.resident_bytes > 0, "{size:?}");
    }

    #[test]
    fn disk_usage_counts_files_below_and_does_not_follow_links() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("big"), vec![1u8; 1 << 20]).expect("write");
        let before = disk_usage(&[dir.path().to_path_buf()]);
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/f"), vec![1u8; 256 << 10]).expect("write");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).expect("link");
        let after = disk_usage(&[dir.path().to_path_buf()]);
        let grown = after - before;
        assert!(grown >= 256 << 10, "{grown}");
        assert!(grown < 1 << 20, "the link's target was counted: {grown}");
    }
}
