//! The testnet's integration tests, linked into one test binary (`it`): each file beside this
//! one is a module here, unchanged, so it still reads as a test file of its own. One link of
//! a whole network (coordinator, nodes, CLI) instead of two (see `scripts/test`).
//!
//! Run one file's tests with `cargo nextest run -p buildsrs-testnet --test it network::`.

#[path = "docs.rs"]
mod docs;
#[path = "hostile_coordinator.rs"]
mod hostile_coordinator;
#[path = "network.rs"]
mod network;

#[test]
fn every_test_file_is_linked() {
    buildsrs_test_support::assert_every_test_file_is_linked(
        env!("CARGO_MANIFEST_DIR"),
        include_str!("it.rs"),
        &[],
    );
}
