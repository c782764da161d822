//! Real builds in the bubblewrap sandbox with the host's toolchain bound read-only: both
//! phases of a tiny crate, byte-identical output from different host directories, the frozen
//! wall clock, and hostile build scripts (network, writes outside their dirs, the node key,
//! an endless loop, a memory hog) that the sandbox stops.
//!
//! Each crate has no registry dependencies, so nothing here needs the network; builds with
//! real dependencies from crates.io are the node's `crates_io` test group.

#![allow(clippy::unwrap_used)] // Tests fail loudly on broken fixtures.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use buildsrs_sandbox::{
    BwrapConfig, CargoLayout, Limits, RunKind, RunOutcome, Sandbox, SandboxSpec, clock, layout,
};
use tempfile::TempDir;

const EPOCH: u64 = 1_700_000_000;

fn sandbox() -> Sandbox {
    Sandbox::Bubblewrap(BwrapConfig::default())
}

/// The toolchain the tests themselves were built with.
fn toolchain() -> PathBuf {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .unwrap();
    assert!(out.status.success());
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A crate on disk, with its own cargo home and target dir.
struct Build {
    _dirs: TempDir,
    layout: CargoLayout,
}

fn new_crate(name: &str, main_rs: &str, build_rs: Option<&str>) -> Build {
    let dirs = tempfile::tempdir().unwrap();
    let layout = CargoLayout {
        source: dirs.path().join("src"),
        cargo_home: dirs.path().join("cargo-home"),
        dependency_sources: dirs.path().join("dependency-sources"),
        target: dirs.path().join("target"),
        toolchain: toolchain(),
        clock_shim: clock::install(&dirs.path().join("lib")).unwrap(),
    };
    fs::create_dir(&layout.source).unwrap();
    layout.create_dirs().unwrap();
    fs::create_dir(layout.source.join("src")).unwrap();
    fs::write(
        layout.source.join("Cargo.toml"),
        format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n"),
    )
    .unwrap();
    fs::write(layout.source.join("src/main.rs"), main_rs).unwrap();
    if let Some(build_rs) = build_rs {
        fs::write(layout.source.join("build.rs"), build_rs).unwrap();
    }
    Build {
        _dirs: dirs,
        layout,
    }
}

fn manifest_args(first: &[&str]) -> Vec<String> {
    first
        .iter()
        .copied()
        .chain(["--manifest-path", layout::MANIFEST])
        .map(String::from)
        .collect()
}

async fn run(spec: &SandboxSpec) -> (RunOutcome, String) {
    let outcome = sandbox().run(spec).await.unwrap();
    let log = outcome.log.to_string_lossy();
    (outcome, log)
}

/// Phase 1 (lock, fetch) then phase 2 (build) under `limits`; returns phase 2's outcome.
async fn build(b: &Build, limits: Limits) -> (RunOutcome, String) {
    for args in [&["generate-lockfile"][..], &["fetch", "--locked"]] {
        let (outcome, log) = run(&b.layout.fetch(manifest_args(args))).await;
        assert!(outcome.success(), "{args:?}: {log}");
    }
    let spec = b
        .layout
        .build(
            manifest_args(&["build", "--release", "--offline", "--locked"]),
            EPOCH,
        )
        .limits(limits);
    run(&spec).await
}

fn quick_limits() -> Limits {
    Limits {
        wall_clock: Duration::from_secs(300),
        ..Limits::default()
    }
}

#[tokio::test]
async fn toolchain_runs_read_only_inside() {
    let b = new_crate("hello", "fn main() {}", None);
    let (outcome, log) = run(&b.layout.build(["--version"], EPOCH)).await;
    assert!(outcome.success(), "{log}");
    assert!(log.starts_with("cargo "), "{log}");

    let spec = SandboxSpec::new(format!("{}/bin/rustc", layout::TOOLCHAIN), "/")
        .arg("-vV")
        .env("PATH", layout::PATH)
        .ro_bind(&b.layout.toolchain, layout::TOOLCHAIN);
    let (outcome, log) = run(&spec).await;
    assert!(outcome.success(), "{log}");
    assert!(log.contains("host: x86_64-unknown-linux-gnu"), "{log}");

    let spec = SandboxSpec::new("/bin/sh", "/")
        .args([
            "-c",
            "touch /buildsrs/toolchain/bin/evil && echo WROTE || echo DENIED",
        ])
        .env("PATH", layout::PATH)
        .ro_bind(&b.layout.toolchain, layout::TOOLCHAIN);
    let (_, log) = run(&spec).await;
    assert!(log.contains("DENIED"), "{log}");
}

#[tokio::test]
async fn hello_world_builds_offline_and_reproducibly() {
    let main_rs = "fn main() { println!(\"hello from the sandbox\"); }";
    let first = new_crate("hello", main_rs, None);
    let second = new_crate("hello", main_rs, None);
    let mut binaries = Vec::new();
    for b in [&first, &second] {
        let (outcome, log) = build(b, quick_limits()).await;
        assert!(outcome.success(), "{log}");
        assert!(log.contains("Finished `release` profile"), "{log}");
        let binary = b.layout.target.join("release/hello");
        let out = Command::new(&binary).output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "hello from the sandbox\n"
        );
        binaries.push(fs::read(&binary).unwrap());
    }
    // Different host directories, same canonical paths: the same bytes.
    assert!(binaries[0] == binaries[1], "the two builds differ");
    assert!(first.layout.source.join("Cargo.lock").exists());
    assert_eq!(
        sandbox().settings_description(&first.layout.build(["build"], EPOCH)),
        sandbox().settings_description(&second.layout.build(["build"], EPOCH)),
    );
}

