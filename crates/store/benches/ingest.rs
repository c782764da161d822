//! Ingest benchmark: a generated index of 20,000 crates / 200,000 versions upserted into each
//! backend in batches, as the index follower does on a first sync; on Postgres compared with
//! bulk-loading the same rows with `COPY` into a fresh copy of the same schema, in the same
//! run. Prints figures; asserts nothing about time.
//!
//! `cargo bench -p buildsrs-store --bench ingest` (needs the test Postgres server, see
//! `buildsrs_store::testing`). `BUILDSRS_BENCH_CRATES` / `BUILDSRS_BENCH_VERSIONS_PER_CRATE`
//! change the size.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use buildsrs_store::testing::{FreshDatabase, TestStore};
use buildsrs_store::{IndexVersion, Policy, Store};
use futures::SinkExt;
use jiff::Timestamp;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A deterministic 64-hex-digit checksum.
fn cksum(crate_index: usize, version_index: usize) -> String {
    let mut x = (crate_index as u64) << 20 | version_index as u64;
    let mut out = String::with_capacity(64);
    for _ in 0..4 {
        // splitmix64
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.push_str(&format!("{:016x}", z ^ (z >> 31)));
    }
    out
}

fn index(crates: usize, per_crate: usize) -> Vec<IndexVersion> {
    let mut lines = Vec::with_capacity(crates * per_crate);
    for c in 0..crates {
        for v in 0..per_crate {
            lines.push(IndexVersion {
                name: format!("bench-crate-{c:05}").parse().expect("a crate name"),
                version: format!("0.{v}.0").parse().expect("a version"),
                cksum: cksum(c, v).parse().expect("a sha256"),
                download_url: format!(
                    "https://registry.test/dl/bench-crate-{c:05}/0.{v}.0/download"
                ),
                // Every 20th version is yanked, as a sprinkling of real yanks.
                yanked: (c + v) % 20 == 0,
                // Half of them name one, as crates.io's recent versions mostly do.
                rust_version: (v % 2 == 0).then(|| "1.70".to_owned()),
            });
        }
    }
    lines
}

async fn ingest(store: &Store, lines: &[IndexVersion], batch: usize) -> Duration {
    let now = Timestamp::from_second(1_700_000_000).unwrap();
    let started = Instant::now();
    for chunk in lines.chunks(batch) {
        store.upsert_versions(chunk.to_vec(), now).await.unwrap();
    }
    started.elapsed()
}

fn rate(rows: usize, took: Duration) -> f64 {
    rows as f64 / took.as_secs_f64()
}

/// Loads the same crates and versions with `COPY` into a freshly migrated database.
async fn copy_baseline(lines: &[IndexVersion]) -> Duration {
    let database = FreshDatabase::create().await;
    // Open (and drop) a store once: that applies the migrations.
    drop(Store::open_url(&database.url).await.unwrap());
    let (mut client, connection) = tokio_postgres::connect(&database.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);

    // The rows, as text, outside the timing (the store gets its input ready-made too).
    let mut crates = String::new();
    let mut versions = String::new();
    let mut crate_id = 0_u64;
    let mut last = "";
    for line in lines {
        if line.name != last {
            crate_id += 1;
            last = &line.name;
            crates.push_str(&format!("{crate_id}\t{}\tf\t1700000000000\n", line.name));
        }
        versions.push_str(&format!(
            "{crate_id}\t{}\t{}\t{}\t{}\t1700000000000\n",
            line.version,
            line.cksum,
            if line.yanked { "t" } else { "f" },
            line.rust_version.as_deref().unwrap_or("\\N"),
        ));
    }

    let started = Instant::now();
    let tx = client.transaction().await.unwrap();
    for (sql, data) in [
        (
            "COPY crates (id, name, watched, first_seen) FROM STDIN",
            crates,
        ),
        (
            "COPY versions (crate_id, version, cksum, yanked, rust_version, first_seen) FROM STDIN",
            versions,
        ),
    ] {
        let sink = tx.copy_in::<_, bytes::Bytes>(sql).await.unwrap();
        futures::pin_mut!(sink);
        for chunk in data.as_bytes().chunks(1 << 20) {
            sink.send(bytes::Bytes::copy_from_slice(chunk))
                .await
                .unwrap();
        }
        sink.finish().await.unwrap();
    }
    tx.commit().await.unwrap();
    let took = started.elapsed();
    drop(client);
    let _ = driver.await;
    took
}

fn main() {
    let crates = env_or("BUILDSRS_BENCH_CRATES", 20_000);
    let per_crate = env_or("BUILDSRS_BENCH_VERSIONS_PER_CRATE", 10);
    let lines = index(crates, per_crate);
    let n = lines.len();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("ingest: {crates} crates, {n} versions, batches of 5,000 (watched: none)");

        let sqlite = TestStore::sqlite().await;
        let took = ingest(&sqlite.store, &lines, 5_000).await;
        println!(
            "  sqlite    first sync   {:>8.0} versions/s  ({took:.2?})",
            rate(n, took)
        );
        let again = ingest(&sqlite.store, &lines, 5_000).await;
        println!(
            "  sqlite    re-sync      {:>8.0} versions/s  ({again:.2?}, nothing changed)",
            rate(n, again)
        );
        drop(sqlite);

        let copy = copy_baseline(&lines).await;
        let copy_rate = rate(n, copy);
        println!("  postgres  COPY         {copy_rate:>8.0} versions/s  ({copy:.2?}, baseline)");

        let postgres = TestStore::postgres().await;
        let took = ingest(&postgres.store, &lines, 5_000).await;
        println!(
            "  postgres  first sync   {:>8.0} versions/s  ({took:.2?})  = {:.2} of COPY (goal ≥ 0.5)",
            rate(n, took),
            rate(n, took) / copy_rate
        );
        let again = ingest(&postgres.store, &lines, 5_000).await;
        println!(
            "  postgres  re-sync      {:>8.0} versions/s  ({again:.2?}, nothing changed)",
            rate(n, again)
        );
        drop(postgres);

        // For scale: planning tasks too (every crate planned via full-index mode: at its
        // first sight, its newest version).
        let policy = Policy {
            plan_all_crates: true,
            ..Policy::default()
        };
        let planned = TestStore::postgres_with(policy, 4).await;
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        planned
            .store
            .set_target("x86_64-unknown-linux-gnu", true, now)
            .await
            .unwrap();
        planned.store.set_toolchain("1.95.0", true, now).await.unwrap();
        let took = ingest(&planned.store, &lines, 5_000).await;
        let tasks = planned.store.queue_stats(now).await.unwrap().queued;
        if 5_000 % per_crate == 0 {
            // Each crate's versions come in one batch: its first sight.
            assert_eq!(tasks, crates as u64, "one task per crate: its newest version");
        }
        println!(
            "  postgres  + planning   {:>8.0} versions/s  ({took:.2?}, {tasks} tasks: each \
             crate's newest version)",
            rate(n, took)
        );
    });
}
