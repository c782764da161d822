//! The conformance suite: every test body runs on SQLite and on Postgres.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use buildsrs_domain::{BlobAddress, TargetTriple};
use buildsrs_store::{
    BuildOutcome, BuilderStatus, Decision, IndexVersion, LeaseState, NewBuilder, NotCounted,
    OutcomeKind, Page, Policy, SCHEMA_VERSION, Store, StoreError, StoredBuild, Submission,
    TaskState, VersionPlan, store_test,
};
use common::*;

// ---- schema and ingest ----------------------------------------------------------------

store_test!(schema_version_is_current, |store: Store| async move {
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
});

store_test!(
    ingest_plans_watched_crates_only,
    |store: Store| async move {
        matrix(&store).await;
        let report = store
            .upsert_versions(
                vec![
                    line("alpha", "0.1.0", false),
                    line("alpha", "0.2.0", false),
                    line("beta", "1.0.0", false),
                    line("beta", "0.9.0", true),
                ],
                t(1),
            )
            .await
            .unwrap();
        assert_eq!(report.crates_added, 2);
        assert_eq!(report.versions_added, 4);
        assert_eq!(report.tasks_planned, 0, "nothing is watched yet");

        // Watching plans the crate's newest non-yanked version.
        assert_eq!(store.watch_crate("beta", 0, t(2)).await.unwrap(), 1);
        // A new version of a watched crate is planned; the same batch again changes nothing.
        let batch = vec![line("beta", "1.1.0", false), line("alpha", "0.3.0", false)];
        let report = store.upsert_versions(batch.clone(), t(3)).await.unwrap();
        assert_eq!(report.versions_added, 2);
        assert_eq!(report.tasks_planned, 1);
        let again = store.upsert_versions(batch, t(4)).await.unwrap();
        assert_eq!(again, Default::default());

        let beta = store.crate_info("beta").await.unwrap().unwrap();
        assert!(beta.watched);
        assert_eq!(beta.versions.len(), 3);
        let v = store.version_info("beta", "1.1.0").await.unwrap().unwrap();
        assert_eq!(v.tasks.len(), 1);
        assert_eq!(v.tasks[0].state, TaskState::Queued);
        assert_eq!(v.tasks[0].target, TARGET);
        assert_eq!(v.tasks[0].quorum, 2);
        assert!(
            store
                .version_info("beta", "0.9.0")
                .await
                .unwrap()
                .unwrap()
                .tasks
                .is_empty()
        );
        assert!(
            store
                .version_info("alpha", "0.3.0")
                .await
                .unwrap()
                .unwrap()
                .tasks
                .is_empty()
        );
    }
);

store_test!(
    full_index_mode_plans_every_crate,
    policy = Policy {
        plan_all_crates: true,
        ..Policy::default()
    },
    |store: Store| async move {
        matrix(&store).await;
        store.set_toolchain("nightly", true, t(0)).await.unwrap();
        store.set_toolchain("beta", false, t(0)).await.unwrap();
        let report = store
            .upsert_versions(vec![line("gamma", "1.0.0", false)], t(1))
            .await
            .unwrap();
        assert_eq!(
            report.tasks_planned, 2,
            "one target × two enabled toolchains"
        );
        let names: Vec<String> = store
            .toolchains()
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["1.95.0", "beta", "nightly"]);
    }
);

store_test!(
    a_bad_line_refuses_the_whole_batch,
    |store: Store| async move {
        matrix(&store).await;
        // Names, versions and checksums are types: a line cannot hold a bad one (the one rule
        // each is `buildsrs_domain`'s). What is left to the store is refused here.
        let with_url = |url: &str| IndexVersion {
            download_url: url.to_owned(),
            ..line("ok", "1.0.0", false)
        };
        for bad in [
            with_url(""),
            with_url("file:///etc/passwd"),
            with_url("https://registry.test/dl/ok 1.0.0"),
            with_url(&format!("https://{}", "x".repeat(2100))),
            line_needing("ok", "1.0.0", "1.x"),
            line_needing("ok", "1.0.0", "1.70.0.1"),
            line_needing("ok", "1.0.0", ""),
        ] {
            let error = store
                .upsert_versions(vec![line("fine", "1.0.0", false), bad], t(1))
                .await
                .unwrap_err();
            assert!(matches!(error, StoreError::Invalid(_)), "{error}");
        }
        assert!(store.crate_info("fine").await.unwrap().is_none());
        assert_eq!(store.queue_stats(t(1)).await.unwrap().versions, 0);
        assert!("bad name".parse::<buildsrs_domain::CrateName>().is_err());
        assert!("ABC".parse::<buildsrs_domain::Sha256Digest>().is_err());
    }
);

store_test!(
    yank_cancels_open_tasks_and_unyank_requeues,
    |store: Store| async move {
        let keys = world(&store, 2, 1).await;
        let held = lease(&store, &keys[0], t(10)).await;

        let report = store
            .upsert_versions(vec![line("demo", "1.0.0", true)], t(20))
            .await
            .unwrap();
        assert_eq!(report.versions_yanked, 1);
        assert_eq!(report.tasks_cancelled, 1);
        let task = store.task(held.task_id).await.unwrap().unwrap();
        assert_eq!(task.task.state, TaskState::Cancelled);
        assert_eq!(task.task.reason.as_deref(), Some("version yanked"));
        assert_eq!(task.leases[0].state, LeaseState::Cancelled);
        // The node learns its lease is gone at its next renewal.
        let error = store
            .renew_lease(&keys[0], held.lease_id, held.epoch, t(30))
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::LeaseEnded { .. }), "{error}");
        assert!(store.lease_next(&keys[1], t(30)).await.unwrap().is_none());
        // A result that still comes is recorded, and says why it does not count.
        let late = submit(&store, &held, &keys[0], built(1), t(35)).await;
        assert_eq!(
            (late.late, late.counted, late.not_counted),
            (
                true,
                false,
                Some(NotCounted::TaskCancelled {
                    reason: Some("version yanked".into())
                })
            )
        );

        let report = store
            .upsert_versions(vec![line("demo", "1.0.0", false)], t(40))
            .await
            .unwrap();
        assert_eq!(report.versions_unyanked, 1);
        assert_eq!(report.tasks_requeued, 1);
        assert_eq!(
            store.task(held.task_id).await.unwrap().unwrap().task.state,
            TaskState::Queued
        );
        let again = lease(&store, &keys[1], t(50)).await;
        assert_eq!(again.task_id, held.task_id);
    }
);

// ---- planning: what gets built ---------------------------------------------------------

/// The versions of `name` that have tasks, in store order (newest first seen first).
async fn planned_versions(store: &Store, name: &str) -> Vec<String> {
    let info = store.crate_info(name).await.unwrap().unwrap();
    let mut planned = Vec::new();
    for v in &info.versions {
        let tasks = store
            .version_info(name, &v.version)
            .await
            .unwrap()
            .unwrap()
            .tasks;
        if !tasks.is_empty() {
            planned.push(v.version.to_string());
        }
    }
    planned.sort();
    planned
}

store_test!(
    watching_plans_the_newest_version_not_the_history,
    |store: Store| async move {
        matrix(&store).await;
        store
            .upsert_versions(
                vec![
                    line("tool", "0.9.0", false),
                    line("tool", "1.0.0", false),
                    line("tool", "1.1.0", false),
                    line("tool", "1.10.0", true),
                    line("tool", "2.0.0-rc.1", false),
                    line("tool", "0.8.0", true),
                ],
                t(1),
            )
            .await
            .unwrap();
        // Newest = the highest non-yanked release (1.10.0 is yanked, 2.0.0-rc.1 a pre-release).
        assert_eq!(store.watch_crate("tool", 0, t(2)).await.unwrap(), 1);
        assert_eq!(planned_versions(&store, "tool").await, ["1.1.0"]);
        let info = store.crate_info("tool").await.unwrap().unwrap();
        assert_eq!((info.watched, info.backfill), (true, 0));
        let plans: Vec<(&str, Option<VersionPlan>)> = info
            .versions
            .iter()
            .map(|v| (v.version.as_str(), v.plan))
            .collect();
        assert_eq!(
            plans,
            [
                ("2.0.0-rc.1", None),
                ("1.10.0", None),
                ("1.1.0", Some(VersionPlan::Matrix)),
                ("1.0.0", None),
                ("0.9.0", None),
                ("0.8.0", None),
            ]
        );

        // Backfill on request: a larger one plans the extra versions, once.
        assert_eq!(store.watch_crate("tool", 2, t(3)).await.unwrap(), 2);
        assert_eq!(store.watch_crate("tool", 2, t(4)).await.unwrap(), 0);
        assert_eq!(store.watch_crate("tool", 1, t(5)).await.unwrap(), 0);
        assert_eq!(
            planned_versions(&store, "tool").await,
            ["0.9.0", "1.0.0", "1.1.0"]
        );
        // A backfill only grows (a smaller one asks for nothing the larger did not).
        assert_eq!(store.crate_info("tool").await.unwrap().unwrap().backfill, 2);

        // What comes next is planned; un-yanking history is not.
        let report = store
            .upsert_versions(
                vec![line("tool", "1.2.0", false), line("tool", "0.8.0", false)],
                t(6),
            )
            .await
            .unwrap();
        assert_eq!((report.versions_unyanked, report.tasks_planned), (1, 1));
        assert_eq!(
            planned_versions(&store, "tool").await,
            ["0.9.0", "1.0.0", "1.1.0", "1.2.0"]
        );
        // Un-yanking the version that was the newest when the crate was watched plans it:
        // it is the newest again.
        let report = store
            .upsert_versions(vec![line("tool", "1.10.0", false)], t(7))
            .await
            .unwrap();
        assert_eq!((report.versions_unyanked, report.tasks_planned), (1, 1));
        assert_eq!(
            planned_versions(&store, "tool").await,
            ["0.9.0", "1.0.0", "1.1.0", "1.10.0", "1.2.0"]
        );
        // Unwatched, nothing new is planned; watching again plans the newest.
        store.unwatch_crate("tool", t(8)).await.unwrap();
        let report = store
            .upsert_versions(vec![line("tool", "1.11.0", false)], t(9))
            .await
            .unwrap();
        assert_eq!(report.tasks_planned, 0);
        assert!(!store.crate_info("tool").await.unwrap().unwrap().watched);
        assert_eq!(store.watch_crate("tool", 0, t(10)).await.unwrap(), 1);
        assert_eq!(
            planned_versions(&store, "tool").await,
            ["0.9.0", "1.0.0", "1.1.0", "1.10.0", "1.11.0", "1.2.0"]
        );
    }
);

