//! The sandbox strategies and the runner they share.
//!
//! A run is a chain of small, trusted programs, each doing one thing before it `exec`s the
//! next, so no `unsafe` pre-exec hook is needed:
//!
//! ```text
//! sh (wrapper)  → joins the run's cgroups, applies rlimits with `prlimit --pid $$`,
//!                 writes a "setup ok" marker to the status file, then execs
//! bwrap         → builds the namespaces and mounts, reports the program's exit code as JSON
//!                 on the status file (fd 3), and runs
//! the program   → in its own pid namespace, as uid 65534, with a cleared environment.
//! ```
//!
//! The status file is how node faults are told apart from the crate's: no marker means the
//! wrapper failed (cgroups, rlimits); a marker but no `exit-code` from bwrap, while we did not
//! kill it, means bwrap failed to set up the sandbox or to exec the program. Both are
//! [`SandboxError::Setup`]. Only a program that actually ran yields a [`RunOutcome`].
//!
//! The runner streams stdout and stderr through one pipe into a [`CappedLog`], and stops the
//! run at the wall clock or the output cap by killing the whole tree: the direct child
//! (bwrap, whose `--die-with-parent` and pid namespace take every descendant with it), its
//! process group, and every process in the run's cgroups.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use crate::SandboxError;
use crate::cgroup::{CgroupParents, Counters, RUN_PREFIX, RunCgroups, stale_run_name};
use crate::outcome::{CappedLog, ExitStatus, RunOutcome};
use crate::spec::{Mount, SandboxSpec, line};
use crate::watchdog::{Breach, TREE_INTERVAL, Watchdog};

/// The uid and gid the program runs as inside bubblewrap (`nobody`).
pub const SANDBOX_UID: u32 = 65534;
/// The hostname inside bubblewrap: fixed, so it cannot leak into build output.
pub const SANDBOX_HOSTNAME: &str = "buildsrs";

/// System directories bound read-only (or recreated as the same symlinks) in every sandbox.
const SYSTEM_PATHS: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
];

/// What name resolution and TLS need; bound only when the spec allows the network.
const NETWORK_PATHS: &[&str] = &[
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/crypto-policies",
];

/// After the program exits, how long stragglers may keep the output pipe open.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// After we kill the tree, how long until we call the node broken.
const KILL_GRACE: Duration = Duration::from_secs(30);

const SETUP_MARKER: &str = "buildsrs-setup-ok";

/// The wrapper: `$1` status file, `$2`/`$3` cgroup.procs files (or empty), `$4` prlimit,
/// `$5` prlimit options (word-split on purpose: they are `--as=N`-style, digits only), `$6`
/// `1` for bwrap: keep fd 3 open for its status, and move standard input (bwrap's options)
/// to fd 4 for `--args 4`, which bwrap closes after reading, leaving `/dev/null` as the
/// program's standard input; then the command. `set -e` turns any failed step into an exit
/// before the marker is written.
const WRAPPER: &str = r#"set -e
status="$1"; mem="$2"; pids="$3"; prlimit="$4"; limits="$5"; keep="$6"
shift 6
exec 3>"$status"
if [ -n "$mem" ]; then echo $$ > "$mem"; fi
if [ -n "$pids" ]; then echo $$ > "$pids"; fi
if [ -n "$limits" ]; then "$prlimit" --pid $$ $limits; fi
echo buildsrs-setup-ok >&3
if [ "$keep" != 1 ]; then exec 3>&-; else exec 4<&0 0</dev/null; fi
exec "$@""#;

/// Settings of the bubblewrap strategy.
#[derive(Clone, Debug)]
pub struct BwrapConfig {
    /// The `bwrap` binary: a path, or a name looked up in the node's `PATH`.
    pub bwrap: PathBuf,
    /// The `prlimit` binary (util-linux), likewise.
    pub prlimit: PathBuf,
    /// Host paths no spec may bind, nor any directory above or below them: the node's data
    /// dir and secret key. [`Sandbox::run`] refuses such a spec.
    pub protected_paths: Vec<PathBuf>,
    /// Use cgroups where they are writable. Off, the watchdog enforces the memory and process
    /// limits instead (for machines whose cgroups misbehave, and to test that path).
    pub cgroups: bool,
}

impl Default for BwrapConfig {
    fn default() -> Self {
        BwrapConfig {
            bwrap: PathBuf::from("bwrap"),
            prlimit: PathBuf::from("prlimit"),
            protected_paths: Vec::new(),
            cgroups: true,
        }
    }
}

