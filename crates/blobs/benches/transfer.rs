//! Artifact transfer throughput: iroh-blobs (through [`BlobNode`], as the product uses it)
//! against a raw TCP copy of the same bytes, on loopback, in the same run.
//!
//! Run it with (release build; a debug build is ~10x slower and says nothing):
//!
//! ```text
//! cargo bench -p buildsrs-blobs --bench transfer
//! ```
//!
//! What it measures, per blob size and round:
//!
//! - **iroh, file** — two real in-process [`BlobNode`]s, each with an on-disk `FsStore` in
//!   its own temp dir, both bound to `127.0.0.1:0`. The "builder" node has the artifact in
//!   its store ([`BlobNode::add_file`], not timed). Timed: one [`BlobNode::fetch`] by a fresh
//!   "coordinator" node, from the call to its return: QUIC connect and handshake, the
//!   BLAKE3-verified stream, the writes into the coordinator's store, and tagging.
//! - **TCP, file** — the baseline: a sender thread reads the same source file with 1 MiB
//!   `read`s and writes each buffer to a `std::net::TcpStream` on 127.0.0.1; a receiver
//!   thread reads the socket in 1 MiB buffers and writes them to a new file in its own
//!   temp dir, as iroh writes into its store. Timed from `connect` until the receiver has
//!   written the last byte. Plain `read`/`write` (no `sendfile`/`splice`), no hashing: the
//!   ceiling of what loopback and the page cache allow.
//! - **iroh, mem** / **TCP, mem** — the same with in-memory stores (`store_dir: None`)
//!   against a socket copy from one `Vec` into another: what the protocol costs without
//!   file I/O. The receiving `Vec` is allocated in the timed part, as iroh's memory store
//!   allocates as data arrives; its first-touch page faults make this TCP copy slower than
//!   the file-to-file one.
//!
//! Every round checks correctness outside the timed part: the fetched blob is exported
//! and hashed again, and the TCP copy is hashed too; both must equal the source's BLAKE3.
//! A wrong hash aborts the run. Nothing about time is asserted: the benchmark prints
//! figures — per-round lines, then medians, the ratio iroh MiB/s ÷ TCP MiB/s (the issue's
//! goal is ≥ 0.5) and process CPU seconds per GiB moved (both ends together, from
//! `/proc/self/stat`, 10 ms resolution). The iroh and TCP runs alternate in order from round
//! to round, so a change in machine load hits both.
//!
//! Environment:
//!
//! - `BUILDSRS_BENCH_SIZES_MIB` — comma-separated blob sizes in MiB (default `64,512`)
//! - `BUILDSRS_BENCH_ROUNDS` — rounds per size and variant (default `5`)
//! - `BUILDSRS_BENCH_VARIANTS` — `file`, `mem` or `file,mem` (default `file,mem`)
//!
//! Temp dirs are made under the system temp dir (`TMPDIR`), which then holds about four
//! copies of the largest blob at a time.

#![allow(clippy::print_stdout)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use buildsrs_blobs::iroh::SecretKey;
use buildsrs_blobs::{BlobConfig, BlobNode};
use buildsrs_keys::ArtifactId;

const MIB: u64 = 1024 * 1024;
const BUF: usize = 1024 * 1024;
const LOOPBACK: &str = "127.0.0.1:0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    File,
    Mem,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Mem => "mem",
        }
    }
}

/// One timed transfer.
#[derive(Debug, Clone, Copy)]
struct Sample {
    elapsed: Duration,
    /// Process CPU time (user + system, all threads) during the transfer.
    cpu: Option<Duration>,
}

impl Sample {
    fn mib_per_s(&self, bytes: u64) -> f64 {
        bytes as f64 / MIB as f64 / self.elapsed.as_secs_f64()
    }

    fn cpu_s_per_gib(&self, bytes: u64) -> Option<f64> {
        self.cpu
            .map(|cpu| cpu.as_secs_f64() / (bytes as f64 / (1024.0 * MIB as f64)))
    }
}

