//! The git side of the fixture registry: the index directory is also a git work tree on
//! branch `master`, with one commit per publish, yank or un-yank, like the crates.io git
//! index. Followers clone it through a `file://` URL, so no network is involved.
//!
//! We drive the `git` command line rather than a library: it is installed wherever tests
//! run, and it is what produced every real registry index. The user's and the system's git
//! configuration are ignored (no hooks, no signing, no templates), and commit times come from
//! the registry's logical clock so the history is the same on every run.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::FixtureError;

/// The logical clock's zero for commit dates (2020-01-01T00:00:00Z), as in the server.
const CLOCK_EPOCH_SECS: u64 = 1_577_836_800;

/// A git work tree holding the index.
#[derive(Debug)]
pub(crate) struct GitIndexRepo {
    dir: PathBuf,
}

impl GitIndexRepo {
    /// `git init` in `dir` (which already holds `config.json`) and a first commit.
    pub(crate) fn init(dir: &Path, tick: u64) -> Result<Self, FixtureError> {
        let repo = Self {
            dir: dir.to_owned(),
        };
        repo.git(&["init", "--quiet", "--initial-branch=master"], tick)?;
        repo.commit("Initial commit: config.json", tick)?;
        Ok(repo)
    }

    /// Commits everything in the work tree.
    pub(crate) fn commit(&self, message: &str, tick: u64) -> Result<(), FixtureError> {
        self.git(&["add", "--all"], tick)?;
        self.git(&["commit", "--quiet", "--allow-empty", "-m", message], tick)?;
        Ok(())
    }

    /// The commit `master` points at.
    pub(crate) fn head(&self) -> Result<String, FixtureError> {
        let out = self.git(&["rev-parse", "HEAD"], 0)?;
        Ok(out.trim().to_owned())
    }

    fn git(&self, args: &[&str], tick: u64) -> Result<String, FixtureError> {
        let date = format!("@{} +0000", CLOCK_EPOCH_SECS + tick);
        let output = Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args([
                "-c",
                "user.name=buildsrs fixture",
                "-c",
                "user.email=fixture@buildsrs.invalid",
                "-c",
                "commit.gpgsign=false",
                "-c",
                "core.hooksPath=/dev/null",
            ])
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .output()
            .map_err(|e| FixtureError::Git(format!("running git: {e}")))?;
        if !output.status.success() {
            return Err(FixtureError::Git(format!(
                "git {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}