store_test!(
    a_crate_watched_before_the_index_shows_it_plans_newest_and_backfill,
    |store: Store| async move {
        matrix(&store).await;
        store
            .set_target("aarch64-unknown-linux-gnu", true, t(0))
            .await
            .unwrap();
        store.set_toolchain("1.90.0", true, t(0)).await.unwrap();
        // Before its first sight: nothing to plan, the backfill is kept.
        assert_eq!(store.watch_crate("ripgrep", 1, t(1)).await.unwrap(), 0);
        let info = store.crate_info("ripgrep").await.unwrap().unwrap();
        assert_eq!((info.backfill, info.versions.len()), (1, 0));
        assert_eq!(store.watch_crate("fd-find", 0, t(1)).await.unwrap(), 0);

        // First sight: the whole history arrives at once, as the follower reports it.
        let mut history: Vec<_> = (0..30)
            .map(|minor| line("ripgrep", &format!("0.{minor}.0"), false))
            .collect();
        history.push(line("ripgrep", "14.1.1", true));
        history.push(line("ripgrep", "14.1.0", false));
        history.push(line("ripgrep", "13.0.0", false));
        history.push(line("ripgrep", "15.0.0-alpha.1", false));
        history.push(line("fd-find", "10.2.0", false));
        history.push(line("fd-find", "9.0.0", false));
        let report = store.upsert_versions(history.clone(), t(2)).await.unwrap();
        // ripgrep: 14.1.0 and one older (13.0.0); fd-find: 10.2.0; × 2 targets × 2 toolchains.
        assert_eq!(report.versions_added, 36);
        assert_eq!(report.tasks_planned, 12);
        assert_eq!(
            planned_versions(&store, "ripgrep").await,
            ["13.0.0", "14.1.0"]
        );
        assert_eq!(planned_versions(&store, "fd-find").await, ["10.2.0"]);

        // After first sight, what the index adds is planned: the next batch again lists the
        // whole history, with a new version and a version that arrives yanked.
        history.push(line("ripgrep", "14.2.0", false));
        history.push(line("ripgrep", "14.1.2", true));
        let report = store.upsert_versions(history.clone(), t(3)).await.unwrap();
        assert_eq!((report.versions_added, report.tasks_planned), (2, 4));
        assert_eq!(
            planned_versions(&store, "ripgrep").await,
            ["13.0.0", "14.1.0", "14.2.0"]
        );
        // The version that arrived yanked was published since watching: un-yanked, it is
        // planned.
        let report = store
            .upsert_versions(vec![line("ripgrep", "14.1.2", false)], t(4))
            .await
            .unwrap();
        assert_eq!(report.tasks_planned, 4);
        assert_eq!(
            store
                .version_info("ripgrep", "14.1.2")
                .await
                .unwrap()
                .unwrap()
                .version
                .plan,
            Some(VersionPlan::Matrix)
        );

        // A crate with only pre-releases builds its highest one.
        store.watch_crate("next", 0, t(5)).await.unwrap();
        let report = store
            .upsert_versions(
                vec![
                    line("next", "0.1.0-alpha.2", false),
                    line("next", "0.1.0-alpha.10", false),
                    line("next", "0.1.0-alpha.1", false),
                ],
                t(6),
            )
            .await
            .unwrap();
        assert_eq!(report.tasks_planned, 4);
        assert_eq!(planned_versions(&store, "next").await, ["0.1.0-alpha.10"]);
    }
);

store_test!(
    full_index_mode_plans_the_newest_version_of_a_new_crate,
    policy = Policy {
        plan_all_crates: true,
        ..Policy::default()
    },
    |store: Store| async move {
        matrix(&store).await;
        let report = store
            .upsert_versions(
                vec![
                    line("gamma", "1.0.0", false),
                    line("gamma", "1.1.0", false),
                    line("gamma", "0.5.0", false),
                    line("delta", "3.0.0", false),
                ],
                t(1),
            )
            .await
            .unwrap();
        assert_eq!(report.tasks_planned, 2);
        assert_eq!(planned_versions(&store, "gamma").await, ["1.1.0"]);
        // Later versions are planned, a backport below the newest line too.
        let report = store
            .upsert_versions(
                vec![line("gamma", "1.2.0", false), line("gamma", "1.0.1", false)],
                t(2),
            )
            .await
            .unwrap();
        assert_eq!(report.tasks_planned, 2);
        assert_eq!(
            planned_versions(&store, "gamma").await,
            ["1.0.1", "1.1.0", "1.2.0"]
        );
    }
);

store_test!(
    rust_version_skips_old_toolchains_and_notes_why_nothing_was_planned,
    |store: Store| async move {
        matrix(&store).await; // 1.95.0
        store.set_toolchain("1.80.0", true, t(0)).await.unwrap();
        store
            .set_toolchain("nightly-2026-01-01", true, t(0))
            .await
            .unwrap();
        store.watch_crate("modern", 0, t(0)).await.unwrap();
        let report = store
            .upsert_versions(vec![line_needing("modern", "1.0.0", "1.85")], t(1))
            .await
            .unwrap();
        assert_eq!(report.tasks_planned, 2);
        let info = store
            .version_info("modern", "1.0.0")
            .await
            .unwrap()
            .unwrap();
        let toolchains: Vec<&str> = info.tasks.iter().map(|t| t.toolchain.as_str()).collect();
        assert_eq!(toolchains, ["1.95.0", "nightly-2026-01-01"]);
        assert_eq!(info.version.rust_version.as_deref(), Some("1.85"));
        assert_eq!(info.version.plan_note, None);

        // No enabled toolchain is new enough: nothing planned, and the version says why.
        store
            .set_toolchain("nightly-2026-01-01", false, t(2))
            .await
            .unwrap();
        let report = store
            .upsert_versions(vec![line_needing("modern", "1.1.0", "1.96")], t(3))
            .await
            .unwrap();
        assert_eq!(report.tasks_planned, 0);
        let info = store
            .version_info("modern", "1.1.0")
            .await
            .unwrap()
            .unwrap();
        assert!(info.tasks.is_empty());
        assert_eq!(info.version.plan, Some(VersionPlan::Matrix));
        let note = "needs Rust 1.96 or newer; enabled toolchains: 1.80.0, 1.95.0";
        assert_eq!(info.version.plan_note.as_deref(), Some(note));
        let summary = store.crate_info("modern").await.unwrap().unwrap().versions;
        assert_eq!(summary[0].plan_note.as_deref(), Some(note));
        let stats = store.queue_stats(t(3)).await.unwrap();
        assert_eq!((stats.queued, stats.failed, stats.cancelled), (2, 0, 0));

        // A newer toolchain and a new watch request plan it, and the note goes.
        store.set_toolchain("1.96.0", true, t(4)).await.unwrap();
        assert_eq!(store.watch_crate("modern", 0, t(5)).await.unwrap(), 1);
        let info = store
            .version_info("modern", "1.1.0")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(info.tasks.len(), 1);
        assert_eq!(info.tasks[0].toolchain, "1.96.0");
        assert_eq!(info.version.plan_note, None);
    }
);

store_test!(
    a_crate_without_binaries_gets_a_probe_and_the_matrix_once_it_builds,
    |store: Store| async move {
        const OTHER: &str = "aarch64-unknown-linux-gnu";
        matrix(&store).await;
        store.set_target(OTHER, true, t(0)).await.unwrap();
        let keys = [builder(&store, 1).await, builder(&store, 2).await];
        store.watch_crate("lib-only", 0, t(0)).await.unwrap();
        let report = store
            .upsert_versions(vec![line("lib-only", "0.1.0", false)], t(1))
            .await
            .unwrap();
        assert_eq!(report.tasks_planned, 2, "two targets");
        assert_eq!(
            store
                .crate_info("lib-only")
                .await
                .unwrap()
                .unwrap()
                .binaries,
            None
        );

        // Both builders (built for the first target only) say: no binaries.
        for (i, key) in keys.iter().enumerate() {
            let held = lease(&store, key, t(2)).await;
            let report = submit(
                &store,
                &held,
                key,
                BuildOutcome::no_binaries(""),
                t(3 + i as i64),
            )
            .await;
            assert_eq!(report.not_counted, None);
        }
        let first = store
            .version_info("lib-only", "0.1.0")
            .await
            .unwrap()
            .unwrap();
        let states: Vec<(&str, TaskState)> = first
            .tasks
            .iter()
            .map(|t| (t.target.as_str(), t.state))
            .collect();
        assert_eq!(
            states,
            [(OTHER, TaskState::Queued), (TARGET, TaskState::NoBinaries)]
        );
        assert_eq!(
            store
                .crate_info("lib-only")
                .await
                .unwrap()
                .unwrap()
                .binaries,
            Some(false)
        );

        // The next version gets one probe task, not the matrix.
        let report = store
            .upsert_versions(vec![line("lib-only", "0.2.0", false)], t(10))
            .await
            .unwrap();
        assert_eq!(report.tasks_planned, 1);
        let second = store
            .version_info("lib-only", "0.2.0")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(second.version.plan, Some(VersionPlan::Probe));
        let probe: Vec<(&str, &str)> = second
            .tasks
            .iter()
            .map(|t| (t.target.as_str(), t.toolchain.as_str()))
            .collect();
        assert_eq!(probe, [(TARGET, TOOLCHAIN)]);

        // It does build: the other target's task appears, and the crate has binaries again.
        let held = lease(&store, &keys[0], t(11)).await;
        assert_eq!(held.version, "0.2.0");
        let report = submit(&store, &held, &keys[0], built(7), t(12)).await;
        assert!(report.counted);
        let second = store
            .version_info("lib-only", "0.2.0")
            .await
            .unwrap()
            .unwrap();
        let targets: Vec<(&str, TaskState)> = second
            .tasks
            .iter()
            .map(|t| (t.target.as_str(), t.state))
            .collect();
        assert_eq!(
            targets,
            [(OTHER, TaskState::Queued), (TARGET, TaskState::Queued)]
        );
        assert_eq!(second.version.plan, Some(VersionPlan::Matrix));
        assert_eq!(
            store
                .crate_info("lib-only")
                .await
                .unwrap()
                .unwrap()
                .binaries,
            Some(true)
        );
        // And a later version gets the whole matrix again.
        let report = store
            .upsert_versions(vec![line("lib-only", "0.3.0", false)], t(13))
            .await
            .unwrap();
        assert_eq!(report.tasks_planned, 2);
    }
);

