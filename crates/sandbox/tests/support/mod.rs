//! What the sandbox's test files share: the strategies under test, tiny shell programs as
//! specs, and running them.

#![allow(dead_code)] // Each test file uses a part.

use std::time::Duration;

use buildsrs_sandbox::{BwrapConfig, Limits, RunOutcome, Sandbox, SandboxSpec};

/// Bubblewrap with the defaults (cgroups where writable).
pub fn bwrap() -> Sandbox {
    Sandbox::Bubblewrap(BwrapConfig::default())
}

/// Bubblewrap with cgroups switched off: every tree-wide limit is the watchdog's.
pub fn bwrap_without_cgroups() -> Sandbox {
    Sandbox::Bubblewrap(BwrapConfig {
        cgroups: false,
        ..BwrapConfig::default()
    })
}

/// `/bin/sh -c SCRIPT` with a minimal PATH and a minute of wall clock.
pub fn sh(script: &str) -> SandboxSpec {
    SandboxSpec::new("/bin/sh", "/")
        .args(["-c", script])
        .env("PATH", "/usr/bin:/bin")
        .limits(Limits {
            wall_clock: Duration::from_secs(60),
            ..Limits::default()
        })
}

/// Runs `spec`, which must start; the outcome and its log as text.
pub async fn run(sandbox: &Sandbox, spec: &SandboxSpec) -> (RunOutcome, String) {
    let outcome = sandbox.run(spec).await.expect("the sandbox runs the spec");
    let log = outcome.log.to_string_lossy();
    (outcome, log)
}
