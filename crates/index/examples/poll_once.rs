//! Polls a sparse index once for the crates named on the command line and prints what it
//! found: a manual check of the real path (TLS roots, proxy, gzip, crates.io's answers).
//!
//! ```text
//! cargo run -p buildsrs-index --example poll_once -- sparse+https://index.crates.io/ ripgrep fd-find
//! ```
//!
//! Polls twice, to show that an unchanged index is recognised (crates.io sends no validators
//! here, so the second poll compares body hashes).

use anyhow::{Context, Result};
use buildsrs_index::SparseFollower;

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut args = std::env::args().skip(1);
    let index_url = args.next().context("usage: poll_once INDEX_URL CRATE...")?;
    let names: Vec<String> = args.collect();

    let mut follower = SparseFollower::new(&index_url)?;
    for round in 1..=2 {
        let started = std::time::Instant::now();
        let report = follower.poll(&names).await?;
        println!("poll {round} took {:?}", started.elapsed());
        for update in &report.updates {
            let live = update.versions.iter().filter(|v| !v.yanked).count();
            println!(
                "  {}: {} versions ({live} not yanked), {} new this poll",
                update.name,
                update.versions.len(),
                update.changes.added.len()
            );
            if let Some(latest) = update.versions.last() {
                println!(
                    "    latest {} yanked={} sha256 {}\n    {}",
                    latest.version, latest.yanked, latest.cksum, latest.download_url
                );
            }
        }
        println!("  unchanged: {:?}", report.unchanged);
        println!("  not found: {:?}", report.not_found);
        for (name, error) in &report.errors {
            println!("  error: {name}: {error}");
        }
    }
    Ok(())
}
