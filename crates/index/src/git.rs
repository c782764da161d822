//! Following a whole registry through its git index (cargo feature `git`).
//!
//! For operators who build every crate: instead of polling a list, we fetch the index
//! repository and look at what the new commits touched. crates-index clones and fetches
//! (`GitIndex::with_path`, `update`) and lists the crates each commit changed
//! (`GitIndex::changes`, newest first). We remember the last commit we processed; the commits
//! after it are found by walking first parents from the new head, and `changes()` is read
//! until it reaches a commit outside that set. Each changed crate's file is then read at the
//! new head and at the remembered commit, so a [`CrateUpdate`] says exactly what was
//! published, yanked or un-yanked in between, however many commits it took.
//!
//! We read the blobs with gix (the one crates-index uses) rather than `GitIndex::crate_`,
//! which drops the whole crate when one line is malformed.
//!
//! The first open of a follower without a remembered commit starts at the current head: it
//! reports what happens from then on, not the registry's history. The coordinator stores
//! [`GitFollower::last_commit`] and passes it back after a restart. git work is blocking and
//! runs on tokio's blocking pool.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::IndexConfig;
use crate::error::IndexError;
use crate::follow::{Backoff, FollowEnd, FollowOptions, send_all};
use crate::layout::index_path;
use crate::versions::{CrateUpdate, diff_versions, parse_index_lines};

/// The most new commits one poll walks before giving up on finding the remembered one (it
/// may be gone after a history squash); the report then says `truncated`.
pub const DEFAULT_MAX_COMMITS: usize = 100_000;

/// What one poll of a git index found.
#[derive(Debug, Default)]
pub struct GitPollReport {
    /// Crates whose index file changed in the new commits.
    pub updates: Vec<CrateUpdate>,
    /// Crates whose index file was deleted.
    pub removed: Vec<String>,
    /// The commit the poll started from.
    pub from: String,
    /// The commit it got to (the new [`GitFollower::last_commit`]).
    pub to: String,
    /// How many new commits there were.
    pub commits: usize,
    /// The remembered commit was not found among the last [`DEFAULT_MAX_COMMITS`] first
    /// parents: some changes may be missing, and the caller may want a full resync.
    pub truncated: bool,
}

/// Follows every crate of a git index. See the module docs.
///
/// It holds paths, not an open repository: gix repositories are not `Send` in the build
/// crates-index makes, so each blocking task opens the clone itself (cheap).
#[derive(Debug)]
pub struct GitFollower {
    path: PathBuf,
    url: String,
    last_commit: String,
    max_commits: usize,
}

fn git_error(e: impl std::fmt::Display) -> IndexError {
    IndexError::Git(e.to_string())
}

impl GitFollower {
    /// Opens the clone of `url` at `path`, cloning it first if there is none. Follows from
    /// `since` (a commit id from [`Self::last_commit`]) or, without one, from the current
    /// head.
    pub async fn open(
        path: impl Into<PathBuf>,
        url: &str,
        since: Option<String>,
    ) -> Result<Self, IndexError> {
        let path = path.into();
        let url = url.to_owned();
        tokio::task::spawn_blocking(move || {
            let index =
                crates_index::GitIndex::with_path(&path, url.as_str()).map_err(git_error)?;
            let last_commit = match since {
                Some(commit) => {
                    let repo = gix::open(index.path()).map_err(git_error)?;
                    find_commit(&repo, &commit)?;
                    commit
                }
                None => index.commit_hex(),
            };
            Ok(Self {
                path,
                url,
                last_commit,
                max_commits: DEFAULT_MAX_COMMITS,
            })
        })
        .await
        .map_err(git_error)?
    }

    /// The last commit processed: store it to resume from there.
    pub fn last_commit(&self) -> &str {
        &self.last_commit
    }

    /// Fetches the index and reports the crates changed since [`Self::last_commit`].
    pub async fn poll(&mut self) -> Result<GitPollReport, IndexError> {
        let (path, url) = (self.path.clone(), self.url.clone());
        let from = self.last_commit.clone();
        let max_commits = self.max_commits;
        let report = tokio::task::spawn_blocking(move || {
            let mut index = crates_index::GitIndex::with_path(path, url).map_err(git_error)?;
            poll_blocking(&mut index, &from, max_commits)
        })
        .await
        .map_err(git_error)??;
        self.last_commit.clone_from(&report.to);
        Ok(report)
    }

