//! Per-run memory and pids cgroups, where the node may create them.
//!
//! rlimits bound each process; a build is a tree of processes (cargo, rustc ×N, build
//! scripts, linkers), so the memory and process-count limits must apply to the tree. Each run
//! gets a fresh child cgroup under the node's own cgroup (cgroups v1, or a delegated v2
//! subtree). The wrapper script moves itself into it before it execs bwrap, so every process
//! of the run is inside from its first instruction, with no race.
//!
//! The cgroup also gives us what the exit status cannot: whether the kernel OOM-killed
//! anything (`oom_kill` counters), whether a fork was refused (`pids.events`), the peak memory
//! of the tree, and a list of every process to kill when the run must stop.
//!
//! Machines without writable cgroups still build: the run goes on without these limits and
//! [`crate::SandboxCapabilities`] says so.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};

/// Which cgroup interface a controller lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// The node's own cgroup directory for one controller, under which run cgroups are made.
#[derive(Clone, Debug)]
struct Parent {
    dir: PathBuf,
    version: Version,
}

/// Where the node may create memory and pids cgroups, and why not where it may not.
#[derive(Clone, Debug, Default)]
pub(crate) struct CgroupParents {
    memory: Option<Parent>,
    pids: Option<Parent>,
    /// Why a controller is unavailable, for the capabilities report.
    pub(crate) notes: Vec<String>,
}

impl CgroupParents {
    /// Finds the node's own memory and pids cgroups from `/proc/self/cgroup` and
    /// `/proc/self/mountinfo`, preferring a v1 hierarchy for a controller when one is mounted.
    pub(crate) fn detect() -> Self {
        let mut parents = CgroupParents::default();
        let (Ok(cgroups), Ok(mounts)) = (
            fs::read_to_string("/proc/self/cgroup"),
            fs::read_to_string("/proc/self/mountinfo"),
        ) else {
            parents
                .notes
                .push("cannot read /proc/self/cgroup or mountinfo".into());
            return parents;
        };
        for controller in ["memory", "pids"] {
            let found = find_v1(&cgroups, &mounts, controller)
                .or_else(|| find_v2(&cgroups, &mounts, controller));
            match found {
                Some(Ok(parent)) => {
                    if controller == "memory" {
                        parents.memory = Some(parent);
                    } else {
                        parents.pids = Some(parent);
                    }
                }
                Some(Err(note)) => parents.notes.push(note),
                None => parents
                    .notes
                    .push(format!("no {controller} cgroup controller is mounted")),
            }
        }
        parents
    }

    /// No cgroups at all: the node was told not to use them.
    pub(crate) fn switched_off() -> Self {
        CgroupParents {
            notes: vec!["cgroups are switched off in the node's settings".into()],
            ..CgroupParents::default()
        }
    }

