//! The bubblewrap sandbox against real programs: isolation (environment, uid, network,
//! filesystem, the node's key), every limit (wall clock, memory, output, file size, pids), the
//! line between node errors and crate outcomes, and the insecure `None` strategy.
//!
//! Everything runs for real (bwrap, prlimit, cgroups where writable) with tiny shell programs,
//! so the whole file takes seconds.

#![allow(clippy::unwrap_used)] // Tests fail loudly on broken fixtures.

mod support;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use buildsrs_sandbox::{BwrapConfig, RunKind, Sandbox, SandboxError, SandboxSpec};
use buildsrs_test_support::skip_or_panic;
use support::{bwrap, run, sh};

fn cgroups_writable() -> bool {
    // The same probe the sandbox uses, seen from outside: can we make a memory child cgroup?
    let Ok(text) = fs::read_to_string("/proc/self/cgroup") else {
        return false;
    };
    let Some(own) = text
        .lines()
        .find_map(|l| l.split_once(":memory:").map(|(_, p)| p))
    else {
        return false;
    };
    let probe = Path::new("/sys/fs/cgroup/memory")
        .join(own.trim_start_matches('/'))
        .join(format!("buildsrs-test-probe-{}", std::process::id()));
    let ok = fs::create_dir(&probe).is_ok();
    let _ = fs::remove_dir(&probe);
    ok
}

#[tokio::test]
async fn check_reports_a_working_sandbox() {
    let (sandbox, capabilities) = Sandbox::detect(vec![]).await.unwrap();
    assert_eq!(sandbox.name(), "bubblewrap");
    assert!(capabilities.isolated);
    assert!(capabilities.bwrap_version.unwrap().contains("bubblewrap"));
    assert_eq!(capabilities.memory_cgroup, cgroups_writable());
}

#[tokio::test]
async fn missing_bwrap_is_a_clear_node_error() {
    let sandbox = Sandbox::Bubblewrap(BwrapConfig {
        bwrap: PathBuf::from("/nonexistent/bwrap"),
        ..BwrapConfig::default()
    });
    let err = sandbox.check().await.unwrap_err();
    assert!(
        matches!(err, SandboxError::ToolMissing { tool: "bwrap", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("install bubblewrap"), "{err}");
}

#[tokio::test]
async fn environment_is_exactly_the_spec_and_uid_is_nobody() {
    let spec = sh("env; echo uid=$(id -u) gid=$(id -g); hostname").env("ONLY_THIS", "yes");
    let (outcome, log) = run(&bwrap(), &spec).await;
    assert!(outcome.success(), "{log}");
    assert!(log.contains("uid=65534 gid=65534"), "{log}");
    assert!(log.contains("\nbuildsrs\n"), "{log}");
    let env_part = log.split("uid=").next().unwrap();
    let names: Vec<&str> = env_part
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    // dash adds PWD itself; nothing of the node's environment (HOME, USER, CARGO_*) leaks.
    assert_eq!(names, ["ONLY_THIS", "PATH", "PWD"], "{log}");
}

#[tokio::test]
async fn network_is_denied_unless_allowed() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = format!(
        "if bash -c 'echo hello > /dev/tcp/127.0.0.1/{port}'; then echo CONNECTED; else echo DENIED; fi"
    );

    let (outcome, log) = run(&bwrap(), &sh(&script)).await;
    assert!(outcome.success(), "{log}");
    assert!(log.contains("DENIED"), "{log}");
    // The log shows why: the sandbox has no route anywhere.
    assert!(
        log.contains("Network is unreachable") || log.contains("Connection refused"),
        "{log}"
    );

    let (outcome, log) = run(&bwrap(), &sh(&script).network(true)).await;
    assert!(outcome.success(), "{log}");
    assert!(log.contains("CONNECTED"), "{log}");
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_ok(),
        "the connection reached the listener outside"
    );
}

