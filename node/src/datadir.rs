//! The node's data dir: its identity, configuration, state and artifacts.
//!
//! ```text
//! D/identity.key      the ed25519 seed (0600); never visible inside the sandbox
//! D/config.toml       what this node builds and how (see [`NodeConfig`])
//! D/state.sqlite3     jobs, artifacts, attestations (see `state`)
//! D/artifacts/        archives this node built, named by BLAKE3
//! D/cargo-home/       the shared dependency cache (registry index and `.crate` files; only
//!                     phase 1 writes it, compiles read it)
//! D/lib/              the frozen-clock library preloaded into compiles (read-only)
//! D/work/             per-job scratch space, removed when a job ends (and at start, when a
//!                     crash left some behind)
//! D/node.lock         held (flock) by the one process that builds with this data dir
//! ```
//!
//! The root is made absolute when opened: builds and `cargo metadata` run in other working
//! directories, so a relative `--data-dir` would point elsewhere there.
//!
//! The data dir is created with mode 0700. The sandbox only ever sees `cargo-home` and a job's
//! own directories under `work`, never the key, the state or the artifacts.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use buildsrs_keys::{Identity, RegistryUrl, TargetTriple};
use serde::{Deserialize, Serialize};

/// The node's configuration file, `config.toml` in the data dir.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Target triples this node builds for.
    pub targets: Vec<TargetTriple>,
    /// How many jobs may run at once.
    pub capacity: u32,
    /// The registry to fetch crates from, by its sparse index URL (`sparse+https://…`).
    #[serde(deserialize_with = "buildsrs_keys::names::registry_as_written")]
    pub registry: RegistryUrl,
    /// The rustup toolchain to build with (e.g. `1.95.0`); unset means the `rustc` on PATH.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub toolchain: Option<String>,
    /// Extra flags appended to `RUSTFLAGS` of every compile. They change the output, so they
    /// are part of the build settings every attestation pins; leave empty unless you know
    /// why (tests use it to make a builder disagree on purpose).
    pub extra_rustflags: Vec<String>,
    /// Limits applied to every build.
    pub limits: LimitsConfig,
    /// How long artifacts are kept (`buildsrs-node run` prunes at start and hourly).
    pub retention: crate::retention::RetentionConfig,
}

/// Resource limits for builds, in the config file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Wall-clock seconds one build phase may take.
    pub wall_clock_secs: u64,
    /// Memory for one build, in MiB (a cgroup where cgroups are writable, the sandbox's
    /// watchdog elsewhere). 0: no limit (`buildsrs-node run` then needs
    /// `--allow-unlimited-builds`).
    pub memory_mib: u64,
    /// Processes and threads one build may have at once (a cgroup where cgroups are
    /// writable, the watchdog elsewhere). 0: no limit.
    pub processes: u64,
    /// Largest file a build may write, in MiB.
    pub file_size_mib: u64,
    /// What one build phase may write to disk in all (target dir, source copy, dependency
    /// sources), in MiB. 0: no limit.
    pub disk_mib: u64,
    /// Size of each of a build's in-memory filesystems (`HOME`, `/tmp`, `/dev/shm`), in MiB.
    pub tmpfs_mib: u64,
    /// Use cgroups for the memory and process limits where they are writable. `false` leaves
    /// both to the watchdog.
    pub cgroups: bool,
    /// Largest build log kept, in KiB (head and tail are kept).
    pub log_kib: u64,
    /// Largest `.crate` accepted, in MiB.
    pub crate_mib: u64,
    /// Seconds the `.crate` download may take in all (it is also given up on after 30 s
    /// without a byte); a registry that is slower is the node's trouble, not the crate's.
    pub download_secs: u64,
    /// Wall-clock seconds `cargo metadata` (reading the crate's manifest, in the sandbox) may
    /// take.
    pub metadata_secs: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            targets: vec![host_target()],
            capacity: 1,
            registry: RegistryUrl::crates_io(),
            toolchain: None,
            extra_rustflags: Vec::new(),
            limits: LimitsConfig::default(),
            retention: crate::retention::RetentionConfig::default(),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            wall_clock_secs: 30 * 60,
            memory_mib: 4096,
            processes: 1024,
            file_size_mib: 2048,
            disk_mib: 16 * 1024,
            tmpfs_mib: 1024,
            cgroups: true,
            log_kib: 1024,
            crate_mib: 64,
            download_secs: 300,
            metadata_secs: 60,
        }
    }
}