    /// Removes the run cgroups of sandbox processes that are gone (a node killed with
    /// `kill -9` or a crash leaves them behind): kills what is still inside, then removes the
    /// directory. Returns how many were removed.
    pub(crate) async fn remove_stale(&self) -> usize {
        let mut removed = 0;
        let mut dirs: Vec<PathBuf> = Vec::new();
        for parent in [&self.memory, &self.pids].into_iter().flatten() {
            let Ok(entries) = fs::read_dir(&parent.dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                if stale_run_name(&name.to_string_lossy(), RUN_PREFIX)
                    && !dirs.contains(&entry.path())
                {
                    dirs.push(entry.path());
                }
            }
        }
        for dir in dirs {
            kill_until_empty(&dir).await;
            if fs::remove_dir(&dir).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    pub(crate) fn memory_available(&self) -> bool {
        self.memory.is_some()
    }

    pub(crate) fn pids_available(&self) -> bool {
        self.pids.is_some()
    }
}

/// The cgroups of one run. Call [`RunCgroups::remove`] when the run is over; if the run is
/// abandoned instead (its future dropped), `Drop` kills what is left and tries once to remove
/// the directories.
#[derive(Debug, Default)]
pub(crate) struct RunCgroups {
    memory: Option<(PathBuf, Version)>,
    pids: Option<(PathBuf, Version)>,
}

/// What the cgroups saw during a run.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counters {
    pub(crate) oom_kills: u64,
    pub(crate) pids_refused: u64,
    pub(crate) peak_memory: Option<u64>,
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Run cgroups (and the runner's scratch dirs) are named `PREFIX<node pid>-<sequence>`, so a
/// later node can tell those of a process that is gone.
pub(crate) const RUN_PREFIX: &str = "buildsrs-sandbox-";

/// Whether `name` is `prefix<pid>-<anything>` for a pid with no running process.
pub(crate) fn stale_run_name(name: &str, prefix: &str) -> bool {
    let Some(pid) = name
        .strip_prefix(prefix)
        .and_then(|rest| rest.split_once('-'))
        .and_then(|(pid, _)| pid.parse::<u32>().ok())
    else {
        return false;
    };
    pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
}

impl RunCgroups {
    /// Creates this run's cgroups and sets their limits. A controller that fails is skipped
    /// with a warning (returned), never an error: the run is still sandboxed and rlimited.
    pub(crate) fn create(
        parents: &CgroupParents,
        memory_bytes: Option<u64>,
        max_pids: Option<u64>,
    ) -> (RunCgroups, Vec<String>) {
        let name = format!(
            "{RUN_PREFIX}{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let mut run = RunCgroups::default();
        let mut warnings = Vec::new();
        if let Some(parent) = &parents.memory {
            match make_memory(parent, &name, memory_bytes) {
                Ok(dir) => run.memory = Some((dir, parent.version)),
                Err(e) => warnings.push(format!("memory cgroup not used: {e}")),
            }
        }
        if let Some(parent) = &parents.pids {
            // Under v2 both controllers share one directory.
            let same = run.memory.as_ref().filter(|(dir, v)| {
                *v == Version::V2 && parent.version == Version::V2 && dir.starts_with(&parent.dir)
            });
            let result = match same {
                Some((dir, _)) => set_limit(&dir.join("pids.max"), max_pids).map(|()| dir.clone()),
                None => make_pids(parent, &name, max_pids),
            };
            match result {
                Ok(dir) => run.pids = Some((dir, parent.version)),
                Err(e) => warnings.push(format!("pids cgroup not used: {e}")),
            }
        }
        (run, warnings)
    }

    /// Whether the run has a memory cgroup (its memory limit is the kernel's to enforce).
    pub(crate) fn has_memory(&self) -> bool {
        self.memory.is_some()
    }

    /// Whether the run has a pids cgroup.
    pub(crate) fn has_pids(&self) -> bool {
        self.pids.is_some()
    }

    /// The `cgroup.procs` files the wrapper must write its pid into (one per directory).
    pub(crate) fn procs_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = [&self.memory, &self.pids]
            .into_iter()
            .flatten()
            .map(|(dir, _)| dir.join("cgroup.procs"))
            .collect();
        files.dedup();
        files
    }

    /// SIGKILLs every process in the run's cgroups until they are empty (or we give up after a
    /// second: a process in uninterruptible sleep dies when it wakes).
    pub(crate) async fn kill_all(&self) {
        for (dir, version) in [&self.memory, &self.pids].into_iter().flatten() {
            if *version == Version::V2 && dir.join("cgroup.kill").exists() {
                let _ = write(&dir.join("cgroup.kill"), "1");
            }
            kill_until_empty(dir).await;
        }
    }

    /// Reads the counters; call after the run ended.
    pub(crate) fn counters(&self) -> Counters {
        let mut counters = Counters::default();
        if let Some((dir, version)) = &self.memory {
            let (events, peak) = match version {
                Version::V1 => ("memory.oom_control", "memory.max_usage_in_bytes"),
                Version::V2 => ("memory.events", "memory.peak"),
            };
            counters.oom_kills = read_key(&dir.join(events), "oom_kill").unwrap_or(0);
            counters.peak_memory = read_number(&dir.join(peak));
        }
        if let Some((dir, _)) = &self.pids {
            counters.pids_refused = read_key(&dir.join("pids.events"), "max").unwrap_or(0);
        }
        counters
    }

    /// Removes the run's cgroups once their processes are gone (retrying for a moment: the
    /// kernel frees a killed process's cgroup membership asynchronously).
    pub(crate) async fn remove(mut self) {
        for dir in self.take_dirs() {
            let mut removed = false;
            for _ in 0..100 {
                if fs::remove_dir(&dir).is_ok() || !dir.exists() {
                    removed = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if !removed {
                tracing::warn!(cgroup = %dir.display(), "could not remove the run's cgroup");
            }
        }
    }

    fn take_dirs(&mut self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = [self.memory.take(), self.pids.take()]
            .into_iter()
            .flatten()
            .map(|(dir, _)| dir)
            .collect();
        dirs.dedup();
        dirs
    }
}

impl Drop for RunCgroups {
    fn drop(&mut self) {
        let dirs = self.take_dirs();
        if dirs.is_empty() {
            return;
        }
        // An abandoned run: kill what is left, and remove the directories from a thread once
        // the kernel has let go of the dead processes (Drop cannot await).
        for dir in &dirs {
            for pid in read_pids(&dir.join("cgroup.procs")) {
                let _ = kill_process(pid, Signal::KILL);
            }
        }
        std::thread::spawn(move || {
            for dir in dirs {
                let removed = (0..100).any(|_| {
                    let done = fs::remove_dir(&dir).is_ok() || !dir.exists();
                    if !done {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    done
                });
                if !removed {
                    tracing::warn!(cgroup = %dir.display(), "left behind the cgroup of an abandoned run");
                }
            }
        });
    }
}

/// SIGKILLs every process in the cgroup `dir` until it is empty, or gives up after a second
/// (a process in uninterruptible sleep dies when it wakes).
async fn kill_until_empty(dir: &Path) {
    for _ in 0..50 {
        let pids = read_pids(&dir.join("cgroup.procs"));
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let _ = kill_process(pid, Signal::KILL);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn make_memory(parent: &Parent, name: &str, limit: Option<u64>) -> std::io::Result<PathBuf> {
    let dir = make_dir(parent, name)?;
    let result = match parent.version {
        Version::V1 => set_limit(&dir.join("memory.limit_in_bytes"), limit).map(|()| {
            // No swap on top of the limit; absent when the kernel has no swap accounting.
            let memsw = dir.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                let _ = set_limit(&memsw, limit);
            }
        }),
        Version::V2 => set_limit(&dir.join("memory.max"), limit).map(|()| {
            if limit.is_some() {
                let _ = write(&dir.join("memory.swap.max"), "0");
            }
        }),
    };
    result.inspect_err(|_| {
        let _ = fs::remove_dir(&dir);
    })?;
    Ok(dir)
}

fn make_pids(parent: &Parent, name: &str, limit: Option<u64>) -> std::io::Result<PathBuf> {
    let dir = make_dir(parent, name)?;
    set_limit(&dir.join("pids.max"), limit).inspect_err(|_| {
        let _ = fs::remove_dir(&dir);
    })?;
    Ok(dir)
}

fn make_dir(parent: &Parent, name: &str) -> std::io::Result<PathBuf> {
    let dir = parent.dir.join(name);
    // A leftover of a crashed run with the same name (pids are reused) is empty: remove it.
    let _ = fs::remove_dir(&dir);
    fs::create_dir(&dir)?;
    Ok(dir)
}

/// Writes a limit; `None` leaves the new cgroup's default (unlimited) alone, which spares us
/// the two interfaces' different spellings of "unlimited".
fn set_limit(path: &Path, limit: Option<u64>) -> std::io::Result<()> {
    match limit {
        Some(n) => write(path, &n.to_string()),
        None => Ok(()),
    }
}

fn write(path: &Path, value: &str) -> std::io::Result<()> {
    fs::write(path, value)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn read_pids(path: &Path) -> Vec<Pid> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse::<i32>().ok())
        .filter_map(Pid::from_raw)
        .collect()
}

fn read_number(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat-keyed file (`key value` lines).
fn read_key(path: &Path, key: &str) -> Option<u64> {
    fs::read_to_string(path).ok()?.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// A v1 hierarchy carrying `controller`: the node's directory in it, if writable.
fn find_v1(cgroups: &str, mounts: &str, controller: &str) -> Option<Result<Parent, String>> {
    let own = cgroups.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
        list.split(',').any(|c| c == controller).then_some(path)
    })?;
    let mount = mounts
        .lines()
        .filter_map(parse_mount)
        .find(|m| m.fstype == "cgroup" && m.super_options.split(',').any(|o| o == controller))?;
    Some(parent_dir(&mount, own, Version::V1, controller))
}

/// The unified hierarchy, if it carries `controller` and lets us delegate it to children.
fn find_v2(cgroups: &str, mounts: &str, controller: &str) -> Option<Result<Parent, String>> {
    let own = cgroups.lines().find_map(|line| line.strip_prefix("0::"))?;
    let mount = mounts
        .lines()
        .filter_map(parse_mount)
        .find(|m| m.fstype == "cgroup2")?;
    let parent = match parent_dir(&mount, own, Version::V2, controller) {
        Ok(parent) => parent,
        Err(note) => return Some(Err(note)),
    };
    let available = fs::read_to_string(parent.dir.join("cgroup.controllers")).unwrap_or_default();
    if !available.split_whitespace().any(|c| c == controller) {
        return None;
    }
    // Children only get the controller if it is enabled in our subtree_control. The kernel
    // refuses that while our own cgroup has processes (other than at the root); then the
    // node must be started in a delegated cgroup.
    let enabled = fs::read_to_string(parent.dir.join("cgroup.subtree_control")).unwrap_or_default();
    if !enabled.split_whitespace().any(|c| c == controller)
        && write(
            &parent.dir.join("cgroup.subtree_control"),
            &format!("+{controller}"),
        )
        .is_err()
    {
        return Some(Err(format!(
            "cgroup v2 {controller} controller cannot be delegated under {} (start the node in \
             a delegated cgroup, e.g. `systemd-run --user --scope -p Delegate=yes`)",
            parent.dir.display()
        )));
    }
    Some(Ok(parent))
}

fn parent_dir(
    mount: &MountInfo,
    own: &str,
    version: Version,
    controller: &str,
) -> Result<Parent, String> {
    let relative = own
        .strip_prefix(mount.root.as_str())
        .unwrap_or(own)
        .trim_start_matches('/');
    let dir = Path::new(&mount.mount_point).join(relative);
    // Mode bits say little here (a v1 root is r-x even for root, who may still mkdir).
    if probe_writable(&dir) {
        Ok(Parent { dir, version })
    } else {
        Err(format!(
            "{controller} cgroup {} is not writable by the node",
            dir.display()
        ))
    }
}

/// Creating and removing an empty child is the only reliable test of write access.
fn probe_writable(dir: &Path) -> bool {
    let probe = dir.join(format!("buildsrs-probe-{}", std::process::id()));
    let _ = fs::remove_dir(&probe);
    fs::create_dir(&probe).is_ok() && fs::remove_dir(&probe).is_ok()
}

struct MountInfo {
    root: String,
    mount_point: String,
    fstype: String,
    super_options: String,
}

/// One line of `/proc/self/mountinfo`:
/// `id parent maj:min root mount-point options [optional fields] - fstype source super-options`.
fn parse_mount(line: &str) -> Option<MountInfo> {
    let (left, right) = line.split_once(" - ")?;
    let left: Vec<&str> = left.split(' ').collect();
    let right: Vec<&str> = right.split(' ').collect();
    Some(MountInfo {
        root: unescape(left.get(3)?),
        mount_point: unescape(left.get(4)?),
        fstype: (*right.first()?).to_string(),
        super_options: (*right.get(2)?).to_string(),
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let s = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(s, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_lines() {
        let m = parse_mount(
            "35 25 0:30 / /sys/fs/cgroup/memory rw,relatime shared:5 - cgroup cgroup rw,memory",
        )
        .expect("parses");
        assert_eq!(m.mount_point, "/sys/fs/cgroup/memory");
        assert_eq!(m.fstype, "cgroup");
        assert_eq!(m.super_options, "rw,memory");
        assert_eq!(unescape(r"/a\040b"), "/a b");
    }

    #[test]
    fn reads_flat_keyed_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("memory.oom_control");
        fs::write(&file, "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n").expect("write");
        assert_eq!(read_key(&file, "oom_kill"), Some(3));
        assert_eq!(read_key(&file, "missing"), None);
    }
}
