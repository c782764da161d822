//! The frozen wall clock of the compile phase.
//!
//! Some build scripts and proc macros embed the time they ran (`SystemTime::now()`, the
//! `built` crate before it honoured `SOURCE_DATE_EPOCH`, C's `time()`), so two honest
//! builders produce different bytes and the artifact can never be verified. Phase 2 therefore
//! preloads a small library, compiled from `clock/buildsrs_clock.c` when this crate is built
//! and embedded here, that answers every wall-clock question with `SOURCE_DATE_EPOCH`
//! exactly (nanoseconds zero). Elapsed-time clocks stay real, so sleeps and timeouts work; file
//! timestamps are untouched. The C file's comment says why not libfaketime (it deadlocks
//! rustc's allocator).
//!
//! The node writes the library into its data dir once ([`install`]); [`crate::CargoLayout`]
//! binds it read-only at [`crate::layout::CLOCK_SHIM`] and sets `LD_PRELOAD` in phase 2, so
//! the path (and with it the attested settings) is the same on every builder.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::spec::layout;
use crate::{Limits, Sandbox, SandboxError, SandboxSpec};

/// The compiled library.
pub const SHIM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libbuildsrs_clock.so"));

/// Its C source. What the library does is fixed by this text, so settings digests name the
/// source rather than the compiled bytes (which depend on the compiler that built the node).
pub const SHIM_SOURCE: &str = include_str!("../clock/buildsrs_clock.c");

/// The library's file name.
pub const SHIM_FILE: &str = "libbuildsrs_clock.so";

/// Writes the library into `dir` (created if missing) unless an identical copy is there, and
/// returns its path. The file is read-only; it is replaced atomically when it differs, so a
/// build running meanwhile keeps the copy it has open.
pub fn install(dir: &Path) -> Result<PathBuf, SandboxError> {
    let path = dir.join(SHIM_FILE);
    if fs::read(&path).is_ok_and(|bytes| bytes == SHIM) {
        return Ok(path);
    }
    let io = |context: &str| SandboxError::io(format!("{context} {}", path.display()));
    fs::create_dir_all(dir).map_err(io("creating the directory of"))?;
    let mut staged = tempfile::NamedTempFile::new_in(dir).map_err(io("staging"))?;
    staged.write_all(SHIM).map_err(io("writing"))?;
    staged
        .as_file()
        .set_permissions(fs::Permissions::from_mode(0o444))
        .map_err(io("setting the mode of"))?;
    staged.persist(&path).map_err(|e| SandboxError::Io {
        context: format!("storing {}", path.display()),
        source: e.error,
    })?;
    Ok(path)
}

/// Checks that the library at `shim` loads and freezes the clock inside `sandbox`: runs
/// `date` under it with `SOURCE_DATE_EPOCH` set, as phase 2 does, and compares. A library
/// that does not load (a `noexec` data dir, a libc it was not built for) would otherwise only
/// make the dynamic linker print a line, and builds would read the real clock while their
/// attestations say it was frozen.
pub async fn self_check(sandbox: &Sandbox, shim: &Path) -> Result<(), SandboxError> {
    const EPOCH: &str = "1700000000";
    let spec = SandboxSpec::new("date", "/")
        .arg("+%s.%N")
        .env("PATH", "/usr/bin:/bin")
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env("LD_PRELOAD", layout::CLOCK_SHIM)
        .ro_bind(shim, layout::CLOCK_SHIM)
        .limits(Limits {
            wall_clock: std::time::Duration::from_secs(30),
            ..Limits::default()
        });
    let outcome = sandbox.run(&spec).await?;
    let said = outcome.log.to_string_lossy();
    if outcome.success() && said.trim() == format!("{EPOCH}.000000000") {
        return Ok(());
    }
    Err(SandboxError::Unusable {
        strategy: sandbox.name(),
        reason: format!(
            "the frozen-clock library {} does not work here: `date` under it said {:?} ({}), \
             expected {EPOCH}.000000000",
            shim.display(),
            said.trim(),
            outcome.status
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_once_and_repairs_a_changed_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = install(&dir.path().join("lib")).unwrap();
        assert_eq!(fs::read(&path).unwrap(), SHIM);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o444
        );
        assert_eq!(install(&dir.path().join("lib")).unwrap(), path);

        fs::remove_file(&path).unwrap();
        fs::write(&path, b"not the library").unwrap();
        install(&dir.path().join("lib")).unwrap();
        assert_eq!(fs::read(&path).unwrap(), SHIM);
    }
}
