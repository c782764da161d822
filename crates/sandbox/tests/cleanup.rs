//! What runs leave behind is removable: directories a build made unwritable, by a node that
//! is not root; and, after a node died without cleaning up, its run cgroups and scratch dirs.

#![allow(clippy::unwrap_used)] // Tests fail loudly on broken fixtures.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use buildsrs_sandbox::output::remove_tree;
use buildsrs_sandbox::{BwrapConfig, Sandbox};

/// The variable that turns [`unwritable_tree_probe`] from a no-op into the probe (run as an
/// unprivileged user, for whom permissions bind).
const PROBE: &str = "BUILDSRS_TEST_UNWRITABLE_TREE";

#[test]
fn a_node_that_is_not_root_removes_directories_a_build_made_unwritable() {
    if !rustix::process::geteuid().is_root() {
        // Already unprivileged: run the probe here.
        assert!(probe_removes(&tempfile::tempdir().unwrap().keep()));
        return;
    }
    // As root, permissions do not bind: run the probe as `nobody`, in a dir it owns.
    let scratch = tempfile::tempdir().unwrap();
    fs::set_permissions(scratch.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let dir = scratch.path().join("owned-by-nobody");
    fs::create_dir(&dir).unwrap();
    rustix::fs::chown(
        &dir,
        Some(rustix::fs::Uid::from_raw(65534)),
        Some(rustix::fs::Gid::from_raw(65534)),
    )
    .unwrap();
    let exe = std::env::current_exe().unwrap();
    let output = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&exe)
        .args(["--exact", "unwritable_tree_probe", "--nocapture"])
        .env(PROBE, &dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("PROBE: removed"), "{stdout}\n{stderr}");
}

#[test]
fn unwritable_tree_probe() {
    let Some(dir) = std::env::var_os(PROBE) else {
        return;
    };
    assert!(probe_removes(Path::new(&dir)));
    println!("PROBE: removed");
}

/// Builds what a hostile build leaves (a `0500` directory with files, a `0000` directory
/// below it), shows that plain removal fails for this user, and that `remove_tree` succeeds.
fn probe_removes(dir: &Path) -> bool {
    let tree = dir.join("job-1");
    fs::create_dir_all(tree.join("target/locked/deeper")).unwrap();
    fs::write(tree.join("target/locked/file"), b"x").unwrap();
    fs::write(tree.join("target/locked/deeper/file"), b"x").unwrap();
    fs::set_permissions(
        tree.join("target/locked/deeper"),
        fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    fs::set_permissions(
        tree.join("target/locked"),
        fs::Permissions::from_mode(0o500),
    )
    .unwrap();
    let plain = fs::remove_dir_all(&tree);
    assert!(plain.is_err(), "permissions do not bind for this user");
    remove_tree(&tree).unwrap();
    !tree.exists()
}

/// A pid with no process: one that just exited.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// This process's memory cgroup directory, where run cgroups are made (cgroups v1 here;
/// `None` elsewhere).
fn own_memory_cgroup() -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = text
        .lines()
        .find_map(|l| l.split_once(":memory:").map(|(_, p)| p))?;
    let dir = Path::new("/sys/fs/cgroup/memory").join(own.trim_start_matches('/'));
    dir.is_dir().then_some(dir)
}

#[tokio::test]
async fn what_a_dead_node_left_is_removed_and_a_live_ones_is_kept() {
    let dead = dead_pid();
    let tmp = std::env::temp_dir();
    let stale_scratch = tmp.join(format!("buildsrs-sandbox-{dead}-abc"));
    let live_scratch = tmp.join(format!("buildsrs-sandbox-{}-live", std::process::id()));
    for dir in [&stale_scratch, &live_scratch] {
        fs::create_dir_all(dir.join("tmpfs-0")).unwrap();
        fs::write(dir.join("status"), b"buildsrs-setup-ok").unwrap();
    }
    let cgroup = own_memory_cgroup().and_then(|parent| {
        let stale = parent.join(format!("buildsrs-sandbox-{dead}-7"));
        fs::create_dir(&stale).ok().map(|()| stale)
    });

    let sandbox = Sandbox::Bubblewrap(BwrapConfig::default());
    let removed = sandbox.remove_stale().await;
    assert!(!stale_scratch.exists());
    assert!(removed.scratch_dirs >= 1, "{removed:?}");
    assert!(
        live_scratch.exists(),
        "a live process's scratch dir was removed"
    );
    fs::remove_dir_all(&live_scratch).unwrap();
    match cgroup {
        Some(stale) => {
            assert!(!stale.exists(), "the stale cgroup is still there");
            assert!(removed.cgroups >= 1, "{removed:?}");
        }
        None => buildsrs_test_support::skip_or_panic(
            "what_a_dead_node_left_is_removed_and_a_live_ones_is_kept (its cgroup half)",
            "no writable memory cgroup here",
        ),
    }
}
