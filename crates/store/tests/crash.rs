//! Crash safety: a child process writes batches in a loop and is killed with SIGKILL at a
//! random moment, mostly mid-transaction (on Postgres that drops its connections with the
//! transaction open). Reopened, the store must show every batch whole or not at all, and
//! every batch the child reported committed must be there. Three kills per backend.
//!
//! The child is this test binary itself, re-run with `BUILDSRS_CRASH_CHILD_URL` set (the
//! `crash_child` test does nothing without it).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use buildsrs_store::testing::TestStore;
use buildsrs_store::{IndexVersion, Policy, Store, StoreConfig, store_test};
use common::*;

const CHILD_URL: &str = "BUILDSRS_CRASH_CHILD_URL";
const CHILD_ROUND: &str = "BUILDSRS_CRASH_CHILD_ROUND";
/// Versions per batch, each of its own crate, so that each also gets a task (full-index mode
/// plans a new crate's newest version): a batch is 3×N rows.
const BATCH: usize = 200;
const ROUNDS: u32 = 3;

fn policy() -> Policy {
    Policy {
        plan_all_crates: true,
        ..Policy::default()
    }
}

fn crate_name(round: u32, k: u32, c: usize) -> String {
    format!("crash-{round}-{k:05}-{c:03}")
}

fn batch(round: u32, k: u32) -> Vec<IndexVersion> {
    (0..BATCH)
        .map(|c| line(&crate_name(round, k, c), "1.0.0", false))
        .collect()
}

/// The child: writes batch after batch, saying after each commit which one it was.
#[tokio::test]
async fn crash_child() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let round: u32 = std::env::var(CHILD_ROUND).unwrap().parse().unwrap();
    let store = Store::open(&StoreConfig::from_url(&url).unwrap().with_policy(policy()))
        .await
        .unwrap();
    let mut stdout = std::io::stdout();
    for k in 0.. {
        store.upsert_versions(batch(round, k), t(1)).await.unwrap();
        writeln!(stdout, "committed {k}").unwrap();
        stdout.flush().unwrap();
    }
}

/// Runs the child until it has committed a few batches, kills it at a random moment, and
/// returns the last batch it reported.
fn run_and_kill(url: &str, round: u32) -> u32 {
    // The child test's name as the harness knows it: its module path without the crate's
    // name (`crash_child` when this file is a test binary of its own).
    let name = module_path!().split_once("::").map_or_else(
        || "crash_child".to_owned(),
        |(_, m)| format!("{m}::crash_child"),
    );
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_URL, url)
        .env(CHILD_ROUND, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = Instant::now();
    let mut last = None;
    // A pseudo-random number of commits (3..8) before the kill, then a random delay within
    // the next batch.
    let nanos = u64::from(Instant::now().elapsed().subsec_nanos()) ^ u64::from(std::process::id());
    let wanted = 3 + (nanos % 5) as u32;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(k) = line.strip_prefix("committed ") {
            last = Some(k.parse::<u32>().unwrap());
            if last >= Some(wanted) {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the child is too slow"
        );
    }
    std::thread::sleep(Duration::from_micros(nanos % 3_000));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Read what it managed to report before dying.
    for line in lines.map_while(Result::ok) {
        if let Some(k) = line.strip_prefix("committed ") {
            last = Some(k.parse().unwrap());
        }
    }
    last.expect("the child committed nothing")
}

async fn check(store: &Store, round: u32, reported: u32) -> u32 {
    let mut whole = 0;
    // Batches past the last reported one may have committed (killed before printing) or not;
    // either way they must be whole.
    for k in 0..reported + 3 {
        // The batch's crates are the names containing this.
        let prefix = format!("crash-{round}-{k:05}-");
        let found = store
            .search_crates(&prefix, buildsrs_store::Page::first(1))
            .await
            .unwrap()
            .total;
        if found == 0 {
            assert!(
                k > reported,
                "batch {k} was reported committed but is missing"
            );
            continue;
        }
        assert_eq!(found, BATCH as u64, "batch {k} is half-written");
        for c in [0, BATCH - 1] {
            let name = crate_name(round, k, c);
            let v = store.version_info(&name, "1.0.0").await.unwrap().unwrap();
            assert_eq!(v.tasks.len(), 1, "batch {k}: its tasks are half-written");
        }
        whole += 1;
    }
    whole
}

async fn crash_rounds(db: &TestStore) {
    // The matrix must exist before the child plans tasks.
    matrix(&db.store).await;
    let mut total = 0;
    for round in 0..ROUNDS {
        let url = db.url.clone();
        let reported = tokio::task::spawn_blocking(move || run_and_kill(&url, round))
            .await
            .unwrap();
        // Reopen, as a restarted coordinator would.
        let store = Store::open(
            &StoreConfig::from_url(&db.url)
                .unwrap()
                .with_policy(policy()),
        )
        .await
        .unwrap();
        let whole = check(&store, round, reported).await;
        assert!(whole > reported, "round {round}: {whole} whole batches");
        total += whole;
        let stats = store.queue_stats(t(2)).await.unwrap();
        assert_eq!(stats.versions, u64::from(total) * BATCH as u64);
        assert_eq!(stats.queued, u64::from(total) * BATCH as u64);
    }
}

store_test!(
    killed_writer_leaves_whole_batches,
    policy = policy(),
    |db: TestStore| async move {
        crash_rounds(&db).await;
        // And a SQLite file itself is sound.
        if let Some(path) = db.url.strip_prefix("sqlite:") {
            let conn = rusqlite::Connection::open(path).unwrap();
            let verdict: String = conn
                .query_row("PRAGMA integrity_check", [], |row| row.get(0))
                .unwrap();
            assert_eq!(verdict, "ok");
        }
    }
);