store_test!(
    a_verified_decision_marks_the_crate_as_having_binaries,
    |store: Store| async move {
        let keys = world(&store, 2, 1).await;
        for key in &keys {
            let held = lease(&store, key, t(1)).await;
            submit(&store, &held, key, built(1), t(2)).await;
        }
        assert_eq!(
            store.crate_info("demo").await.unwrap().unwrap().binaries,
            Some(true)
        );
    }
);

// ---- leasing ----------------------------------------------------------------------------

store_test!(only_approved_builders_get_work, |store: Store| async move {
    world(&store, 0, 1).await;
    let pending = buildsrs_store::testing::register(&store, 7, "newcomer", t(1)).await;
    let before = store.builder(&pending).await.unwrap().unwrap();
    let error = store.lease_next(&pending, t(2)).await.unwrap_err();
    assert!(matches!(error, StoreError::NotApproved { .. }), "{error}");
    let after = store.builder(&pending).await.unwrap().unwrap();
    assert_eq!(
        after.last_seen, before.last_seen,
        "a refused request writes nothing"
    );
    let error = store.lease_next(&key(99), t(2)).await.unwrap_err();
    assert!(matches!(error, StoreError::NotFound(_)), "{error}");

    store.approve_builder(&pending, t(3)).await.unwrap();
    assert!(store.lease_next(&pending, t(4)).await.unwrap().is_some());

    store.revoke_builder(&pending, "test", t(5)).await.unwrap();
    let error = store.lease_next(&pending, t(6)).await.unwrap_err();
    assert!(matches!(error, StoreError::NotApproved { .. }), "{error}");
    let error = store.approve_builder(&pending, t(7)).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error}");
    assert_eq!(
        store.builder(&pending).await.unwrap().unwrap().status,
        BuilderStatus::Revoked
    );
});

store_test!(
    leases_match_target_and_toolchain,
    |store: Store| async move {
        world(&store, 0, 1).await;
        let other = key(8);
        store
            .register_builder(
                NewBuilder {
                    public_key: other,
                    name: "arm".into(),
                    targets: vec!["aarch64-unknown-linux-gnu".parse().unwrap()],
                    toolchains: vec![TOOLCHAIN.parse().unwrap()],
                    capacity: 8,
                },
                t(1),
            )
            .await
            .unwrap();
        store.approve_builder(&other, t(1)).await.unwrap();
        assert!(store.lease_next(&other, t(2)).await.unwrap().is_none());

        // It learns the right target: re-registering updates capabilities, not status.
        let info = store
            .register_builder(
                NewBuilder {
                    public_key: other,
                    name: "arm-and-x86".into(),
                    targets: vec![
                        "aarch64-unknown-linux-gnu".parse().unwrap(),
                        TARGET.parse().unwrap(),
                    ],
                    toolchains: vec![TOOLCHAIN.parse().unwrap()],
                    capacity: 8,
                },
                t(3),
            )
            .await
            .unwrap();
        assert_eq!(info.status, BuilderStatus::Approved);
        assert_eq!(info.targets.len(), 2);

        // A disabled target's tasks are not leased.
        store.set_target(TARGET, false, t(4)).await.unwrap();
        assert!(store.lease_next(&other, t(5)).await.unwrap().is_none());
        store.set_target(TARGET, true, t(6)).await.unwrap();
        let lease = lease(&store, &other, t(7)).await;
        assert_eq!(
            (lease.crate_name.as_str(), lease.version.as_str()),
            ("demo", "1.0.0")
        );
        assert_eq!(lease.target, TARGET);
        assert_eq!(lease.toolchain, TOOLCHAIN);
        let stored = store.version_info("demo", "1.0.0").await.unwrap().unwrap();
        assert_eq!(lease.cksum, stored.version.cksum);
    }
);

store_test!(
    lease_limit_is_quorum_plus_extra,
    |store: Store| async move {
        // Default policy: quorum 2, one extra lease.
        let keys = world(&store, 5, 1).await;
        let first = lease(&store, &keys[0], t(1)).await;
        // The same builder never holds two leases on one task.
        assert!(store.lease_next(&keys[0], t(1)).await.unwrap().is_none());
        let second = lease(&store, &keys[1], t(1)).await;
        let third = lease(&store, &keys[2], t(1)).await;
        assert!(first.epoch < second.epoch && second.epoch < third.epoch);
        assert!(store.lease_next(&keys[3], t(1)).await.unwrap().is_none());
        let task = store.task(first.task_id).await.unwrap().unwrap();
        assert_eq!(task.task.active_leases, 3);
        assert_eq!(task.task.state, TaskState::Building);
    }
);

store_test!(priority_first_then_age, |store: Store| async move {
    let keys = world(&store, 1, 3).await;
    let newest = store
        .version_info("demo", "1.2.0")
        .await
        .unwrap()
        .unwrap()
        .tasks[0]
        .id;
    store.set_task_priority(newest, 5, t(1)).await.unwrap();
    let order: Vec<String> = {
        let mut order = Vec::new();
        while let Some(lease) = store.lease_next(&keys[0], t(2)).await.unwrap() {
            order.push(lease.version.to_string());
        }
        order
    };
    assert_eq!(order, ["1.2.0", "1.0.0", "1.1.0"]);
    let error = store
        .set_task_priority(buildsrs_store::TaskId(999_999), 1, t(3))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::NotFound(_)));
});

store_test!(
    renewal_checks_holder_epoch_and_deadline,
    |store: Store| async move {
        let keys = world(&store, 2, 1).await;
        let held = lease(&store, &keys[0], t(0)).await;
        let lease_secs = store.policy().lease_duration.as_secs() as i64;
        assert_eq!(held.deadline, t(lease_secs));

        let renewed = store
            .renew_lease(&keys[0], held.lease_id, held.epoch, t(100))
            .await
            .unwrap();
        assert_eq!(renewed, t(100 + lease_secs));

        let error = store
            .renew_lease(&keys[0], held.lease_id, held.epoch + 1, t(101))
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::StaleEpoch { .. }), "{error}");
        let error = store
            .renew_lease(&keys[1], held.lease_id, held.epoch, t(101))
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::Conflict(_)), "{error}");
        let error = store
            .renew_lease(&keys[0], buildsrs_store::LeaseId(424_242), 1, t(101))
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::NotFound(_)), "{error}");
        // Past the deadline, even before the sweeper ran.
        let error = store
            .renew_lease(&keys[0], held.lease_id, held.epoch, t(100 + lease_secs))
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::LeaseEnded { .. }), "{error}");
        // The refused renewals changed nothing.
        let detail = store.task(held.task_id).await.unwrap().unwrap();
        assert_eq!(detail.leases[0].deadline, renewed);
    }
);

store_test!(
    a_builder_holds_no_more_leases_than_it_runs_jobs,
    |store: Store| async move {
        let keys = world(&store, 1, 3).await;
        let register = |capacity| NewBuilder {
            public_key: keys[0],
            name: "one-at-a-time".into(),
            targets: vec![TARGET.parse().unwrap()],
            toolchains: vec![TOOLCHAIN.parse().unwrap()],
            capacity,
        };
        store.register_builder(register(1), t(1)).await.unwrap();
        let first = lease(&store, &keys[0], t(2)).await;
        assert!(store.lease_next(&keys[0], t(3)).await.unwrap().is_none());
        submit(&store, &first, &keys[0], built(1), t(4)).await;
        let second = lease(&store, &keys[0], t(5)).await;
        assert_ne!(second.task_id, first.task_id);
        // Saying it runs two jobs gets it a second lease beside the first.
        store.register_builder(register(2), t(6)).await.unwrap();
        lease(&store, &keys[0], t(7)).await;
        assert!(store.lease_next(&keys[0], t(8)).await.unwrap().is_none());
        for bad in [0, buildsrs_store::MAX_BUILDER_CAPACITY + 1] {
            let error = store
                .register_builder(register(bad), t(9))
                .await
                .unwrap_err();
            assert!(matches!(error, StoreError::Invalid(_)), "{bad}: {error}");
        }
    }
);

store_test!(
    renewals_end_at_the_maximum_lease_lifetime,
    policy = Policy {
        lease_duration: Duration::from_secs(600),
        max_lease_lifetime: Duration::from_secs(1500),
        ..Policy::default()
    },
    |store: Store| async move {
        // A builder that renews for ever does not hold the task for ever.
        let keys = world(&store, 1, 1).await;
        let held = lease(&store, &keys[0], t(0)).await;
        let renew = |at| store.renew_lease(&keys[0], held.lease_id, held.epoch, t(at));
        assert_eq!(renew(540).await.unwrap(), t(1140));
        assert_eq!(
            renew(1080).await.unwrap(),
            t(1500),
            "the last renewal runs to the end"
        );
        assert_eq!(renew(1400).await.unwrap(), t(1500));
        let error = renew(1500).await.unwrap_err();
        assert!(matches!(error, StoreError::LeaseEnded { .. }), "{error}");
        // The sweeper ends it at its last deadline, and the task is leased again.
        let report = store.expire_leases(t(1501)).await.unwrap();
        assert_eq!(report.expired, 1, "{report:?}");
        let detail = store.task(held.task_id).await.unwrap().unwrap();
        assert_eq!(detail.task.state, TaskState::Queued);
        assert_eq!(detail.leases[0].deadline, t(1500));
    }
);

