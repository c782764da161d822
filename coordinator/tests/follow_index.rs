//! The coordinator follows a (fixture) registry index into the store: a watched crate's
//! newest version (and the backfill asked for) and its new versions become tasks, yanks cancel
//! them, un-yanks requeue them, and a restart continues without planning anything twice. Runs
//! on SQLite and on Postgres.

#![allow(clippy::unwrap_used)] // Tests fail loudly on broken fixtures.

use std::future::Future;
use std::time::Duration;

use anyhow::{Result, bail};
use buildsrs_coordinator::{Config, IndexSource, run};
use buildsrs_fixture_registry::FixtureRegistry;
use buildsrs_store::model::TaskState;
use buildsrs_store::testing::TestStore;
use buildsrs_store::{Policy, Store, store_test};
use tokio_util::sync::CancellationToken;

const TOOLCHAIN: &str = "1.95.0";

fn config(data_dir: &std::path::Path, db: &TestStore, registry: &FixtureRegistry) -> Config {
    let mut config = Config::new(data_dir);
    config.database_url = Some(db.url.clone());
    config.index = IndexSource::Sparse(registry.index_url());
    config.watch = vec!["hello-bin".into(), "multi-bin".into(), "lib-only".into()];
    config.poll_interval = Duration::from_millis(300);
    config.toolchains = vec![TOOLCHAIN.into()];
    config.policy = Policy::default();
    config
}

/// Waits until `check` holds, polling the store.
async fn eventually<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    for _ in 0..200 {
        if check().await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("timed out waiting for: {what}")
}

async fn task_states(store: &Store, name: &str, version: &str) -> Result<Vec<TaskState>> {
    Ok(store
        .version_info(name, version)
        .await?
        .map(|v| v.tasks.iter().map(|t| t.state).collect())
        .unwrap_or_default())
}

async fn follows_new_versions_yanks_and_restarts(db: TestStore) -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    registry.publish("hello-bin", "0.1.0")?;
    registry.publish("multi-bin", "1.0.0")?;
    let data = tempfile::tempdir()?;
    let store = db.store.clone();

    let shutdown = CancellationToken::new();
    let service = tokio::spawn(run(config(data.path(), &db, &registry), shutdown.clone()));

    eventually("tasks for the first versions", || async {
        Ok(
            task_states(&store, "hello-bin", "0.1.0").await? == [TaskState::Queued]
                && task_states(&store, "multi-bin", "1.0.0").await? == [TaskState::Queued],
        )
    })
    .await?;
    let info = store.version_info("hello-bin", "0.1.0").await?.unwrap();
    assert_eq!(info.tasks[0].toolchain, TOOLCHAIN);
    assert_eq!(info.tasks[0].target, "x86_64-unknown-linux-gnu");

    registry.publish("hello-bin", "0.2.0")?;
    registry.publish("lib-only", "0.1.0")?;
    eventually("a task for a newly published version", || async {
        Ok(
            task_states(&store, "hello-bin", "0.2.0").await? == [TaskState::Queued]
                && task_states(&store, "lib-only", "0.1.0").await? == [TaskState::Queued],
        )
    })
    .await?;

    registry.yank("hello-bin", "0.1.0")?;
    eventually("the yanked version's task cancelled", || async {
        Ok(task_states(&store, "hello-bin", "0.1.0").await? == [TaskState::Cancelled])
    })
    .await?;
    registry.unyank("hello-bin", "0.1.0")?;
    eventually("the un-yanked version's task requeued", || async {
        Ok(task_states(&store, "hello-bin", "0.1.0").await? == [TaskState::Queued])
    })
    .await?;

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), service).await???;

    // A restart resumes from the store: nothing is planned twice, and new versions published
    // while it was down are picked up.
    let before = store.queue_stats(jiff::Timestamp::now()).await?;
    registry.publish("multi-bin", "1.1.0")?;
    let shutdown = CancellationToken::new();
    let mut restarted = config(data.path(), &db, &registry);
    restarted.watch.clear(); // The store remembers what is watched.
    let service = tokio::spawn(run(restarted, shutdown.clone()));
    eventually("the version published while stopped", || async {
        Ok(task_states(&store, "multi-bin", "1.1.0").await? == [TaskState::Queued])
    })
    .await?;
    let after = store.queue_stats(jiff::Timestamp::now()).await?;
    assert_eq!(after.queued, before.queued + 1, "{before:?} -> {after:?}");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), service).await???;
    Ok(())
}

store_test!(
    follows_new_versions_yanks_and_restarts,
    follows_new_versions_yanks_and_restarts
);

