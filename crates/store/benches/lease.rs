//! Lease throughput: 16 concurrent claimers over 100,000 queued tasks, on each backend.
//! Prints leases per second and checks, from the leases handed out, that no task got more
//! leases than its limit and no builder got one task twice. Asserts nothing about time.
//!
//! `cargo bench -p buildsrs-store --bench lease` (needs the test Postgres server).
//! `BUILDSRS_BENCH_TASKS` changes the number of tasks, `BUILDSRS_BENCH_BACKENDS=postgres` (or
//! `sqlite`) runs one backend only.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use buildsrs_keys::Identity;
use buildsrs_store::testing::TestStore;
use buildsrs_store::{IndexVersion, NewBuilder, Policy, Store};
use jiff::Timestamp;

/// Leases a builder holds at once, the most the store allows.
const CAPACITY: usize = buildsrs_store::MAX_BUILDER_CAPACITY as usize;

/// Concurrent claimers (`BUILDSRS_BENCH_CLAIMERS`, default 16).
fn claimers() -> u8 {
    std::env::var("BUILDSRS_BENCH_CLAIMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16)
}
const TARGET: &str = "x86_64-unknown-linux-gnu";
const TOOLCHAIN: &str = "1.95.0";

fn policy() -> Policy {
    // Quorum 2 and no extra leases: each task takes exactly two leases.
    Policy {
        quorum: 2,
        extra_leases: 0,
        plan_all_crates: true,
        ..Policy::default()
    }
}

async fn setup(store: &Store, tasks: usize) -> Vec<Vec<buildsrs_keys::PublicKey>> {
    let now = Timestamp::from_second(1_700_000_000).unwrap();
    store.set_target(TARGET, true, now).await.unwrap();
    store.set_toolchain(TOOLCHAIN, true, now).await.unwrap();
    let lines: Vec<IndexVersion> = (0..tasks)
        .map(|i| IndexVersion {
            name: format!("lease-bench-{:04}", i / 100)
                .parse()
                .expect("a crate name"),
            version: format!("1.{}.0", i % 100).parse().expect("a version"),
            cksum: format!("{i:064x}").parse().expect("a sha256"),
            download_url: format!("https://registry.test/dl/{i}/download"),
            yanked: false,
            rust_version: None,
        })
        .collect();
    // Each crate's first version first: a crate's first sight plans only its newest version,
    // what comes after is planned in full, so every version gets its task.
    let (first, rest): (Vec<IndexVersion>, Vec<IndexVersion>) =
        lines.into_iter().partition(|line| line.version == "1.0.0");
    for chunk in first.chunks(10_000).chain(rest.chunks(10_000)) {
        store.upsert_versions(chunk.to_vec(), now).await.unwrap();
    }
    // A builder holds at most MAX_BUILDER_CAPACITY leases at once, and the bench never ends
    // one: each claimer speaks for enough builders to take its share of the leases.
    let per_claimer = tasks.div_ceil(usize::from(claimers())).div_ceil(CAPACITY) + 1;
    let mut keys = Vec::new();
    for n in 1..=claimers() {
        let mut mine = Vec::new();
        for k in 0..per_claimer {
            let mut seed = [n; 32];
            seed[..8].copy_from_slice(&(k as u64).to_le_bytes());
            let key = Identity::from_seed(seed).public_key();
            store
                .register_builder(
                    NewBuilder {
                        public_key: key,
                        name: format!("claimer-{n}-{k}"),
                        targets: vec![TARGET.parse().expect("a valid literal")],
                        toolchains: vec![TOOLCHAIN.parse().expect("a valid literal")],
                        capacity: CAPACITY as u32,
                    },
                    now,
                )
                .await
                .unwrap();
            store.approve_builder(&key, now).await.unwrap();
            mine.push(key);
        }
        keys.push(mine);
    }
    keys
}

async fn run(name: &str, store: Store, tasks: usize) {
    let keys = setup(&store, tasks).await;
    let queued = store
        .queue_stats(Timestamp::from_second(1_700_000_000).unwrap())
        .await
        .unwrap()
        .queued;
    assert_eq!(queued, tasks as u64, "every version got its task");
    // Lease until `tasks` leases are out (half the slots: the queue never runs dry).
    let target = tasks as u64;
    let granted = Arc::new(AtomicU64::new(0));
    let now = Timestamp::from_second(1_700_000_100).unwrap();
    let started = Instant::now();
    let handles: Vec<_> = keys
        .iter()
        .map(|key| {
            let (store, builders, granted) = (store.clone(), key.clone(), Arc::clone(&granted));
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut builders = builders.into_iter();
                let mut current = builders.next();
                let mut held = 0;
                while let Some(key) = current
                    && granted.fetch_add(1, Ordering::Relaxed) < target
                {
                    match store.lease_next(&key, now).await.unwrap() {
                        Some(lease) => got.push((lease.task_id, key)),
                        None => break,
                    }
                    held += 1;
                    if held == CAPACITY {
                        (current, held) = (builders.next(), 0);
                    }
                }
                got
            })
        })
        .collect();
    let mut leases = Vec::new();
    for claimer in handles {
        leases.extend(claimer.await.unwrap());
    }
    let took = started.elapsed();

    let mut per_task: HashMap<_, Vec<_>> = HashMap::new();
    for (task, key) in &leases {
        per_task.entry(*task).or_default().push(key.to_string());
    }
    let limit = (policy().quorum + policy().extra_leases) as usize;
    let over_limit = per_task.values().filter(|h| h.len() > limit).count();
    let double_leases: usize = per_task
        .values()
        .map(|holders| {
            let mut distinct = holders.clone();
            distinct.sort();
            distinct.dedup();
            holders.len() - distinct.len()
        })
        .sum();
    println!(
        "  {name:<9} {:>8.0} leases/s  ({} leases over {queued} queued tasks in {took:.2?}, \
         {} claimers; tasks over their limit of {limit}: {over_limit}; \
         double leases: {double_leases})",
        leases.len() as f64 / took.as_secs_f64(),
        leases.len(),
        claimers(),
    );
}

fn main() {
    let tasks = std::env::var("BUILDSRS_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("lease: {} concurrent claimers, quorum 2, no extra leases (goal: SQLite ≥ 1,000/s, Postgres ≥ 2,000/s)", claimers());
        let backends = std::env::var("BUILDSRS_BENCH_BACKENDS")
            .unwrap_or_else(|_| "sqlite,postgres".to_owned());
        if backends.contains("sqlite") {
            let sqlite = TestStore::sqlite_with(policy()).await;
            run("sqlite", sqlite.store.clone(), tasks).await;
        }
        if backends.contains("postgres") {
            let postgres = TestStore::postgres_with(policy(), usize::from(claimers())).await;
            run("postgres", postgres.store.clone(), tasks).await;
        }
    });
}
