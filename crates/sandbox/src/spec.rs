//! What to run in the sandbox: [`SandboxSpec`] (program, environment, mounts, network) and
//! the [`Limits`] it runs under, plus the canonical paths of the standard build layout
//! ([`layout`]).
//!
//! A spec speaks only of paths *inside* the sandbox, except for the host side of each bind
//! mount. That split is what makes builds reproducible: every node binds its own directories
//! at the same canonical sandbox paths, so nothing node-specific can reach the compiler.
//! [`SandboxSpec::settings_lines`] describes the output-relevant part of a spec (sandbox paths,
//! never host paths) for the attestation's settings digest.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::SandboxError;

/// Canonical paths of the standard build layout. Every node uses the same ones, so paths that
/// end up in binaries (panic locations, debug info) are identical across builders.
pub mod layout {
    /// The working directory of cargo: above the source, so cargo never reads a
    /// `.cargo/config.toml` the crate ships.
    pub const ROOT: &str = "/buildsrs";
    /// The crate's unpacked source (the build's own copy; writable, as under plain cargo).
    pub const SRC: &str = "/buildsrs/src";
    /// The crate's manifest, for `--manifest-path`.
    pub const MANIFEST: &str = "/buildsrs/src/Cargo.toml";
    /// `CARGO_HOME`: the registry cache filled in phase 1 (read-only in phase 2).
    pub const CARGO_HOME: &str = "/buildsrs/cargo-home";
    /// Where cargo unpacks dependency sources: a private, writable directory of each build,
    /// mounted over the shared cache's own, so a build script that writes into its package
    /// works as under plain cargo while the shared cache stays untouched.
    pub const REGISTRY_SRC: &str = "/buildsrs/cargo-home/registry/src";
    /// `CARGO_TARGET_DIR` (read-write).
    pub const TARGET: &str = "/buildsrs/target";
    /// The pinned Rust toolchain (a rustup toolchain directory: `bin/`, `lib/`), read-only.
    pub const TOOLCHAIN: &str = "/buildsrs/toolchain";
    /// `HOME`: a fresh tmpfs, so nothing from the node's home is ever visible.
    pub const HOME: &str = "/buildsrs/home";
    /// `TMPDIR`: a fresh tmpfs.
    pub const TMP: &str = "/tmp";
    /// The frozen-clock library preloaded in phase 2 (see `crate::clock`), read-only.
    pub const CLOCK_SHIM: &str = "/buildsrs/lib/libbuildsrs_clock.so";
    /// `PATH` inside the sandbox: the toolchain first, then the system.
    pub const PATH: &str = "/buildsrs/toolchain/bin:/usr/bin:/bin";
}

/// One mount inside the sandbox. Sandbox paths are absolute, without `.` or `..`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mount {
    /// Bind `host` at `sandbox`, read-only.
    ReadOnly {
        /// Directory or file on the node.
        host: PathBuf,
        /// Where it appears inside.
        sandbox: PathBuf,
    },
    /// Bind `host` at `sandbox`, writable.
    ReadWrite {
        /// Directory or file on the node.
        host: PathBuf,
        /// Where it appears inside.
        sandbox: PathBuf,
    },
    /// A fresh, empty, writable tmpfs at `sandbox`.
    Tmpfs {
        /// Where it appears inside.
        sandbox: PathBuf,
    },
}

impl Mount {
    /// Where the mount appears inside the sandbox.
    pub fn sandbox_path(&self) -> &Path {
        match self {
            Mount::ReadOnly { sandbox, .. }
            | Mount::ReadWrite { sandbox, .. }
            | Mount::Tmpfs { sandbox } => sandbox,
        }
    }

    /// The node's side of a bind mount (`None` for a tmpfs).
    pub fn host_path(&self) -> Option<&Path> {
        match self {
            Mount::ReadOnly { host, .. } | Mount::ReadWrite { host, .. } => Some(host),
            Mount::Tmpfs { .. } => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Mount::ReadOnly { .. } => "ro-bind",
            Mount::ReadWrite { .. } => "rw-bind",
            Mount::Tmpfs { .. } => "tmpfs",
        }
    }
}