#[tokio::test]
async fn hostile_build_script_is_contained() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let secrets = tempfile::tempdir().unwrap();
    let key = secrets.path().join("node.key");
    fs::write(&key, "SECRET-SEED").unwrap();
    let build_rs = format!(
        r#"
fn report<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) {{
    match r {{
        Ok(_) => println!("cargo:warning={{what}}: ESCAPED"),
        Err(e) => println!("cargo:warning={{what}}: denied ({{e}})"),
    }}
}}
fn main() {{
    report("network", std::net::TcpStream::connect("127.0.0.1:{port}"));
    report("dns", std::net::ToSocketAddrs::to_socket_addrs("index.crates.io:443"));
    for path in ["/buildsrs/cargo-home/pwned", "/pwned", "/usr/pwned",
                 "/buildsrs/toolchain/pwned", "/buildsrs/lib/pwned"] {{
        report(&format!("write {{path}}"), std::fs::write(path, "x"));
    }}
    report("write own source", std::fs::write("/buildsrs/src/generated", "x"));
    report("key", std::fs::read_to_string({key:?}));
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap());
    report("write OUT_DIR", std::fs::write(out.join("fine"), "x").map_err(|e| e.to_string()));
}}
"#
    );
    let b = new_crate("hostile", "fn main() {}", Some(&build_rs));
    let (outcome, log) = build(&b, quick_limits()).await;
    assert!(outcome.success(), "{log}");
    assert!(
        !log.contains("network: ESCAPED") && !log.contains("dns: ESCAPED"),
        "{log}"
    );
    // Inside, 127.0.0.1 is the sandbox's own loopback: nothing listens there.
    assert!(log.contains("network: denied (Connection refused"), "{log}");
    assert!(log.contains("dns: denied"), "{log}");
    for path in [
        "/buildsrs/cargo-home/pwned",
        "/pwned",
        "/usr/pwned",
        "/buildsrs/toolchain/pwned",
        "/buildsrs/lib/pwned",
    ] {
        assert!(
            log.contains(&format!("write {path}: denied")),
            "{path}: {log}"
        );
    }
    assert!(log.contains("key: denied"), "{log}");
    assert!(!log.contains("SECRET-SEED"), "{log}");
    // Its own output dir and its own copy of the source are writable, as under plain cargo.
    assert!(log.contains("write OUT_DIR: ESCAPED"), "{log}");
    assert!(log.contains("write own source: ESCAPED"), "{log}");
    assert!(b.layout.source.join("generated").exists());
    assert!(!b.layout.cargo_home.join("pwned").exists());
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "nothing reached the listener");
}

/// Build scripts, proc macros and the programs they run read `SOURCE_DATE_EPOCH` as the
/// time, to the nanosecond; elapsed time still passes; and the output is the same bytes.
#[tokio::test]
async fn the_wall_clock_is_frozen_at_source_date_epoch() {
    let build_rs = r#"
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
fn main() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let date = std::process::Command::new("date").arg("+%s.%N").output().unwrap();
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(50));
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap());
    std::fs::write(out.join("stamp.txt"), format!(
        "build script {}.{:09}, date {}, slept 50 ms: {}",
        now.as_secs(), now.subsec_nanos(),
        String::from_utf8_lossy(&date.stdout).trim(),
        // Whether monotonic time passed, not how much: the milliseconds vary with the
        // machine's load, and would make the two builds differ.
        started.elapsed() >= Duration::from_millis(50),
    )).unwrap();
}
"#;
    let main_rs = r#"fn main() {
    println!("{}", include_str!(concat!(env!("OUT_DIR"), "/stamp.txt")));
    println!("proc macro {}", stamp::now!());
}"#;
    let macro_rs = r#"use proc_macro::{Literal, TokenStream, TokenTree};
