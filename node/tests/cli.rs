//! `buildsrs-node` as a volunteer or crate author runs it: init, build, status, exit codes, and
//! a build killed with -9 reported as abandoned afterwards.

#![allow(clippy::unwrap_used)] // Tests fail loudly on broken fixtures.

use std::process::{Command, Output};
use std::time::Duration;

use anyhow::Result;
use buildsrs_fixture_registry::FixtureRegistry;

const BIN: &str = env!("CARGO_BIN_EXE_buildsrs-node");

fn node(data: &std::path::Path, args: &[&str]) -> Result<Output> {
    Ok(Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_build_status_and_exit_codes() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    registry.publish("hello-bin", "0.1.0")?;
    registry.publish("lib-only", "0.1.0")?;
    let scratch = tempfile::tempdir()?;
    let data = scratch.path().join("node");
    let out = scratch.path().join("out");
    let out_s = out.to_str().unwrap();
    let index = registry.index_url();

    let init = node(&data, &["init"])?;
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    assert!(
        !node(&data, &["init"])?.status.success(),
        "a second init must refuse"
    );

    let run = |args: &[&str]| {
        let data = data.clone();
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            node(&data, &args)
        })
    };
    let built = run(&[
        "build",
        "hello-bin",
        "0.1.0",
        "--registry",
        &index,
        "--out",
        out_s,
    ])
    .await??;
    let stdout = String::from_utf8_lossy(&built.stdout);
    assert_eq!(
        built.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&built.stderr)
    );
    assert!(stdout.contains("outcome: built"), "{stdout}");
    let archive = out.join("hello-bin-0.1.0-x86_64-unknown-linux-gnu.tar.gz");
    assert!(archive.is_file() && buildsrs_keys::Bundle::path_for(&archive).is_file());

    let none = run(&[
        "build",
        "lib-only",
        "0.1.0",
        "--registry",
        &index,
        "--out",
        out_s,
    ])
    .await??;
    assert_eq!(
        none.status.code(),
        Some(1),
        "no binaries is a crate outcome: exit 1"
    );
    let missing = run(&[
        "build",
        "hello-bin",
        "9.9.9",
        "--registry",
        &index,
        "--out",
        out_s,
    ])
    .await??;
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no version 9.9.9"));

    let status = node(&data, &["status"])?;
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("2 finished") && text.contains("built") && text.contains("no_binaries"),
        "{text}"
    );
    Ok(())
}

/// A volunteer in their home directory types `--data-dir node --out out`: every path the
/// node hands to cargo and the sandbox must still point at the right place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_data_dir_and_out_dir_work() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    registry.publish("hello-bin", "0.1.0")?;
    let scratch = tempfile::tempdir()?;
    let in_scratch = |args: &[&str]| {
        // Blocks this worker thread; the registry serves from the other one.
        tokio::task::block_in_place(|| {
            Command::new(BIN)
                .current_dir(scratch.path())
                .args(["--data-dir", "node"])
                .args(args)
                .output()
        })
    };
    assert!(in_scratch(&["init"])?.status.success());
    let index = registry.index_url();
    let built = in_scratch(&[
        "build",
        "hello-bin",
        "0.1.0",
        "--registry",
        &index,
        "--out",
        "out",
    ])?;
    let stdout = String::from_utf8_lossy(&built.stdout);
    assert_eq!(built.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("outcome: built"), "{stdout}");
    assert!(
        scratch
            .path()
            .join("out/hello-bin-0.1.0-x86_64-unknown-linux-gnu.tar.gz")
            .is_file()
    );

    // `status` lists the job with its outcome and how long it took.
    let status = in_scratch(&["status"])?;
    let text = String::from_utf8_lossy(&status.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("hello-bin 0.1.0"))
        .unwrap_or_default();
    assert!(
        line.contains(" s  built") && line.contains("built blake3:"),
        "{text}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_killed_mid_way_is_reported_abandoned() -> Result<()> {
    let registry = FixtureRegistry::start().await?;
    registry.publish("endless-build", "0.1.0")?;
    let scratch = tempfile::tempdir()?;
    let data = scratch.path().join("node");
    assert!(node(&data, &["init"])?.status.success());
    let out = scratch.path().join("out");
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .args([
            "build",
            "endless-build",
            "0.1.0",
            "--registry",
            &registry.index_url(),
            "--out",
        ])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    child.kill()?; // SIGKILL
    child.wait()?;

    let status = node(&data, &["status"])?;
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("abandoned: job 1 (endless-build 0.1.0"),
        "{text}"
    );
    assert!(text.contains("1 abandoned"), "{text}");
    let again = node(&data, &["status"])?;
    assert!(
        !String::from_utf8_lossy(&again.stdout).contains("abandoned: job"),
        "reported once"
    );

    // The killed process left its job dir and the sandbox runner's scratch dir; the next
    // start removes both.
    let killed = child.id();
    assert!(
        data.join("work/job-1").exists(),
        "nothing was left to clean"
    );
    registry.publish("hello-bin", "0.1.0")?;
    let next = node(
        &data,
        &[
            "build",
            "hello-bin",
            "0.1.0",
            "--registry",
            &registry.index_url(),
            "--out",
            &out.display().to_string(),
        ],
    )?;
    assert!(
        next.status.success(),
        "{}",
        String::from_utf8_lossy(&next.stderr)
    );
    assert_eq!(std::fs::read_dir(data.join("work"))?.count(), 0);
    let scratch_left = std::fs::read_dir(std::env::temp_dir())?
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("buildsrs-sandbox-{killed}-"))
        })
        .count();
    assert_eq!(
        scratch_left, 0,
        "the killed node's scratch dirs are still there"
    );
    Ok(())
}

#[tokio::test]
async fn run_states_its_limits_and_refuses_to_build_without_them() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let data = scratch.path().join("node");
    assert!(node(&data, &["init"])?.status.success());
    let config_path = data.join("config.toml");
    let mut config: buildsrs_node::datadir::NodeConfig =
        toml::from_str(&std::fs::read_to_string(&config_path)?)?;
    config.limits.disk_mib = 0;
    std::fs::write(&config_path, toml::to_string(&config)?)?;
    let refused = node(&data, &["run", "--coordinator", "/ip4/127.0.0.1/tcp/9"])?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("build limit: disk: NONE"), "{stderr}");
    assert!(stderr.contains("build limit: memory: 4096 MiB"), "{stderr}");
    assert!(
        stderr.contains("builds would run without a disk limit")
            && stderr.contains("--allow-unlimited-builds"),
        "{stderr}"
    );
    // Nothing was started: no state, no job dirs.
    assert_eq!(std::fs::read_dir(data.join("work"))?.count(), 0);
    Ok(())
}
