//! Errors of the node, never of the crate being built.
//!
//! A [`SandboxError`] means the sandbox could not run the spec as asked: a tool is missing,
//! the kernel refused namespaces, the spec itself is wrong, or the wrapper failed before the
//! program started. The caller must treat it as its own fault (retry later, report the node as
//! unhealthy) and never as a build result. Whatever the program does once it runs — fail,
//! time out, run out of memory — is a [`crate::RunOutcome`] instead.

use std::io;

/// Why a spec could not be run.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A program the sandbox needs is not installed.
    #[error("{tool} was not found ({path}): {hint}")]
    ToolMissing {
        /// The tool's name.
        tool: &'static str,
        /// Where we looked.
        path: String,
        /// What the volunteer should install.
        hint: &'static str,
    },
    /// The sandbox does not work on this machine (the self-test failed).
    #[error("the {strategy} sandbox does not work on this machine: {reason}")]
    Unusable {
        /// The strategy tested.
        strategy: &'static str,
        /// What failed and what to do about it.
        reason: String,
    },
    /// The spec is malformed or would expose a protected path.
    #[error("invalid sandbox spec: {0}")]
    InvalidSpec(String),
    /// The wrapper or bwrap failed before the program started (cgroup entry, rlimits, mount
    /// setup, exec of the program), or bwrap was killed from outside. `log` holds what was
    /// printed.
    #[error("sandbox setup failed: {reason}\n{log}")]
    Setup {
        /// What we know went wrong.
        reason: String,
        /// Output of the failed setup.
        log: String,
    },
    /// A file or process operation on the node failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// What the OS said.
        source: io::Error,
    },
}

impl SandboxError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> SandboxError {
        let context = context.into();
        move |source| SandboxError::Io { context, source }
    }
}
