//! Mirror throughput: `buildsrs mirror --once` copying 100 verified artifacts of 4 MiB over
//! HTTP and over iroh-blobs, against a plain parallel HTTP download of the same files in the
//! same run.
//!
//! Run it with (release build; a debug build says nothing):
//!
//! ```text
//! cargo bench -p buildsrs-cli --bench mirror
//! ```
//!
//! Set up once, not timed: 100 artifacts of random bytes, verified in a SQLite store (two
//! approved builders lease every task and submit the same artifact), their blobs and bundles
//! in object storage (a local directory), the coordinator's web router serving them on
//! `127.0.0.1:0`, and one provider [`BlobNode`] holding all of them, whose address the feed
//! lists for every artifact.
//!
//! Timed, per round, each into a fresh directory:
//!
//! - **HTTP baseline** — `reqwest` GETs of the 100 `/blobs/<hash>` URLs, 4 at a time (the
//!   mirror's default `--jobs 4`), each streamed into its own file. No feed, no bundles, no
//!   hashing, no fsync: what the server and loopback allow.
//! - **mirror HTTP** — `buildsrs mirror --once --from http`, in process
//!   ([`buildsrs_cli::mirror::run`]): the feed, and per artifact the bundle GET, the blob
//!   download into `tmp/`, then `put_blob_file` (read, BLAKE3, copy into `blobs/`) and
//!   `put_bundle`.
//! - **mirror peers** — `buildsrs mirror --once --from peers`: the same, but the blob comes
//!   over iroh-blobs from the provider node (QUIC, BLAKE3-verified while streaming, into the
//!   mirror's scratch iroh store), is exported (copied, hashed again, fsynced) into `tmp/`,
//!   then stored as above. Starting the mirror's iroh endpoint and store is in the time.
//!
//! The variants alternate in order from round to round, so a change in machine load hits
//! all of them. After each variant, outside the timed part, every one of the 100 files must
//! be there and hash right, and the mirror must have exited with 0; anything else aborts the
//! run. Nothing about time is asserted: the benchmark prints per-round lines, medians in
//! MiB/s, the ratios mirror ÷ baseline, and process CPU seconds per GiB (client and servers
//! together, from `/proc/self/stat`). The load generator and the servers share one process
//! and the machine's cores, so the figures are of the whole exchange, not of one side.
//!
//! Environment:
//!
//! - `BUILDSRS_BENCH_ROUNDS` — rounds per variant (default `3`)
//! - `BUILDSRS_BENCH_ARTIFACTS` — number of artifacts (default `100`)
//! - `BUILDSRS_BENCH_SIZE_MIB` — size of each artifact in MiB (default `4`)
//!
//! Temp dirs are made under the system temp dir (`TMPDIR`), which holds about four copies
//! of the artifacts at a time (1.6 GiB with the defaults).

#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use buildsrs_blobs::{BlobConfig, BlobNode};
use buildsrs_keys::{ArtifactId, Bundle, Identity, PublicKey};
use buildsrs_storage::{ArtifactStorage, StorageConfig};
use buildsrs_store::testing::TestStore;
use buildsrs_store::{
    BuildOutcome, IndexVersion, NewBuilder, Policy, Store, StoredBuild, Submission,
};
use buildsrs_web::{BlobAddress, BlobProviders, WebConfig, WebState};
use clap::Parser;
use futures::StreamExt;
use jiff::Timestamp;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

const MIB: u64 = 1024 * 1024;
const TARGET: &str = "x86_64-unknown-linux-gnu";
const TOOLCHAIN: &str = "1.95.0";
const CRATE: &str = "mirror-bench";
/// The mirror's default `--jobs`, used by the baseline too.
const JOBS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Variant {
    Baseline,
    MirrorHttp,
    MirrorPeers,
}

impl Variant {
    const ALL: [Variant; 3] = [Self::Baseline, Self::MirrorHttp, Self::MirrorPeers];

    fn name(self) -> &'static str {
        match self {
            Self::Baseline => "HTTP baseline",
            Self::MirrorHttp => "mirror --from http",
            Self::MirrorPeers => "mirror --from peers",
        }
    }
}

/// One timed copy of every artifact.
#[derive(Debug, Clone, Copy)]
struct Sample {
    elapsed: Duration,
    /// Process CPU time (user + system, all threads) during the copy.
    cpu: Option<Duration>,
}

/// The parsed `buildsrs mirror` arguments, as the binary would parse them.
#[derive(Debug, Parser)]
struct MirrorCommand {
    #[command(flatten)]
    args: buildsrs_cli::mirror::MirrorArgs,
}