store_test!(
    expiry_requeues_with_backoff,
    policy = Policy {
        backoff_base: Duration::from_secs(60),
        backoff_max: Duration::from_secs(3600),
        ..Policy::default()
    },
    |store: Store| async move {
        let keys = world(&store, 1, 1).await;
        let held = lease(&store, &keys[0], t(0)).await;
        let deadline = held.deadline.as_second() - 1_700_000_000;

        let report = store.expire_leases(t(deadline - 1)).await.unwrap();
        assert_eq!(report.expired, 0);
        let report = store.expire_leases(t(deadline)).await.unwrap();
        assert_eq!((report.expired, report.requeued, report.stopped), (1, 1, 0));

        let task = store.task(held.task_id).await.unwrap().unwrap();
        assert_eq!(task.task.state, TaskState::Queued);
        assert_eq!(task.task.attempts, 1);
        assert_eq!(task.task.not_before, t(deadline + 60));
        assert_eq!(task.leases[0].state, LeaseState::Expired);
        assert_eq!(store.builder(&keys[0]).await.unwrap().unwrap().failed, 1);

        // Backing off: nothing to lease until not_before.
        assert!(
            store
                .lease_next(&keys[0], t(deadline + 59))
                .await
                .unwrap()
                .is_none()
        );
        let stats = store.queue_stats(t(deadline + 59)).await.unwrap();
        assert_eq!((stats.queued, stats.ready), (1, 0));
        let again = lease(&store, &keys[0], t(deadline + 60)).await;
        assert!(
            again.epoch > held.epoch,
            "a new lease has a newer fencing epoch"
        );

        // Second failure: the backoff doubles.
        let deadline2 = again.deadline.as_second() - 1_700_000_000;
        store.expire_leases(t(deadline2)).await.unwrap();
        let task = store.task(held.task_id).await.unwrap().unwrap();
        assert_eq!(task.task.not_before, t(deadline2 + 120));
    }
);

store_test!(
    node_errors_stop_a_task_after_the_limit_without_failing_it,
    policy = Policy {
        max_node_failures: 2,
        backoff_base: Duration::from_secs(10),
        ..Policy::default()
    },
    |store: Store| async move {
        let keys = world(&store, 2, 1).await;
        let first = lease(&store, &keys[0], t(0)).await;
        let report = submit(
            &store,
            &first,
            &keys[0],
            BuildOutcome::node_error("disk full"),
            t(1),
        )
        .await;
        assert!(!report.counted);
        assert_eq!(report.not_counted, Some(NotCounted::NodeError));
        assert_eq!(report.task_state, TaskState::Queued);

        // A node error bars its builder from the task: one builder cannot fail a task over
        // and over until it stops.
        assert!(store.lease_next(&keys[0], t(11)).await.unwrap().is_none());
        let second = lease(&store, &keys[1], t(11)).await;
        assert_eq!(second.task_id, first.task_id);
        let report = submit(
            &store,
            &second,
            &keys[1],
            BuildOutcome::node_error("sandbox crashed"),
            t(12),
        )
        .await;
        assert_eq!(report.task_state, TaskState::Cancelled);
        let task = store.task(first.task_id).await.unwrap().unwrap().task;
        assert_eq!(task.state, TaskState::Cancelled);
        let reason = task.reason.unwrap();
        assert!(reason.contains("2 node-side failures"), "{reason}");
        assert!(reason.contains("sandbox crashed"), "{reason}");
        assert!(store.lease_next(&keys[0], t(100)).await.unwrap().is_none());
        assert_eq!(store.builder(&keys[0]).await.unwrap().unwrap().failed, 1);

        // An operator can give it a fresh budget, and forgives the builders.
        store.retry_task(first.task_id, t(200)).await.unwrap();
        assert_eq!(lease(&store, &keys[0], t(200)).await.task_id, first.task_id);
        let error = store.retry_task(first.task_id, t(201)).await.unwrap_err();
        assert!(matches!(error, StoreError::Conflict(_)), "{error}");
    }
);

store_test!(
    one_builder_cannot_stop_a_task_by_letting_its_leases_expire,
    policy = Policy {
        max_node_failures: 2,
        backoff_base: Duration::from_secs(10),
        lease_duration: Duration::from_secs(60),
        ..Policy::default()
    },
    |store: Store| async move {
        // Quorum 2: failures of one builder alone, however many, never stop the task.
        let keys = world(&store, 2, 1).await;
        let mut at = 0;
        for _ in 0..4 {
            let held = lease(&store, &keys[0], t(at)).await;
            at += 61;
            let report = store.expire_leases(t(at)).await.unwrap();
            assert_eq!((report.expired, report.stopped), (1, 0), "{report:?}");
            let task = store.task(held.task_id).await.unwrap().unwrap().task;
            assert_eq!(task.state, TaskState::Queued);
            at += 3600;
        }
        // A second builder's failure makes two distinct ones: now it stops.
        let held = lease(&store, &keys[1], t(at)).await;
        let report = store.expire_leases(t(at + 61)).await.unwrap();
        assert_eq!(report.stopped, 1, "{report:?}");
        let task = store.task(held.task_id).await.unwrap().unwrap().task;
        assert_eq!(task.state, TaskState::Cancelled);
    }
);

// ---- operators -------------------------------------------------------------------------

/// Registers builder `n` and approves it as run by `operator`, at `t(0)`.
async fn builder_of(store: &Store, n: u8, operator: &str) -> buildsrs_keys::PublicKey {
    let key = buildsrs_store::testing::register(store, n, &format!("builder-{n}"), t(0)).await;
    store
        .approve_builder_as(&key, &operator.parse().unwrap(), t(0))
        .await
        .unwrap();
    key
}

store_test!(
    keys_of_one_operator_count_once_toward_quorum,
    policy = Policy {
        lease_duration: Duration::from_secs(60),
        backoff_base: Duration::from_secs(10),
        ..Policy::default()
    },
    |store: Store| async move {
        // Mallory runs two approved keys and makes both report the same (made-up) hash.
        // Quorum 2 means two operators agreeing: her keys together are one.
        world(&store, 0, 1).await;
        let m1 = builder_of(&store, 1, "mallory").await;
        let m2 = builder_of(&store, 2, "mallory").await;
        let first = lease(&store, &m1, t(0)).await;
        // While one of her keys holds the task, the other is not leased it.
        assert!(store.lease_next(&m2, t(1)).await.unwrap().is_none());
        // The first lease runs out; her second key takes the task; the first key's result
        // comes in late (it counts: the key's first), then the second key's.
        store.expire_leases(t(61)).await.unwrap();
        let second = lease(&store, &m2, t(1000)).await;
        assert_eq!(second.task_id, first.task_id);
        let report = submit(&store, &first, &m1, built(1), t(1001)).await;
        assert!(report.late && report.counted);
        let report = submit(&store, &second, &m2, built(1), t(1002)).await;
        assert!(!report.counted);
        assert_eq!(
            report.not_counted,
            Some(NotCounted::OperatorAlreadyCounted {
                operator: "mallory".parse().unwrap()
            })
        );
        assert_eq!(report.task_state, TaskState::Queued);
        // What users see: the task is not verified, no artifact is, nothing is published.
        let task = store.task(first.task_id).await.unwrap().unwrap();
        assert_eq!(task.task.state, TaskState::Queued);
        assert_eq!(task.task.counted, 1);
        assert_eq!(task.task.artifact, None);
        assert!(store.artifact(&artifact(1).blake3).await.unwrap().is_none());
        assert!(
            store
                .artifacts_awaiting_storage(10, jiff::Timestamp::MAX)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(store.recently_verified(10).await.unwrap().is_empty());
        // Her keys are not leased it again: their results could not count.
        for key in [&m1, &m2] {
            assert!(store.lease_next(key, t(2000)).await.unwrap().is_none());
        }

        // A key of another operator that agrees makes two operators: verified.
        let alice = builder_of(&store, 3, "alice").await;
        let third = lease(&store, &alice, t(2000)).await;
        assert_eq!(third.task_id, first.task_id);
        let report = submit(&store, &third, &alice, built(1), t(2001)).await;
        assert!(report.counted);
        assert_eq!(report.task_state, TaskState::Verified);
        let task = store.task(first.task_id).await.unwrap().unwrap().task;
        assert_eq!(task.artifact, Some(artifact(1)));
    }
);

store_test!(
    a_key_is_not_leased_what_its_operator_holds_or_answered,
    |store: Store| async move {
        // Default policy: quorum 2 and an extra lease, so three leases of one task at once.
        world(&store, 0, 1).await;
        let m1 = builder_of(&store, 1, "mallory").await;
        let m2 = builder_of(&store, 2, "mallory").await;
        let own = builder(&store, 3).await;
        let other = builder(&store, 4).await;
        let held = lease(&store, &m1, t(1)).await;
        assert!(store.lease_next(&m2, t(1)).await.unwrap().is_none());
        // Keys that are their own operators are not held back by each other.
        assert_eq!(lease(&store, &own, t(1)).await.task_id, held.task_id);
        assert_eq!(lease(&store, &other, t(1)).await.task_id, held.task_id);
        // A node error does not count: after one, another key of the operator may try.
        let report = submit(&store, &held, &m1, BuildOutcome::node_error("disk"), t(2)).await;
        assert_eq!(report.task_state, TaskState::Building);
        let task = store.task(held.task_id).await.unwrap().unwrap().task;
        assert_eq!(
            lease(&store, &m2, task.not_before).await.task_id,
            held.task_id
        );
    }
);

store_test!(
    keys_that_are_their_own_operators_count_apart,
    |store: Store| async move {
        // Approved without an operator (the default, and --auto-approve): each key is its
        // own operator, so two keys agreeing verify as before.
        let keys = world(&store, 2, 1).await;
        for key in &keys {
            assert_eq!(store.builder(key).await.unwrap().unwrap().operator, None);
        }
        let a = lease(&store, &keys[0], t(1)).await;
        submit(&store, &a, &keys[0], built(1), t(2)).await;
        let b = lease(&store, &keys[1], t(1)).await;
        let report = submit(&store, &b, &keys[1], built(1), t(2)).await;
        assert_eq!(report.task_state, TaskState::Verified);
    }
);

store_test!(
    an_operator_is_set_once_at_approval,
    |store: Store| async move {
        matrix(&store).await;
        let key = buildsrs_store::testing::register(&store, 1, "one", t(0)).await;
        assert_eq!(store.builder(&key).await.unwrap().unwrap().operator, None);
        let alice = "alice".parse().unwrap();
        store.approve_builder_as(&key, &alice, t(1)).await.unwrap();
        let info = store.builder(&key).await.unwrap().unwrap();
        assert_eq!(
            (info.status, info.operator.as_ref()),
            (BuilderStatus::Approved, Some(&alice))
        );
        // Approving again changes nothing: as the same operator, or without naming one.
        store.approve_builder_as(&key, &alice, t(2)).await.unwrap();
        store.approve_builder(&key, t(2)).await.unwrap();
        // Another operator is refused: results may have counted as alice's.
        let error = store
            .approve_builder_as(&key, &"bob".parse().unwrap(), t(3))
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::Conflict(_)), "{error}");
        assert!(error.to_string().contains("alice"), "{error}");
        let own = builder(&store, 2).await;
        let error = store
            .approve_builder_as(&own, &alice, t(3))
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::Conflict(_)), "{error}");
        assert_eq!(store.builder(&own).await.unwrap().unwrap().operator, None);
        assert_eq!(
            store.builder(&key).await.unwrap().unwrap().operator,
            Some(alice)
        );
    }
);

