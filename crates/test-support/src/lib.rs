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