/// How builds are isolated.
#[derive(Clone, Debug)]
pub enum Sandbox {
    /// bubblewrap: every namespace unshared (the network too, unless the spec allows it),
    /// uid 65534, no capabilities, read-only system and a read-only root, only the spec's
    /// mounts. The default.
    Bubblewrap(BwrapConfig),
    /// **No isolation at all.** The program runs as the node's user with the node's whole
    /// filesystem and network; only the rlimits and cgroups still apply. Exists solely for
    /// `--insecure-no-sandbox` on machines where bubblewrap cannot run, and warns on every
    /// run. Sandbox paths in the spec are rewritten to the bound host paths.
    None,
}

/// What [`Sandbox::remove_stale`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StaleRemoved {
    /// Run cgroups of processes that are gone.
    pub cgroups: usize,
    /// Scratch dirs of processes that are gone.
    pub scratch_dirs: usize,
}

/// What the sandbox can do on this machine, from [`Sandbox::check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxCapabilities {
    /// `bubblewrap` or `none`.
    pub strategy: &'static str,
    /// Whether builds are isolated from the node.
    pub isolated: bool,
    /// `bwrap --version`, when bubblewrap is used.
    pub bwrap_version: Option<String>,
    /// Memory limits and OOM detection over the whole tree are available.
    pub memory_cgroup: bool,
    /// The process-count limit is available in the kernel.
    pub pids_cgroup: bool,
    /// The runner can watch a run's process tree in `/proc`, so the memory and process limits
    /// hold without cgroups too (checked after the fact, every 100 ms), and its writable
    /// directories, so the disk limit holds everywhere.
    pub watchdog: bool,
    /// Why something is unavailable, in words for the volunteer.
    pub notes: Vec<String>,
}

impl Sandbox {
    /// Bubblewrap with the given protected paths, after checking that it works here.
    pub async fn detect(
        protected_paths: Vec<PathBuf>,
    ) -> Result<(Sandbox, SandboxCapabilities), SandboxError> {
        Sandbox::detect_with(BwrapConfig {
            protected_paths,
            ..BwrapConfig::default()
        })
        .await
    }

    /// Bubblewrap with the given settings, after checking that it works here.
    pub async fn detect_with(
        config: BwrapConfig,
    ) -> Result<(Sandbox, SandboxCapabilities), SandboxError> {
        let sandbox = Sandbox::Bubblewrap(config);
        let capabilities = sandbox.check().await?;
        Ok((sandbox, capabilities))
    }

