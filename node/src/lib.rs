//! The buildsrs builder node: the volunteer's machine doing the real work.
//!
//! - [`pipeline`]: one build, start to finish (fetch, unpack, plan, two sandboxed cargo
//!   phases, pack, sign, keep). The entry point for everything else.
//! - [`datadir`]: the data dir layout, identity and configuration file.
//! - [`job`]: jobs as they enter the node (lease or command line), every field checked
//!   before anything is made from it.
//! - [`fetch`]: download a `.crate`, capped in size and time and checked against the index
//!   checksum.
//! - [`metadata`]: `cargo metadata` of the crate, in the sandbox.
//! - [`plan`]: read `cargo metadata` and `[package.metadata.buildsrs]` into a build plan.
//! - [`sources`]: refuse git, path and other-registry sources, `[patch]` and `[replace]`
//!   before phase 1; [`registry_proxy`]: the proxy that lets phase 1 reach only the job's
//!   registry.
//! - [`outcome`]: how a build ended.
//! - [`limits`]: which build limits hold here and by what; `run` refuses to start without
//!   memory, process and disk limits.
//! - [`settings`]: the build settings that can change the output, and their digest.
//! - [`state`]: the node's own SQLite state (jobs, artifacts, attestations).
//! - [`retention`]: how long artifacts are kept, and pruning them.
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
pub mod job;
pub mod limits;
pub mod metadata;
pub mod net;
pub mod outcome;
pub mod pipeline;
pub mod plan;
pub mod registry_proxy;
pub mod retention;
pub mod run;
pub mod settings;
pub mod sources;
pub mod state;
