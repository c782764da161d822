//! `cargo metadata --no-deps` of the crate, run in the sandbox like the build itself.
//!
//! The manifest is the crate's, so it is hostile input: `package.workspace` or a path
//! dependency can name any directory, and cargo reads the `Cargo.toml` it finds there and
//! quotes it in its errors. Run on the host, that reads the node's files and puts host paths
//! (the data dir's) into a log that is published. So cargo runs in the sandbox, without the
//! network, over phase 2's canonical layout (the crate's source, read-only here, at
//! [`layout::SRC`], the toolchain at [`layout::TOOLCHAIN`], the same environment), with an
//! empty cargo home and a target dir of the job's own, under a wall-clock limit
//! (`limits.metadata_secs`). Whatever cargo reads or names is then a sandbox path.
//!
//! The sandbox merges stdout and stderr into the log, so the JSON goes to a file instead:
//! `sh` redirects cargo's stdout to [`METADATA_JSON`] in the target dir. The node reads it
//! after the run with [`output::open_regular_beneath`] (no links followed, regular file only,
//! at most [`MAX_METADATA_BYTES`], which is also the run's file size limit).

use std::io::Read;
use std::path::{Path, PathBuf};

use buildsrs_sandbox::output::{self, OutputError};
use buildsrs_sandbox::{
    CappedLog, CargoLayout, Mount, RunKind, Sandbox, SandboxError, SandboxSpec, layout,
};

use crate::outcome::{self, BuildOutcome};
use crate::pipeline::{first_error_line, push_line};

/// The file cargo's JSON goes to, in the run's target dir.
pub const METADATA_JSON: &str = "metadata.json";

/// The largest metadata accepted. One package's `--no-deps` metadata is kilobytes.
pub const MAX_METADATA_BYTES: u64 = 16 << 20;

/// Redirects stdout to `$1`, then runs the rest of the arguments. The path is an argument, not
/// part of the script, so that it is translated like every other sandbox path under
/// `--insecure-no-sandbox`.
const REDIRECT: &str = r#"out="$1"; shift; exec "$@" > "$out""#;

/// Why the node could not run `cargo metadata` (never the crate's doing).
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// Making the run's directories, or reading what it wrote, failed.
    #[error("{context}: {source}")]
    Io {
        /// What the node was doing.
        context: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The sandbox failed.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// The node could not open the file (an I/O error, not something the run left there).
    #[error("cargo metadata's output: {0}")]
    Output(OutputError),
}

/// The directories and settings of one `cargo metadata` run.
#[derive(Clone, Debug)]
pub struct MetadataRun {
    /// The crate's unpacked source (holding `Cargo.toml`), bound read-only.
    pub source: PathBuf,
    /// A fresh directory of the job's own for the run (its cargo home and target dir).
    pub dir: PathBuf,
    /// The toolchain directory (holding `bin/cargo`).
    pub toolchain: PathBuf,
    /// The frozen-clock library, as in phase 2.
    pub clock_shim: PathBuf,
}

impl MetadataRun {
    /// Creates the run's directories and returns its spec (limits still to be applied by the
    /// caller; [`read_metadata`] sets the file size limit).
    pub fn spec(&self, source_date_epoch: u64) -> Result<SandboxSpec, MetadataError> {
        let cargo = CargoLayout {
            source: self.source.clone(),
            cargo_home: self.dir.join("cargo-home"),
            dependency_sources: self.dir.join("dependency-sources"),
            target: self.target_dir(),
            toolchain: self.toolchain.clone(),
            clock_shim: self.clock_shim.clone(),
        };
        cargo.create_dirs().map_err(|source| MetadataError::Io {
            context: format!("creating {}", self.dir.display()),
            source,
        })?;
        let mut spec = cargo.build(
            [
                "metadata",
                "--no-deps",
                "--format-version",
                "1",
                "--offline",
                "--manifest-path",
                layout::MANIFEST,
            ],
            source_date_epoch,
        );
        // Nothing needs to write the source: bind it read-only.
        for mount in &mut spec.mounts {
            if let Mount::ReadWrite { host, sandbox } = mount
                && sandbox.as_path() == Path::new(layout::SRC)
            {
                *mount = Mount::ReadOnly {
                    host: host.clone(),
                    sandbox: sandbox.clone(),
                };
            }
        }
        let cargo_program = std::mem::replace(&mut spec.program, "/bin/sh".to_owned());
        let out = format!("{}/{METADATA_JSON}", layout::TARGET);
        let mut args = vec![
            "-c".to_owned(),
            REDIRECT.to_owned(),
            "sh".to_owned(),
            out,
            cargo_program,
        ];
        args.append(&mut spec.args);
        spec.args = args;
        Ok(spec)
    }

    fn target_dir(&self) -> PathBuf {
        self.dir.join("target")
    }
}

/// Runs `spec` (from [`MetadataRun::spec`]) and returns cargo's JSON, or the outcome when the
/// crate's manifest made cargo fail, run too long or write something else. The run's output
/// (cargo's errors, with sandbox paths) is appended to `log`.
pub async fn read_metadata(
    sandbox: &Sandbox,
    run: &MetadataRun,
    mut spec: SandboxSpec,
    log: &mut CappedLog,
) -> Result<Result<Vec<u8>, BuildOutcome>, MetadataError> {
    let mut limits = spec.limits.clone();
    limits.file_size_bytes = Some(MAX_METADATA_BYTES);
    spec = spec.limits(limits);
    let ran = sandbox.run(&spec).await?;
    log.push(ran.log.to_bytes().as_slice());
    push_line(
        log,
        &format!("   ({}, {:.1} s)", ran.status, ran.wall_time.as_secs_f64()),
    );
    let failed = |reason: String| Ok(Err(BuildOutcome::build_failed(reason)));
    match ran.kind() {
        RunKind::Succeeded => {}
        RunKind::TimedOut => {
            push_line(
                log,
                &format!(
                    "cargo metadata ran past its limit of {} s (limits.metadata_secs)",
                    spec.limits.wall_clock.as_secs()
                ),
            );
            return Ok(Err(outcome::timed_out(spec.limits.wall_clock.as_secs())));
        }
        RunKind::OutOfMemory => {
            return Ok(Err(outcome::out_of_memory(
                spec.limits.memory_bytes.map(|bytes| bytes >> 20),
            )));
        }
        RunKind::OutputTooLarge => {
            return Ok(Err(outcome::output_too_large(
                spec.limits.output_cap_bytes >> 20,
            )));
        }
        RunKind::DiskLimit => {
            return Ok(Err(outcome::disk_limit(
                spec.limits.disk_bytes.unwrap_or(0) >> 20,
            )));
        }
        RunKind::Failed => {
            let text = ran.log.to_string_lossy();
            return failed(format!(
                "cargo metadata failed ({}): {}",
                ran.status,
                first_error_line(&text)
            ));
        }
    }
    let target = run.target_dir();
    let mut file =
        match output::open_regular_beneath(&target, Path::new(METADATA_JSON), MAX_METADATA_BYTES) {
            Ok(file) => file,
            Err(error) if error.is_the_builds_doing() => {
                let reason = format!("cargo metadata succeeded but {error}");
                push_line(log, &reason);
                return failed(reason);
            }
            Err(error) => return Err(MetadataError::Output(error)),
        };
    let mut json = Vec::new();
    file.by_ref()
        .take(MAX_METADATA_BYTES)
        .read_to_end(&mut json)
        .map_err(|source| MetadataError::Io {
            context: format!("reading {METADATA_JSON}"),
            source,
        })?;
    Ok(Ok(json))
}