    /// The strategy's name, as it appears in settings and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Sandbox::Bubblewrap(_) => "bubblewrap",
            Sandbox::None => "none",
        }
    }

    /// Checks that this strategy works on this machine by running a trivial command in it,
    /// and reports which limits are available. The error says what to install or enable.
    pub async fn check(&self) -> Result<SandboxCapabilities, SandboxError> {
        let parents = self.cgroup_parents();
        let watchdog = crate::watchdog::available();
        let mut capabilities = SandboxCapabilities {
            strategy: self.name(),
            isolated: matches!(self, Sandbox::Bubblewrap(_)),
            bwrap_version: None,
            memory_cgroup: parents.memory_available(),
            pids_cgroup: parents.pids_available(),
            watchdog,
            notes: parents.notes.clone(),
        };
        if !watchdog {
            capabilities.notes.push(
                "cannot read processes in /proc: without cgroups, builds have no memory or \
                 process limit over the whole tree"
                    .into(),
            );
        }
        close_inherited_descriptors();
        resolve_tool("prlimit", &self.prlimit_path(), PRLIMIT_HINT)?;
        if let Sandbox::Bubblewrap(config) = self {
            let bwrap = resolve_tool("bwrap", &config.bwrap, BWRAP_HINT)?;
            let version = Command::new(&bwrap)
                .arg("--version")
                .output()
                .await
                .map_err(SandboxError::io(format!(
                    "running {} --version",
                    bwrap.display()
                )))?;
            capabilities.bwrap_version =
                Some(String::from_utf8_lossy(&version.stdout).trim().to_string());
        }

        let mut limits = crate::Limits {
            wall_clock: Duration::from_secs(30),
            ..crate::Limits::default()
        };
        limits.max_pids = Some(64);
        let probe = SandboxSpec::new("/bin/sh", "/")
            .args(["-c", "id -u; echo sandbox-ok"])
            .env("PATH", "/usr/bin:/bin")
            .limits(limits);
        let unusable = |reason: String| SandboxError::Unusable {
            strategy: self.name(),
            reason,
        };
        let outcome = match self.run(&probe).await {
            Ok(outcome) => outcome,
            Err(SandboxError::Setup { reason, log }) => {
                let hint = match self {
                    Sandbox::Bubblewrap(_) => {
                        ". bubblewrap needs user namespaces: run the node as root, or enable \
                         unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1; \
                         on Ubuntu 24.04+ also kernel.apparmor_restrict_unprivileged_userns=0)"
                    }
                    Sandbox::None => "",
                };
                return Err(unusable(format!("{reason}: {}{hint}", log.trim())));
            }
            Err(e) => return Err(e),
        };
        let log = outcome.log.to_string_lossy();
        let expected_uid = match self {
            Sandbox::Bubblewrap(_) => SANDBOX_UID.to_string(),
            Sandbox::None => rustix::process::getuid().as_raw().to_string(),
        };
        if !outcome.success() || !log.contains("sandbox-ok") || !log.starts_with(&expected_uid) {
            return Err(unusable(format!(
                "a trivial command did not run as expected ({}): {}",
                outcome.status,
                log.trim()
            )));
        }
        Ok(capabilities)
    }

    /// The canonical description of everything about this strategy and `spec` that can change
    /// what a build produces, one `key=value` line each, for the attestation's settings
    /// digest. Two nodes running the same spec under the same strategy give the same text,
    /// whatever their host paths; a build under [`Sandbox::None`] never matches a sandboxed
    /// one.
    pub fn settings_description(&self, spec: &SandboxSpec) -> String {
        let mut lines = vec![line("sandbox", self.name())];
        if let Sandbox::Bubblewrap(_) = self {
            lines.push(line("sandbox.uid", &SANDBOX_UID.to_string()));
            lines.push(line("sandbox.gid", &SANDBOX_UID.to_string()));
            lines.push(line("sandbox.hostname", SANDBOX_HOSTNAME));
            for path in system_paths(spec.network) {
                lines.push(line("sandbox.system-ro", path));
            }
        }
        lines.extend(spec.settings_lines());
        let mut text = lines.join("\n");
        text.push('\n');
        text
    }

    /// Runs `spec`. `Ok` means the program ran (whatever became of it); `Err` means the node
    /// could not run it.
    pub async fn run(&self, spec: &SandboxSpec) -> Result<RunOutcome, SandboxError> {
        let protected: &[PathBuf] = match self {
            Sandbox::Bubblewrap(config) => &config.protected_paths,
            Sandbox::None => &[],
        };
        spec.validate(protected)?;
        close_inherited_descriptors();
        let prlimit = resolve_tool("prlimit", &self.prlimit_path(), PRLIMIT_HINT)?;
        // Node-side scratch space: the status file, and the tmpfs stand-ins of `None`.
        let scratch = tempfile::Builder::new()
            .prefix(&format!("{RUN_PREFIX}{}-", std::process::id()))
            .tempdir()
            .map_err(SandboxError::io("creating the sandbox scratch dir"))?;
        let status_file = scratch.path().join("status");

        let mut command = Command::new("/bin/sh");
        command.env_clear();
        // bwrap's options name host paths (the job's directories, so the data dir). Passed on
        // its command line they would be readable inside, in `/proc/1/cmdline` of the
        // sandbox's init (a copy of bwrap); passed through a pipe (`--args`) they are not.
        let mut arguments_on_stdin = None;
        let program: Vec<OsString> = match self {
            Sandbox::Bubblewrap(config) => {
                let bwrap = resolve_tool("bwrap", &config.bwrap, BWRAP_HINT)?;
                command.current_dir("/");
                let mut data = Vec::new();
                for arg in bwrap_options(spec) {
                    data.extend_from_slice(std::os::unix::ffi::OsStrExt::as_bytes(arg.as_os_str()));
                    data.push(0);
                }
                arguments_on_stdin = Some(data);
                // The command itself (sandbox paths only) stays on the command line: bwrap
                // does not take it from `--args`.
                let mut program: Vec<OsString> =
                    vec![bwrap.into(), "--args".into(), "4".into(), "--".into()];
                program.push(spec.program.clone().into());
                program.extend(spec.args.iter().map(OsString::from));
                program
            }
            Sandbox::None => {
                tracing::warn!(
                    program = %spec.program,
                    "INSECURE: running WITHOUT A SANDBOX (--insecure-no-sandbox): the build's \
                     code can read and change everything this node can, including its key"
                );
                unsandboxed_command(&mut command, spec, scratch.path())?
            }
        };

        let parents = self.cgroup_parents();
        let (cgroups, warnings) =
            RunCgroups::create(&parents, spec.limits.memory_bytes, spec.limits.max_pids);
        for warning in warnings {
            tracing::warn!("{warning}");
        }
        let procs = cgroups.procs_files();
        let cgroup_arg = |i: usize| {
            procs
                .get(i)
                .map(|p| p.as_os_str().to_owned())
                .unwrap_or_default()
        };
        command
            .arg("-c")
            .arg(WRAPPER)
            .arg("buildsrs-sandbox")
            .arg(&status_file)
            .arg(cgroup_arg(0))
            .arg(cgroup_arg(1))
            .arg(&prlimit)
            .arg(prlimit_options(&spec.limits))
            .arg(if matches!(self, Sandbox::Bubblewrap(_)) {
                "1"
            } else {
                "0"
            })
            .args(program);

        let writable: Vec<PathBuf> = spec
            .mounts
            .iter()
            .filter_map(|mount| match mount {
                Mount::ReadWrite { host, .. } => Some(host.clone()),
                _ => None,
            })
            .collect();
        // What the kernel does not bound for this run, the watchdog does.
        let watchdog = Watchdog::new(
            spec.limits.max_pids.filter(|_| !cgroups.has_pids()),
            spec.limits.memory_bytes.filter(|_| !cgroups.has_memory()),
            writable,
            spec.limits.disk_bytes,
        )
        .await;
        let supervised = supervise(
            command,
            arguments_on_stdin,
            &spec.limits,
            &cgroups,
            watchdog,
        )
        .await;
        cgroups.kill_all().await;
        let counters = cgroups.counters();
        cgroups.remove().await;
        let supervised = supervised?;

        let status_text = std::fs::read_to_string(&status_file).unwrap_or_default();
        classify(self, supervised, &status_text, counters)
    }

    /// Removes what runs of a node that is gone left behind: its run cgroups (killing what
    /// is still in them) and its scratch dirs in the temp dir. For the start of a node, after
    /// a crash or `kill -9`; the runs of live processes are left alone.
    pub async fn remove_stale(&self) -> StaleRemoved {
        let cgroups = self.cgroup_parents().remove_stale().await;
        let mut scratch_dirs = 0;
        if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
            for entry in entries.flatten() {
                if stale_run_name(&entry.file_name().to_string_lossy(), RUN_PREFIX)
                    && crate::output::remove_tree(&entry.path()).is_ok()
                {
                    scratch_dirs += 1;
                }
            }
        }
        StaleRemoved {
            cgroups,
            scratch_dirs,
        }
    }

    fn cgroup_parents(&self) -> CgroupParents {
        match self {
            Sandbox::Bubblewrap(config) if !config.cgroups => CgroupParents::switched_off(),
            _ => CgroupParents::detect(),
        }
    }

    fn prlimit_path(&self) -> PathBuf {
        match self {
            Sandbox::Bubblewrap(config) => config.prlimit.clone(),
            Sandbox::None => PathBuf::from("prlimit"),
        }
    }
}

