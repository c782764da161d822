//! The buildsrs builder node: the volunteer's machine doing the real work.
//!
//! - [`datadir`]: the data dir layout, identity and configuration file.
//! - [`fetch`]: download a `.crate`, capped and checked against the index checksum.
//! - [`plan`]: read `cargo metadata` and `[package.metadata.buildsrs]` into a build plan.
//! - [`outcome`]: how a build ended, and the capped build log.
//! - [`settings`]: the build settings that can change the output, and their digest.
//! - [`state`]: the node's own SQLite state (jobs, artifacts, attestations).

pub mod datadir;
pub mod fetch;
pub mod outcome;
pub mod plan;
pub mod settings;
pub mod state;