#[tokio::test]
async fn only_the_writable_mounts_are_writable() {
    let src = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    fs::write(src.path().join("lib.rs"), "fn main() {}").unwrap();
    let spec = sh("cat /buildsrs/src/lib.rs; echo; \
                   for p in /buildsrs/src/x /buildsrs/target/y /z /usr/z /etc/z /tmp/z; do \
                     if touch $p 2>/dev/null; then echo wrote $p; else echo denied $p; fi; \
                   done")
    .ro_bind(src.path(), "/buildsrs/src")
    .rw_bind(target.path(), "/buildsrs/target")
    .tmpfs("/tmp");
    let (outcome, log) = run(&bwrap(), &spec).await;
    assert!(outcome.success(), "{log}");
    assert!(log.contains("fn main() {}"), "{log}");
    for line in [
        "denied /buildsrs/src/x",
        "wrote /buildsrs/target/y",
        "denied /z",
        "denied /usr/z",
        "denied /etc/z",
        "wrote /tmp/z",
    ] {
        assert!(log.contains(line), "{line}: {log}");
    }
    assert!(!src.path().join("x").exists());
    assert!(target.path().join("y").exists());
}

#[tokio::test]
async fn the_node_key_is_invisible_and_cannot_be_bound() {
    let data = tempfile::tempdir().unwrap();
    let key = data.path().join("node.key");
    fs::write(&key, "SECRET-SEED").unwrap();
    let script = format!(
        "cat {key} && echo READ-KEY; ls {dir} && echo LISTED-DIR; ls /root /home; true",
        key = key.display(),
        dir = data.path().display()
    );
    let (outcome, log) = run(&bwrap(), &sh(&script)).await;
    assert!(outcome.success(), "{log}");
    assert!(
        !log.contains("SECRET-SEED") && !log.contains("READ-KEY"),
        "{log}"
    );
    assert!(!log.contains("LISTED-DIR"), "{log}");

    // A spec that would bind the data dir, or a directory above it, is refused outright.
    let sandbox = Sandbox::Bubblewrap(BwrapConfig {
        protected_paths: vec![data.path().to_path_buf()],
        ..BwrapConfig::default()
    });
    for host in [data.path(), data.path().parent().unwrap()] {
        let err = sandbox
            .run(&sh("true").ro_bind(host, "/buildsrs/src"))
            .await
            .unwrap_err();
        assert!(matches!(err, SandboxError::InvalidSpec(_)), "{err}");
    }
}

/// bwrap's arguments name the host side of every bind (the job's dirs, so the data dir's
/// path). Inside, the sandbox's init is a copy of bwrap: its command line must not carry them.
/// (`/proc/self/mountinfo` still shows bind sources; that needs a different mount setup.)
#[tokio::test]
async fn host_paths_are_not_on_any_command_line_inside() {
    let host = tempfile::Builder::new()
        .prefix("secret-host-path-")
        .tempdir()
        .unwrap();
    let marker = host
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let spec = sh(
        "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done; \
                   echo stdin:; cat; echo :end",
    )
    .ro_bind(host.path(), "/buildsrs/target");
    let (outcome, log) = run(&bwrap(), &spec).await;
    assert!(outcome.success(), "{log}");
    assert!(log.contains("bwrap --args 4 -- /bin/sh"), "{log}");
    assert!(!log.contains(&marker), "{log}");
    // The program's standard input is empty, and open (bwrap's options came on another
    // descriptor, which it closed).
    assert!(log.contains("stdin:\n:end"), "{log}");
}

#[tokio::test]
async fn wall_clock_kills_the_whole_tree() {
    let mut spec = sh("sleep 1000 & while :; do :; done");
    spec.limits.wall_clock = Duration::from_millis(500);
    let (outcome, log) = run(&bwrap(), &spec).await;
    assert!(outcome.timed_out, "{outcome:?}");
    assert_eq!(outcome.kind(), RunKind::TimedOut);
    assert!(outcome.wall_time < Duration::from_secs(10), "{log}");
}

