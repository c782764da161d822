//! The two phases of a crate build as sandbox specs over the standard [`layout`].
//!
//! - Phase 1, [`CargoLayout::fetch`]: network allowed, no code of the crate runs (`cargo
//!   generate-lockfile` when the crate ships no `Cargo.lock`, then `cargo fetch --locked`).
//!   The source and the cargo home are writable: the first may gain a `Cargo.lock`, the second
//!   fills with the index and the dependencies' `.crate` files.
//! - Phase 2, [`CargoLayout::build`]: no network, `cargo build --release --offline --locked`.
//!   The shared cargo home is read-only. Writable: the crate's source (the build's own copy:
//!   build scripts may write next to their sources, as plain cargo allows), the build's own
//!   dependency sources ([`layout::REGISTRY_SRC`], where cargo unpacks each dependency, so
//!   a dependency's build script may write into its package too), the target dir, `HOME`
//!   and `/tmp`.
//!
//! In both phases cargo unpacks dependencies into the build's private
//! [`CargoLayout::dependency_sources`], never into the shared cache: what one build's scripts
//! write there cannot reach another build.
//!
//! Cargo runs with its working directory at [`layout::ROOT`], outside the source, and reads the
//! manifest through `--manifest-path` ([`layout::MANIFEST`]): cargo looks for `.cargo/config`
//! files from the working directory up, so a `.cargo/config.toml` shipped inside the crate
//! (which could set a `rustc-wrapper`, a `runner` or flags) is ignored, exactly as under
//! `cargo install`.
//!
//! The environment is fixed and complete (the sandbox clears everything else), and phase 2
//! adds the reproducibility settings: `SOURCE_DATE_EPOCH`, a wall clock frozen at it
//! ([`crate::clock`]), no incremental compilation, and `--remap-path-prefix` for the
//! canonical paths. All of it ends up in [`crate::Sandbox::settings_description`].

use std::path::PathBuf;

use crate::spec::{SandboxSpec, layout};

/// The node's directories for one build, bound at the canonical paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CargoLayout {
    /// The crate's unpacked source (the directory holding `Cargo.toml`): this build's own
    /// copy, writable in phase 2.
    pub source: PathBuf,
    /// The cargo home shared by builds: the registry index and the dependencies' `.crate`
    /// files. Read-only in phase 2. It must hold a `registry/src` directory (the mount point
    /// of `dependency_sources`; [`CargoLayout::create_dirs`] makes it).
    pub cargo_home: PathBuf,
    /// This build's own directory of unpacked dependency sources, mounted over
    /// `cargo_home/registry/src` in both phases.
    pub dependency_sources: PathBuf,
    /// The target directory.
    pub target: PathBuf,
    /// The pinned toolchain's directory (`rustc --print sysroot`, e.g.
    /// `~/.rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu`), holding `bin/cargo`.
    pub toolchain: PathBuf,
    /// The frozen-clock library ([`crate::clock::install`]), preloaded in phase 2.
    pub clock_shim: PathBuf,
}

/// Path remappings passed to rustc in phase 2. The canonical paths are already the same on
/// every node; remapping them to short neutral prefixes also keeps anything that still leaks
/// (panic locations of dependencies, debug info) free of our layout's names.
pub const REMAP_PATH_PREFIXES: &[(&str, &str)] = &[
    (layout::CARGO_HOME, "/cargo"),
    (layout::SRC, "/src"),
    (layout::TARGET, "/target"),
    (layout::HOME, "/home"),
];

impl CargoLayout {
    /// Creates the directories the specs bind that a build makes for itself: the cargo
    /// home's `registry/src` mount point, the dependency sources and the target dir.
    pub fn create_dirs(&self) -> std::io::Result<()> {
        for dir in [
            self.cargo_home.join("registry/src"),
            self.dependency_sources.clone(),
            self.target.clone(),
        ] {
            std::fs::create_dir_all(dir)?;
        }
        Ok(())
    }

    /// Phase 1: `cargo ARGS` with the network, e.g. `["fetch", "--locked", "--manifest-path",
    /// layout::MANIFEST]`. Source and cargo home writable.
    pub fn fetch<I, S>(&self, cargo_args: I) -> SandboxSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.base(cargo_args)
            .network(true)
            .rw_bind(&self.source, layout::SRC)
            .rw_bind(&self.cargo_home, layout::CARGO_HOME)
            .rw_bind(&self.dependency_sources, layout::REGISTRY_SRC)
            .tmpfs(layout::TARGET)
    }

    /// Phase 2: `cargo ARGS` without the network, e.g. `["build", "--release", "--offline",
    /// "--locked", "--manifest-path", layout::MANIFEST, "--target", …]`, with the
    /// reproducibility settings. The shared cargo home is read-only; the source, the
    /// dependency sources, the target dir, `HOME` and `/tmp` are writable.
    pub fn build<I, S>(&self, cargo_args: I, source_date_epoch: u64) -> SandboxSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let rustflags: Vec<String> = REMAP_PATH_PREFIXES
            .iter()
            .map(|(from, to)| format!("--remap-path-prefix={from}={to}"))
            .collect();
        self.base(cargo_args)
            .network(false)
            .rw_bind(&self.source, layout::SRC)
            .ro_bind(&self.cargo_home, layout::CARGO_HOME)
            .rw_bind(&self.dependency_sources, layout::REGISTRY_SRC)
            .rw_bind(&self.target, layout::TARGET)
            .ro_bind(&self.clock_shim, layout::CLOCK_SHIM)
            .env("CARGO_NET_OFFLINE", "true")
            .env("CARGO_INCREMENTAL", "0")
            .env("SOURCE_DATE_EPOCH", source_date_epoch.to_string())
            .env("LD_PRELOAD", layout::CLOCK_SHIM)
            .env("RUSTFLAGS", rustflags.join(" "))
    }

    /// What both phases share: the toolchain, tmpfs `HOME` and `/tmp`, the base environment.
    fn base<I, S>(&self, cargo_args: I) -> SandboxSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        SandboxSpec::new(format!("{}/bin/cargo", layout::TOOLCHAIN), layout::ROOT)
            .args(cargo_args)
            .ro_bind(&self.toolchain, layout::TOOLCHAIN)
            .tmpfs(layout::HOME)
            .tmpfs(layout::TMP)
            .env("PATH", layout::PATH)
            .env("HOME", layout::HOME)
            .env("TMPDIR", layout::TMP)
            .env("CARGO_HOME", layout::CARGO_HOME)
            .env("CARGO_TARGET_DIR", layout::TARGET)
            .env("RUSTC", format!("{}/bin/rustc", layout::TOOLCHAIN))
            .env("RUSTDOC", format!("{}/bin/rustdoc", layout::TOOLCHAIN))
            .env("CARGO_TERM_COLOR", "never")
            .env("CARGO_TERM_PROGRESS_WHEN", "never")
            .env("LANG", "C.UTF-8")
            .env("LC_ALL", "C.UTF-8")
            .env("TZ", "UTC")
    }
}
