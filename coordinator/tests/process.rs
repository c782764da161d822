//! The `buildsrs-coordinator` binary as an operator runs it: it stops cleanly on SIGTERM,
//! survives kill -9 without losing or duplicating work, and refuses bad flags clearly.

#![allow(clippy::unwrap_used)] // Tests fail loudly on broken fixtures.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use buildsrs_api::answers::QueueAnswer;
use buildsrs_fixture_registry::FixtureRegistry;

const BIN: &str = env!("CARGO_BIN_EXE_buildsrs-coordinator");

fn start(data: &Path, registry: &FixtureRegistry) -> Result<Child> {
    Ok(Command::new(BIN)
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "--index",
            &registry.index_url(),
        ])
        .args([
            "--watch",
            "hello-bin,multi-bin",
            "--poll-interval",
            "1",
            "--toolchain",
            "1.95.0",
            // Its own ports: tests run in parallel (the defaults are 127.0.0.1:7700 and
            // 127.0.0.1:8080).
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--http",
            "127.0.0.1:0",
        ])
        .env("BUILDSRS_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

/// The queued-task count that `status` prints.
fn queued(data: &Path) -> Result<u64> {
    let output = Command::new(BIN)
        .args(["status", "--data-dir", data.to_str().unwrap()])
        .output()?;
    if !output.status.success() {
        bail!("status failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let text = String::from_utf8(output.stdout)?;
    let line = text
        .lines()
        .find(|l| l.starts_with("tasks:"))
        .context("no tasks line")?;
    let count = line.split_whitespace().nth(1).context("no count")?;
    Ok(count.parse()?)
}

fn wait_for_queued(data: &Path, want: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if queued(data).unwrap_or(0) >= want {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("never saw {want} queued tasks")
}

fn signal(child: &Child, name: &str) -> Result<()> {
    let status = Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill {name} failed");
    Ok(())
}

fn wait_exit(child: &mut Child) -> Result<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill()?;
    bail!("the coordinator did not exit")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_and_kill_9_loses_nothing() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    registry.publish("hello-bin", "0.1.0")?;
    registry.publish("multi-bin", "1.0.0")?;
    let data = tempfile::tempdir()?;

    let mut child = start(data.path(), &registry)?;
    tokio::task::block_in_place(|| wait_for_queued(data.path(), 2))?;
    // The same process serves the web UI and API, and says where.
    let url = std::fs::read_to_string(data.path().join("coordinator.http"))?;
    let url = url.trim();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let health = reqwest::get(format!("{url}/healthz")).await?;
    assert!(health.status().is_success());
    let queue: QueueAnswer = serde_json::from_slice(
        &reqwest::get(format!("{url}/api/v1/queue"))
            .await?
            .bytes()
            .await?,
    )?;
    assert_eq!(queue.stats.queued, 2, "{queue:?}");
    signal(&child, "-TERM")?;
    let status = tokio::task::block_in_place(|| wait_exit(&mut child))?;
    assert!(status.success(), "SIGTERM exit: {status:?}");

    // kill -9 while it works, twice, with a publish in between.
    let mut child = start(data.path(), &registry)?;
    registry.publish("hello-bin", "0.2.0")?;
    tokio::task::block_in_place(|| wait_for_queued(data.path(), 3))?;
    signal(&child, "-KILL")?;
    tokio::task::block_in_place(|| wait_exit(&mut child))?;

    let mut child = start(data.path(), &registry)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        tokio::task::block_in_place(|| queued(data.path()))?,
        3,
        "no task lost or planned twice"
    );
    signal(&child, "-INT")?;
    assert!(tokio::task::block_in_place(|| wait_exit(&mut child))?.success());
    Ok(())
}

#[test]
fn bad_flags_are_refused_with_exit_2() -> Result<()> {
    let data = tempfile::tempdir()?;
    let dir = data.path().to_str().unwrap();
    for (args, needle) in [
        (
            vec!["--data-dir", dir, "--index", "ftp://example.invalid/"],
            "--index",
        ),
        (vec!["--data-dir", dir, "--watch", "not a crate"], "--watch"),
        (
            vec!["--data-dir", dir, "--quorum", "0", "--toolchain", "1.95.0"],
            "quorum",
        ),
        (vec!["--index", "sparse+http://127.0.0.1:9/"], "--data-dir"),
        (
            vec!["--data-dir", dir, "--http", "8080", "--toolchain", "1.95.0"],
            "--http",
        ),
        (
            vec![
                "--data-dir",
                dir,
                "--admin-token",
                "short",
                "--toolchain",
                "1.95.0",
            ],
            "--admin-token",
        ),
    ] {
        let output = Command::new(BIN)
            .args(&args)
            .env_remove("BUILDSRS_DATA_DIR")
            .output()?;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    Ok(())
}
