//! The real crates.io, for the one test group allowed to use it.
//!
//! Every other test builds fixture crates from a [`crate::FixtureRegistry`]. The `crates_io`
//! test binaries (`node/tests/crates_io.rs`, `crates/cli/tests/crates_io.rs`) build small real
//! crates from the real registry, because fixtures once hid that a fresh node could not build
//! a single real crate. Those tests call [`available`] first: when the registry cannot be
//! reached at all they print a loud SKIPPED line and pass, except under `CI=true`, where an
//! unreachable registry is a failure (every machine of ours reaches it). A registry that
//! answers wrongly is always a failure.

use std::time::Duration;

use buildsrs_index::{IndexVersion, SparseFollower};

pub use buildsrs_index::crates_io::INDEX;

/// Reads `name`'s versions from crates.io (the same follower the coordinator uses).
pub async fn versions(name: &str) -> Result<Vec<IndexVersion>, String> {
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

/// Whether the test `test` can use crates.io: `Ok(true)` when a TCP connection to the index
/// host opens and the index answers for `probe`; `Ok(false)` after printing a loud SKIPPED
/// line when no connection opens at all; `Err` when no connection opens and `CI` is `true`
/// (CI must never pass by skipping), and `Err` whenever the index is reachable but answers
/// wrongly (that is a failure, not an outage).
pub async fn available(test: &str, probe: &str) -> Result<bool, String> {
    let connect = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::net::TcpStream::connect(("index.crates.io", 443)),
    )
    .await;
    let unreachable = match connect {
        Ok(Ok(_)) => None,
        Ok(Err(error)) => Some(error.to_string()),
        Err(_) => Some("no connection within 20 s".to_owned()),
    };
    match unreachable {
        None => versions(probe).await.map(|_| true),
        Some(error) if std::env::var("CI").is_ok_and(|ci| !ci.is_empty() && ci != "false") => {
            Err(format!(
                "{test}: crates.io is unreachable and CI is set, so this is a failure: {error}"
            ))
        }
        Some(error) => {
            eprintln!(
                "\n*** SKIPPED {test}: crates.io is unreachable ({error}). This group builds \
                 real crates from the real registry; run it where the registry answers. ***\n"
            );
            Ok(false)
        }
    }
}