store_test!(
    one_operator_cannot_stop_a_task_with_two_keys,
    policy = Policy {
        max_node_failures: 2,
        backoff_base: Duration::from_secs(10),
        ..Policy::default()
    },
    |store: Store| async move {
        world(&store, 0, 1).await;
        let m1 = builder_of(&store, 1, "mallory").await;
        let m2 = builder_of(&store, 2, "mallory").await;
        let first = lease(&store, &m1, t(0)).await;
        let report = submit(&store, &first, &m1, BuildOutcome::node_error("x"), t(1)).await;
        assert_eq!(report.task_state, TaskState::Queued);
        let second = lease(&store, &m2, t(100)).await;
        assert_eq!(second.task_id, first.task_id);
        let report = submit(&store, &second, &m2, BuildOutcome::node_error("y"), t(101)).await;
        // Two keys' failures, one operator's: the task goes on.
        assert_eq!(report.task_state, TaskState::Queued);
        // A second operator's failure stops it.
        let other = builder(&store, 3).await;
        let third = lease(&store, &other, t(1000)).await;
        let report = submit(
            &store,
            &third,
            &other,
            BuildOutcome::node_error("z"),
            t(1001),
        )
        .await;
        assert_eq!(report.task_state, TaskState::Cancelled);
    }
);

store_test!(builder_names_follow_one_rule, |store: Store| async move {
    // A builder names itself. The name goes into the served keyring, one line per key
    // (`<key> <name> [revoked]`): a name with a space or a line break would add words or
    // lines to it, for every user of the keyring.
    matrix(&store).await;
    let victim = key(9);
    let hello = |n: u8, name: &str| NewBuilder {
        public_key: key(n),
        name: name.to_owned(),
        targets: vec![TARGET.parse().unwrap()],
        toolchains: vec![TOOLCHAIN.parse().unwrap()],
        capacity: 1,
    };
    let attacks = [
        "x revoked".to_owned(),
        "x\nrevoked".to_owned(),
        format!("x\n{victim} victim revoked"),
        "x # comment".to_owned(),
        "x\u{a0}revoked".to_owned(),
        "x+y".to_owned(),
        String::new(),
        "y".repeat(65),
    ];
    for name in &attacks {
        let error = store
            .register_builder(hello(3, name), t(1))
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::Invalid(_)), "{name:?}: {error}");
        assert!(error.to_string().contains("builder name"), "{error}");
    }
    assert!(store.builders().await.unwrap().is_empty(), "nothing stored");
    // A known builder cannot rename itself so either; it keeps its name.
    store
        .register_builder(hello(4, "build-01.example.org"), t(2))
        .await
        .unwrap();
    for name in &attacks {
        let error = store
            .register_builder(hello(4, name), t(3))
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::Invalid(_)), "{name:?}: {error}");
    }
    let info = store.builder(&key(4)).await.unwrap().unwrap();
    assert_eq!(info.name, "build-01.example.org");
});

// ---- results and decisions -------------------------------------------------------------

store_test!(
    quorum_of_agreeing_builders_verifies,
    |store: Store| async move {
        let keys = world(&store, 3, 1).await;
        let a = lease(&store, &keys[0], t(1)).await;
        let b = lease(&store, &keys[1], t(1)).await;
        let c = lease(&store, &keys[2], t(1)).await;

        let report = submit(&store, &a, &keys[0], built(1), t(2)).await;
        assert!(report.counted && !report.late);
        assert_eq!(
            report.decision,
            Some(Decision::Pending {
                counted: 1,
                wanted: 2
            })
        );
        // A builder never gets a task it delivered a result for.
        assert!(store.lease_next(&keys[0], t(2)).await.unwrap().is_none());

        let report = submit(&store, &b, &keys[1], built(1), t(3)).await;
        assert_eq!(
            report.decision,
            Some(Decision::Verified {
                artifact: artifact(1)
            })
        );
        assert_eq!(report.task_state, TaskState::Verified);

        // The extra lease was cancelled; its late result is recorded and credited.
        let error = store
            .renew_lease(&keys[2], c.lease_id, c.epoch, t(4))
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::LeaseEnded { .. }), "{error}");
        let report = submit(&store, &c, &keys[2], built(1), t(5)).await;
        assert!(report.late && report.counted);
        assert_eq!(report.decision, None);

        let info = store.artifact(&artifact(1).blake3).await.unwrap().unwrap();
        assert_eq!(info.artifact, artifact(1));
        assert_eq!(info.verified_at, Some(t(3)));
        assert_eq!(info.tasks.len(), 1);
        assert_eq!(info.attestations.len(), 3);
        assert!(info.attestations.iter().all(|a| a.signed.is_some()));
        let recent = store.recently_verified(10).await.unwrap();
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0].artifact, artifact(1));
        for k in &keys {
            let b = store.builder(k).await.unwrap().unwrap();
            assert_eq!((b.built, b.agreed, b.outvoted), (1, 1, 0), "{}", b.name);
        }
        let stats = store.queue_stats(t(6)).await.unwrap();
        assert_eq!((stats.verified, stats.artifacts_verified), (1, 1));
        assert_eq!(stats.active_leases, 0);
    }
);

store_test!(a_late_result_counts_once, |store: Store| async move {
    let keys = world(&store, 2, 1).await;
    let old = lease(&store, &keys[0], t(0)).await;
    let deadline = old.deadline.as_second() - 1_700_000_000;
    store.expire_leases(t(deadline)).await.unwrap();
    let backoff = store.policy().backoff_base.as_secs() as i64;
    let new = lease(&store, &keys[0], t(deadline + backoff)).await;
    assert!(new.epoch > old.epoch);

    // The old lease's result arrives: recorded, and it counts (the builder's first).
    let late = submit(&store, &old, &keys[0], built(1), t(deadline + backoff + 1)).await;
    assert!(late.late && late.counted);
    assert_eq!(late.not_counted, None);
    // Then the new lease's: recorded, not counted again.
    let second = submit(&store, &new, &keys[0], built(1), t(deadline + backoff + 2)).await;
    assert!(!second.late && !second.counted);
    assert_eq!(second.not_counted, Some(NotCounted::AlreadyCounted));
    let task = store.task(old.task_id).await.unwrap().unwrap();
    assert_eq!(task.task.counted, 1);
    assert_eq!(task.task.state, TaskState::Queued);
    assert_eq!(task.results.len(), 2);

    // Quorum needs a second builder.
    let other = lease(&store, &keys[1], t(deadline + backoff + 3)).await;
    let report = submit(
        &store,
        &other,
        &keys[1],
        built(1),
        t(deadline + backoff + 4),
    )
    .await;
    assert_eq!(report.task_state, TaskState::Verified);
});

store_test!(
    disagreement_schedules_extra_builds_and_counts_the_outvoted,
    policy = Policy {
        extra_leases: 0,
        max_extra_builds: 2,
        ..Policy::default()
    },
    |store: Store| async move {
        let keys = world(&store, 4, 1).await;
        let a = lease(&store, &keys[0], t(1)).await;
        let b = lease(&store, &keys[1], t(1)).await;
        assert!(store.lease_next(&keys[2], t(1)).await.unwrap().is_none());
        submit(&store, &a, &keys[0], built(1), t(2)).await;
        let report = submit(&store, &b, &keys[1], built(2), t(3)).await;
        assert_eq!(
            report.decision,
            Some(Decision::Mismatch {
                wanted: 3,
                exhausted: false
            })
        );
        assert_eq!(report.task_state, TaskState::Mismatch);
        let task = store.task(a.task_id).await.unwrap().unwrap().task;
        assert!(task.reason.unwrap().contains("disagree"));

        // One extra build is leased, and it breaks the tie.
        let c = lease(&store, &keys[2], t(4)).await;
        assert!(store.lease_next(&keys[3], t(4)).await.unwrap().is_none());
        let report = submit(&store, &c, &keys[2], built(1), t(5)).await;
        assert_eq!(report.task_state, TaskState::Verified);
        let counts = |n: usize| {
            let store = store.clone();
            let key = keys[n];
            async move {
                let b = store.builder(&key).await.unwrap().unwrap();
                (b.agreed, b.outvoted)
            }
        };
        assert_eq!(counts(0).await, (1, 0));
        assert_eq!(counts(1).await, (0, 1));
        assert_eq!(counts(2).await, (1, 0));
    }
);

store_test!(
    mismatch_is_final_at_the_extra_build_limit,
    policy = Policy {
        extra_leases: 0,
        max_extra_builds: 1,
        ..Policy::default()
    },
    |store: Store| async move {
        let keys = world(&store, 4, 1).await;
        for (n, key) in keys.iter().take(2).enumerate() {
            let l = lease(&store, key, t(1)).await;
            submit(&store, &l, key, built(n as u8 + 1), t(2)).await;
        }
        let c = lease(&store, &keys[2], t(3)).await;
        let report = submit(&store, &c, &keys[2], built(3), t(4)).await;
        assert_eq!(
            report.decision,
            Some(Decision::Mismatch {
                wanted: 3,
                exhausted: true
            })
        );
        let task = store.task(c.task_id).await.unwrap().unwrap().task;
        assert_eq!(task.state, TaskState::Mismatch);
        assert_eq!(task.decided_at, Some(t(4)));
        assert!(store.lease_next(&keys[3], t(5)).await.unwrap().is_none());
        // No winner, so nobody is outvoted.
        assert_eq!(store.builder(&keys[0]).await.unwrap().unwrap().outvoted, 0);
    }
);