fn main() -> anyhow::Result<()> {
    let sizes: Vec<u64> = env_list("BUILDSRS_BENCH_SIZES_MIB", "64,512")
        .iter()
        .map(|s| {
            s.parse::<u64>()
                .context("BUILDSRS_BENCH_SIZES_MIB: sizes in MiB")
        })
        .collect::<Result<_, _>>()?;
    let rounds: usize = std::env::var("BUILDSRS_BENCH_ROUNDS")
        .unwrap_or_else(|_| "5".to_owned())
        .trim()
        .parse()
        .context("BUILDSRS_BENCH_ROUNDS: a number of rounds")?;
    ensure!(rounds > 0, "BUILDSRS_BENCH_ROUNDS must be at least 1");
    let variants: Vec<Variant> = env_list("BUILDSRS_BENCH_VARIANTS", "file,mem")
        .iter()
        .map(|v| match v.as_str() {
            "file" => Ok(Variant::File),
            "mem" => Ok(Variant::Mem),
            other => bail!("BUILDSRS_BENCH_VARIANTS: unknown variant {other:?} (file, mem)"),
        })
        .collect::<Result<_, _>>()?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "transfer bench: sizes {sizes:?} MiB, {rounds} rounds, variants {:?}, {} CPUs",
        variants.iter().map(|v| v.name()).collect::<Vec<_>>(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let mut summary = Vec::new();
    for &size_mib in &sizes {
        let bytes = size_mib * MIB;
        let dir = tempfile::tempdir()?;
        let source = dir.path().join("artifact.bin");
        write_test_file(&source, bytes)?;
        let source_id = ArtifactId::of_file(&source)?;
        for &variant in &variants {
            let (iroh, tcp) = runtime.block_on(bench_size(variant, &source, source_id, rounds))?;
            summary.push((size_mib, variant, iroh, tcp));
        }
    }

    println!();
    println!(
        "{:>8}  {:<4}  {:>14}  {:>14}  {:>7}  {:>16}  {:>15}",
        "size", "var", "iroh MiB/s", "TCP MiB/s", "ratio", "iroh CPU s/GiB", "TCP CPU s/GiB"
    );
    for (size_mib, variant, iroh, tcp) in &summary {
        let bytes = size_mib * MIB;
        let iroh_rate = median(iroh.iter().map(|s| s.mib_per_s(bytes)));
        let tcp_rate = median(tcp.iter().map(|s| s.mib_per_s(bytes)));
        println!(
            "{:>4} MiB  {:<4}  {:>14.0}  {:>14.0}  {:>7.2}  {:>16}  {:>15}",
            size_mib,
            variant.name(),
            iroh_rate,
            tcp_rate,
            iroh_rate / tcp_rate,
            fmt_cpu(iroh, bytes),
            fmt_cpu(tcp, bytes),
        );
    }
    println!("(medians over {rounds} rounds; ratio = iroh MiB/s / TCP MiB/s)");
    Ok(())
}

/// All rounds of one size and variant; iroh and TCP alternate which goes first.
async fn bench_size(
    variant: Variant,
    source: &Path,
    source_id: ArtifactId,
    rounds: usize,
) -> anyhow::Result<(Vec<Sample>, Vec<Sample>)> {
    let bytes = source_id.size;
    let size_mib = bytes / MIB;
    let provider_dir = tempfile::tempdir()?;
    let provider = spawn_node(match variant {
        Variant::File => Some(provider_dir.path().join("store")),
        Variant::Mem => None,
    })
    .await?;
    let data: Option<Arc<Vec<u8>>> = match variant {
        Variant::File => {
            let id = provider.add_file(source).await?;
            ensure!(
                id == source_id,
                "the provider's store hashed the source differently"
            );
            None
        }
        Variant::Mem => {
            let data = Arc::new(std::fs::read(source)?);
            let id = provider.add_bytes(data.as_ref().clone()).await?;
            ensure!(
                id == source_id,
                "the provider's store hashed the source differently"
            );
            Some(data)
        }
    };

    let mut iroh = Vec::new();
    let mut tcp = Vec::new();
    for round in 0..rounds {
        let print_round = |label: &str, sample: &Sample| {
            println!(
                "{size_mib:>4} MiB {:<4} round {round}: {label:<4} {:>7.0} MiB/s  {:>6.3} s  cpu {}",
                variant.name(),
                sample.mib_per_s(bytes),
                sample.elapsed.as_secs_f64(),
                fmt_cpu(&[*sample], bytes),
            );
        };
        for iroh_turn in [round % 2 == 0, round % 2 != 0] {
            if iroh_turn {
                let sample = iroh_round(variant, &provider, source_id).await?;
                print_round("iroh", &sample);
                iroh.push(sample);
            } else {
                let sample = match &data {
                    None => {
                        let source = source.to_owned();
                        tokio::task::spawn_blocking(move || tcp_file_round(&source, source_id))
                            .await??
                    }
                    Some(data) => {
                        let data = data.clone();
                        tokio::task::spawn_blocking(move || tcp_mem_round(data, source_id))
                            .await??
                    }
                };
                print_round("TCP", &sample);
                tcp.push(sample);
            }
        }
    }
    provider.shutdown().await?;
    Ok((iroh, tcp))
}

/// One fetch by a fresh coordinator node; checked afterwards by exporting and re-hashing.
async fn iroh_round(
    variant: Variant,
    provider: &BlobNode,
    source_id: ArtifactId,
) -> anyhow::Result<Sample> {
    let dir = tempfile::tempdir()?;
    let coordinator = spawn_node(match variant {
        Variant::File => Some(dir.path().join("store")),
        Variant::Mem => None,
    })
    .await?;
    let providers = [provider.addr()];

    let cpu_before = process_cpu();
    let start = Instant::now();
    coordinator.fetch(&source_id.blake3, &providers).await?;
    let elapsed = start.elapsed();
    let cpu = cpu_delta(cpu_before, process_cpu());

    // Correctness, not timed: export (which re-hashes) and hash the exported file again.
    let out = dir.path().join("fetched.bin");
    coordinator.export(&source_id.blake3, &out).await?;
    let got = tokio::task::spawn_blocking(move || ArtifactId::of_file(&out)).await??;
    ensure!(
        got == source_id,
        "iroh delivered {got}, the source is {source_id}"
    );
    coordinator.shutdown().await?;
    Ok(Sample { elapsed, cpu })
}

/// Raw TCP, file to file: the sender reads the source file, the receiver writes a new
/// file in its own temp dir.
fn tcp_file_round(source: &Path, source_id: ArtifactId) -> anyhow::Result<Sample> {
    let dir = tempfile::tempdir()?;
    let dest = dir.path().join("received.bin");
    let listener = TcpListener::bind(LOOPBACK)?;
    let addr = listener.local_addr()?;
    let receiver = {
        let dest = dest.clone();
        std::thread::spawn(move || -> anyhow::Result<u64> {
            let (mut sock, _) = listener.accept()?;
            let mut file = std::fs::File::create(&dest)?;
            let mut buf = vec![0u8; BUF];
            let mut total = 0u64;
            loop {
                let n = sock.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                file.write_all(&buf[..n])?;
                total += n as u64;
            }
            Ok(total)
        })
    };

    let cpu_before = process_cpu();
    let start = Instant::now();
    let sender = {
        let source = source.to_owned();
        std::thread::spawn(move || -> anyhow::Result<()> {
            let mut sock = TcpStream::connect(addr)?;
            let mut file = std::fs::File::open(&source)?;
            let mut buf = vec![0u8; BUF];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                sock.write_all(&buf[..n])?;
            }
            sock.shutdown(std::net::Shutdown::Write)?;
            Ok(())
        })
    };
    let received = join(receiver)?;
    let elapsed = start.elapsed();
    let cpu = cpu_delta(cpu_before, process_cpu());
    join(sender)?;

    ensure!(
        received == source_id.size,
        "TCP moved {received} bytes of {}",
        source_id.size
    );
    let got = ArtifactId::of_file(&dest)?;
    ensure!(
        got == source_id,
        "TCP delivered {got}, the source is {source_id}"
    );
    Ok(Sample { elapsed, cpu })
}