/// The target this binary was built for, which is the one its machine can build natively.
pub fn host_target() -> TargetTriple {
    // Only x86_64 Linux is supported for now; the sandbox is Linux-only anyway.
    "x86_64-unknown-linux-gnu"
        .parse()
        .expect("the host triple is a target triple")
}

/// An opened data dir.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Creates a data dir with a new identity and the default configuration. Refuses to touch
    /// an existing identity.
    pub fn init(root: &Path) -> Result<(Self, Identity)> {
        let root = &absolute(root)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .with_context(|| format!("creating {}", root.display()))?;
        let dir = Self {
            root: root.to_owned(),
        };
        if dir.key_path().exists() {
            bail!(
                "{} already holds an identity ({}); refusing to replace it",
                root.display(),
                dir.key_path().display()
            );
        }
        let identity = Identity::generate()?;
        identity.save(&dir.key_path())?;
        if !dir.config_path().exists() {
            let text = format!(
                "# buildsrs-node configuration. Every key is optional; these are the defaults.\n{}",
                toml::to_string_pretty(&NodeConfig::default())?
            );
            fs::write(dir.config_path(), text)?;
        }
        dir.create_subdirs()?;
        Ok((dir, identity))
    }

    /// Opens an existing data dir (made by `init`).
    pub fn open(root: &Path) -> Result<Self> {
        let root = &absolute(root)?;
        let dir = Self {
            root: root.to_owned(),
        };
        if !dir.key_path().exists() {
            bail!(
                "{} is not a node data dir (no identity.key); run `buildsrs-node init --data-dir {}`",
                root.display(),
                root.display()
            );
        }
        let mode = fs::metadata(root)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                "{} has mode {mode:03o}; a data dir should be private (0700)",
                root.display()
            );
        }
        dir.create_subdirs()?;
        Ok(dir)
    }

    fn create_subdirs(&self) -> Result<()> {
        for sub in [self.artifacts_dir(), self.cargo_home(), self.work_dir()] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&sub)
                .with_context(|| format!("creating {}", sub.display()))?;
        }
        Ok(())
    }

    /// Reads the configuration (defaults when the file is missing).
    pub fn config(&self) -> Result<NodeConfig> {
        let path = self.config_path();
        match fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).with_context(|| format!("{}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(NodeConfig::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Loads the identity.
    pub fn identity(&self) -> Result<Identity> {
        Ok(Identity::load(&self.key_path())?)
    }

    /// The data dir itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What the sandbox must never see: the identity, the state, the configuration and the
    /// artifacts. (Builds get scratch directories under `work/` and the `cargo-home/` cache.)
    pub fn protected_paths(&self) -> Vec<PathBuf> {
        vec![
            self.key_path(),
            self.state_path(),
            self.config_path(),
            self.artifacts_dir(),
        ]
    }

    /// `identity.key`.
    pub fn key_path(&self) -> PathBuf {
        self.root.join("identity.key")
    }

    /// `config.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// `state.sqlite3`.
    pub fn state_path(&self) -> PathBuf {
        self.root.join("state.sqlite3")
    }

    /// `artifacts/`.
    pub fn artifacts_dir(&self) -> PathBuf {
        self.root.join("artifacts")
    }

    /// `cargo-home/`.
    pub fn cargo_home(&self) -> PathBuf {
        self.root.join("cargo-home")
    }

    /// `work/`.
    pub fn work_dir(&self) -> PathBuf {
        self.root.join("work")
    }

    /// `lib/`.
    pub fn lib_dir(&self) -> PathBuf {
        self.root.join("lib")
    }

    /// Takes the data dir for one building process: two processes building with one data
    /// dir would each take the other's job dirs for a crash's leftovers. Held until the
    /// returned lock is dropped (or the process dies, however it dies).
    pub fn lock(&self) -> Result<DataDirLock> {
        let path = self.root.join("node.lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(DataDirLock { _file: file }),
            Err(rustix::io::Errno::WOULDBLOCK) => bail!(
                "another buildsrs-node process is building with {}; stop it first",
                self.root.display()
            ),
            Err(error) => Err(error).with_context(|| format!("locking {}", path.display())),
        }
    }

    /// Removes what a process that died mid-job left in `work/`. Call with the lock held.
    /// Returns how many job dirs were removed.
    pub fn remove_stale_work(&self, _lock: &DataDirLock) -> Result<usize> {
        let mut removed = 0;
        let work = self.work_dir();
        let entries = match fs::read_dir(&work) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(error) => return Err(error).with_context(|| format!("reading {}", work.display())),
        };
        for entry in entries {
            let path = entry?.path();
            buildsrs_sandbox::output::remove_tree(&path)
                .with_context(|| format!("removing {}", path.display()))?;
            removed += 1;
        }
        Ok(removed)
    }
}

