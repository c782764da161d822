//! The reads and changes the web UI and API add on top of scheduling: the publication feed
//! mirrors follow, the open-task queue, a builder's recent results, and an operator's quorum
//! change. Every body runs on SQLite and on Postgres.
#![allow(clippy::unwrap_used)]

mod common;

use buildsrs_store::{Decision, Page, Store, StoreError, TaskState, store_test};
use common::*;

/// Two builders agree on `artifact(n)` for the next task; returns its task id.
async fn verify_next(store: &Store, keys: &[buildsrs_keys::PublicKey], n: u8, at: i64) -> i64 {
    let first = lease(store, &keys[0], t(at)).await;
    let second = lease(store, &keys[1], t(at)).await;
    assert_eq!(first.task_id, second.task_id);
    submit(store, &first, &keys[0], built(n), t(at + 1)).await;
    let report = submit(store, &second, &keys[1], built(n), t(at + 2)).await;
    assert!(matches!(report.decision, Some(Decision::Verified { .. })));
    first.task_id.0
}

store_test!(
    the_feed_numbers_artifacts_as_they_are_stored,
    |store: Store| async move {
        let keys = world(&store, 2, 3).await;
        verify_next(&store, &keys, 1, 10).await;
        verify_next(&store, &keys, 2, 20).await;
        // Verified but not yet stored: not in the feed.
        assert!(store.published_since(0, 10).await.unwrap().is_empty());

        // Stored in the other order than verified: the feed follows storage.
        let (one, two) = (artifact(1), artifact(2));
        store
            .set_artifact_storage_key(&two.blake3, "blobs/two")
            .await
            .unwrap();
        store
            .set_artifact_storage_key(&one.blake3, "blobs/one")
            .await
            .unwrap();
        // Storing again (a publisher retry) keeps the number.
        store
            .set_artifact_storage_key(&two.blake3, "blobs/two")
            .await
            .unwrap();
        let feed = store.published_since(0, 10).await.unwrap();
        let order: Vec<_> = feed.iter().map(|p| (p.seq, p.artifact)).collect();
        assert_eq!(order, [(1, two), (2, one)]);
        assert!(feed.iter().all(|p| p.verified_at.is_some()));

        let rest = store.published_since(1, 10).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].artifact, one);
        assert_eq!(store.published_since(0, 1).await.unwrap().len(), 1);
        assert!(store.published_since(2, 10).await.unwrap().is_empty());

        let unknown = artifact(9).blake3;
        assert!(matches!(
            store.set_artifact_storage_key(&unknown, "blobs/x").await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(store.published_since(0, 10).await.unwrap().len(), 2);
    }
);

store_test!(
    open_tasks_list_building_first_then_the_queue,
    |store: Store| async move {
        let keys = world(&store, 2, 4).await;
        let task = verify_next(&store, &keys, 1, 10).await;
        let building = lease(&store, &keys[0], t(30)).await;

        let open = store.open_tasks(Page::first(10)).await.unwrap();
        assert_eq!(open.total, 3, "one of four tasks is verified");
        assert_eq!(open.items[0].id, building.task_id);
        assert_eq!(open.items[0].state, TaskState::Building);
        assert!(open.items[1..].iter().all(|t| t.state == TaskState::Queued));
        assert!(open.items.iter().all(|t| t.id.0 != task));

        let second = store
            .open_tasks(Page {
                offset: 2,
                limit: 10,
            })
            .await
            .unwrap();
        assert_eq!(second.items.len(), 1);
        assert_eq!(second.total, 3);
    }
);

store_test!(
    a_builders_recent_results_name_their_tasks,
    |store: Store| async move {
        let keys = world(&store, 2, 2).await;
        verify_next(&store, &keys, 1, 10).await;
        verify_next(&store, &keys, 2, 20).await;

        let results = store.builder_results(&keys[0], 10).await.unwrap().unwrap();
        assert_eq!(results.len(), 2);
        assert!(
            results[0].result.id.0 > results[1].result.id.0,
            "newest first"
        );
        assert!(results.iter().all(|r| r.crate_name == "demo"
            && r.target == TARGET
            && r.toolchain == TOOLCHAIN
            && r.task_state == TaskState::Verified
            && r.result.builder == keys[0]));
        assert_eq!(
            store
                .builder_results(&keys[0], 1)
                .await
                .unwrap()
                .unwrap()
                .len(),
            1
        );
        assert!(store.builder_results(&key(99), 10).await.unwrap().is_none());
    }
);

store_test!(
    a_lower_quorum_decides_with_the_results_already_in,
    |store: Store| async move {
        let keys = world(&store, 2, 1).await;
        let first = lease(&store, &keys[0], t(10)).await;
        submit(&store, &first, &keys[0], built(1), t(11)).await;
        let task = first.task_id;

        for bad in [0, 17] {
            assert!(matches!(
                store.set_task_quorum(task, bad, t(12)).await,
                Err(StoreError::Invalid(_))
            ));
        }
        assert_eq!(store.task(task).await.unwrap().unwrap().task.quorum, 2);

        let raised = store.set_task_quorum(task, 3, t(13)).await.unwrap();
        assert!(matches!(
            raised,
            Decision::Pending {
                counted: 1,
                wanted: 3
            }
        ));

        let decision = store.set_task_quorum(task, 1, t(14)).await.unwrap();
        assert!(
            matches!(decision, Decision::Verified { .. }),
            "{decision:?}"
        );
        let detail = store.task(task).await.unwrap().unwrap();
        assert_eq!(detail.task.state, TaskState::Verified);
        assert_eq!(detail.task.quorum, 1);
        assert_eq!(detail.task.artifact, Some(artifact(1)));
        let builder = store.builder(&keys[0]).await.unwrap().unwrap();
        assert_eq!(builder.agreed, 1);

        // A decided task keeps its quorum.
        assert!(matches!(
            store.set_task_quorum(task, 2, t(15)).await,
            Err(StoreError::Conflict(_))
        ));
        let events = store.events(0, 1000).await.unwrap();
        assert_eq!(
            events
                .iter()
                .filter(|e| e.kind == "task_quorum_changed")
                .count(),
            2
        );
    }
);