#[tokio::test]
async fn cpu_time_limit_counts_as_timed_out() {
    let mut spec = sh("while :; do :; done");
    spec.limits.cpu_seconds = Some(1);
    let (outcome, log) = run(&bwrap(), &spec).await;
    assert!(outcome.timed_out, "{outcome:?} {log}");
    assert_eq!(
        outcome.status,
        buildsrs_sandbox::ExitStatus::Signalled(24),
        "SIGXCPU"
    );
}

#[tokio::test]
async fn memory_hog_is_out_of_memory() {
    if !cgroups_writable() {
        skip_or_panic(
            "memory_hog_is_out_of_memory",
            "cgroups are not writable here",
        );
        return;
    }
    // `tail` keeps a line in memory until its newline, which never comes.
    let mut spec = sh("head -c 2000000000 /dev/zero | tail -n 1 > /dev/null");
    spec.limits.memory_bytes = Some(64 << 20);
    let (outcome, log) = run(&bwrap(), &spec).await;
    assert!(outcome.out_of_memory, "{outcome:?} {log}");
    assert_eq!(outcome.kind(), RunKind::OutOfMemory);
    assert!(
        outcome.peak_memory_bytes.unwrap() >= 60 << 20,
        "{outcome:?}"
    );
}

#[tokio::test]
async fn address_space_limit_is_out_of_memory() {
    // A Rust program that asks for 4 GiB: under a 1 GiB RLIMIT_AS the allocator fails and the
    // default handler aborts with "memory allocation of N bytes failed", as rustc would.
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("hog.rs");
    fs::write(
        &source,
        "fn main() { let v = vec![1u8; 4 << 30]; println!(\"{}\", v[v.len() / 2]); }",
    )
    .unwrap();
    let compiled = std::process::Command::new("rustc")
        .arg("-O")
        .arg("-o")
        .arg(dir.path().join("hog"))
        .arg(&source)
        .status()
        .unwrap();
    assert!(compiled.success());
    let mut spec = sh("/buildsrs/bin/hog").ro_bind(dir.path(), "/buildsrs/bin");
    spec.limits.address_space_bytes = Some(1 << 30);
    spec.limits.memory_bytes = None;
    let (outcome, log) = run(&bwrap(), &spec).await;
    assert!(
        log.contains("memory allocation of 4294967296 bytes failed"),
        "{log}"
    );
    assert!(outcome.out_of_memory, "{outcome:?}");
}

#[tokio::test]
async fn output_cap_kills_and_keeps_head_and_tail() {
    let mut spec = sh("echo FIRST-LINE; yes 'a line of endless output'");
    spec.limits.output_cap_bytes = 4 << 20;
    spec.limits.log_keep_bytes = 4096;
    let (outcome, log) = run(&bwrap(), &spec).await;
    assert!(outcome.output_too_large, "{outcome:?}");
    assert_eq!(outcome.kind(), RunKind::OutputTooLarge);
    assert!(log.starts_with("FIRST-LINE\n"), "{log}");
    assert!(log.contains(" bytes omitted …]\n"), "{log}");
    assert!(log.trim_end().ends_with("output"), "{log}");
    assert!(outcome.log.total_bytes() > 4 << 20);
    assert!(log.len() < 4096 + 100);
}

#[tokio::test]
async fn file_size_limit_stops_a_huge_file() {
    let target = tempfile::tempdir().unwrap();
    let mut spec = sh("head -c 100000000 /dev/zero > /buildsrs/target/big")
        .rw_bind(target.path(), "/buildsrs/target");
    spec.limits.file_size_bytes = Some(1 << 20);
    let (outcome, log) = run(&bwrap(), &spec).await;
    assert!(!outcome.success(), "{log}");
    let size = fs::metadata(target.path().join("big")).unwrap().len();
    assert!(size <= 1 << 20, "{size}");
}

