//! The real crates.io, for the one test group allowed to use it.
//!
//! Every other test builds fixture crates from a [`crate::FixtureRegistry`]. The `crates_io`
//! test binaries (`node/tests/crates_io.rs`, `crates/cli/tests/crates_io.rs`) build small real
//! crates from the real registry, because fixtures once hid that a fresh node could not build
//! a single real crate. Those tests call [`available`] first: when the registry does not
//! answer at all they print a loud SKIPPED line and pass, except under `CI=true`, where an
//! unreachable registry is a failure (every machine of ours reaches it).

use std::time::Duration;

use buildsrs_index::{IndexedVersion, SparseFollower};

/// crates.io's sparse index.
pub const INDEX: &str = "sparse+https://index.crates.io/";

/// Reads `name`'s versions from crates.io (the same follower the coordinator uses).
pub async fn versions(name: &str) -> Result<Vec<IndexedVersion>, String> {
    let mut follower = SparseFollower::new(INDEX).map_err(|e| e.to_string())?;
    let report = tokio::time::timeout(Duration::from_secs(60), follower.poll(&[name]))
        .await
        .map_err(|_| format!("crates.io did not answer for {name} within 60 s"))?
        .map_err(|e| e.to_string())?;
    if let Some((_, error)) = report.errors.first() {
        return Err(format!("reading {name} from crates.io: {error}"));
    }
    report
        .updates
        .into_iter()
        .find(|update| update.name == name)
        .map(|update| update.versions)
        .ok_or_else(|| format!("{name} is not on crates.io"))
}

/// Whether the test `test` can use crates.io: `Ok(true)` when the index answers for
/// `probe`; `Ok(false)` after printing a loud SKIPPED line when it does not; `Err` when it
/// does not and `CI` is `true` (CI must never pass by skipping).
pub async fn available(test: &str, probe: &str) -> Result<bool, String> {
    match versions(probe).await {
        Ok(_) => Ok(true),
        Err(error) if std::env::var("CI").is_ok_and(|ci| ci == "true") => Err(format!(
            "{test}: crates.io is unreachable and CI=true, so this is a failure: {error}"
        )),
        Err(error) => {
            eprintln!(
                "\n*** SKIPPED {test}: crates.io is unreachable ({error}). This group builds \
                 real crates from the real registry; run it where the registry answers. ***\n"
            );
            Ok(false)
        }
    }
}
