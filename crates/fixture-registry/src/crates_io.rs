//! The real crates.io, for the one test group allowed to use it.
//!
//! Every other test builds fixture crates from a [`crate::FixtureRegistry`]. The `crates_io`
//! test binaries (`node/tests/crates_io.rs`, `crates/cli/tests/crates_io.rs`) build small real
//! crates from the real registry, because fixtures once hid that a fresh node could not build
//! a single real crate. Those tests call [`available`] first: when the registry cannot be
//! reached at all they skip by the rule of every test that needs something from the machine
//! (`buildsrs_test_support::skip`: a loud SKIPPED line, and a failure under `CI=true`; every
//! machine of ours reaches the registry). A registry that answers wrongly is always a
//! failure.

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
/// host opens and the index answers for `probe`; when no connection opens at all,
/// `buildsrs_test_support::skip` decides (`Ok(false)` after a loud SKIPPED line, or `Err`
/// under `CI=true`); and `Err` whenever the index is reachable but answers wrongly (that is a
/// failure, not an outage).
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
        Some(error) => buildsrs_test_support::skip(
            test,
            &format!(
                "crates.io is unreachable ({error}). This group builds real crates from the \
                 real registry; run it where the registry answers"
            ),
        )
        .map(|()| false)
        .map_err(|must_run| must_run.to_string()),
    }
}
