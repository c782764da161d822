//! Benchmark: `verify` of a large artifact against plain BLAKE3 hashing of the same file.
//!
//! Run with `cargo bench -p buildsrs-keys --bench verify` (or `scripts/bench`). Size with
//! `BUILDSRS_BENCH_MIB` (default 256). Prints medians of interleaved runs and the ratio
//! verify / hash; the goal is at most 1.10.
//!
//! Baselines measured in the same run, on the same file, with the page cache warm:
//! - `blake3 mmap+rayon`: the blake3 crate in one pass over a memory map on all cores, which
//!   is what `b3sum` does;
//! - `b3sum` as a process, when it is on PATH.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use buildsrs_keys::cli::VerifyArgs;
use buildsrs_keys::{
    ArtifactId, Bundle, Identity, Keyring, SCHEMA_VERSION, SignedAttestation, Statement,
};

const ROUNDS: usize = 11;

fn main() -> Result<()> {
    let mib: u64 = std::env::var("BUILDSRS_BENCH_MIB")
        .ok()
        .map(|v| v.parse())
        .transpose()
        .context("BUILDSRS_BENCH_MIB must be a whole number")?
        .unwrap_or(256);
    let dir = tempfile::tempdir()?;
    let artifact_path = dir.path().join("artifact.bin");
    write_pseudo_random(&artifact_path, mib << 20)?;
    let artifact = ArtifactId::of_file(&artifact_path)?;

    let mut bundle = Bundle::new(artifact);
    let mut keyring = Keyring::default();
    for n in 1..=3u8 {
        let identity = Identity::from_seed([n; 32]);
        keyring.push(identity.public_key(), &format!("builder{n}"))?;
        let statement = Statement {
            schema: SCHEMA_VERSION,
            crate_name: "bench".parse().expect("a valid literal"),
            version: "1.0.0".parse().expect("a valid literal"),
            registry: None,
            source_sha256: None,
            cargo_lock_sha256: None,
            target: "x86_64-unknown-linux-gnu".parse().expect("a valid literal"),
            toolchain: "1.95.0/abc/x86_64-unknown-linux-gnu".parse()?,
            features: vec![],
            settings_digest: None,
            artifact,
            builder: identity.public_key(),
            build_started: 1,
            build_finished: 2,
        };
        bundle.push(&SignedAttestation::sign(statement, &identity)?)?;
    }
    let bundle_path = Bundle::path_for(&artifact_path);
    bundle.save(&bundle_path)?;
    let keyring_path = dir.path().join("keyring");
    std::fs::write(&keyring_path, keyring.to_text())?;

    let args = VerifyArgs {
        file: artifact_path.clone(),
        bundle: None,
        keyring: keyring_path.clone(),
        threshold: 3,
        crate_name: Some("bench".parse().expect("a valid literal")),
        version: None,
        target: None,
        source_sha256: None,
        registry: None,
        cargo_lock: None,
        json: false,
    };
    let cli = env!("CARGO_BIN_EXE_buildsrs-keys");
    let b3sum = Command::new("b3sum").arg("--version").output().is_ok();

    let mut hash_times = Vec::new();
    let mut verify_times = Vec::new();
    let mut cli_times = Vec::new();
    let mut b3sum_times = Vec::new();
    ArtifactId::of_file(&artifact_path)?; // warm the page cache
    for _ in 0..ROUNDS {
        hash_times.push(timed(|| {
            let mut hasher = blake3::Hasher::new();
            hasher.update_mmap_rayon(&artifact_path)?;
            ensure!(ArtifactId::from_hasher(&hasher) == artifact);
            Ok(())
        })?);
        verify_times.push(timed(|| {
            let report = buildsrs_keys::cli::verify(&args)?;
            ensure!(report.verified, "{report}");
            Ok(())
        })?);
        cli_times.push(timed(|| {
            let status = Command::new(cli)
                .args(["verify", "--threshold", "3", "--keyring"])
                .arg(&keyring_path)
                .arg(&artifact_path)
                .stdout(std::process::Stdio::null())
                .status()?;
            ensure!(status.success(), "buildsrs-keys verify failed");
            Ok(())
        })?);
        if b3sum {
            b3sum_times.push(timed(|| {
                let status = Command::new("b3sum")
                    .arg(&artifact_path)
                    .stdout(std::process::Stdio::null())
                    .status()?;
                ensure!(status.success());
                Ok(())
            })?);
        }
    }

    let hash = median(&mut hash_times);
    let rate = |d: Duration| mib as f64 / d.as_secs_f64();
    println!("verify benchmark: {mib} MiB artifact, 3 attestations, median of {ROUNDS} rounds");
    println!(
        "  baseline blake3 mmap+rayon   {:>8.1} ms  {:>8.0} MiB/s",
        ms(hash),
        rate(hash)
    );
    if b3sum {
        let t = median(&mut b3sum_times);
        println!(
            "  baseline b3sum (process)     {:>8.1} ms  {:>8.0} MiB/s",
            ms(t),
            rate(t)
        );
    }
    let verify = median(&mut verify_times);
    println!(
        "  verify (library)             {:>8.1} ms  {:>8.0} MiB/s  ratio {:.3}x of blake3 mmap+rayon (goal <= 1.10)",
        ms(verify),
        rate(verify),
        verify.as_secs_f64() / hash.as_secs_f64()
    );
    let process = median(&mut cli_times);
    print!(
        "  buildsrs-keys verify (proc)  {:>8.1} ms  {:>8.0} MiB/s",
        ms(process),
        rate(process)
    );
    if b3sum {
        let b3 = median(&mut b3sum_times);
        println!(
            "  ratio {:.3}x of the b3sum process (goal <= 1.10)",
            process.as_secs_f64() / b3.as_secs_f64()
        );
    } else {
        println!("  (install b3sum for the process-to-process ratio)");
    }
    Ok(())
}

fn timed(mut f: impl FnMut() -> Result<()>) -> Result<Duration> {
    let start = Instant::now();
    f()?;
    Ok(start.elapsed())
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Fills a file with incompressible bytes quickly (BLAKE3 in XOF mode).
fn write_pseudo_random(path: &Path, len: u64) -> Result<()> {
    use std::io::Write;
    let mut reader = blake3::Hasher::new().update(b"bench").finalize_xof();
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        reader.fill(&mut buf[..n]);
        file.write_all(&buf[..n])?;
        left -= n as u64;
    }
    file.flush()?;
    Ok(())
}