/// The feed lists the provider node for every artifact.
#[derive(Debug)]
struct OneProvider(BlobAddress);

impl BlobProviders for OneProvider {
    fn addresses(&self, _attesters: &[PublicKey]) -> Vec<BlobAddress> {
        vec![self.0.clone()]
    }
}

/// The coordinator side, running for the whole benchmark.
struct Scene {
    /// The HTTP base URL (`http://127.0.0.1:PORT`).
    base: String,
    /// The artifacts, in feed order.
    artifacts: Vec<ArtifactId>,
    provider: BlobNode,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _store: TestStore,
    _dirs: Vec<tempfile::TempDir>,
}

fn main() -> anyhow::Result<()> {
    let rounds = env_number("BUILDSRS_BENCH_ROUNDS", 3)?;
    let count = env_number("BUILDSRS_BENCH_ARTIFACTS", 100)?;
    let size_mib = env_number("BUILDSRS_BENCH_SIZE_MIB", 4)?;
    ensure!(
        rounds > 0 && count > 0 && size_mib > 0,
        "the knobs must be at least 1"
    );
    let size = size_mib as u64 * MIB;
    let total = count as u64 * size;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "mirror bench: {count} artifacts of {size_mib} MiB, {rounds} rounds, {JOBS} at a time, \
         {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    println!("load at start: {}", loadavg());
    println!(
        "(the web server, the provider node and the mirror share this process and the \
         machine's cores)"
    );

    let samples = runtime.block_on(async {
        let setup_started = Instant::now();
        let scene = Scene::start(count, size).await?;
        println!(
            "setup: {count} artifacts verified, stored and provided in {:.1?}",
            setup_started.elapsed()
        );
        let result = bench(&scene, rounds, total).await;
        scene.stop().await?;
        result
    })?;

    println!();
    println!(
        "{:<20}  {:>10}  {:>10}  {:>10}  {:>11}  {:>10}",
        "variant", "MiB/s", "min", "max", "÷ baseline", "CPU s/GiB"
    );
    let rate = |s: &Sample| total as f64 / MIB as f64 / s.elapsed.as_secs_f64();
    let baseline = median(samples[&Variant::Baseline].iter().map(rate));
    for variant in Variant::ALL {
        let list = &samples[&variant];
        let rates: Vec<f64> = list.iter().map(rate).collect();
        let cpu = median(
            list.iter()
                .filter_map(|s| s.cpu)
                .map(|c| c.as_secs_f64() / (total as f64 / (1024.0 * MIB as f64))),
        );
        let med = median(rates.iter().copied());
        println!(
            "{:<20}  {med:>10.1}  {:>10.1}  {:>10.1}  {:>11.2}  {cpu:>10.2}",
            variant.name(),
            rates.iter().copied().fold(f64::INFINITY, f64::min),
            rates.iter().copied().fold(0.0, f64::max),
            med / baseline,
        );
    }
    println!();
    println!(
        "ratio mirror --from http ÷ baseline: {:.2}",
        median(samples[&Variant::MirrorHttp].iter().map(rate)) / baseline
    );
    println!(
        "ratio mirror --from peers ÷ baseline: {:.2}",
        median(samples[&Variant::MirrorPeers].iter().map(rate)) / baseline
    );
    println!("load at end: {}", loadavg());
    Ok(())
}

/// Runs every variant `rounds` times, rotating their order.
async fn bench(
    scene: &Scene,
    rounds: usize,
    total: u64,
) -> anyhow::Result<HashMap<Variant, Vec<Sample>>> {
    let mut samples: HashMap<Variant, Vec<Sample>> = HashMap::new();
    let root = tempfile::tempdir()?;
    for round in 0..rounds {
        for i in 0..Variant::ALL.len() {
            let variant = Variant::ALL[(round + i) % Variant::ALL.len()];
            let dir = root.path().join(format!("r{round}-{i}"));
            std::fs::create_dir_all(&dir)?;
            let cpu_before = process_cpu();
            let started = Instant::now();
            let files_dir = match variant {
                Variant::Baseline => {
                    baseline(scene, &dir).await?;
                    dir.clone()
                }
                Variant::MirrorHttp => {
                    mirror(scene, &dir, "http").await?;
                    dir.join("blobs")
                }
                Variant::MirrorPeers => {
                    mirror(scene, &dir, "peers").await?;
                    dir.join("blobs")
                }
            };
            let elapsed = started.elapsed();
            let cpu = cpu_before
                .zip(process_cpu())
                .map(|(a, b)| b.saturating_sub(a));
            check(&scene.artifacts, &files_dir)
                .await
                .with_context(|| format!("round {round}, {}", variant.name()))?;
            std::fs::remove_dir_all(&dir)?;
            println!(
                "  round {round}  {:<20}  {:>8.1} MiB/s  ({elapsed:.2?}; load {})",
                variant.name(),
                total as f64 / MIB as f64 / elapsed.as_secs_f64(),
                loadavg(),
            );
            samples
                .entry(variant)
                .or_default()
                .push(Sample { elapsed, cpu });
        }
    }
    Ok(samples)
}

