//! What a page and its JSON twin both load: one store read (or a few) per thing shown, with
//! "not found" turned into a 404 that names what was missing. Pages render the result with
//! a template, the API serializes it.

use buildsrs_domain::{Blake3Hash, CrateName, CrateVersion, PublicKey};
use buildsrs_store::{
    ArtifactInfo, AttestationInfo, BuilderInfo, BuilderResult, CrateInfo, Page, Paged, QueueStats,
    TaskDetail, TaskId, TaskInfo, VersionInfo,
};
use jiff::Timestamp;
use serde::Serialize;

use crate::WebState;
use crate::error::WebError;
use crate::params::VersionParam;

/// How many of a builder's recent results its page and API show.
const RECENT_RESULTS: u32 = 50;

/// A crate and its versions.
pub(crate) async fn krate(state: &WebState, name: &CrateName) -> Result<CrateInfo, WebError> {
    state
        .store()
        .crate_info(name.as_str())
        .await?
        .ok_or_else(|| WebError::not_found(format!("crate {}", name.as_str())))
}

/// The exact version a URL names: itself, or for `latest` the newest not yanked.
async fn exact_version(
    state: &WebState,
    name: &CrateName,
    version: &VersionParam,
) -> Result<CrateVersion, WebError> {
    match version {
        VersionParam::Exact(version) => Ok(version.clone()),
        VersionParam::Latest => version
            .resolve(&krate(state, name).await?)
            .map(|v| v.version.clone())
            .ok_or_else(|| {
                WebError::not_found(format!("a non-yanked version of {}", name.as_str()))
            }),
    }
}

/// A version and its tasks (what a download needs).
pub(crate) async fn version(
    state: &WebState,
    name: &CrateName,
    version: &VersionParam,
) -> Result<VersionInfo, WebError> {
    let exact = exact_version(state, name, version).await?;
    state
        .store()
        .version_info(name.as_str(), &exact)
        .await?
        .ok_or_else(|| WebError::not_found(format!("{} {exact}", name.as_str())))
}

/// A version, its tasks, and each task's leases and results, in one store read (what the
/// version page and its API twin show).
pub(crate) async fn version_details(
    state: &WebState,
    name: &CrateName,
    version: &VersionParam,
) -> Result<(VersionInfo, Vec<TaskDetail>), WebError> {
    let exact = exact_version(state, name, version).await?;
    let (info, details) = state
        .store()
        .version_details(name.as_str(), &exact)
        .await?
        .ok_or_else(|| WebError::not_found(format!("{} {exact}", name.as_str())))?;
    Ok((info, details.into_iter().map(sealed).collect()))
}

/// A task with its leases and results (sealed until it is decided).
pub(crate) async fn task(state: &WebState, id: TaskId) -> Result<TaskDetail, WebError> {
    state
        .store()
        .task(id)
        .await?
        .map(sealed)
        .ok_or_else(|| WebError::not_found(format!("task {id}")))
}

/// A task's results as the public may see them: until the task is decided, nothing of what
/// its builders built (hash, size, signed attestation), so that a builder reading the pages
/// or the API cannot copy another's hash instead of building. Who answered and how stays.
pub(crate) fn sealed(mut detail: TaskDetail) -> TaskDetail {
    if detail.task.decided_at.is_none() {
        detail.results.iter_mut().for_each(seal);
    }
    detail
}

/// Leaves of a result what anyone may see of an undecided task's (see [`sealed`]).
fn seal(result: &mut AttestationInfo) {
    result.artifact = None;
    result.signed = None;
}

/// An artifact with its tasks, attestations and downloads.
pub(crate) async fn artifact(
    state: &WebState,
    hash: &Blake3Hash,
) -> Result<ArtifactInfo, WebError> {
    state
        .store()
        .artifact(hash)
        .await?
        .ok_or_else(|| WebError::not_found(format!("artifact {hash}")))
}

/// A builder and its most recent results.
#[derive(Serialize)]
pub(crate) struct BuilderView {
    pub builder: BuilderInfo,
    pub recent_results: Vec<BuilderResult>,
}

pub(crate) async fn builder(state: &WebState, key: &PublicKey) -> Result<BuilderView, WebError> {
    let builder = state
        .store()
        .builder(key)
        .await?
        .ok_or_else(|| WebError::not_found(format!("builder {key}")))?;
    let mut recent_results = state
        .store()
        .builder_results(key, RECENT_RESULTS)
        .await?
        .unwrap_or_default();
    // Sealed like a task's results (see [`sealed`]).
    for recent in recent_results.iter_mut().filter(|r| !r.task_decided) {
        seal(&mut recent.result);
    }
    Ok(BuilderView {
        builder,
        recent_results,
    })
}

/// Queue statistics and a page of open tasks.
#[derive(Serialize)]
pub(crate) struct QueueView {
    pub stats: QueueStats,
    pub tasks: Paged<TaskInfo>,
    /// The offset of the next page, if there is one.
    pub next: Option<u64>,
}

pub(crate) async fn queue(state: &WebState, page: Page) -> Result<QueueView, WebError> {
    let stats = state.store().queue_stats(Timestamp::now()).await?;
    let tasks = state.store().open_tasks(page).await?;
    let next = next_offset(page, tasks.total);
    Ok(QueueView { stats, tasks, next })
}

/// The offset of the page after `page`, if `total` items reach past it.
pub(crate) fn next_offset(page: Page, total: u64) -> Option<u64> {
    let end = page.offset + u64::from(page.limit);
    (end < total).then_some(end)
}
