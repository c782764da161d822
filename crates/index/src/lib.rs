//! The registry index follower: tells the coordinator about new, yanked and un-yanked
//! versions of the crates it builds.
//!
//! Two ways to follow an index, both producing [`CrateUpdate`]s (a crate's full current
//! version list, each version with its sha256 and download URL, plus what changed):
//!
//! - [`SparseFollower`]: polls a sparse HTTP index (crates.io's `https://index.crates.io/`)
//!   for a watch list of crates, with conditional requests or body hashes so unchanged
//!   crates cost little and are not reported. [`SparseFollower::follow`] runs it forever,
//!   with backoff while the index is unreachable; the [`WatchList`] can change meanwhile.
//! - `GitFollower` (cargo feature `git`): follows every crate of a git index by walking its
//!   new commits, for operators who build the whole registry.
//!
//! Bad input never stops a follower: a malformed index line is skipped with a warning naming
//! the crate and line ([`parse_index_file`]), a crate that fails to fetch keeps its last
//! state and is tried again, an unreachable index is retried.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use buildsrs_index::{FollowOptions, SparseFollower, WatchList};
//! let watch = WatchList::from_names(["ripgrep", "fd-find"])?;
//! let follower = SparseFollower::new("sparse+https://index.crates.io/")?;
//! let (tx, mut rx) = tokio::sync::mpsc::channel(64);
//! let cancel = tokio_util::sync::CancellationToken::new();
//! tokio::spawn(follower.follow(watch.clone(), tx, FollowOptions::default(), cancel.clone()));
//! while let Some(update) = rx.recv().await {
//!     for v in update.changes.added.iter().filter(|v| !v.yanked) {
//!         println!("build {} {} (sha256 {}) from {}", v.name, v.version, v.cksum, v.download_url);
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod config;
pub mod crates_io;
pub mod error;
#[cfg(feature = "follow")]
pub mod follow;
#[cfg(feature = "git")]
pub mod git;
pub mod layout;
#[cfg(feature = "follow")]
pub mod sparse;
pub mod versions;
#[cfg(feature = "follow")]
pub mod watch;

pub use config::IndexConfig;
pub use error::IndexError;
#[cfg(feature = "follow")]
pub use follow::{FollowEnd, FollowOptions};
#[cfg(feature = "git")]
pub use git::{GitFollower, GitPollReport};
pub use layout::index_path;
#[cfg(feature = "follow")]
pub use sparse::{DEFAULT_CONCURRENCY, PollReport, SparseFollower, default_client};
pub use versions::{
    CrateUpdate, IndexVersion, SkippedLine, VersionChanges, diff_versions, parse_index_file,
};
#[cfg(feature = "follow")]
pub use watch::{
    NamesError, WatchEntry, WatchList, parse_names_file, parse_watch_file, read_names_file,
    read_watch_file,
};