/// The baseline: every `/blobs/<hash>`, `JOBS` at a time, each into a file named by its hash.
async fn baseline(scene: &Scene, dir: &Path) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(&scene.artifacts)
        .map(|artifact| {
            let client = &client;
            async move {
                let hex = artifact.blake3.to_hex();
                let url = format!("{}/blobs/{hex}", scene.base);
                let response = client.get(&url).send().await?.error_for_status()?;
                let mut file = tokio::fs::File::create(dir.join(&hex)).await?;
                let mut body = response.bytes_stream();
                while let Some(chunk) = body.next().await {
                    file.write_all(&chunk?).await?;
                }
                file.flush().await?;
                Ok(())
            }
        })
        .buffer_unordered(JOBS)
        .collect()
        .await;
    results.into_iter().collect()
}

/// `buildsrs mirror --once --from FROM --coordinator BASE --dir DIR`, in process.
async fn mirror(scene: &Scene, dir: &Path, from: &str) -> anyhow::Result<()> {
    let dir_arg = dir.display().to_string();
    let command = MirrorCommand::try_parse_from([
        "buildsrs-mirror",
        "--once",
        "--from",
        from,
        "--jobs",
        &JOBS.to_string(),
        "--coordinator",
        &scene.base,
        "--dir",
        &dir_arg,
    ])?;
    let code = buildsrs_cli::mirror::run(command.args, CancellationToken::new()).await?;
    ensure!(
        code == buildsrs_cli::EXIT_OK,
        "mirror --from {from} exited with {code}"
    );
    Ok(())
}

