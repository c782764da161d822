//! 16 concurrent claimers (each for 4 builders) over 1,000 tasks, on each backend: no task
//! ever exceeds its lease limit, no builder holds two leases on one task, and no task is
//! lost. Then all of them submit at once, and every task is decided exactly once.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use buildsrs_store::testing::TestStore;
use buildsrs_store::{Policy, Store, TaskState};
use common::*;

const CLAIMERS: u8 = 16;
const TASKS: u32 = 1_000;
/// Builders each claimer speaks for: a builder holds at most `MAX_BUILDER_CAPACITY` leases,
/// and the claimers take every lease before submitting any.
const KEYS_PER_CLAIMER: u8 = 4;

fn policy() -> Policy {
    Policy {
        quorum: 2,
        extra_leases: 1,
        ..Policy::default()
    }
}

async fn race(store: Store) {
    let started = std::time::Instant::now();
    let keys = world(&store, CLAIMERS * KEYS_PER_CLAIMER, TASKS).await;
    eprintln!("{:?}: set up in {:?}", store.backend(), started.elapsed());
    let started = std::time::Instant::now();
    let limit = (policy().quorum + policy().extra_leases) as usize;

    let claimers: Vec<_> = keys
        .chunks(usize::from(KEYS_PER_CLAIMER))
        .map(|mine| {
            let (store, mine) = (store.clone(), mine.to_vec());
            tokio::spawn(async move {
                let mut got = Vec::new();
                for key in mine {
                    while let Some(lease) = store.lease_next(&key, t(1)).await.unwrap() {
                        got.push((key, lease));
                    }
                }
                got
            })
        })
        .collect();
    let mut leases = Vec::new();
    for claimer in claimers {
        leases.extend(claimer.await.unwrap());
    }

    eprintln!(
        "{:?}: {} leases in {:?}",
        store.backend(),
        leases.len(),
        started.elapsed()
    );
    let mut per_task: BTreeMap<_, Vec<_>> = BTreeMap::new();
    for (key, lease) in &leases {
        per_task.entry(lease.task_id).or_default().push(key);
    }
    assert_eq!(
        per_task.len(),
        TASKS as usize,
        "every task was leased: none lost"
    );
    for (task, holders) in &per_task {
        assert_eq!(holders.len(), limit, "task {task}: lease limit");
        let distinct: BTreeSet<_> = holders.iter().map(|k| k.to_string()).collect();
        assert_eq!(
            distinct.len(),
            holders.len(),
            "task {task}: a builder leased twice"
        );
    }
    let lease_ids: BTreeSet<_> = leases.iter().map(|(_, l)| l.lease_id).collect();
    assert_eq!(lease_ids.len(), leases.len());
    let epochs: BTreeSet<_> = leases.iter().map(|(_, l)| (l.task_id, l.epoch)).collect();
    assert_eq!(
        epochs.len(),
        leases.len(),
        "fencing epochs are unique per task"
    );
    let stats = store.queue_stats(t(1)).await.unwrap();
    assert_eq!(stats.active_leases, (TASKS as usize * limit) as u64);
    assert_eq!((stats.building, stats.ready), (u64::from(TASKS), 0));

    // Everyone submits at once; every task ends verified, decided once.
    let started = std::time::Instant::now();
    let submitters: Vec<_> = keys
        .iter()
        .map(|key| {
            let store = store.clone();
            let mine: Vec<_> = leases
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, l)| l.clone())
                .collect();
            let key = *key;
            tokio::spawn(async move {
                for lease in mine {
                    submit(&store, &lease, &key, built(1), t(2)).await;
                }
            })
        })
        .collect();
    for submitter in submitters {
        submitter.await.unwrap();
    }
    eprintln!(
        "{:?}: submitted in {:?}",
        store.backend(),
        started.elapsed()
    );
    let stats = store.queue_stats(t(3)).await.unwrap();
    assert_eq!(stats.verified, u64::from(TASKS));
    assert_eq!(stats.active_leases, 0);
    let decided = store
        .events(0, 1000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.kind == "task_decided")
        .count();
    assert!(decided > 0);
    let sample = store
        .task(per_task.keys().next().copied().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sample.task.state, TaskState::Verified);
    assert_eq!(
        sample.task.counted as usize, limit,
        "late results count once each"
    );
    let agreed: u64 = store
        .builders()
        .await
        .unwrap()
        .iter()
        .map(|b| b.agreed)
        .sum();
    assert_eq!(agreed, u64::from(TASKS) * limit as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_claimers_sqlite() {
    let db = TestStore::sqlite_with(policy()).await;
    race(db.store.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_claimers_postgres() {
    let db = TestStore::postgres_with(policy(), usize::from(CLAIMERS)).await;
    race(db.store.clone()).await;
}