/// A crate's whole history at its first sight: watching plans its newest version and the
/// backfill asked for (`NAME:N`), not every version; a version whose `rust-version` no enabled
/// toolchain meets gets a note instead of tasks.
async fn first_sight_plans_the_newest_and_the_backfill(db: TestStore) -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    for version in ["0.1.0", "0.2.0", "0.3.0"] {
        registry.publish("hello-bin", version)?;
    }
    registry.publish("multi-bin", "1.0.0")?;
    registry.publish("multi-bin", "1.1.0")?;
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("src"))?;
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[package]\nname = \"needs-new-rust\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
         rust-version = \"1.96\"\n",
    )?;
    std::fs::write(dir.path().join("src/main.rs"), "fn main() {}\n")?;
    registry.publish_dir(dir.path(), "1.0.0")?;

    let data = tempfile::tempdir()?;
    let store = db.store.clone();
    let mut config = config(data.path(), &db, &registry);
    config.watch = vec![
        "hello-bin:1".into(),
        "multi-bin".into(),
        "needs-new-rust".into(),
    ];
    let shutdown = CancellationToken::new();
    let service = tokio::spawn(run(config, shutdown.clone()));
    eventually("the newest versions and the backfill planned", || async {
        let noted = store
            .version_info("needs-new-rust", "1.0.0")
            .await?
            .is_some_and(|v| v.version.plan_note.is_some());
        Ok(noted
            && task_states(&store, "hello-bin", "0.3.0").await? == [TaskState::Queued]
            && task_states(&store, "hello-bin", "0.2.0").await? == [TaskState::Queued]
            && task_states(&store, "multi-bin", "1.1.0").await? == [TaskState::Queued])
    })
    .await?;
    assert!(task_states(&store, "hello-bin", "0.1.0").await?.is_empty());
    assert!(task_states(&store, "multi-bin", "1.0.0").await?.is_empty());
    let noted = store
        .version_info("needs-new-rust", "1.0.0")
        .await?
        .unwrap();
    assert!(noted.tasks.is_empty());
    assert_eq!(noted.version.rust_version.as_deref(), Some("1.96"));
    assert_eq!(
        noted.version.plan_note.as_deref(),
        Some("needs Rust 1.96 or newer; enabled toolchains: 1.95.0")
    );
    assert_eq!(store.crate_info("hello-bin").await?.unwrap().backfill, 1);
    assert_eq!(store.queue_stats(jiff::Timestamp::now()).await?.queued, 3);

    // What is published next is planned.
    registry.publish("multi-bin", "1.2.0")?;
    eventually("the next version planned", || async {
        Ok(task_states(&store, "multi-bin", "1.2.0").await? == [TaskState::Queued])
    })
    .await?;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), service).await???;
    Ok(())
}

store_test!(
    first_sight_plans_the_newest_and_the_backfill,
    first_sight_plans_the_newest_and_the_backfill
);

/// Git mode follows every crate of a git index from the head it first sees, and resumes from
/// its cursor after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_mode_follows_every_crate_and_resumes_from_its_cursor() -> Result<()> {
    let options = buildsrs_fixture_registry::ServeOptions {
        git: true,
        ..Default::default()
    };
    let registry = FixtureRegistry::start_with(options).await?;
    registry.publish("hello-bin", "0.1.0")?; // Before the coordinator starts: not followed.
    let db = TestStore::sqlite().await;
    let store = db.store.clone();
    let data = tempfile::tempdir()?;
    let git_config = || {
        let mut config = config(data.path(), &db, &registry);
        config.index = IndexSource::Git(registry.git_url().unwrap());
        config.watch.clear();
        config.policy = Policy {
            plan_all_crates: true,
            ..Policy::default()
        };
        config
    };

    let shutdown = CancellationToken::new();
    let service = tokio::spawn(run(git_config(), shutdown.clone()));
    eventually("the cursor written at the starting head", || async {
        Ok(data.path().join("git-index.cursor").exists())
    })
    .await?;
    registry.publish("multi-bin", "1.0.0")?;
    eventually("a task for a crate nobody watches explicitly", || async {
        Ok(task_states(&store, "multi-bin", "1.0.0").await? == [TaskState::Queued])
    })
    .await?;
    assert!(task_states(&store, "hello-bin", "0.1.0").await?.is_empty());
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), service).await???;

    registry.yank("multi-bin", "1.0.0")?;
    registry.publish("lib-only", "0.1.0")?;
    let shutdown = CancellationToken::new();
    let service = tokio::spawn(run(git_config(), shutdown.clone()));
    eventually("changes made while stopped", || async {
        Ok(
            task_states(&store, "multi-bin", "1.0.0").await? == [TaskState::Cancelled]
                && task_states(&store, "lib-only", "0.1.0").await? == [TaskState::Queued],
        )
    })
    .await?;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), service).await???;
    Ok(())
}