/// The data dir's lock: see [`DataDir::lock`].
#[derive(Debug)]
pub struct DataDirLock {
    _file: fs::File,
}

/// `path` made absolute against the current directory (without resolving links).
fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}

/// The default data dir: `$XDG_DATA_HOME/buildsrs-node` (or `~/.local/share/buildsrs-node`).
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("buildsrs-node")
}

/// The sandbox builds run in: bubblewrap, set up to hide `dir`'s secrets (with cgroups unless
/// `config` switches them off), or none at all when `insecure_no_sandbox` (the caller has
/// warned); and what it can enforce here, with notes worth telling the volunteer.
pub async fn sandbox_for(
    dir: &DataDir,
    config: &NodeConfig,
    insecure_no_sandbox: bool,
) -> anyhow::Result<(
    buildsrs_sandbox::Sandbox,
    buildsrs_sandbox::SandboxCapabilities,
)> {
    use anyhow::Context as _;
    if insecure_no_sandbox {
        let sandbox = buildsrs_sandbox::Sandbox::None;
        let capabilities = sandbox.check().await?;
        return Ok((sandbox, capabilities));
    }
    let (sandbox, capabilities) =
        buildsrs_sandbox::Sandbox::detect_with(buildsrs_sandbox::BwrapConfig {
            protected_paths: dir.protected_paths(),
            cgroups: config.limits.cgroups,
            ..buildsrs_sandbox::BwrapConfig::default()
        })
        .await
        .context(
            "the build sandbox does not work here (install bubblewrap: apt-get install bubblewrap)",
        )?;
    Ok((sandbox, capabilities))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_makes_a_private_dir_with_key_and_default_config() {
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("node");
        let (dir, identity) = DataDir::init(&root).unwrap();
        assert_eq!(
            fs::metadata(&root).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(dir.identity().unwrap().public_key(), identity.public_key());
        assert_eq!(dir.config().unwrap(), NodeConfig::default());
        assert!(dir.cargo_home().is_dir() && dir.artifacts_dir().is_dir());
        assert!(
            DataDir::init(&root).is_err(),
            "a second init must not replace the key"
        );
        assert_eq!(
            DataDir::open(&root)
                .unwrap()
                .identity()
                .unwrap()
                .public_key(),
            identity.public_key()
        );
    }

    #[test]
    fn open_refuses_a_dir_without_identity_and_config_errors_are_clear() {
        let scratch = tempfile::tempdir().unwrap();
        let err = DataDir::open(scratch.path()).unwrap_err().to_string();
        assert!(err.contains("buildsrs-node init"), "{err}");
        let (dir, _) = DataDir::init(&scratch.path().join("n")).unwrap();
        fs::write(dir.config_path(), "capacity = \"many\"\n").unwrap();
        let err = format!("{:#}", dir.config().unwrap_err());
        assert!(
            err.contains("config.toml") && err.contains("capacity"),
            "{err}"
        );
        fs::write(dir.config_path(), "capacity = 3\n").unwrap();
        assert_eq!(dir.config().unwrap().capacity, 3);
    }
}
