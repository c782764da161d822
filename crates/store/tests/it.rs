//! The store's integration tests, linked into one test binary (`it`): each file beside this
//! one is a module here, unchanged, so it still reads as a test file of its own. One link of
//! the store and its dependencies instead of five (see `scripts/test` for the figures).
//!
//! Run one file's tests with `cargo nextest run -p buildsrs-store --test it conformance::`.

// Each file declares `mod common;` itself, as a test file of its own would.
#![allow(clippy::duplicate_mod)]

#[path = "conformance.rs"]
mod conformance;
#[path = "crash.rs"]
mod crash;
#[path = "operator.rs"]
mod operator;
#[path = "race.rs"]
mod race;
#[path = "schema.rs"]
mod schema;

#[test]
fn every_test_file_is_linked() {
    buildsrs_test_support::assert_every_test_file_is_linked(
        env!("CARGO_MANIFEST_DIR"),
        include_str!("it.rs"),
        &[],
    );
}