const BWRAP_HINT: &str = "install bubblewrap (apt-get install bubblewrap, dnf install \
                          bubblewrap, or scripts/ensure-bubblewrap)";
const PRLIMIT_HINT: &str = "install util-linux (it provides prlimit)";

/// The system paths bound into a sandbox with or without network.
fn system_paths(network: bool) -> impl Iterator<Item = &'static str> {
    let network_paths: &[&str] = if network { NETWORK_PATHS } else { &[] };
    SYSTEM_PATHS.iter().chain(network_paths).copied()
}

/// bwrap's options for `spec`: everything before `--` and the command.
fn bwrap_options(spec: &SandboxSpec) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |items: &[&dyn AsRef<std::ffi::OsStr>]| {
        args.extend(items.iter().map(|i| i.as_ref().to_owned()));
    };
    let uid = SANDBOX_UID.to_string();
    push(&[&"--unshare-all", &"--unshare-user", &"--disable-userns"]);
    if spec.network {
        push(&[&"--share-net"]);
    }
    push(&[
        &"--die-with-parent",
        &"--new-session",
        &"--cap-drop",
        &"ALL",
    ]);
    push(&[
        &"--uid",
        &uid,
        &"--gid",
        &uid,
        &"--hostname",
        &SANDBOX_HOSTNAME,
    ]);
    push(&[&"--clearenv"]);
    for path in system_paths(spec.network) {
        match std::fs::symlink_metadata(path) {
            // Merged-/usr systems have /bin -> usr/bin: recreate the link, bind nothing twice.
            Ok(meta) if meta.file_type().is_symlink() => {
                if let Ok(target) = std::fs::read_link(path) {
                    push(&[&"--symlink", &target, &path]);
                }
            }
            Ok(_) => push(&[&"--ro-bind", &path, &path]),
            Err(_) => {}
        }
    }
    push(&[&"--proc", &"/proc", &"--dev", &"/dev"]);
    // Each tmpfs is size-capped (`--size` applies to the next `--tmpfs`), /dev/shm included:
    // otherwise it is a directory of /dev's own tmpfs, which has no size limit.
    let size = spec.limits.tmpfs_bytes.map_or_else(Vec::new, |bytes| {
        vec!["--size".to_owned(), bytes.to_string()]
    });
    let sized = |sandbox: &Path| -> Vec<OsString> {
        let mut tmpfs: Vec<OsString> = size.iter().map(OsString::from).collect();
        tmpfs.extend(["--tmpfs".into(), sandbox.as_os_str().to_owned()]);
        tmpfs
    };
    for arg in sized(Path::new("/dev/shm")) {
        push(&[&arg]);
    }
    for mount in spec.mounts_in_order() {
        match mount {
            Mount::ReadOnly { host, sandbox } => push(&[&"--ro-bind", host, sandbox]),
            Mount::ReadWrite { host, sandbox } => push(&[&"--bind", host, sandbox]),
            Mount::Tmpfs { sandbox } => {
                for arg in sized(sandbox) {
                    push(&[&arg]);
                }
            }
        }
    }
    // The root itself (a tmpfs holding the mount points) becomes read-only last, so nothing
    // can be written outside the spec's writable mounts.
    push(&[&"--remount-ro", &"/", &"--chdir", &spec.cwd]);
    for (key, value) in &spec.env {
        push(&[&"--setenv", key, value]);
    }
    push(&[&"--json-status-fd", &"3"]);
    args
}

