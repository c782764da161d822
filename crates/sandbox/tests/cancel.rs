//! A run whose future is dropped (the node gave up on the job, or shut down) leaves nothing
//! behind: no processes, no cgroups. In its own test binary, so no other run's cgroups are
//! around when we look.

#![allow(clippy::unwrap_used)] // Tests fail loudly on broken fixtures.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use buildsrs_sandbox::{BwrapConfig, Sandbox, SandboxSpec};

/// This process's run cgroups (memory and pids hierarchies, cgroups v1; elsewhere the
/// cgroup half of the test checks nothing).
fn run_cgroups() -> Vec<PathBuf> {
    let prefix = format!("buildsrs-sandbox-{}-", std::process::id());
    let own = fs::read_to_string("/proc/self/cgroup").unwrap();
    let memory = own
        .lines()
        .find_map(|l| {
            l.split_once(":memory:")
                .map(|(_, p)| p.trim_start_matches('/'))
        })
        .unwrap_or("");
    let parents = [
        PathBuf::from("/sys/fs/cgroup/memory").join(memory),
        PathBuf::from("/sys/fs/cgroup/pids"),
    ];
    parents
        .iter()
        .filter_map(|dir| fs::read_dir(dir).ok())
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

fn processes_named(marker: &str) -> Vec<String> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).into_owned())
        .filter(|c| c.starts_with(marker))
        .collect()
}

#[tokio::test]
async fn dropped_run_kills_its_tree_and_removes_its_cgroups() {
    let marker = format!("buildsrs-cancel-{}", std::process::id());
    // `exec -a` is bash: give the sleeper a name we can look for in the process table.
    let spec = SandboxSpec::new("/usr/bin/bash", "/")
        .args(["-c", &format!("exec -a {marker} sleep 1000")])
        .env("PATH", "/usr/bin:/bin");
    let sandbox = Sandbox::Bubblewrap(BwrapConfig::default());
    let v1_cgroups = sandbox.check().await.unwrap().memory_cgroup
        && PathBuf::from("/sys/fs/cgroup/memory").is_dir();
    let run = tokio::spawn(async move { sandbox.run(&spec).await });

    let mut started = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !processes_named(&marker).is_empty() {
            started = true;
            break;
        }
    }
    assert!(started, "the sleeper never showed up");
    if v1_cgroups {
        assert!(
            !run_cgroups().is_empty(),
            "the run has cgroups while it runs"
        );
    }
    run.abort();
    assert!(run.await.unwrap_err().is_cancelled());

    let mut leftovers = (Vec::new(), Vec::new());
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        leftovers = (processes_named(&marker), run_cgroups());
        if leftovers.0.is_empty() && leftovers.1.is_empty() {
            return;
        }
    }
    panic!("left behind: {leftovers:?}");
}