store_test!(
    agreed_failures_fail_or_find_no_binaries,
    |store: Store| async move {
        let keys = world(&store, 2, 2).await;
        // Version 1.0.0: does not build (two kinds of failure still agree).
        let a = lease(&store, &keys[0], t(1)).await;
        let b = lease(&store, &keys[1], t(1)).await;
        assert_eq!(a.task_id, b.task_id);
        let fail = BuildOutcome::build_failed("error[E0425]: cannot find value");
        assert_eq!(
            submit(&store, &a, &keys[0], fail, t(2)).await.task_state,
            TaskState::Building,
            "the other builder is still at it"
        );
        let report = submit(&store, &b, &keys[1], BuildOutcome::timed_out(""), t(3)).await;
        assert_eq!(report.task_state, TaskState::Failed);
        let Some(Decision::Failed { reason }) = report.decision else {
            panic!("{report:?}");
        };
        assert!(
            reason.contains("build failed ×1") && reason.contains("timed out ×1"),
            "{reason}"
        );
        assert!(reason.contains("E0425"), "{reason}");

        // Version 1.1.0: no binaries.
        let a = lease(&store, &keys[0], t(4)).await;
        let b = lease(&store, &keys[1], t(4)).await;
        submit(&store, &a, &keys[0], BuildOutcome::no_binaries(""), t(5)).await;
        let report = submit(&store, &b, &keys[1], BuildOutcome::no_binaries(""), t(6)).await;
        assert_eq!(report.decision, Some(Decision::NoBinaries));
        let stats = store.queue_stats(t(7)).await.unwrap();
        assert_eq!((stats.failed, stats.no_binaries), (1, 1));
    }
);

store_test!(
    the_submitters_check_sees_the_leased_task_and_its_refusal_changes_nothing,
    |store: Store| async move {
        let keys = world(&store, 2, 1).await;
        let held = lease(&store, &keys[0], t(1)).await;
        let submission = || Submission {
            lease_id: held.lease_id,
            epoch: held.epoch,
            builder: keys[0],
            outcome: built(1),
            log: None,
        };
        // The check runs in the submit transaction and sees what the lease is for.
        let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
        let recorder = std::sync::Arc::clone(&seen);
        let error = store
            .submit_checked(submission(), t(2), move |task| {
                *recorder.lock().unwrap() = Some(task.clone());
                Err("the attestation describes another crate".into())
            })
            .await
            .unwrap_err();
        assert!(matches!(&error, StoreError::Refused(why) if why.contains("another crate")));
        let task = seen.lock().unwrap().take().expect("the check ran");
        assert_eq!(task.task_id, held.task_id);
        assert_eq!(
            (&task.crate_name, &task.version, &task.cksum),
            (&held.crate_name, &held.version, &held.cksum)
        );
        assert_eq!(
            (&task.target, &task.toolchain),
            (&held.target, &held.toolchain)
        );
        // The refusal recorded nothing and left the lease as it was.
        let detail = store.task(held.task_id).await.unwrap().unwrap();
        assert!(detail.results.is_empty());
        assert_eq!(detail.leases[0].state, LeaseState::Active);
        // A check that passes records the result, and the report names the task.
        let report = store
            .submit_checked(submission(), t(3), |_| Ok(()))
            .await
            .unwrap();
        assert!(report.counted);
        assert_eq!(report.task, task);
    }
);

store_test!(
    results_are_checked_and_deduplicated,
    |store: Store| async move {
        let keys = world(&store, 2, 1).await;
        let held = lease(&store, &keys[0], t(1)).await;
        let submission = |builder, epoch, outcome| Submission {
            lease_id: held.lease_id,
            epoch,
            builder,
            outcome,
            log: None,
        };
        let error = store
            .submit(submission(keys[0], held.epoch + 7, built(1)), t(2))
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::StaleEpoch { .. }), "{error}");
        let error = store
            .submit(submission(keys[1], held.epoch, built(1)), t(2))
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::Conflict(_)), "{error}");
        let empty_signature = BuildOutcome::Built(StoredBuild {
            artifact: artifact(1),
            signed: Vec::new(),
        });
        let error = store
            .submit(submission(keys[0], held.epoch, empty_signature), t(2))
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::Invalid(_)), "{error}");
        // None of that changed anything.
        let detail = store.task(held.task_id).await.unwrap().unwrap();
        assert!(detail.results.is_empty());
        assert_eq!(detail.leases[0].state, LeaseState::Active);

        let first = store
            .submit(submission(keys[0], held.epoch, built(1)), t(3))
            .await
            .unwrap();
        let retry = store
            .submit(submission(keys[0], held.epoch, built(1)), t(4))
            .await
            .unwrap();
        assert!(retry.duplicate);
        assert_eq!(retry.attestation_id, first.attestation_id);
        // The first counted, and so does its repetition's answer.
        assert_eq!((first.counted, first.not_counted.clone()), (true, None));
        assert_eq!((retry.counted, retry.not_counted), (true, None));
        assert_eq!(
            store
                .task(held.task_id)
                .await
                .unwrap()
                .unwrap()
                .results
                .len(),
            1
        );
    }
);