/// Raw TCP, memory to memory: from the source `Vec` into a preallocated `Vec`.
fn tcp_mem_round(data: Arc<Vec<u8>>, source_id: ArtifactId) -> anyhow::Result<Sample> {
    let listener = TcpListener::bind(LOOPBACK)?;
    let addr = listener.local_addr()?;
    let len = data.len();
    let receiver = std::thread::spawn(move || -> anyhow::Result<Vec<u8>> {
        let mut out = vec![0u8; len];
        let (mut sock, _) = listener.accept()?;
        let mut at = 0;
        while at < len {
            let end = (at + BUF).min(len);
            let n = sock.read(&mut out[at..end])?;
            ensure!(n > 0, "TCP stream ended after {at} of {len} bytes");
            at += n;
        }
        Ok(out)
    });

    let cpu_before = process_cpu();
    let start = Instant::now();
    let sender = std::thread::spawn(move || -> anyhow::Result<()> {
        let mut sock = TcpStream::connect(addr)?;
        for chunk in data.chunks(BUF) {
            sock.write_all(chunk)?;
        }
        sock.shutdown(std::net::Shutdown::Write)?;
        Ok(())
    });
    let received = join(receiver)?;
    let elapsed = start.elapsed();
    let cpu = cpu_delta(cpu_before, process_cpu());
    join(sender)?;

    let got = ArtifactId::of_bytes(&received);
    ensure!(
        got == source_id,
        "TCP delivered {got}, the source is {source_id}"
    );
    Ok(Sample { elapsed, cpu })
}