    /// Polls every `options.interval` until `cancel` fires or `updates`' receiver is dropped,
    /// backing off while the index cannot be fetched.
    pub async fn follow(
        mut self,
        updates: mpsc::Sender<CrateUpdate>,
        options: FollowOptions,
        cancel: CancellationToken,
    ) -> FollowEnd {
        let mut backoff = Backoff::new(&options);
        loop {
            let polled = tokio::select! {
                () = cancel.cancelled() => return FollowEnd::Cancelled,
                polled = self.poll() => polled,
            };
            let wait = match polled {
                Ok(report) => {
                    backoff.succeeded();
                    if report.truncated {
                        tracing::warn!(
                            "commit {} not found among {} new commits: changes may be missing",
                            report.from,
                            report.commits
                        );
                    }
                    if let Some(end) = send_all(&updates, report.updates, &cancel).await {
                        return end;
                    }
                    options.interval
                }
                Err(e) => {
                    let wait = backoff.failed();
                    tracing::warn!("git index: {e}; retrying in {wait:?}");
                    wait
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return FollowEnd::Cancelled,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

fn find_commit(repo: &gix::Repository, hex: &str) -> Result<gix::ObjectId, IndexError> {
    let id = gix::ObjectId::from_hex(hex.as_bytes())
        .map_err(|e| IndexError::Git(format!("{hex:?} is not a commit id: {e}")))?;
    repo.find_object(id)
        .map_err(|e| IndexError::Git(format!("commit {hex}: {e}")))?
        .try_into_commit()
        .map_err(|e| IndexError::Git(format!("{hex}: {e}")))?;
    Ok(id)
}

fn poll_blocking(
    index: &mut crates_index::GitIndex,
    from: &str,
    max_commits: usize,
) -> Result<GitPollReport, IndexError> {
    index.update().map_err(git_error)?;
    let to = index.commit_hex();
    let mut report = GitPollReport {
        from: from.to_owned(),
        to: to.clone(),
        ..GitPollReport::default()
    };
    if to == from {
        return Ok(report);
    }
    let repo = gix::open(index.path()).map_err(git_error)?;
    let head = find_commit(&repo, &to)?;
    let from_id = find_commit(&repo, from).ok();

    // The new commits: first parents from the head back to (not including) `from`.
    let mut new_commits = HashSet::new();
    let mut next = Some(head);
    while let Some(id) = next {
        if Some(id) == from_id {
            break;
        }
        if new_commits.len() >= max_commits {
            report.truncated = true;
            break;
        }
        new_commits.insert(id);
        let commit = repo
            .find_object(id)
            .map_err(git_error)?
            .try_into_commit()
            .map_err(git_error)?;
        next = commit.parent_ids().next().map(|p| p.detach());
    }
    report.commits = new_commits.len();
    if next.is_none() && from_id.is_some() {
        // Walked to the root without meeting `from`: history was rewritten.
        report.truncated = true;
    }

    let mut changed = BTreeSet::new();
    for change in index.changes().map_err(git_error)? {
        let change = change.map_err(git_error)?;
        let commit = gix::ObjectId::from(*change.commit());
        if !new_commits.contains(&commit) {
            break;
        }
        changed.insert(change.crate_name().to_owned());
    }

    let config = IndexConfig::from_json(
        &read_blob(&repo, head, "config.json")?
            .ok_or_else(|| IndexError::Config("no config.json in the git index".into()))?,
    )?;
    for name in changed {
        let Some(path) = index_path(&name) else {
            continue;
        };
        let Some(now) = read_blob(&repo, head, &path)? else {
            report.removed.push(name);
            continue;
        };
        let previous = match from_id {
            Some(id) => read_blob(&repo, id, &path)?,
            None => None,
        };
        let (versions, skipped) = parse_index_lines(&name, &now, &config);
        for line in &skipped {
            tracing::warn!(
                krate = %name,
                line = line.line,
                "skipping malformed index line {} of crate {name}: {}",
                line.line,
                line.reason
            );
        }
        let before = previous
            .map(|bytes| parse_index_lines(&name, &bytes, &config).0)
            .unwrap_or_default();
        let changes = diff_versions(&before, &versions);
        let published = versions.first().map_or(name, |v| v.name.to_string());
        tracing::info!(krate = %published, "git index: {published}: {}", changes.summary());
        report.updates.push(CrateUpdate {
            name: published,
            versions,
            changes,
        });
    }
    Ok(report)
}

/// The contents of `path` in the tree of `commit`, `None` if there is no such file.
fn read_blob(
    repo: &gix::Repository,
    commit: gix::ObjectId,
    path: &str,
) -> Result<Option<Vec<u8>>, IndexError> {
    let tree = repo
        .find_object(commit)
        .map_err(git_error)?
        .peel_to_commit()
        .map_err(git_error)?
        .tree()
        .map_err(git_error)?;
    match tree.lookup_entry_by_path(path).map_err(git_error)? {
        None => Ok(None),
        Some(entry) if !entry.mode().is_blob() => Ok(None),
        Some(entry) => Ok(Some(entry.object().map_err(git_error)?.detach().data)),
    }
}