/// Resource limits for one run.
///
/// `address_space_bytes`, `cpu_seconds`, `file_size_bytes` and `open_files` are rlimits: they
/// apply to each process separately (a build runs many). `memory_bytes` and `max_pids` bound
/// the whole process tree: in the kernel through cgroups where they are writable, otherwise
/// through the runner's watchdog (see [`crate::SandboxCapabilities`]). `disk_bytes` bounds
/// what the run writes into its writable bind mounts (watchdog) and `tmpfs_bytes` the size of
/// each tmpfs (the kernel). `wall_clock` and `output_cap_bytes` are enforced by the runner.
/// The runner kills the whole tree when any tree-wide limit is exceeded.
///
/// Limits are deliberately left out of the settings digest: they decide whether a build
/// finishes, never which bytes it produces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `RLIMIT_AS` per process. rustc and LLVM reserve far more address space than they
    /// touch, so this is a backstop against runaway allocation, not the memory limit.
    pub address_space_bytes: Option<u64>,
    /// `RLIMIT_CPU` per process, in seconds.
    pub cpu_seconds: Option<u64>,
    /// `RLIMIT_FSIZE`: the largest file a process may write.
    pub file_size_bytes: Option<u64>,
    /// `RLIMIT_NOFILE`.
    pub open_files: Option<u64>,
    /// Wall-clock time for the whole run.
    pub wall_clock: Duration,
    /// Total bytes of stdout+stderr after which the run is killed (`output_too_large`).
    pub output_cap_bytes: u64,
    /// Bytes of output kept in the log: half from the start, half from the end.
    pub log_keep_bytes: usize,
    /// Memory cgroup limit for the whole tree (RAM; swap is not allowed on top).
    pub memory_bytes: Option<u64>,
    /// Pids cgroup limit for the whole tree (processes and threads).
    pub max_pids: Option<u64>,
    /// Bytes the run may add to its writable bind mounts, all together.
    pub disk_bytes: Option<u64>,
    /// The size of each tmpfs of the run (`HOME`, `/tmp`, `/dev/shm`). tmpfs lives in memory:
    /// it counts toward the memory cgroup where there is one, and toward nothing otherwise.
    pub tmpfs_bytes: Option<u64>,
}

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

impl Default for Limits {
    /// Limits fit for `cargo build --release` of an ordinary crate on a volunteer's machine:
    /// - 16 GiB address space per process. Measured here: a release build of tokio + serde +
    ///   serde_json (`-j2`) passes under a 1 GiB `RLIMIT_AS` and peaks at ~350 MiB in the
    ///   memory cgroup; but LLVM on one huge codegen unit can need many GiB, and an address
    ///   space limit that bites makes rustc abort rather than fail politely. So this is only a
    ///   backstop against runaway allocation; real memory is bounded by the cgroup below.
    /// - 8 GiB of memory for the tree, 1024 pids: `cargo -j N` runs N rustc processes, each
    ///   with a thread pool.
    /// - 1 hour of CPU per process and 2 hours of wall clock: big crates take tens of minutes
    ///   on two cores.
    /// - 8 GiB per file: release binaries with line tables stay far below that.
    /// - 64 MiB of output before the run is killed, 1 MiB of it kept in the log.
    /// - 16 GiB written to disk: a release target dir of a big crate holds a few GiB.
    /// - 1 GiB per tmpfs: rustc and linkers keep temporary files there, not build output.
    fn default() -> Self {
        Limits {
            address_space_bytes: Some(16 * GIB),
            cpu_seconds: Some(3600),
            file_size_bytes: Some(8 * GIB),
            open_files: Some(4096),
            wall_clock: Duration::from_secs(2 * 3600),
            output_cap_bytes: 64 * MIB,
            log_keep_bytes: MIB as usize,
            memory_bytes: Some(8 * GIB),
            max_pids: Some(1024),
            disk_bytes: Some(16 * GIB),
            tmpfs_bytes: Some(GIB),
        }
    }
}

/// What to run: a program with arguments, in a working directory, with exactly the given
/// environment (everything else is cleared), over the given mounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxSpec {
    /// The program: an absolute sandbox path, or a name looked up in the spec's `PATH`.
    pub program: String,
    /// Its arguments (without the program itself).
    pub args: Vec<String>,
    /// Working directory inside the sandbox.
    pub cwd: PathBuf,
    /// The whole environment of the program.
    pub env: BTreeMap<String, String>,
    /// Mounts on top of the system directories, in any order (parents are mounted first).
    pub mounts: Vec<Mount>,
    /// Share the node's network. Only for phase 1 (fetching); every other namespace stays
    /// private.
    pub network: bool,
    /// Resource limits.
    pub limits: Limits,
}

