//! Compiles the frozen-clock preload library (`clock/buildsrs_clock.c`, see `src/clock.rs`)
//! into `$OUT_DIR/libbuildsrs_clock.so`, which the crate embeds.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "clock/buildsrs_clock.c";
    println!("cargo:rerun-if-changed={source}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let library = out.join("libbuildsrs_clock.so");
    let compiler = cc::Build::new().get_compiler();
    let mut command: Command = compiler.to_command();
    command
        .args([
            "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-o",
        ])
        .arg(&library)
        .arg(source);
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("running the C compiler for {source}: {e}"));
    assert!(status.success(), "compiling {source} failed: {status}");
}
