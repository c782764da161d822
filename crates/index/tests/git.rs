//! The git follower against the fixture registry's local git index: `file://` only, no
//! network.

#![cfg(feature = "git")]
#![allow(clippy::unwrap_used)] // Tests fail loudly on broken fixtures.

use std::time::Duration;

use buildsrs_fixture_registry::{FixtureRegistry, ServeOptions};
use buildsrs_index::{CrateUpdate, FollowEnd, FollowOptions, GitFollower, IndexVersion};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

async fn git_registry() -> FixtureRegistry {
    FixtureRegistry::start_with(ServeOptions {
        git: true,
        ..ServeOptions::default()
    })
    .await
    .unwrap()
}

fn listed(versions: &[IndexVersion]) -> Vec<&str> {
    versions.iter().map(|v| v.version.as_str()).collect()
}

fn by_name<'a>(updates: &'a [CrateUpdate], name: &str) -> &'a CrateUpdate {
    updates.iter().find(|u| u.name == name).unwrap()
}

#[tokio::test]
async fn publishes_and_yanks_are_seen_as_commits() {
    let registry = git_registry().await;
    let first = registry.publish("hello-bin", "0.1.0").unwrap();
    let clone = tempfile::tempdir().unwrap();
    let url = registry.git_url().unwrap();

    // Without a remembered commit, following starts at the current head.
    let mut follower = GitFollower::open(clone.path().join("index"), &url, None)
        .await
        .unwrap();
    assert_eq!(
        Some(follower.last_commit().to_owned()),
        registry.git_head().unwrap()
    );
    let report = follower.poll().await.unwrap();
    assert!(report.updates.is_empty());
    assert_eq!(report.commits, 0);

    let second = registry.publish("hello-bin", "0.2.0").unwrap();
    registry.yank("hello-bin", "0.1.0").unwrap();
    registry.publish("multi-bin", "0.1.0").unwrap();
    let report = follower.poll().await.unwrap();
    assert_eq!(report.commits, 3);
    assert!(!report.truncated);
    assert_eq!(Some(report.to.clone()), registry.git_head().unwrap());
    assert_eq!(follower.last_commit(), report.to);
    assert_eq!(report.updates.len(), 2);

    let hello = by_name(&report.updates, "hello-bin");
    assert_eq!(listed(&hello.changes.added), ["0.2.0"]);
    assert_eq!(listed(&hello.changes.yanked), ["0.1.0"]);
    assert_eq!(listed(&hello.versions), ["0.1.0", "0.2.0"]);
    assert_eq!(hello.versions[0].cksum.to_hex(), first.cksum);
    assert_eq!(hello.versions[1].download_url, second.download_url);
    let multi = by_name(&report.updates, "multi-bin");
    assert_eq!(listed(&multi.changes.added), ["0.1.0"]);

    // Nothing new: nothing reported.
    assert!(follower.poll().await.unwrap().updates.is_empty());

    registry.unyank("hello-bin", "0.1.0").unwrap();
    let report = follower.poll().await.unwrap();
    assert_eq!(report.commits, 1);
    assert_eq!(listed(&report.updates[0].changes.unyanked), ["0.1.0"]);
}

#[tokio::test]
async fn resumes_from_a_remembered_commit() {
    let registry = git_registry().await;
    let start = registry.git_head().unwrap().unwrap();
    registry.publish("lib-only", "0.1.0").unwrap();
    registry.publish("lib-only", "0.2.0").unwrap();
    let clone = tempfile::tempdir().unwrap();
    let url = registry.git_url().unwrap();

    let mut follower = GitFollower::open(clone.path().join("index"), &url, Some(start))
        .await
        .unwrap();
    let report = follower.poll().await.unwrap();
    assert_eq!(report.commits, 2);
    assert_eq!(listed(&report.updates[0].changes.added), ["0.1.0", "0.2.0"]);
    let remembered = follower.last_commit().to_owned();
    drop(follower);

    // A restart: the same clone, the stored commit.
    registry.yank("lib-only", "0.2.0").unwrap();
    let mut follower = GitFollower::open(clone.path().join("index"), &url, Some(remembered))
        .await
        .unwrap();
    let report = follower.poll().await.unwrap();
    assert_eq!(report.updates.len(), 1);
    let changes = &report.updates[0].changes;
    assert!(changes.added.is_empty());
    assert_eq!(listed(&changes.yanked), ["0.2.0"]);

    let bad = GitFollower::open(clone.path().join("index"), &url, Some("0".repeat(40))).await;
    assert!(bad.is_err());
}

#[tokio::test]
async fn malformed_lines_are_skipped_in_git_mode_too() {
    let registry = git_registry().await;
    let clone = tempfile::tempdir().unwrap();
    let mut follower = GitFollower::open(
        clone.path().join("index"),
        &registry.git_url().unwrap(),
        None,
    )
    .await
    .unwrap();
    registry.publish("hello-bin", "0.1.0").unwrap();
    registry.append_index_line("hello-bin", "garbage").unwrap();
    registry.publish("hello-bin", "0.2.0").unwrap();
    let report = follower.poll().await.unwrap();
    assert_eq!(listed(&report.updates[0].versions), ["0.1.0", "0.2.0"]);
}

#[tokio::test]
async fn follow_sends_git_updates_and_stops_on_cancel() {
    let registry = git_registry().await;
    let clone = tempfile::tempdir().unwrap();
    let follower = GitFollower::open(
        clone.path().join("index"),
        &registry.git_url().unwrap(),
        None,
    )
    .await
    .unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    let options = FollowOptions {
        interval: Duration::from_millis(100),
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
    };
    let task = tokio::spawn(follower.follow(tx, options, cancel.clone()));

    registry.publish("multi-bin", "2.0.0").unwrap();
    let update = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(update.name, "multi-bin");
    assert_eq!(listed(&update.changes.added), ["2.0.0"]);

    cancel.cancel();
    let end = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(end, FollowEnd::Cancelled);
}

#[tokio::test]
async fn an_unreachable_git_index_is_an_error_not_a_crash() {
    let clone = tempfile::tempdir().unwrap();
    let missing = clone.path().join("no-such-repo");
    let result = GitFollower::open(
        clone.path().join("index"),
        &format!("file://{}", missing.display()),
        None,
    )
    .await;
    assert!(result.is_err());
}