/// The command for [`Sandbox::None`]: the program itself, with sandbox paths rewritten to the
/// host paths bound there and tmpfs mounts replaced by fresh directories under `scratch`.
fn unsandboxed_command(
    command: &mut Command,
    spec: &SandboxSpec,
    scratch: &Path,
) -> Result<Vec<OsString>, SandboxError> {
    let mut map: Vec<(String, String)> = Vec::new();
    for (i, mount) in spec.mounts_in_order().into_iter().enumerate() {
        let host = match mount {
            Mount::ReadOnly { host, .. } | Mount::ReadWrite { host, .. } => host.clone(),
            Mount::Tmpfs { .. } => {
                let dir = scratch.join(format!("tmpfs-{i}"));
                std::fs::create_dir(&dir).map_err(SandboxError::io("creating a tmpfs stand-in"))?;
                dir
            }
        };
        map.push((
            mount.sandbox_path().to_string_lossy().into_owned(),
            host.to_string_lossy().into_owned(),
        ));
    }
    // Longest sandbox path first, so /a/b wins over /a.
    map.sort_by_key(|(sandbox, _)| std::cmp::Reverse(sandbox.len()));
    let cwd = translate(&spec.cwd.to_string_lossy(), &map);
    command.current_dir(cwd);
    for (key, value) in &spec.env {
        command.env(key, translate(value, &map));
    }
    let mut program = vec![OsString::from(translate(&spec.program, &map))];
    program.extend(spec.args.iter().map(|a| OsString::from(translate(a, &map))));
    Ok(program)
}

