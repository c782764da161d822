//! The one rule for a test that needs something from the machine: an S3 server (moto), a
//! writable cgroup, Chromium, the real crates.io.
//!
//! Where it is missing, the test calls [`skip`] (or [`skip_or_panic`]) and stops. On a
//! developer's machine that prints a loud `SKIPPED` line and the test passes; under
//! `CI=true` it is a failure, because CI must never pass by not running a test. `scripts/test`
//! starts every service the tests need, so on CI nothing is missing unless something broke.
//!
//! ```
//! # fn moto() -> Option<String> { None }
//! # fn demo() -> Result<(), buildsrs_test_support::MustRun> {
//! let Some(endpoint) = moto() else {
//!     buildsrs_test_support::skip("s3_round_trip", "BUILDSRS_TEST_S3_ENDPOINT is not set")?;
//!     return Ok(());
//! };
//! # let _ = endpoint; Ok(()) }
//! ```
//!
//! What several crates' tests need of such a thing lives here too, built on the standard
//! library alone: [`s3`], a bucket of its own on the test S3 server; [`stalling_registry`], a
//! registry whose downloads stall or dribble (the node's unit and integration tests).

pub mod s3;
pub mod stalling_registry;

use std::fmt;
use std::io::Write as _;

/// Whether this is a CI run: `CI` is set, not empty and not `false`.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|ci| !ci.is_empty() && ci != "false")
}

/// A test that could not run under CI: the error [`skip`] returns there.
#[derive(Clone, PartialEq, Eq)]
pub struct MustRun {
    /// The test.
    pub test: String,
    /// What it lacked.
    pub why: String,
}

impl fmt::Display for MustRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}; CI is set, so this is a failure (CI must never pass by skipping)",
            self.test, self.why
        )
    }
}

// Debug as Display, so that `.unwrap()` and a test's `Err` show the sentence.
impl fmt::Debug for MustRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for MustRun {}

/// The test `test` cannot run here because `why`. Under CI: `Err`. Elsewhere: prints a loud
/// `SKIPPED` line (past the test harness's output capture) and returns `Ok`; the caller then
/// returns without running the test.
pub fn skip(test: &str, why: &str) -> Result<(), MustRun> {
    if in_ci() {
        return Err(MustRun {
            test: test.to_owned(),
            why: why.to_owned(),
        });
    }
    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED {test}: {why} ***\n");
    Ok(())
}

/// [`skip`] for a test that returns nothing: panics under CI.
#[track_caller]
pub fn skip_or_panic(test: &str, why: &str) {
    if let Err(error) = skip(test, why) {
        panic!("{error}");
    }
}

/// For a crate whose integration tests are linked into one binary by `tests/it.rs` (with
/// `autotests = false`, so cargo no longer finds test files by itself): panics unless every
/// `tests/*.rs` file is a module of `it.rs` (`#[path = "file.rs"]`) or one of
/// `own_binaries`, so that a new test file cannot be silently left out of the run.
/// `it_source` is `include_str!("it.rs")`.
#[track_caller]
pub fn assert_every_test_file_is_linked(
    manifest_dir: &str,
    it_source: &str,
    own_binaries: &[&str],
) {
    let tests = std::path::Path::new(manifest_dir).join("tests");
    let entries =
        std::fs::read_dir(&tests).unwrap_or_else(|e| panic!("reading {}: {e}", tests.display()));
    let mut missing = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let linked = it_source.contains(&format!("#[path = \"{name}\"]"));
        if name.ends_with(".rs")
            && name != "it.rs"
            && !linked
            && !own_binaries.contains(&name.as_str())
        {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "{}: {missing:?} not linked into the `it` test binary: add `#[path = \"FILE\"] mod NAME;` \
         to tests/it.rs (or a [[test]] target to Cargo.toml)",
        tests.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_names_the_test_and_what_it_lacked() {
        let error = MustRun {
            test: "s3_round_trip".into(),
            why: "no S3 server".into(),
        };
        let text = format!("{error:?}");
        assert!(
            text.starts_with("s3_round_trip: no S3 server; CI is set"),
            "{text}"
        );
    }
}
