//! The crates.io group, end to end: a coordinator follows the real crates.io sparse index for
//! one small real binary crate, two builder nodes build it from the real registry in the
//! sandbox and agree byte for byte, the coordinator publishes it, and `buildsrs fetch`
//! installs it against a keyring of the two builders. It runs in CI (the registry answers on
//! every machine of ours); where the registry is unreachable it prints a loud SKIPPED line,
//! and under `CI=true` it fails instead (see `buildsrs_fixture_registry::crates_io`).
#![allow(clippy::unwrap_used)]

mod support;

use anyhow::{Context, Result};
use buildsrs_fixture_registry::crates_io;
use buildsrs_testnet::{Testnet, TestnetOptions};
use std::process::Command;

use support::{buildsrs, text};

/// A small binary crate (8 packages, seconds to build) whose newest release is old and
/// settled: watching plans only the newest version, so the test builds whatever that is
/// today (it says which).
const CRATE: &str = "rustfilt";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crates_io_a_real_crate_is_verified_published_and_installed() -> Result<()> {
    let test = "crates_io_a_real_crate_is_verified_published_and_installed";
    if !crates_io::available(test, CRATE)
        .await
        .map_err(anyhow::Error::msg)?
    {
        return Ok(());
    }
    let newest = crates_io::versions(CRATE)
        .await
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .filter(|v| !v.yanked)
        .filter_map(|v| semver::Version::parse(&v.version).ok())
        .filter(|v| v.pre.is_empty())
        .max()
        .context("no release of the crate")?;
    eprintln!("{test}: building {CRATE} {newest} from crates.io on two nodes");

    let net = Testnet::start(TestnetOptions {
        nodes: 2,
        start_nodes: 2,
        quorum: 2,
        watch: vec![CRATE.into()],
        index: Some(crates_io::INDEX.into()),
        lease_duration: std::time::Duration::from_secs(600),
        ..Default::default()
    })
    .await?;
    let stats = net
        .wait_until("the real crate verified", |s| s.verified >= 1)
        .await?;
    assert_eq!(
        stats.verified, 1,
        "only the newest version is planned: {stats:?}"
    );
    net.wait_published().await?;

    let url = net.http_url()?;
    let temp = tempfile::tempdir()?;
    let keyring = temp.path().join("keyring");
    std::fs::write(&keyring, net.keyring()?.to_text())?;
    let bin = temp.path().join("bin");
    let out = buildsrs(&[
        "fetch",
        CRATE,
        "--coordinator",
        &url,
        "--keyring",
        keyring.to_str().unwrap(),
        "--install-dir",
        bin.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("installed {CRATE} {newest}")),
        "{}",
        text(&out)
    );
    // rustfilt demangles Rust symbols read from stdin.
    let mut child = Command::new(bin.join(CRATE))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    std::io::Write::write_all(
        &mut child.stdin.take().context("stdin")?,
        b"_ZN4core3fmt5write17h0123456789abcdefE\n",
    )?;
    let ran = child.wait_with_output()?;
    assert!(ran.status.success(), "{ran:?}");
    assert_eq!(String::from_utf8(ran.stdout)?, "core::fmt::write\n");
    net.stop().await?;
    Ok(())
}