/// Rewrites every sandbox path in `text` that starts a word (at the start, or after `=`, `:`,
/// `,` or a space) and ends at a path boundary, to its host path.
fn translate(text: &str, map: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut at_word_start = true;
    'outer: while !rest.is_empty() {
        if at_word_start {
            for (sandbox, host) in map {
                if let Some(after) = rest.strip_prefix(sandbox.as_str())
                    && (after.is_empty() || after.starts_with(['/', ':', '=', ',', ' ']))
                {
                    out.push_str(host);
                    rest = after;
                    at_word_start = false;
                    continue 'outer;
                }
            }
        }
        let Some(c) = rest.chars().next() else { break };
        out.push(c);
        rest = &rest[c.len_utf8()..];
        at_word_start = matches!(c, '=' | ':' | ',' | ' ');
    }
    out
}

/// `prlimit` options for the rlimits that are set (soft = hard, so nothing inside may raise
/// them, except the CPU limit below).
fn prlimit_options(limits: &crate::Limits) -> String {
    let options = [
        ("--as", limits.address_space_bytes),
        ("--fsize", limits.file_size_bytes),
        ("--nofile", limits.open_files),
    ];
    options
        .iter()
        .filter_map(|(name, value)| value.map(|v| format!("{name}={v}")))
        // CPU: SIGXCPU at the soft limit (fatal unless handled, and recognisable in cargo's
        // log), SIGKILL a second later at the hard limit for processes that catch it.
        .chain(limits.cpu_seconds.map(|s| format!("--cpu={s}:{}", s.saturating_add(1))))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Marks every descriptor above stderr close-on-exec. Everything Rust opens already is, so
/// this only touches descriptors inherited from whoever started the node (a shell's
/// `exec 7<secret`, a service manager's sockets): without it they would pass through the
/// wrapper and bwrap (which closes nothing) into the build. Run before every spawn, so a
/// descriptor leaked into the node at any time never reaches a build.
fn close_inherited_descriptors() {
    close_fds::set_fds_cloexec_threadsafe(3, &[]);
}

/// Finds a tool: a path with a slash as is, a bare name in the node's `PATH` or the usual
/// system directories.
fn resolve_tool(
    tool: &'static str,
    path: &Path,
    hint: &'static str,
) -> Result<PathBuf, SandboxError> {
    let missing = || SandboxError::ToolMissing {
        tool,
        path: path.display().to_string(),
        hint,
    };
    if path.components().count() > 1 {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(missing())
        };
    }
    let search = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&search)
        .chain(["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(path))
        .find(|candidate| candidate.is_file())
        .ok_or_else(missing)
}

/// What the runner observed, before classification.
#[derive(Debug)]
struct Supervised {
    exit: std::process::ExitStatus,
    log: CappedLog,
    timed_out: bool,
    output_too_large: bool,
    killed: bool,
    /// The limit the watchdog stopped the run for.
    breach: Option<Breach>,
    wall_time: Duration,
}

/// Spawns `command` with stdout and stderr on one pipe, and watches it: output into the log,
/// the wall clock, the output cap, the watchdog's limits, and the exit.
async fn supervise(
    mut command: Command,
    stdin_data: Option<Vec<u8>>,
    limits: &crate::Limits,
    cgroups: &RunCgroups,
    mut watchdog: Watchdog,
) -> Result<Supervised, SandboxError> {
    let (reader, writer) = std::io::pipe().map_err(SandboxError::io("creating the output pipe"))?;
    let writer_too = writer
        .try_clone()
        .map_err(SandboxError::io("duplicating the output pipe"))?;
    // Standard input is `stdin_data`, then end of file (or nothing at all): the program
    // inherits it after bwrap has read its arguments from it, and reads end of file.
    let stdin_writer = match &stdin_data {
        Some(_) => {
            let (stdin_reader, stdin_writer) =
                std::io::pipe().map_err(SandboxError::io("creating the input pipe"))?;
            command.stdin(stdin_reader);
            Some(stdin_writer)
        }
        None => {
            command.stdin(Stdio::null());
            None
        }
    };
    command
        .stdout(writer_too)
        .stderr(writer)
        .process_group(0)
        .kill_on_drop(true);
    let start = Instant::now();
    let mut child = command
        .spawn()
        .map_err(SandboxError::io("spawning the sandbox wrapper (/bin/sh)"))?;
    // Our copies of the write end must go, or the pipe never reports end of file.
    drop(command);
    if let (Some(mut writer), Some(data)) = (stdin_writer, stdin_data) {
        // A blocking write (more than a pipe buffer is possible); the writer closes after it,
        // which is the end of file bwrap waits for. A failure shows up as bwrap's setup error.
        tokio::task::spawn_blocking(move || {
            let _ = std::io::Write::write_all(&mut writer, &data);
        });
    }
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(Pid::from_raw);
    let mut reader = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(reader))
        .map_err(SandboxError::io("watching the output pipe"))?;
    watchdog.set_root(child.id());
    let mut watch_interval = tokio::time::interval(TREE_INTERVAL);
    watch_interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut breach = None;

    let mut log = CappedLog::new(limits.log_keep_bytes);
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + limits.wall_clock;
    let mut kill_deadline = deadline;
    let mut drain_deadline = deadline;
    let (mut eof, mut exit, mut wall_time) = (false, None, Duration::ZERO);
    let (mut killed, mut timed_out, mut output_too_large) = (false, false, false);
    while !(eof && exit.is_some()) {
        let timer = if exit.is_some() {
            drain_deadline
        } else if killed {
            kill_deadline
        } else {
            deadline
        };
        tokio::select! {
            read = reader.read(&mut buf), if !eof => match read {
                Ok(0) => eof = true,
                Ok(n) => {
                    log.push(&buf[..n]);
                    if log.total_bytes() > limits.output_cap_bytes && !killed {
                        output_too_large = true;
                        killed = true;
                        kill_deadline = tokio::time::Instant::now() + KILL_GRACE;
                        kill_tree(&mut child, group, cgroups).await;
                    }
                }
                Err(e) => {
                    tracing::warn!("reading the sandbox output failed: {e}");
                    eof = true;
                }
            },
            status = child.wait(), if exit.is_none() => {
                exit = Some(status.map_err(SandboxError::io("waiting for the sandbox"))?);
                wall_time = start.elapsed();
                drain_deadline = tokio::time::Instant::now() + DRAIN_GRACE;
                // Leftovers (possible only without a pid namespace) die with the run.
                kill_tree(&mut child, group, cgroups).await;
            },
            _ = watch_interval.tick(), if exit.is_none() && !killed && watchdog.is_active() => {
                if let Some(seen) = watchdog.check().await {
                    breach = Some(seen);
                    killed = true;
                    kill_deadline = tokio::time::Instant::now() + KILL_GRACE;
                    kill_tree(&mut child, group, cgroups).await;
                }
            },
            () = tokio::time::sleep_until(timer) => {
                if exit.is_some() {
                    break;
                } else if killed {
                    return Err(SandboxError::Io {
                        context: "killing the sandboxed process tree".into(),
                        source: std::io::Error::other("it was still running 30 s after SIGKILL"),
                    });
                } else {
                    timed_out = true;
                    killed = true;
                    kill_deadline = tokio::time::Instant::now() + KILL_GRACE;
                    kill_tree(&mut child, group, cgroups).await;
                }
            },
        }
    }
    if breach.is_none() {
        breach = watchdog.final_disk_check().await;
    }
    let Some(exit) = exit else {
        // The loop only ends with an exit status (or returns an error above).
        return Err(SandboxError::Io {
            context: "waiting for the sandbox".into(),
            source: std::io::Error::other("no exit status"),
        });
    };
    Ok(Supervised {
        exit,
        log,
        timed_out,
        output_too_large,
        killed,
        breach,
        wall_time,
    })
}