#[tokio::test]
async fn pids_limit_stops_a_fork_bomb() {
    if !cgroups_writable() {
        skip_or_panic(
            "pids_limit_stops_a_fork_bomb",
            "cgroups are not writable here",
        );
        return;
    }
    let mut spec = sh("for i in $(seq 1 100); do sleep 3 & done; wait");
    spec.limits.max_pids = Some(20);
    let (outcome, log) = run(&bwrap(), &spec).await;
    assert!(outcome.pids_limit_hit, "{outcome:?} {log}");
    assert!(log.contains("fork"), "{log}");
}

#[tokio::test]
async fn node_faults_are_errors_not_outcomes() {
    // The program does not exist: bwrap cannot exec it. That is the spec's (node's) fault.
    let err = bwrap()
        .run(&SandboxSpec::new("/no/such/program", "/"))
        .await
        .unwrap_err();
    assert!(matches!(err, SandboxError::Setup { .. }), "{err}");
    assert!(err.to_string().contains("/no/such/program"), "{err}");

    // A bind source that does not exist.
    let err = bwrap()
        .run(&sh("true").ro_bind("/no/such/dir", "/buildsrs/src"))
        .await
        .unwrap_err();
    assert!(matches!(err, SandboxError::Io { .. }), "{err}");

    // A program that fails on its own is an outcome, even with bwrap's favourite exit code.
    let (outcome, _) = run(&bwrap(), &sh("exit 1")).await;
    assert_eq!(outcome.status, buildsrs_sandbox::ExitStatus::Exited(1));
    assert_eq!(outcome.kind(), RunKind::Failed);
}

#[tokio::test]
async fn none_strategy_runs_unisolated_with_paths_rewritten() {
    let target = tempfile::tempdir().unwrap();
    let spec = SandboxSpec::new("/bin/sh", "/buildsrs/target")
        .args([
            "-c",
            "pwd; echo $OUT; touch /buildsrs/target/made-here || true; id -u",
        ])
        .env("PATH", "/usr/bin:/bin")
        .env("OUT", "/buildsrs/target/out")
        .rw_bind(target.path(), "/buildsrs/target");
    let (outcome, log) = run(&Sandbox::None, &spec).await;
    assert!(outcome.success(), "{log}");
    let host = target.path().canonicalize().unwrap();
    assert!(log.contains(&format!("{}\n", host.display())), "{log}");
    assert!(
        log.contains(&format!("{}/out\n", target.path().display())),
        "{log}"
    );
    assert!(target.path().join("made-here").exists());
    // No uid change: it runs as the node's user.
    let uid = rustix::process::getuid().as_raw();
    assert!(log.contains(&format!("\n{uid}\n")), "{log}");
    assert_ne!(
        Sandbox::None.settings_description(&spec),
        bwrap().settings_description(&spec)
    );
}

#[test]
fn settings_describe_what_changes_output_and_nothing_else() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let spec = |host: &Path| {
        sh("cargo build")
            .env("SOURCE_DATE_EPOCH", "1")
            .ro_bind(host, "/buildsrs/src")
            .tmpfs("/tmp")
    };
    let describe = |spec: &SandboxSpec| bwrap().settings_description(spec);
    let base = describe(&spec(a.path()));
    // Host paths and limits do not change what is built.
    assert_eq!(base, describe(&spec(b.path())));
    let mut limited = spec(a.path());
    limited.limits.memory_bytes = Some(1);
    assert_eq!(base, describe(&limited));
    // The environment, the network, mounts and arguments do.
    assert_ne!(
        base,
        describe(&spec(a.path()).env("SOURCE_DATE_EPOCH", "2"))
    );
    assert_ne!(base, describe(&spec(a.path()).network(true)));
    assert_ne!(base, describe(&spec(a.path()).tmpfs("/buildsrs/home")));
    assert_ne!(base, describe(&spec(a.path()).arg("--release")));
    assert!(base.contains("env.SOURCE_DATE_EPOCH=\"1\"\n"), "{base}");
    assert!(base.starts_with("sandbox=\"bubblewrap\"\n"), "{base}");
    assert!(!base.contains(&a.path().display().to_string()), "{base}");
}
