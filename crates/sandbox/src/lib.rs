//! The build sandbox: runs untrusted build commands (cargo, and through it the crate's build
//! scripts and proc macros) isolated from the node, under resource limits, and says how they
//! ended.
//!
//! - [`spec`]: what to run ([`SandboxSpec`]), the [`Limits`], the canonical [`layout`].
//! - [`sandbox`]: the strategies ([`Sandbox::Bubblewrap`], the insecure [`Sandbox::None`]),
//!   the self-check, the settings description for attestations, and the runner.
//! - [`outcome`]: what a run produced ([`RunOutcome`], [`CappedLog`]).
//! - [`cargo`]: the two build phases (fetch with network, build without) as specs over the
//!   standard layout.
//! - [`clock`]: the wall clock frozen at `SOURCE_DATE_EPOCH` in phase 2.
//! - [`output`]: reading what a build wrote without following links.
//! - `watchdog`: the disk limit everywhere, and the memory and process limits where cgroups
//!   are not writable, enforced by watching the run from outside.
//!
//! The trust line: [`SandboxError`] is always the node's fault and never a verdict on the
//! crate; [`RunOutcome`] is always the crate's doing.
//!
//! A node builds one crate like this:
//!
//! ```no_run
//! # async fn build(data_dir: std::path::PathBuf, job: buildsrs_sandbox::CargoLayout)
//! # -> Result<(), buildsrs_sandbox::SandboxError> {
//! use buildsrs_sandbox::{RunKind, Sandbox, layout};
//!
//! // Once at start: does bubblewrap work here, and which limits are available?
//! let (sandbox, capabilities) = Sandbox::detect(vec![data_dir]).await?;
//!
//! // Phase 1, with network, no crate code: lock (if the crate ships no Cargo.lock) and fetch.
//! let manifest = ["--manifest-path", layout::MANIFEST];
//! if !job.source.join("Cargo.lock").exists() {
//!     let locked = sandbox.run(&job.fetch(["generate-lockfile"].iter().chain(&manifest).copied())).await?;
//! }
//! let fetched = sandbox.run(&job.fetch(["fetch", "--locked"].iter().chain(&manifest).copied())).await?;
//!
//! // Phase 2, offline, in the sandbox.
//! let spec = job.build(
//!     ["build", "--release", "--offline", "--locked", "--bins", "--target", "x86_64-unknown-linux-gnu"]
//!         .iter()
//!         .chain(&manifest)
//!         .copied(),
//!     1_700_000_000, // SOURCE_DATE_EPOCH
//! );
//! let settings = sandbox.settings_description(&spec); // hashed into the attestation
//! let outcome = sandbox.run(&spec).await?;
//! match outcome.kind() {
//!     RunKind::Succeeded => { /* pack job.target/…/release binaries */ }
//!     RunKind::Failed
//!     | RunKind::TimedOut
//!     | RunKind::OutOfMemory
//!     | RunKind::OutputTooLarge
//!     | RunKind::DiskLimit => { /* a build result, with outcome.log */ }
//! }
//! # Ok(()) }
//! ```

pub mod cargo;
mod cgroup;
pub mod clock;
mod error;
pub mod outcome;
pub mod output;
pub mod sandbox;
pub mod spec;
mod watchdog;

pub use cargo::CargoLayout;
pub use error::SandboxError;
pub use outcome::{CappedLog, ExitStatus, RunKind, RunOutcome};
pub use sandbox::{
    BwrapConfig, SANDBOX_HOSTNAME, SANDBOX_UID, Sandbox, SandboxCapabilities, StaleRemoved,
};
pub use spec::{Limits, Mount, SandboxSpec, layout};