/// SIGKILLs the direct child, its process group and everything in the run's cgroups.
async fn kill_tree(child: &mut Child, group: Option<Pid>, cgroups: &RunCgroups) {
    let _ = child.start_kill();
    if let Some(group) = group {
        let _ = kill_process_group(group, Signal::KILL);
    }
    cgroups.kill_all().await;
}

/// Turns what we saw into an outcome, or into a setup error when the program never ran.
fn classify(
    sandbox: &Sandbox,
    run: Supervised,
    status_text: &str,
    counters: Counters,
) -> Result<RunOutcome, SandboxError> {
    let setup_error = |reason: &str| SandboxError::Setup {
        reason: reason.into(),
        log: run.log.to_string_lossy(),
    };
    let setup_ok = status_text.lines().next() == Some(SETUP_MARKER);
    if !setup_ok && !run.killed {
        return Err(setup_error(
            "the wrapper failed before the sandbox started (joining cgroups or setting rlimits)",
        ));
    }
    let outer = match (
        run.exit.code(),
        std::os::unix::process::ExitStatusExt::signal(&run.exit),
    ) {
        (Some(code), _) => ExitStatus::Exited(code),
        (None, Some(signal)) => ExitStatus::Signalled(signal),
        (None, None) => ExitStatus::Signalled(0),
    };
    let status = match sandbox {
        Sandbox::None => outer,
        Sandbox::Bubblewrap(_) => match bwrap_exit_code(status_text) {
            Some(code) if (129..=128 + 64).contains(&code) => ExitStatus::Signalled(code - 128),
            Some(code) => ExitStatus::Exited(code),
            // No exit code: bwrap died before the program could finish. Either a limit
            // killed it (our wall clock or output cap, the memory cgroup), which is the
            // crate's doing; or something outside killed bwrap (nothing inside can see it);
            // or bwrap itself failed to set up or to exec the program.
            None if run.killed || counters.oom_kills > 0 => outer,
            None if matches!(outer, ExitStatus::Signalled(_)) => {
                return Err(setup_error(&format!(
                    "bubblewrap was killed from outside the sandbox ({outer})"
                )));
            }
            None => {
                return Err(setup_error(
                    "bubblewrap could not set up the sandbox or start the program",
                ));
            }
        },
    };

    let failed = status != ExitStatus::Exited(0);
    let log = run.log;
    let out_of_memory = failed
        && (counters.oom_kills > 0
            || matches!(run.breach, Some(Breach::Memory(_)))
            || ALLOCATION_FAILURES
                .iter()
                .any(|m| log.contains(m.as_bytes())));
    let cpu_exceeded =
        failed && (status == ExitStatus::Signalled(SIGXCPU) || log.contains(b"SIGXCPU"));
    Ok(RunOutcome {
        status,
        timed_out: run.timed_out || cpu_exceeded,
        out_of_memory,
        output_too_large: run.output_too_large,
        pids_limit_hit: counters.pids_refused > 0
            || matches!(run.breach, Some(Breach::Processes(_))),
        disk_limit_hit: matches!(run.breach, Some(Breach::Disk(_))),
        log,
        wall_time: run.wall_time,
        peak_memory_bytes: counters.peak_memory,
    })
}

