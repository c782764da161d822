//! The coordinator's integration tests, linked into one test binary (`it`): each file beside
//! this one is a module here, unchanged, so it still reads as a test file of its own. One link
//! of the coordinator (store, web, libp2p, iroh) instead of three (see `scripts/test`).
//!
//! Run one file's tests with `cargo nextest run -p buildsrs-coordinator --test it jobs::`.

#[path = "flood.rs"]
mod flood;
#[path = "follow_index.rs"]
mod follow_index;
#[path = "jobs.rs"]
mod jobs;
#[path = "process.rs"]
mod process;

#[test]
fn every_test_file_is_linked() {
    buildsrs_test_support::assert_every_test_file_is_linked(
        env!("CARGO_MANIFEST_DIR"),
        include_str!("it.rs"),
        &[],
    );
}
