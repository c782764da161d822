//! The node's integration tests, linked into one test binary (`it`): each file beside this one
//! is a module here, unchanged, so it still reads (and is edited) as a test file of its own.
//! One binary instead of four: one link of the node, the sandbox and their dependencies
//! instead of four, and a quarter of the disk (see `scripts/test`'s prune step for the
//! figures). The crates.io group stays a binary of its own (`crates_io`): `.config/nextest.toml`
//! and the ARCHITECTURE name it by binary.
//!
//! Run one file's tests with `cargo nextest run -p buildsrs-node --test it build::` (or
//! `cargo test -p buildsrs-node --test it build::`).

// Each file declares `mod support;` itself, as a test file of its own would.
#![allow(clippy::duplicate_mod)]

#[path = "build.rs"]
mod build;
#[path = "cli.rs"]
mod cli;
#[path = "hostile_input.rs"]
mod hostile_input;
#[path = "phase1.rs"]
mod phase1;

#[test]
fn every_test_file_is_linked() {
    buildsrs_test_support::assert_every_test_file_is_linked(
        env!("CARGO_MANIFEST_DIR"),
        include_str!("it.rs"),
        &["crates_io.rs"],
    );
}