async fn spawn_node(store_dir: Option<PathBuf>) -> anyhow::Result<BlobNode> {
    Ok(BlobNode::spawn(BlobConfig {
        secret_key: random_key(),
        store_dir,
        bind: LOOPBACK.parse()?,
        gc_interval: None,
    })
    .await?)
}

/// A distinct identity per node (not secret; only used on loopback for this run).
fn random_key() -> SecretKey {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&n.to_le_bytes());
    seed[8..16].copy_from_slice(&u64::from(std::process::id()).to_le_bytes());
    seed[16] = 0xbe;
    SecretKey::from_bytes(&seed)
}

/// Incompressible pseudo-random bytes (xorshift64*), written in 1 MiB pieces.
fn write_test_file(path: &Path, len: u64) -> anyhow::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15 ^ len;
    let mut buf = vec![0u8; BUF];
    let mut left = len;
    while left > 0 {
        for word in buf.chunks_exact_mut(8) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            word.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let n = left.min(BUF as u64) as usize;
        file.write_all(&buf[..n])?;
        left -= n as u64;
    }
    file.into_inner()
        .map_err(|err| err.into_error())?
        .sync_all()?;
    Ok(())
}

fn join<T>(handle: std::thread::JoinHandle<anyhow::Result<T>>) -> anyhow::Result<T> {
    match handle.join() {
        Ok(result) => result,
        Err(_) => bail!("a TCP thread panicked"),
    }
}

/// User + system CPU time of the whole process so far (Linux; `None` elsewhere).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // Clock ticks; USER_HZ is 100 on Linux.
    Some(Duration::from_millis((utime + stime) * 10))
}

fn cpu_delta(before: Option<Duration>, after: Option<Duration>) -> Option<Duration> {
    Some(after?.saturating_sub(before?))
}

fn fmt_cpu(samples: &[Sample], bytes: u64) -> String {
    let cpus: Vec<f64> = samples
        .iter()
        .filter_map(|s| s.cpu_s_per_gib(bytes))
        .collect();
    if cpus.len() < samples.len() || cpus.is_empty() {
        return "n/a".to_owned();
    }
    format!("{:.2}", median(cpus.into_iter()))
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}
