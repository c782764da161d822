//! The buildsrs builder node: the volunteer's machine doing the real work.
//!
//! - [`pipeline`]: one build, start to finish (fetch, unpack, plan, two sandboxed cargo
//!   phases, pack, sign, keep). The entry point for everything else.
//! - [`datadir`]: the data dir layout, identity and configuration file.
//! - [`fetch`]: download a `.crate`, capped and checked against the index checksum.
//! - [`plan`]: read `cargo metadata` and `[package.metadata.buildsrs]` into a build plan.
//! - [`sources`]: refuse git, path and other-registry sources, `[patch]` and `[replace]`
//!   before phase 1; [`registry_proxy`]: the proxy that lets phase 1 reach only the job's
//!   registry.
//! - [`outcome`]: how a build ended.
//! - [`settings`]: the build settings that can change the output, and their digest.
//! - [`state`]: the node's own SQLite state (jobs, artifacts, attestations).
//! - [`run`] and [`net`]: `buildsrs-node run`, the node on a coordinator's network (job loop,
//!   libp2p client, blob server).
//! - [`cli`] and [`build_cmd`]: the `buildsrs-node` command line.
//!
//! **Invariant:** nothing here hands the identity, the data dir or the state to the sandbox;
//! builds see only their own scratch directories and the dependency cache.

pub mod build_cmd;
pub mod cli;
pub mod datadir;
pub mod fetch;
pub mod net;
pub mod outcome;
pub mod pipeline;
pub mod plan;
pub mod registry_proxy;
pub mod run;
pub mod settings;
pub mod sources;
pub mod state;