#[proc_macro]
pub fn now(_: TokenStream) -> TokenStream {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let text = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
    TokenTree::Literal(Literal::string(&text)).into()
}"#;
    let mut outputs = Vec::new();
    let mut binaries = Vec::new();
    for _ in 0..2 {
        let b = new_crate("clock", main_rs, Some(build_rs));
        let stamp = b.layout.source.join("stamp");
        fs::create_dir_all(stamp.join("src")).unwrap();
        fs::write(
            stamp.join("Cargo.toml"),
            "[package]\nname = \"stamp\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
             [lib]\nproc-macro = true\n",
        )
        .unwrap();
        fs::write(stamp.join("src/lib.rs"), macro_rs).unwrap();
        let manifest = b.layout.source.join("Cargo.toml");
        let text = fs::read_to_string(&manifest).unwrap();
        fs::write(
            &manifest,
            format!("{text}\n[dependencies]\nstamp = {{ path = \"stamp\" }}\n"),
        )
        .unwrap();
        let (outcome, log) = build(&b, quick_limits()).await;
        assert!(outcome.success(), "{log}");
        let binary = b.layout.target.join("release/clock");
        let out = Command::new(&binary).output().unwrap();
        outputs.push(String::from_utf8_lossy(&out.stdout).into_owned());
        binaries.push(fs::read(&binary).unwrap());
    }
    let first = &outputs[0];
    assert!(
        first.starts_with(&format!(
            "build script {EPOCH}.000000000, date {EPOCH}.000000000, slept "
        )),
        "{first}"
    );
    assert!(
        first.contains(&format!("proc macro {EPOCH}.000000000")),
        "{first}"
    );
    assert!(
        first.contains("slept 50 ms: true"),
        "elapsed time must still pass: {first}"
    );
    assert!(binaries[0] == binaries[1], "the two builds differ");
}

#[tokio::test]
async fn endless_build_script_times_out() {
    let b = new_crate("endless", "fn main() {}", Some("fn main() { loop {} }"));
    let limits = Limits {
        wall_clock: Duration::from_secs(8),
        ..Limits::default()
    };
    let (outcome, log) = build(&b, limits).await;
    assert_eq!(outcome.kind(), RunKind::TimedOut, "{outcome:?} {log}");
    assert!(outcome.wall_time < Duration::from_secs(40), "{outcome:?}");
}

#[tokio::test]
async fn memory_hog_build_script_is_out_of_memory() {
    let hog = "fn main() { let mut v: Vec<Vec<u8>> = Vec::new(); \
               loop { v.push(vec![1u8; 16 << 20]); } }";
    let b = new_crate("hog", "fn main() {}", Some(hog));
    // The cgroup stops it at 768 MiB; where cgroups are not writable, the address-space
    // limit does (and the allocation failure is what classifies it).
    let limits = Limits {
        memory_bytes: Some(768 << 20),
        address_space_bytes: Some(4 << 30),
        ..quick_limits()
    };
    let (outcome, log) = build(&b, limits).await;
    assert_eq!(outcome.kind(), RunKind::OutOfMemory, "{outcome:?} {log}");
    assert!(log.contains("failed to run custom build command"), "{log}");
}

/// The node checks the clock library at start: the real one passes; one that does not load
/// (the dynamic linker only warns and the program reads the real clock) is refused.
#[tokio::test]
async fn the_clock_self_check_passes_and_refuses_a_library_that_does_not_load() {
    let dirs = tempfile::tempdir().unwrap();
    let shim = clock::install(&dirs.path().join("lib")).unwrap();
    clock::self_check(&sandbox(), &shim).await.unwrap();

    let broken = dirs.path().join("not-a-library.so");
    fs::write(&broken, b"not an ELF file").unwrap();
    let error = clock::self_check(&sandbox(), &broken)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("does not work here") && error.contains("expected 1700000000.000000000"),
        "{error}"
    );
}