/// Every artifact is in `dir`, named by its hash, and hashes to it.
async fn check(artifacts: &[ArtifactId], dir: &Path) -> anyhow::Result<()> {
    let dir = dir.to_owned();
    let artifacts = artifacts.to_vec();
    tokio::task::spawn_blocking(move || {
        for artifact in &artifacts {
            let path = dir.join(artifact.blake3.to_hex());
            let actual = ArtifactId::of_file(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            if actual != *artifact {
                bail!("{} hashes to {actual:?}, not {artifact:?}", path.display());
            }
        }
        Ok(())
    })
    .await?
}

impl Scene {
    async fn start(count: usize, size: u64) -> anyhow::Result<Scene> {
        let sources = tempfile::tempdir()?;
        let storage_dir = tempfile::tempdir()?;
        let provider_dir = tempfile::tempdir()?;

        // Random, incompressible bytes (xorshift: fast and good enough for that).
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut files: Vec<(PathBuf, ArtifactId)> = Vec::with_capacity(count);
        for i in 0..count {
            let mut bytes = vec![0u8; usize::try_from(size)?];
            for word in bytes.chunks_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                word.copy_from_slice(&state.to_le_bytes()[..word.len()]);
            }
            let id = ArtifactId::of_bytes(&bytes);
            let path = sources.path().join(format!("artifact-{i:03}"));
            std::fs::write(&path, &bytes)?;
            files.push((path, id));
        }

        let store = TestStore::sqlite_with(Policy {
            quorum: 2,
            extra_leases: 0,
            ..Policy::default()
        })
        .await;
        let artifacts: Vec<ArtifactId> = files.iter().map(|(_, id)| *id).collect();
        verify_all(&store.store, &artifacts).await?;

        let storage = ArtifactStorage::open(&StorageConfig::Local {
            root: storage_dir.path().to_owned(),
        })?;
        let provider = BlobNode::spawn(BlobConfig {
            secret_key: Identity::generate()?.iroh_secret_key(),
            store_dir: Some(provider_dir.path().join("iroh")),
            bind: "127.0.0.1:0".parse()?,
            gc_interval: None,
        })
        .await?;
        for (path, id) in &files {
            let hex = id.blake3.to_hex();
            storage.put_blob_file(&hex, path).await?;
            storage
                .put_bundle(&hex, Bundle::new(*id).to_json_pretty().into())
                .await?;
            store
                .store
                .set_artifact_storage_key(&id.blake3, &format!("blobs/{hex}"))
                .await?;
            let added = provider.add_file(path).await?;
            ensure!(added == *id, "the provider stored {added:?} for {id:?}");
            std::fs::remove_file(path)?;
        }

        let providers: Arc<dyn BlobProviders> = Arc::new(OneProvider(BlobAddress {
            endpoint_id: provider.addr().endpoint_id,
            addrs: provider.addr().addrs,
        }));
        let state = WebState::new(
            store.store.clone(),
            storage,
            WebConfig {
                providers: Some(providers),
                ..WebConfig::default()
            },
        )?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(buildsrs_web::serve(listener, state, shutdown.clone()));

        // The feed must list them all, each with the provider.
        let feed: serde_json::Value = serde_json::from_slice(
            &reqwest::get(format!(
                "{base}/api/v1/verified?since=0&limit={}",
                count.min(100)
            ))
            .await?
            .error_for_status()?
            .bytes()
            .await?,
        )?;
        let items = feed["items"].as_array().context("the feed has no items")?;
        ensure!(
            items.len() == count.min(100),
            "the feed lists {} artifacts, expected {}",
            items.len(),
            count.min(100)
        );
        ensure!(
            items
                .iter()
                .all(|item| item["providers"].as_array().is_some_and(|p| p.len() == 1)),
            "the feed does not list the provider"
        );

        Ok(Scene {
            base,
            artifacts,
            provider,
            shutdown,
            server,
            _store: store,
            _dirs: vec![sources, storage_dir, provider_dir],
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.server.await??;
        self.provider.shutdown().await?;
        Ok(())
    }
}

/// Plans a task per artifact and has two approved builders agree on each.
async fn verify_all(store: &Store, artifacts: &[ArtifactId]) -> anyhow::Result<()> {
    let now = Timestamp::now();
    store.set_target(TARGET, true, now).await?;
    store.set_toolchain(TOOLCHAIN, true, now).await?;
    // Every version is wanted: the newest and all older ones as backfill.
    let backfill = u32::try_from(artifacts.len().saturating_sub(1))?;
    store.watch_crate(CRATE, backfill, now).await?;
    let versions = (0..artifacts.len())
        .map(|i| IndexVersion {
            name: CRATE.parse().expect("a crate name"),
            version: format!("1.{i}.0").parse().expect("a version"),
            cksum: format!("{i:064x}").parse().expect("a sha256"),
            download_url: format!("https://registry.test/dl/{CRATE}/1.{i}.0/download"),
            yanked: false,
            rust_version: None,
        })
        .collect();
    store.upsert_versions(versions, now).await?;
    let mut builders = Vec::new();
    for n in 1..=2u8 {
        let key = Identity::from_seed([n; 32]).public_key();
        store
            .register_builder(
                NewBuilder {
                    public_key: key,
                    name: format!("bench-builder-{n}"),
                    targets: vec![TARGET.parse()?],
                    toolchains: vec![TOOLCHAIN.parse()?],
                    capacity: 8,
                },
                now,
            )
            .await?;
        store.approve_builder(&key, now).await?;
        builders.push(key);
    }
    // Each task gets the next artifact the first time it is leased.
    let mut assigned = HashMap::new();
    let mut submissions = 0;
    loop {
        let mut leased = false;
        for builder in &builders {
            let Some(lease) = store.lease_next(builder, now).await? else {
                continue;
            };
            leased = true;
            let next = assigned.len();
            let index = *assigned.entry(lease.task_id).or_insert(next);
            let artifact = *artifacts
                .get(index)
                .context("more tasks were planned than there are artifacts")?;
            store
                .submit(
                    Submission {
                        lease_id: lease.lease_id,
                        epoch: lease.epoch,
                        builder: *builder,
                        outcome: BuildOutcome::Built(StoredBuild {
                            artifact,
                            signed: br#"{"statement":"mirror bench"}"#.to_vec(),
                        }),
                        log: None,
                    },
                    now,
                )
                .await?;
            submissions += 1;
        }
        if !leased {
            break;
        }
    }
    ensure!(
        assigned.len() == artifacts.len() && submissions == 2 * artifacts.len(),
        "{} tasks leased with {submissions} submissions for {} artifacts",
        assigned.len(),
        artifacts.len()
    );
    Ok(())
}

fn env_number(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .with_context(|| format!("{name}: expected a number, got {text:?}")),
        Err(_) => Ok(default),
    }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// The first three fields of `/proc/loadavg`.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// User + system CPU time of this process, all threads (`/proc/self/stat`, 100 ticks/s).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}