store_test!(
    build_logs_keep_their_end,
    policy = Policy {
        max_log_bytes: 8,
        ..Policy::default()
    },
    |store: Store| async move {
        let keys = world(&store, 1, 1).await;
        let held = lease(&store, &keys[0], t(1)).await;
        let report = store
            .submit(
                Submission {
                    lease_id: held.lease_id,
                    epoch: held.epoch,
                    builder: keys[0],
                    outcome: BuildOutcome::build_failed("linker"),
                    log: Some(b"compiling...\nerror: boom".to_vec()),
                },
                t(2),
            )
            .await
            .unwrap();
        let log = store
            .build_log(report.attestation_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(log.bytes, b"ror: boom"[1..]);
        assert_eq!(log.original_len, 24);
        assert!(log.truncated());
        let result = &store.task(held.task_id).await.unwrap().unwrap().results[0];
        assert_eq!(result.outcome, OutcomeKind::BuildFailed);
        assert_eq!(result.reason.as_deref(), Some("linker"));
    }
);

store_test!(
    revoking_a_builder_redecides_what_relied_on_it,
    |store: Store| async move {
        let keys = world(&store, 3, 1).await;
        let a = lease(&store, &keys[0], t(1)).await;
        let b = lease(&store, &keys[1], t(1)).await;
        submit(&store, &a, &keys[0], built(1), t(2)).await;
        submit(&store, &b, &keys[1], built(1), t(3)).await;
        assert!(
            store
                .artifact(&artifact(1).blake3)
                .await
                .unwrap()
                .unwrap()
                .verified_at
                .is_some()
        );

        let report = store
            .revoke_builder(&keys[0], "key leaked", t(10))
            .await
            .unwrap();
        assert_eq!((report.tasks_redecided, report.verified_lost), (1, 1));
        let task = store.task(a.task_id).await.unwrap().unwrap();
        assert_eq!(task.task.state, TaskState::Queued);
        assert_eq!(task.task.counted, 1);
        assert_eq!(task.task.artifact, None);
        assert!(
            task.results
                .iter()
                .all(|r| r.builder != keys[0] || !r.counted)
        );
        let info = store.artifact(&artifact(1).blake3).await.unwrap().unwrap();
        assert_eq!(info.verified_at, None);
        assert_eq!(
            info.attestations.len(),
            1,
            "only the approved builder's counts"
        );
        assert!(store.recently_verified(10).await.unwrap().is_empty());

        // A third builder restores the quorum.
        let c = lease(&store, &keys[2], t(11)).await;
        let report = submit(&store, &c, &keys[2], built(1), t(12)).await;
        assert_eq!(report.task_state, TaskState::Verified);
        assert!(
            store
                .artifact(&artifact(1).blake3)
                .await
                .unwrap()
                .unwrap()
                .verified_at
                .is_some()
        );
        // Revoking twice is harmless.
        let again = store
            .revoke_builder(&keys[0], "again", t(13))
            .await
            .unwrap();
        assert_eq!(again, Default::default());
    }
);

store_test!(revoking_cancels_active_leases, |store: Store| async move {
    let keys = world(&store, 4, 1).await;
    let a = lease(&store, &keys[0], t(1)).await;
    lease(&store, &keys[1], t(1)).await;
    lease(&store, &keys[2], t(1)).await;
    assert!(store.lease_next(&keys[3], t(1)).await.unwrap().is_none());
    let report = store
        .revoke_builder(&keys[0], "gone rogue", t(2))
        .await
        .unwrap();
    assert_eq!(report.leases_cancelled, 1);
    // Its slot is free again.
    assert!(store.lease_next(&keys[3], t(3)).await.unwrap().is_some());
    // Its result, should it still come, is recorded but never counts.
    let late = submit(&store, &a, &keys[0], built(1), t(4)).await;
    assert!(late.late && !late.counted);
    assert_eq!(
        late.not_counted,
        Some(NotCounted::BuilderNotApproved {
            status: BuilderStatus::Revoked
        })
    );
});

store_test!(
    a_repeated_result_that_did_not_count_is_a_duplicate,
    |store: Store| async move {
        let keys = world(&store, 1, 1).await;
        let held = lease(&store, &keys[0], t(1)).await;
        let error = || BuildOutcome::node_error("disk full");
        let first = submit(&store, &held, &keys[0], error(), t(2)).await;
        assert_eq!(first.not_counted, Some(NotCounted::NodeError));
        let retry = submit(&store, &held, &keys[0], error(), t(3)).await;
        assert_eq!(
            (retry.duplicate, retry.counted, retry.not_counted),
            (true, false, Some(NotCounted::Duplicate))
        );
        assert_eq!(retry.attestation_id, first.attestation_id);
        assert_eq!(
            NotCounted::Duplicate.to_string(),
            "a duplicate submission under the same lease (the first stands)"
        );
        assert_eq!(
            NotCounted::TaskCancelled {
                reason: Some("version yanked".into())
            }
            .to_string(),
            "the task was cancelled: version yanked"
        );
    }
);

store_test!(
    the_newer_outcome_kinds_are_stored_and_a_toolchain_too_old_never_counts,
    |store: Store| async move {
        let keys = world(&store, 2, 1).await;
        let a = lease(&store, &keys[0], t(1)).await;
        let b = lease(&store, &keys[1], t(1)).await;
        let old = BuildOutcome::needs_newer_toolchain("the crate's rust-version is 1.99");
        let report = submit(&store, &a, &keys[0], old, t(2)).await;
        assert_eq!(report.not_counted, Some(NotCounted::NodeError));
        assert!(!report.counted);
        let disk = BuildOutcome::disk_limit("more than 48 MiB written");
        let report = submit(&store, &b, &keys[1], disk, t(3)).await;
        assert!(report.counted, "{report:?}");
        assert_eq!(
            report.decision,
            Some(Decision::Pending {
                counted: 1,
                wanted: 2
            }),
            "the too-old toolchain did not count, the disk limit did"
        );
        let detail = store.task(a.task_id).await.unwrap().unwrap();
        let kinds: Vec<OutcomeKind> = detail.results.iter().map(|r| r.outcome).collect();
        assert!(
            kinds.contains(&OutcomeKind::NeedsNewerToolchain),
            "{kinds:?}"
        );
        assert!(kinds.contains(&OutcomeKind::DiskLimit), "{kinds:?}");
    }
);

store_test!(
    a_lease_carries_the_download_url_the_index_gave_and_follows_it,
    |store: Store| async move {
        let keys = world(&store, 1, 1).await;
        let held = lease(&store, &keys[0], t(1)).await;
        let first = line(&held.crate_name, &held.version, false);
        assert_eq!(
            held.download_url.as_deref(),
            Some(first.download_url.as_str())
        );
        // The registry's `dl` moves: the stored URL follows the index, nothing else changes.
        let moved = IndexVersion {
            download_url: format!("https://mirror.test/{}/{}", held.crate_name, held.version),
            ..first
        };
        let report = store
            .upsert_versions(vec![moved.clone()], t(2))
            .await
            .unwrap();
        assert_eq!(report.versions_added + report.tasks_planned, 0);
        let detail = store.task(held.task_id).await.unwrap().unwrap();
        assert_eq!(detail.task.state, TaskState::Building);
        let refused = store
            .upsert_versions(
                vec![IndexVersion {
                    download_url: "file:///etc/passwd".into(),
                    ..moved
                }],
                t(3),
            )
            .await
            .unwrap_err();
        assert!(matches!(refused, StoreError::Invalid(_)), "{refused}");
    }
);

// ---- reads ------------------------------------------------------------------------------

store_test!(
    crate_search_is_paged_and_forgiving,
    |store: Store| async move {
        let mut batch: Vec<_> = (0..25)
            .map(|n| line(&format!("serde-ext-{n:02}"), "1.0.0", false))
            .collect();
        batch.push(line("serde", "1.0.0", false));
        batch.push(line("serde_json", "1.0.0", false));
        batch.push(line("Tokio", "1.0.0", false));
        store.upsert_versions(batch, t(1)).await.unwrap();

        let page = store.search_crates("serde", Page::first(10)).await.unwrap();
        assert_eq!(page.total, 27);
        assert_eq!(page.items.len(), 10);
        assert_eq!(page.items[0].name, "serde", "the exact match comes first");
        assert_eq!(page.items[1].name, "serde_json", "then shorter names");
        let last = store
            .search_crates(
                "serde",
                Page {
                    offset: 20,
                    limit: 10,
                },
            )
            .await
            .unwrap();
        assert_eq!(last.items.len(), 7);
        assert_eq!(last.total, 27);
        let past = store
            .search_crates(
                "serde",
                Page {
                    offset: 40,
                    limit: 10,
                },
            )
            .await
            .unwrap();
        assert!(past.items.is_empty());
        assert_eq!(past.total, 27, "a page past the end still knows the total");
        assert_eq!(
            store
                .search_crates("SERDE-JSON", Page::first(10))
                .await
                .unwrap()
                .items[0]
                .name,
            "serde_json"
        );
        assert_eq!(
            store
                .search_crates("tokio", Page::first(5))
                .await
                .unwrap()
                .total,
            1
        );
        // Texts of three letters in a row or more go through the trigram index, shorter ones
        // scan: both find the same crates, case-insensitively, with `-` and `_` alike.
        let names = |query: &'static str| {
            let store = store.clone();
            async move {
                let page = store.search_crates(query, Page::first(50)).await.unwrap();
                assert_eq!(page.total as usize, page.items.len(), "{query}");
                let mut names: Vec<String> =
                    page.items.into_iter().map(|c| c.name.to_string()).collect();
                names.sort();
                names
            }
        };
        assert_eq!(names("okI").await, ["Tokio"]);
        assert_eq!(names("ok").await, ["Tokio"]);
        assert_eq!(names("de-j").await, ["serde_json"]);
        assert_eq!(names("serde-js").await, ["serde_json"]);
        assert_eq!(names("rde_ext-0").await.len(), 10);
        assert_eq!(names("xt-1").await.len(), 10);
        assert_eq!(names("ext-17").await, ["serde-ext-17"]);
        assert!(names("serdes").await.is_empty());
        // Nothing a crate name cannot hold matches, and nothing of it reaches SQL.
        for query in ["%", "_%", "serde%", "a b", "serde\\", "'--", "é"] {
            assert_eq!(
                store
                    .search_crates(query, Page::first(5))
                    .await
                    .unwrap()
                    .total,
                0,
                "{query:?}"
            );
        }
        let added = vec![line("later-crate", "1.0.0", false)];
        store.upsert_versions(added, t(2)).await.unwrap();
        assert_eq!(
            names("ter-cr").await,
            ["later-crate"],
            "a crate added later is in the index"
        );
        let huge = store.search_crates("", Page::first(100_000)).await.unwrap();
        assert_eq!(huge.page.limit, Page::MAX_LIMIT);
        assert_eq!(huge.total, 29);
        assert!(store.crate_info("nope").await.unwrap().is_none());
        assert!(store.crate_info("bad name").await.is_err());
    }
);

store_test!(
    a_crate_with_its_newest_versions_tasks_in_one_read,
    |store: Store| async move {
        world(&store, 1, 3).await;
        let (info, versions) = store.crate_with_tasks("demo", 2).await.unwrap().unwrap();
        assert_eq!(info.versions.len(), 3, "every version is listed");
        assert_eq!(versions.len(), 2, "tasks for the newest two only");
        for (summary, version) in info.versions.iter().zip(&versions) {
            assert_eq!(&version.version, summary, "newest first, as listed");
            let alone = store
                .version_info("demo", &summary.version)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(version, &alone, "the same as reading the version alone");
            assert_eq!(version.tasks.len(), 1);
        }
        assert!(store.crate_with_tasks("nope", 2).await.unwrap().is_none());
        assert!(store.crate_with_tasks("bad name", 2).await.is_err());
    }
);

