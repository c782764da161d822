//! Limits that hold on every machine, tried by hostile programs: the total a run may write
//! (bind mounts and tmpfs, `/dev/shm` included), the process and memory limits with cgroups
//! switched off (the watchdog's path, as on a node under systemd `User=` or cgroup v2 without
//! delegation), and descriptors the node inherited, which must not reach the build.
//!
//! Each test checks what the run reports and what the host sees afterwards.

#![allow(clippy::unwrap_used)] // Tests fail loudly on broken fixtures.

mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use buildsrs_sandbox::RunKind;
use support::{bwrap as with_cgroups, bwrap_without_cgroups as without_cgroups, run, sh};

/// Bytes under `dir`, as the host sees them.
fn bytes_under(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|entry| {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                bytes_under(&entry.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

#[tokio::test]
async fn many_files_under_the_file_size_limit_hit_the_disk_limit() {
    // The probe that found this: six files of 400 MB, each under the per-file limit. Here:
    // files of 8 MiB, endlessly, against a 32 MiB total, in two writable mounts at once.
    let target = tempfile::tempdir().unwrap();
    let source = tempfile::tempdir().unwrap();
    fs::write(source.path().join("present-before"), vec![7u8; 4 << 20]).unwrap();
    let script = "i=0; while :; do i=$((i+1)); \
                  head -c 8388608 /dev/zero > /buildsrs/target/f$i; \
                  head -c 8388608 /dev/zero > /buildsrs/src/g$i; done";
    for sandbox in [with_cgroups(), without_cgroups()] {
        let mut spec = sh(script)
            .rw_bind(target.path(), "/buildsrs/target")
            .rw_bind(source.path(), "/buildsrs/src");
        spec.limits.file_size_bytes = Some(16 << 20);
        spec.limits.disk_bytes = Some(32 << 20);
        let (outcome, log) = run(&sandbox, &spec).await;
        assert_eq!(outcome.kind(), RunKind::DiskLimit, "{outcome:?} {log}");
        assert!(outcome.disk_limit_hit);
        // Stopped within a few walks of the limit, however fast the disk is.
        let written = bytes_under(target.path()) + bytes_under(source.path()) - (4 << 20);
        assert!(written > 32 << 20, "{written}");
        assert!(written < (32 << 20) + (2 << 30), "{written}");
        for dir in [target.path(), source.path()] {
            for entry in fs::read_dir(dir).unwrap().flatten() {
                if entry.file_name() != "present-before" {
                    fs::remove_file(entry.path()).unwrap();
                }
            }
        }
    }
}

/// A burst that ends before the watchdog's next walk still counts: the disk is measured once
/// more when the run has ended.
#[tokio::test]
async fn a_burst_between_two_walks_still_hits_the_disk_limit() {
    let target = tempfile::tempdir().unwrap();
    let mut spec = sh("head -c 33554432 /dev/zero > /buildsrs/target/burst")
        .rw_bind(target.path(), "/buildsrs/target");
    spec.limits.disk_bytes = Some(16 << 20);
    let (outcome, log) = run(&without_cgroups(), &spec).await;
    assert_eq!(outcome.kind(), RunKind::DiskLimit, "{outcome:?} {log}");
}

#[tokio::test]
async fn what_was_there_before_the_run_does_not_count() {
    let target = tempfile::tempdir().unwrap();
    fs::write(target.path().join("old"), vec![1u8; 8 << 20]).unwrap();
    let mut spec = sh("head -c 1048576 /dev/zero > /buildsrs/target/new; sleep 0.5")
        .rw_bind(target.path(), "/buildsrs/target");
    spec.limits.disk_bytes = Some(4 << 20);
    let (outcome, log) = run(&without_cgroups(), &spec).await;
    assert!(outcome.success(), "{outcome:?} {log}");
}

#[tokio::test]
async fn tmpfs_and_dev_shm_are_size_capped() {
    for dir in ["/tmp", "/buildsrs/home", "/dev/shm"] {
        let script = format!(
            "head -c 67108864 /dev/zero > {dir}/fill; echo status=$?; \
             echo size=$(stat -c %s {dir}/fill)"
        );
        let mut spec = sh(&script).tmpfs("/tmp").tmpfs("/buildsrs/home");
        spec.limits.tmpfs_bytes = Some(8 << 20);
        let (outcome, log) = run(&without_cgroups(), &spec).await;
        assert!(outcome.success(), "{dir}: {log}");
        assert!(log.contains("No space left on device"), "{dir}: {log}");
        let size: u64 = log
            .lines()
            .find_map(|line| line.strip_prefix("size="))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(size <= 8 << 20, "{dir}: wrote {size} bytes");
    }
}

#[tokio::test]
async fn without_cgroups_a_fork_storm_hits_the_process_limit() {
    let spec = {
        let mut spec = sh("for i in $(seq 1 300); do sleep 30 & done; wait");
        spec.limits.max_pids = Some(40);
        spec
    };
    let (outcome, log) = run(&without_cgroups(), &spec).await;
    assert!(outcome.pids_limit_hit, "{outcome:?} {log}");
    assert!(!outcome.success());
    // Killed by the watchdog, not by the wall clock after 30 s of sleeping children.
    assert!(outcome.wall_time < Duration::from_secs(20), "{outcome:?}");
    assert!(
        !sleepers_left(),
        "the storm's processes outlived the run on the host"
    );
}

/// Whether any `sleep 30` (the storm's children) is still running on the host.
fn sleepers_left() -> bool {
    std::thread::sleep(Duration::from_millis(300));
    fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        fs::read(entry.path().join("cmdline")).is_ok_and(|cmdline| cmdline == b"sleep\x0030\x00")
    })
}

#[tokio::test]
async fn without_cgroups_a_memory_hog_is_out_of_memory() {
    // `tail` keeps a line in memory until its newline, which never comes.
    let mut spec = sh("head -c 4000000000 /dev/zero | tail -n 1 > /dev/null");
    spec.limits.memory_bytes = Some(128 << 20);
    let (outcome, log) = run(&without_cgroups(), &spec).await;
    assert!(outcome.out_of_memory, "{outcome:?} {log}");
    assert_eq!(outcome.kind(), RunKind::OutOfMemory);
}

#[tokio::test]
async fn the_watchdog_leaves_an_ordinary_run_alone() {
    let target = tempfile::tempdir().unwrap();
    let spec = sh("for i in 1 2 3; do sleep 0.2 & done; wait; echo done > /buildsrs/target/x")
        .rw_bind(target.path(), "/buildsrs/target");
    let (outcome, log) = run(&without_cgroups(), &spec).await;
    assert!(outcome.success(), "{outcome:?} {log}");
    assert!(!outcome.pids_limit_hit && !outcome.disk_limit_hit);
}

/// The environment variable that turns [`inherited_descriptor_probe`] from a no-op into the
/// probe, in a child process that holds a descriptor without close-on-exec.
const PROBE: &str = "BUILDSRS_TEST_INHERITED_FD_PROBE";

#[tokio::test]
async fn a_descriptor_the_node_inherited_does_not_reach_the_build() {
    // Rust opens everything close-on-exec, so the leak is made the way it happens: a shell
    // opens the secret on descriptor 7 (and 12) and execs the node, here this test binary
    // running the probe below.
    let secret = tempfile::NamedTempFile::new().unwrap();
    fs::write(secret.path(), "INHERITED-SECRET").unwrap();
    let exe = std::env::current_exe().unwrap();
    let output = std::process::Command::new("/bin/bash")
        .arg("-c")
        .arg(r#"exec 7<"$1" 12<"$1"; exec "$2" --exact inherited_descriptor_probe --nocapture"#)
        .arg("bash")
        .arg(secret.path())
        .arg(&exe)
        .env(PROBE, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("PROBE-RAN"), "{stdout}\n{stderr}");
    assert!(stdout.contains("node holds fd 7"), "{stdout}");
    assert!(!stdout.contains("INHERITED-SECRET"), "{stdout}");
    let fds: Vec<&str> = stdout
        .lines()
        .find_map(|line| line.strip_prefix("sandbox fds: "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert!(fds.starts_with(&["0", "1", "2"]), "{fds:?}");
    assert!(!fds.contains(&"7") && !fds.contains(&"12"), "{fds:?}");
}

#[tokio::test]
async fn inherited_descriptor_probe() {
    if std::env::var_os(PROBE).is_none() {
        return;
    }
    assert!(
        Path::new("/proc/self/fd/7").exists(),
        "the leak was not set up"
    );
    println!("node holds fd 7");
    // Inside: list the descriptors (the shell's glob may add its own directory handle) and
    // try to read the secret through both.
    let spec = sh("printf 'sandbox fds: '; for fd in /proc/self/fd/*; do \
                   printf '%s ' \"${fd##*/}\"; done; echo; \
                   cat /proc/self/fd/7 /proc/self/fd/12; true");
    let (outcome, log) = run(&with_cgroups(), &spec).await;
    assert!(outcome.success(), "{log}");
    println!("{log}");
    println!("PROBE-RAN");
}
