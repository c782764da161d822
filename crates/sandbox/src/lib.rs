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
//!
//! The trust line: [`SandboxError`] is always the node's fault and never a verdict on the
//! crate; [`RunOutcome`] is always the crate's doing.

pub mod cargo;
mod cgroup;
mod error;
pub mod outcome;
pub mod sandbox;
pub mod spec;

pub use cargo::CargoLayout;
pub use error::SandboxError;
pub use outcome::{CappedLog, ExitStatus, OutcomeKind, RunOutcome};
pub use sandbox::{BwrapConfig, SANDBOX_HOSTNAME, SANDBOX_UID, Sandbox, SandboxCapabilities};
pub use spec::{Limits, Mount, SandboxSpec, layout};