impl SandboxSpec {
    /// A spec that runs `program` in `cwd`, with no arguments, no environment, no mounts, no
    /// network and the default limits.
    pub fn new(program: impl Into<String>, cwd: impl Into<PathBuf>) -> Self {
        SandboxSpec {
            program: program.into(),
            args: Vec::new(),
            cwd: cwd.into(),
            env: BTreeMap::new(),
            mounts: Vec::new(),
            network: false,
            limits: Limits::default(),
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets one environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Binds `host` read-only at `sandbox`.
    pub fn ro_bind(mut self, host: impl Into<PathBuf>, sandbox: impl Into<PathBuf>) -> Self {
        self.mounts.push(Mount::ReadOnly {
            host: host.into(),
            sandbox: sandbox.into(),
        });
        self
    }

    /// Binds `host` writable at `sandbox`.
    pub fn rw_bind(mut self, host: impl Into<PathBuf>, sandbox: impl Into<PathBuf>) -> Self {
        self.mounts.push(Mount::ReadWrite {
            host: host.into(),
            sandbox: sandbox.into(),
        });
        self
    }

    /// Mounts a fresh tmpfs at `sandbox`.
    pub fn tmpfs(mut self, sandbox: impl Into<PathBuf>) -> Self {
        self.mounts.push(Mount::Tmpfs {
            sandbox: sandbox.into(),
        });
        self
    }

    /// Allows or denies the network.
    pub fn network(mut self, allowed: bool) -> Self {
        self.network = allowed;
        self
    }

    /// Replaces the limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Mounts ordered so that a parent directory is always mounted before anything below it
    /// (`Path` orders component by component). The sort is stable: equal paths keep the
    /// caller's order, and the last one wins, as in bwrap.
    pub fn mounts_in_order(&self) -> Vec<&Mount> {
        let mut mounts: Vec<&Mount> = self.mounts.iter().collect();
        mounts.sort_by(|a, b| a.sandbox_path().cmp(b.sandbox_path()));
        mounts
    }

    /// Checks what would otherwise fail obscurely inside the sandbox, and refuses any bind
    /// that would expose a `protected` host path (the node's data dir and key): a bind of the
    /// path itself, of anything below it, or of any directory above it.
    pub fn validate(&self, protected: &[PathBuf]) -> Result<(), SandboxError> {
        let invalid = |reason: String| Err(SandboxError::InvalidSpec(reason));
        if self.program.is_empty() {
            return invalid("empty program".into());
        }
        if !is_clean_absolute(&self.cwd) {
            return invalid(format!(
                "working directory {:?} is not a clean absolute path",
                self.cwd
            ));
        }
        for (key, value) in &self.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
                return invalid(format!("bad environment variable {key:?}"));
            }
        }
        if self.args.iter().any(|a| a.contains('\0')) || self.program.contains('\0') {
            return invalid("NUL byte in the command line".into());
        }
        let protected: Vec<PathBuf> = protected.iter().map(|p| canonical_or_self(p)).collect();
        for mount in &self.mounts {
            let sandbox = mount.sandbox_path();
            if !is_clean_absolute(sandbox) || sandbox == Path::new("/") {
                return invalid(format!(
                    "mount point {sandbox:?} is not a clean absolute path"
                ));
            }
            let Some(host) = mount.host_path() else {
                continue;
            };
            let host = host.canonicalize().map_err(|source| SandboxError::Io {
                context: format!("bind source {}", host.display()),
                source,
            })?;
            if let Some(p) = protected
                .iter()
                .find(|p| host.starts_with(p) || p.starts_with(&host))
            {
                return invalid(format!(
                    "bind of {} would expose the protected path {}",
                    host.display(),
                    p.display()
                ));
            }
        }
        Ok(())
    }

    /// The part of the spec that can change what a build produces, as `key=value` lines in a
    /// fixed order (values JSON-encoded, so any byte sequence is unambiguous): program,
    /// arguments, working directory, the whole environment (sorted by name), the network
    /// flag and each mount's kind and *sandbox* path. Host paths are left out on purpose:
    /// they differ between nodes and never reach the build. Limits are left out too (see
    /// [`Limits`]).
    pub fn settings_lines(&self) -> Vec<String> {
        let mut lines = vec![line("program", &self.program)];
        lines.extend(self.args.iter().map(|a| line("arg", a)));
        lines.push(line("cwd", &self.cwd.to_string_lossy()));
        lines.extend(self.env.iter().map(|(k, v)| line(&format!("env.{k}"), v)));
        lines.push(line("network", if self.network { "true" } else { "false" }));
        for mount in self.mounts_in_order() {
            lines.push(line(
                &format!("mount.{}", mount.kind()),
                &mount.sandbox_path().to_string_lossy(),
            ));
        }
        lines
    }
}

/// One settings line: `key=` and the JSON encoding of `value`.
pub(crate) fn line(key: &str, value: &str) -> String {
    // Encoding a string into JSON cannot fail; the fallback keeps this total anyway.
    let value = serde_json::to_string(value).unwrap_or_else(|_| format!("{value:?}"));
    format!("{key}={value}")
}

/// Absolute, and made only of normal components (no `.`, `..`).
fn is_clean_absolute(path: &Path) -> bool {
    path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// The canonical form of a path, or the path itself when it does not exist (a protected path
/// that does not exist yet still must never be bound).
fn canonical_or_self(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}