store_test!(
    downloads_storage_keys_and_events,
    |store: Store| async move {
        let keys = world(&store, 2, 1).await;
        for key in &keys {
            let l = lease(&store, key, t(1)).await;
            submit(&store, &l, key, built(1), t(2)).await;
        }
        let hash = artifact(1).blake3;
        // Verified and not yet stored: the publishing backlog holds it until a key is set.
        assert_eq!(
            store.artifacts_awaiting_storage(10, t(3)).await.unwrap(),
            vec![artifact(1)]
        );
        store.record_download(&hash, t(3)).await.unwrap();
        store.record_download(&hash, t(4)).await.unwrap();
        store.record_download(&hash, t(86_400 * 2)).await.unwrap();
        store
            .set_artifact_storage_key(&hash, "blobs/ab/cd")
            .await
            .unwrap();
        let info = store.artifact(&hash).await.unwrap().unwrap();
        assert_eq!(info.storage_key.as_deref(), Some("blobs/ab/cd"));
        assert!(
            store
                .artifacts_awaiting_storage(10, t(3))
                .await
                .unwrap()
                .is_empty()
        );
        let counts: Vec<u64> = info.downloads.iter().map(|d| d.count).collect();
        assert_eq!(counts, [1, 2]);
        let unknown = artifact(9).blake3;
        assert!(matches!(
            store.record_download(&unknown, t(5)).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(store.artifact(&unknown).await.unwrap().is_none());

        let events = store.events(0, 1000).await.unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        for kind in [
            "builder_registered",
            "builder_approved",
            "index_batch",
            "task_decided",
        ] {
            assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
        }
        assert!(events.windows(2).all(|w| w[0].id < w[1].id));
        let after = store.events(events[2].id, 2).await.unwrap();
        assert_eq!(after[0].id, events[3].id);
        assert_eq!(after.len(), 2);
    }
);

store_test!(
    an_artifact_that_fails_to_publish_backs_off_out_of_the_others_way,
    |store: Store| async move {
        let keys = world(&store, 2, 2).await;
        // Each builder answers both tasks, each task with its own artifact.
        for round in 1..=2 {
            for key in &keys {
                let l = lease(&store, key, t(round)).await;
                let n = u8::try_from(l.task_id.0).unwrap();
                submit(&store, &l, key, built(n), t(round)).await;
            }
        }
        let backlog = store.artifacts_awaiting_storage(10, t(10)).await.unwrap();
        assert_eq!(backlog.len(), 2, "both verified: {backlog:?}");
        let (stuck, next) = (backlog[0], backlog[1]);

        // The oldest fails: it leaves the backlog for 10 s, the other is first now.
        let retry = store
            .publication_failed(&stuck.blake3, t(10))
            .await
            .unwrap();
        assert_eq!(retry, t(20));
        assert_eq!(
            store.artifacts_awaiting_storage(1, t(19)).await.unwrap(),
            vec![next]
        );
        assert_eq!(
            store.artifacts_awaiting_storage(10, t(20)).await.unwrap(),
            vec![stuck, next],
            "back in its place when its wait is over"
        );
        // Each further failure doubles the wait, up to an hour.
        assert_eq!(
            store
                .publication_failed(&stuck.blake3, t(20))
                .await
                .unwrap(),
            t(40)
        );
        assert_eq!(
            store
                .publication_failed(&stuck.blake3, t(40))
                .await
                .unwrap(),
            t(80)
        );
        let mut at = t(80);
        for _ in 0..20 {
            at = store.publication_failed(&stuck.blake3, at).await.unwrap();
        }
        let last = store.publication_failed(&stuck.blake3, at).await.unwrap();
        assert_eq!(last.as_second() - at.as_second(), 3600);
        // Published, it is out of the backlog whatever its failures.
        store
            .set_artifact_storage_key(&stuck.blake3, "blobs/stuck")
            .await
            .unwrap();
        assert_eq!(
            store.artifacts_awaiting_storage(10, last).await.unwrap(),
            vec![next]
        );
        assert!(matches!(
            store.publication_failed(&artifact(99).blake3, t(1)).await,
            Err(StoreError::NotFound(_))
        ));
    }
);

store_test!(
    a_builders_blob_address_is_kept_for_a_restarted_coordinator,
    |store: Store| async move {
        let keys = world(&store, 1, 1).await;
        assert_eq!(store.blob_address(&keys[0]).await.unwrap(), None);
        let address: BlobAddress = format!("{}@127.0.0.1:4433,[::1]:4433", "ab".repeat(32))
            .parse()
            .unwrap();
        store.set_blob_address(&keys[0], &address).await.unwrap();
        assert_eq!(
            store.blob_address(&keys[0]).await.unwrap(),
            Some(address.clone())
        );
        // A later hello's address replaces it; one with nothing to dial clears it.
        let nowhere = BlobAddress {
            endpoint_id: "cd".repeat(32),
            addrs: vec![],
        };
        store.set_blob_address(&keys[0], &nowhere).await.unwrap();
        assert_eq!(store.blob_address(&keys[0]).await.unwrap(), None);
        // Only for known builders, and not without bound.
        let stranger = buildsrs_store::testing::key(77);
        assert!(matches!(
            store.set_blob_address(&stranger, &address).await,
            Err(StoreError::NotFound(_))
        ));
        let huge = BlobAddress {
            endpoint_id: "ab".repeat(32),
            addrs: vec!["127.0.0.1:1".parse().unwrap(); 100],
        };
        assert!(matches!(
            store.set_blob_address(&keys[0], &huge).await,
            Err(StoreError::Invalid(_))
        ));
    }
);

store_test!(builders_are_listed_in_pages, |store: Store| async move {
    let keys = world(&store, 5, 1).await;
    let first = store.builders_page(Page::first(2)).await.unwrap();
    assert_eq!(first.total, 5);
    let listed: Vec<buildsrs_keys::PublicKey> = first.items.iter().map(|b| b.public_key).collect();
    assert_eq!(listed, keys[..2]);
    assert!(
        first
            .items
            .iter()
            .all(|b| b.targets.len() == 1 && b.toolchains.len() == 1),
        "each with its own capabilities: {first:?}"
    );
    let last = store
        .builders_page(Page {
            offset: 4,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(last.items.len(), 1);
    assert_eq!(last.items[0].public_key, keys[4]);
    let all = store.builders().await.unwrap();
    assert_eq!(last.items[0], all[4], "the same as the whole list says");
    let past = store
        .builders_page(Page {
            offset: 5,
            limit: 10,
        })
        .await
        .unwrap();
    assert!(past.items.is_empty());
    assert_eq!(past.total, 5);
    let capped = store.builders_page(Page::first(100_000)).await.unwrap();
    assert_eq!(capped.page.limit, Page::MAX_LIMIT);

    // Seen at registration (t(0)), then two of them when they ask for work.
    assert_eq!(store.builders_seen_since(t(0)).await.unwrap(), 5);
    assert_eq!(store.builders_seen_since(t(1)).await.unwrap(), 0);
    for key in &keys[..2] {
        lease(&store, key, t(100)).await;
    }
    assert_eq!(store.builders_seen_since(t(50)).await.unwrap(), 2);
    assert_eq!(store.builders_seen_since(t(101)).await.unwrap(), 0);
});

store_test!(
    new_keys_wait_in_a_bounded_line_for_approval,
    policy = Policy {
        max_pending_builders: 2,
        ..Policy::default()
    },
    |store: Store| async move {
        // Anyone can make keys: each hello from a new one would be a row for ever.
        matrix(&store).await;
        let hello = |n: u8| NewBuilder {
            public_key: key(n),
            name: format!("key-{n}"),
            targets: vec![TARGET.parse().unwrap()],
            toolchains: vec![TOOLCHAIN.parse().unwrap()],
            capacity: 1,
        };
        store.register_builder(hello(1), t(1)).await.unwrap();
        store.register_builder(hello(2), t(1)).await.unwrap();
        let error = store.register_builder(hello(3), t(2)).await.unwrap_err();
        assert!(matches!(error, StoreError::Conflict(_)), "{error}");
        assert!(
            store.builder(&key(3)).await.unwrap().is_none(),
            "nothing stored"
        );
        // A waiting key may say hello again; an approval frees a place in the line.
        store.register_builder(hello(2), t(3)).await.unwrap();
        store.approve_builder(&key(1), t(4)).await.unwrap();
        store.register_builder(hello(3), t(5)).await.unwrap();
        assert_eq!(store.builders().await.unwrap().len(), 3);

        // Many new keys at once (concurrent transactions on Postgres) for the one place an
        // approval frees: the line fills to its length and not one more.
        store.approve_builder(&key(2), t(5)).await.unwrap();
        let racers = (10..40).map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.register_builder(hello(n), t(6)).await })
        });
        let mut welcomed = 0;
        for racer in racers.collect::<Vec<_>>() {
            match racer.await.unwrap() {
                Ok(_) => welcomed += 1,
                Err(StoreError::Conflict(_)) => {}
                Err(other) => panic!("{other}"),
            }
        }
        assert_eq!(welcomed, 1, "one place was free");
        let pending = store.queue_stats(t(7)).await.unwrap().builders_pending;
        assert_eq!(pending, 2);
    }
);

store_test!(builder_inputs_are_checked, |store: Store| async move {
    // A target or toolchain that breaks its rule cannot even be a NewBuilder's (the protocol
    // does not decode it); what is left to check is the name and the counts.
    let bad: [(&str, Vec<TargetTriple>); 2] = [
        ("", vec![]),
        (
            "ok",
            (0..65).map(|n| format!("t{n}").parse().unwrap()).collect(),
        ),
    ];
    for (name, targets) in bad {
        let error = store
            .register_builder(
                NewBuilder {
                    public_key: key(3),
                    name: name.to_owned(),
                    targets,
                    toolchains: vec![],
                    capacity: 8,
                },
                t(1),
            )
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::Invalid(_)), "{error}");
    }
    assert!(store.builders().await.unwrap().is_empty());
    assert!(matches!(
        store.approve_builder(&key(3), t(1)).await,
        Err(StoreError::NotFound(_))
    ));
    // The build matrix takes only what an attestation could name, by the same rules.
    for bad in ["X86_64-linux", "a/../b", "", "has space"] {
        let error = store.set_target(bad, true, t(1)).await.unwrap_err();
        assert!(matches!(error, StoreError::Invalid(_)), "{bad:?}: {error}");
    }
    for bad in ["1.95.0 ", "1/2", ""] {
        let error = store.set_toolchain(bad, true, t(1)).await.unwrap_err();
        assert!(matches!(error, StoreError::Invalid(_)), "{bad:?}: {error}");
    }
    assert!(store.targets().await.unwrap().is_empty());
    assert!(store.toolchains().await.unwrap().is_empty());
});

store_test!(
    no_binaries_for_one_target_does_not_outvote_an_artifact_for_another,
    |store: Store| async move {
        const OTHER: &str = "aarch64-unknown-linux-gnu";
        matrix(&store).await;
        store.set_target(OTHER, true, t(0)).await.unwrap();
        let mut keys = Vec::new();
        for n in [1, 2] {
            let key = key(n);
            store
                .register_builder(
                    NewBuilder {
                        public_key: key,
                        name: format!("both-targets-{n}"),
                        targets: vec![TARGET.parse().unwrap(), OTHER.parse().unwrap()],
                        toolchains: vec![TOOLCHAIN.parse().unwrap()],
                        capacity: 8,
                    },
                    t(0),
                )
                .await
                .unwrap();
            store.approve_builder(&key, t(0)).await.unwrap();
            keys.push(key);
        }
        store.watch_crate("arm-only", 0, t(0)).await.unwrap();
        store
            .upsert_versions(vec![line("arm-only", "0.1.0", false)], t(1))
            .await
            .unwrap();
        // Each builder holds a lease of each target's task.
        let mut held = Vec::new();
        for key in &keys {
            held.push((key, lease(&store, key, t(2)).await));
        }
        for key in &keys {
            held.push((key, lease(&store, key, t(2)).await));
        }
        // The other target builds and is verified first; then the first target's task says
        // the crate has no binaries for it (its metadata lists only the other target).
        for (key, lease) in held.iter().filter(|(_, l)| l.target == OTHER) {
            submit(&store, lease, key, built(3), t(3)).await;
        }
        for (key, lease) in held.iter().filter(|(_, l)| l.target == TARGET) {
            submit(&store, lease, key, BuildOutcome::no_binaries(""), t(4)).await;
        }
        let info = store.crate_info("arm-only").await.unwrap().unwrap();
        assert_eq!(info.binaries, Some(true));
        // So the next version gets the whole matrix, not a probe of the first target.
        let report = store
            .upsert_versions(vec![line("arm-only", "0.2.0", false)], t(5))
            .await
            .unwrap();
        assert_eq!(report.tasks_planned, 2);
    }
);

store_test!(
    watching_again_without_a_backfill_keeps_the_one_asked_for,
    |store: Store| async move {
        matrix(&store).await;
        // An operator asks for 3 older versions before the crate's first sight; the
        // coordinator restarts with a plain `--watch many`.
        store.watch_crate("many", 3, t(0)).await.unwrap();
        store.watch_crate("many", 0, t(1)).await.unwrap();
        assert_eq!(store.crate_info("many").await.unwrap().unwrap().backfill, 3);
        let lines: Vec<_> = (0..8)
            .map(|minor| line("many", &format!("0.{minor}.0"), false))
            .collect();
        let report = store.upsert_versions(lines, t(2)).await.unwrap();
        assert_eq!(report.tasks_planned, 4, "the newest and three before it");
    }
);