const SIGXCPU: i32 = 24;

/// What failed allocations print: Rust's default allocation error handler (rustc and any
/// Rust build script under `RLIMIT_AS`), LLVM, and GCC. Only consulted when the run failed;
/// a crate that prints these to fake an OOM merely mislabels its own failure.
const ALLOCATION_FAILURES: &[&str] = &[
    "memory allocation of ",
    "LLVM ERROR: out of memory",
    "virtual memory exhausted",
    "fatal runtime error: out of memory",
];

/// The `exit-code` bwrap wrote to the status file after the marker line.
fn bwrap_exit_code(status_text: &str) -> Option<i32> {
    let json = status_text.strip_prefix(SETUP_MARKER)?;
    serde_json::Deserializer::from_str(json)
        .into_iter::<serde_json::Value>()
        .filter_map(Result::ok)
        .find_map(|value| value.get("exit-code")?.as_i64())
        .and_then(|code| i32::try_from(code).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_sandbox_paths_at_word_boundaries() {
        let map = vec![
            ("/buildsrs/target".to_string(), "/h/t".to_string()),
            ("/buildsrs".to_string(), "/h".to_string()),
        ];
        assert_eq!(translate("/buildsrs/target/x", &map), "/h/t/x");
        assert_eq!(
            translate("PATH=/buildsrs/bin:/usr/bin", &map),
            "PATH=/h/bin:/usr/bin"
        );
        assert_eq!(translate("--remap=/buildsrs=/src", &map), "--remap=/h=/src");
        assert_eq!(
            translate("/buildsrsX /a/buildsrs", &map),
            "/buildsrsX /a/buildsrs"
        );
    }

    #[test]
    fn reads_the_exit_code_bwrap_reports() {
        let text = "buildsrs-setup-ok\n{ \"child-pid\": 5 }\n{ \"exit-code\": 3 }";
        assert_eq!(bwrap_exit_code(text), Some(3));
        assert_eq!(
            bwrap_exit_code("buildsrs-setup-ok\n{ \"child-pid\": 5 }"),
            None
        );
    }

    #[test]
    fn prlimit_options_skip_unset_limits() {
        let limits = crate::Limits {
            address_space_bytes: None,
            cpu_seconds: Some(5),
            file_size_bytes: Some(10),
            open_files: None,
            ..crate::Limits::default()
        };
        assert_eq!(prlimit_options(&limits), "--fsize=10 --cpu=5:6");
    }
}
